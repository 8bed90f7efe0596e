#!/usr/bin/env bash
# Installs what the LlamaBoard browser test (tests/webui/test_webui.py) drives: Debian's headless Chromium
# (/usr/bin/chromium, with chromedriver) and the Playwright client library in the venv.
# Playwright's own browser download (`playwright install`) is never used: the test launches /usr/bin/chromium.
# Idempotent: each part is installed only when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${TRACT_VENV:-.venv}"
# pip's per-package warning about index locations this machine's pip config names but lacks (as in setup.sh).
QUIET='is ignored: it is neither a file nor a directory'

if [ ! -x /usr/bin/chromium ]; then
    echo "[setup-browser] installing chromium and chromium-driver (Debian packages)"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi

if ! "$VENV/bin/python" -c "import playwright" 2>/dev/null; then
    echo "[setup-browser] installing playwright into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check playwright 2> >(grep -Ev "$QUIET" >&2)
fi
