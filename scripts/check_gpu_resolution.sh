#!/usr/bin/env bash
# Checks that the pinned GPU set resolves as one install, without installing anything: pip's resolver
# runs on requirements/gpu.txt together with this package's `gpu` extra (`pip install --dry-run
# --ignore-installed --report`, in a throwaway venv), and the extra must list the same pins as the file.
# Prints the resolved versions of the packages that matter. Needs PyPI; a few minutes (deepspeed is an sdist).
# Resolves for this machine's Python and platform (run it with the Python of your GPU nodes).
# Usage: bash scripts/check_gpu_resolution.sh [REPORT.json]     (pip's full JSON report, if a path is given)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
report="${1:-$work/report.json}"

"$PYTHON" - <<'EOF'
import sys
import tomllib
from pathlib import Path

pins = [line.strip() for line in Path("requirements/gpu.txt").read_text().splitlines()]
pins = sorted(line for line in pins if line and not line.startswith("#"))
extra = sorted(tomllib.loads(Path("pyproject.toml").read_text())["project"]["optional-dependencies"]["gpu"])
if pins != extra:
    sys.exit(f"pyproject.toml's `gpu` extra {extra} differs from requirements/gpu.txt {pins}")
EOF

"$PYTHON" -m venv "$work/venv"
pip_quiet() { "$work/venv/bin/pip" "$@" --quiet --disable-pip-version-check 2> >(grep -v "is ignored: it is neither" >&2); }
pip_quiet install --upgrade pip
pip_quiet install --dry-run --ignore-installed --report "$report" -r requirements/gpu.txt ".[gpu]"

"$PYTHON" - "$report" <<'EOF'
import json
import sys

report = json.load(open(sys.argv[1]))
resolved = {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in report["install"]}
environment = report["environment"]
print(f"Resolved {len(resolved)} packages for Python {environment['python_full_version']} on "
      f"{environment['sys_platform']} {environment['platform_machine']} (pip {report['pip_version']}):")
shown = ("torch", "torchvision", "torchaudio", "transformers", "llamafactory", "vllm", "deepspeed", "peft",
         "accelerate", "trl", "datasets", "tokenizers", "xformers", "flashinfer-python", "triton", "numpy")
for name in shown:
    if name in resolved:
        print(f"  {name:<18} {resolved[name]}")
EOF
