# Copyright 2026 the llamafactory-tract authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""Layers point one way, and private names of the libraries under us stay in ``patches/`` and ``compat/``."""

import ast

from tests.helpers.paths import REPO_ROOT

PACKAGE = "llamafactory_tract"
# compat/extras -> hparams -> data -> train/judge -> eval/serve -> pipeline -> demo/webui -> cli
LAYERS = {
    "compat": 0,
    "extras": 0,
    "hparams": 1,
    "data": 2,
    "train": 3,
    "judge": 3,
    "eval": 4,
    "serve": 4,
    "pipeline": 5,
    "demo": 6,
    "webui": 6,
    "cli": 7,
}


def imported_subpackages(path) -> set[str]:
    """Every ``llamafactory_tract.<subpackage>`` a module imports, at any depth (functions, TYPE_CHECKING)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        found.update(name.split(".")[1] for name in names if name.startswith(f"{PACKAGE}."))
    return found


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for path in sorted((REPO_ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(REPO_ROOT / PACKAGE).with_suffix("").parts
        if parts[0] == "__init__":
            continue
        own = LAYERS[parts[0]]
        upward += [f"{'/'.join(parts)} -> {sub}" for sub in imported_subpackages(path) if LAYERS[sub] > own]
    assert not upward, upward


def test_every_subpackage_has_a_layer():
    subpackages = {path.name for path in (REPO_ROOT / PACKAGE).iterdir() if (path / "__init__.py").is_file()}
    assert subpackages | {"cli"} == set(LAYERS)


LIBRARIES = ("llamafactory", "transformers", "peft", "vllm", "gradio", "datasets", "trl")


def test_private_names_of_libraries_are_imported_only_in_compat():
    """``from llamafactory.data.loader import _get_merged_dataset`` and the like live in ``compat/``."""
    found = []
    for path in sorted((REPO_ROOT / PACKAGE).rglob("*.py")):
        if path.parent.name == "compat":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in LIBRARIES:
                found += [f"{path.name}: {alias.name}" for alias in node.names if alias.name.startswith("_")]
    assert not found, found
