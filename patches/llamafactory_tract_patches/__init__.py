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

"""Registers ``stage: cotraft`` in an unmodified LLaMA-Factory, in every process.

``llamafactory_tract.pth`` (installed into site-packages) imports this module at interpreter
start-up; it only installs an import hook, so it costs nothing until LLaMA-Factory is
imported. When one of the grafted LLaMA-Factory modules finishes loading, the matching graft in
``llamafactory_0_9_5.py`` is applied to it. This covers ``llamafactory-cli train``, the Python
API and the torchrun child processes of multi-device runs alike.
"""

import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

from .llamafactory_0_9_5 import GRAFTS

SUPPORTED_LLAMAFACTORY_VERSIONS = ("0.9.5",)


GRAFTED_MODULES = tuple(GRAFTS)


class _GraftingLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        apply_graft(module)


class _GraftingFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in GRAFTED_MODULES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _GraftingLoader(spec.loader)
        return spec


def llamafactory_version() -> str:
    from importlib.metadata import version

    return version("llamafactory")


def apply_graft(module: ModuleType) -> None:
    """Graft one freshly loaded LLaMA-Factory module, once, if this LLaMA-Factory is supported."""
    if getattr(module, "__tract_grafted__", False):
        return
    found = llamafactory_version()
    if found not in SUPPORTED_LLAMAFACTORY_VERSIONS:
        if module.__name__ == "llamafactory.train.tuner":
            print(
                f"[llamafactory-tract] stage `cotraft` is NOT registered: this plugin supports llamafactory "
                f"{', '.join(SUPPORTED_LLAMAFACTORY_VERSIONS)}, found {found}. "
                f"Install llamafactory=={SUPPORTED_LLAMAFACTORY_VERSIONS[-1]}.",
                file=sys.stderr,
            )
        return
    GRAFTS[module.__name__](module)
    module.__tract_grafted__ = True


def install() -> None:
    """Install the import hook and graft any LLaMA-Factory module that is already loaded."""
    if not any(isinstance(finder, _GraftingFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _GraftingFinder())
    for name in GRAFTED_MODULES:
        if name in sys.modules:
            apply_graft(sys.modules[name])


install()
