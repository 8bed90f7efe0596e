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


"""``gpu_check.sh prepare``: everything the device check needs, in one git-ignored folder that fits a device call.

The GPU machine cannot reach any index or hub, and a call carries at most 64 MiB (working tree included).
So this downloads the pinned wheels (``requirements/gpu-check.txt``) for the machine's Python, builds
DeepSpeed's (it publishes none), writes the tokenizer the checks use (SmolLM2-135M-Instruct's, from the
demo's GGUF) and the judge rows, pre-tokenises those rows for the paper-geometry part (``cutoff_len`` 3000,
one dataset per stage), checks the total against the limit and prints the one device command.
"""

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIR = REPO_ROOT / ".gpu_check"
CALL_LIMIT_BYTES = 64 * 2**20
DEVICE_PYTHON = "3.12"  # the GPU machine's python3
MANYLINUX = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
DEEPSPEED = "deepspeed==0.19.8"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")
GEOMETRY_CUTOFF = 3000
GEOMETRY_ROWS = 16
TRAIN_ROWS = 64
TEMPLATE = "smollm2"


def download_wheels(wheel_dir: Path, python_version: str) -> None:
    """The pinned wheels for ``python_version`` on manylinux x86_64, and DeepSpeed built from its sdist."""
    wheel_dir.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    platforms = [arg for tag in MANYLINUX for arg in ("--platform", tag)]
    subprocess.run(
        [*pip, "download", "--quiet", "--no-deps", "--only-binary=:all:", "--python-version", python_version]
        + [
            "--implementation",
            "cp",
            *platforms,
            "-d",
            str(wheel_dir),
            "-r",
            str(REPO_ROOT / "requirements/gpu-check.txt"),
        ],
        check=True,
    )
    if not any(wheel_dir.glob("deepspeed-*.whl")):
        # Built in pip's isolated environment, without torch: no op is precompiled (they JIT-compile on use).
        subprocess.run([*pip, "wheel", "--quiet", "--no-deps", DEEPSPEED, "-w", str(wheel_dir)], check=True)


def write_tokenizer(target: Path) -> Path:
    from llamafactory_tract.demo.smollm2 import smollm2_hf_dir

    source = smollm2_hf_dir()
    target.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)
    return target


def write_rows(data_dir: Path) -> Path:
    """Judge rows (alpaca: prompt, CoT ending in the delimiter and a score) as a LLaMA-Factory dataset_dir."""
    from benchmarks.judge_rows import judge_rows, write_dataset

    write_dataset(data_dir, judge_rows(TRAIN_ROWS), name="judge")
    write_dataset(data_dir / "long", judge_rows(GEOMETRY_ROWS, min_prompt_chars=GEOMETRY_CUTOFF * 6), name="judge")
    return data_dir


def pretokenize(assets: Path, stage: str) -> Path:
    """The geometry part's rows, tokenised as LLaMA-Factory does for ``stage``, saved with ``tokenized_path``."""
    target = assets / "tokenized" / stage
    if target.is_dir():
        shutil.rmtree(target)
    args = {
        "stage": stage,
        "model_name_or_path": str(assets / "tokenizer"),
        "template": TEMPLATE,
        "do_train": True,
        "finetuning_type": "lora",
        "dataset": "judge",
        "dataset_dir": str(assets / "data" / "long"),
        "cutoff_len": GEOMETRY_CUTOFF,
        "overwrite_cache": True,
        "tokenized_path": str(target),
        "output_dir": str(assets / "tokenized" / "unused_output"),
        "report_to": "none",
        # The long rows' prompts are cut to exactly cutoff_len, as in the training benchmarks.
        **({"cotraft_min_prompt_share": 0.0} if stage == "cotraft" else {}),
    }
    code = (
        "import json, sys\n"
        "from llamafactory.hparams import get_train_args\n"
        "from llamafactory.model import load_tokenizer\n"
        "from llamafactory.data import get_dataset, get_template_and_fix_tokenizer\n"
        "model_args, data_args, training_args, finetuning_args, _ = get_train_args(json.loads(sys.argv[1]))\n"
        "module = load_tokenizer(model_args)\n"
        "template = get_template_and_fix_tokenizer(module['tokenizer'], data_args)\n"
        "get_dataset(template, model_args, data_args, training_args, finetuning_args.stage, **module)\n"
    )
    subprocess.run([sys.executable, "-c", code, json.dumps(args)], check=True, cwd=REPO_ROOT, capture_output=True)
    shutil.rmtree(assets / "tokenized" / "unused_output", ignore_errors=True)
    return target


def tree_bytes(paths: list[Path]) -> int:
    return sum(file.stat().st_size for path in paths for file in path.rglob("*") if file.is_file())


def tracked_bytes() -> int:
    """What the device call sends besides the carried folder: the tracked and untracked-not-ignored files."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    return sum(
        (REPO_ROOT / name.decode()).stat().st_size for name in listed if name and (REPO_ROOT / name.decode()).is_file()
    )


def device_command(folder: Path, tiny: bool = False) -> str:
    carried = folder.relative_to(REPO_ROOT) if folder.is_relative_to(REPO_ROOT) else folder
    return f"bash scripts/gpu_check.sh run --dir {carried}" + (" --tiny" if tiny else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="the carried folder (git-ignored)")
    parser.add_argument("--python-version", default=DEVICE_PYTHON, help="the target machine's Python (X.Y)")
    args = parser.parse_args(argv)
    folder = args.dir.resolve()
    assets = folder / "assets"
    download_wheels(folder / "wheels", args.python_version)
    write_tokenizer(assets / "tokenizer")
    write_rows(assets / "data")
    for stage in ("sft", "cotraft"):
        pretokenize(assets, stage)
    carried, tree = tree_bytes([folder]), tracked_bytes()
    total = carried + (tree if folder.is_relative_to(REPO_ROOT) else 0)
    print(
        f"[gpu_check] {folder}: {carried / 2**20:.1f} MiB carried + {tree / 2**20:.1f} MiB working tree "
        f"= {total / 2**20:.1f} MiB of the {CALL_LIMIT_BYTES // 2**20} MiB a device call takes"
    )
    (folder / "prepared.json").write_text(
        json.dumps({"python_version": args.python_version, "carried_bytes": carried, "tree_bytes": tree})
    )
    if total > CALL_LIMIT_BYTES:
        print("[gpu_check] too large for one device call: drop wheels the machine already has", file=sys.stderr)
        return 1
    print(
        "[gpu_check] device command (carry: "
        + str(folder.relative_to(REPO_ROOT) if folder.is_relative_to(REPO_ROOT) else folder)
        + "):"
    )
    print(device_command(folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
