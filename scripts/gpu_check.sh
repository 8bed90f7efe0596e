#!/usr/bin/env bash
# The prepared GPU device check (docs/gpu.md).
#
#   bash scripts/gpu_check.sh prepare [--dir .gpu_check] [--python-version 3.12]
#       here: pinned wheels (DeepSpeed built), tokenizer, judge rows, pre-tokenised rows into the git-ignored
#       folder; checks the total against the 64 MiB a device call carries; prints the device command.
#   bash scripts/gpu_check.sh run [--dir .gpu_check] [--tiny] [--device cuda|cpu] [--budget-s 480]
#       there: a fresh venv over the machine's own torch (python3, or $PYTHON), the wheels installed with
#       --no-deps, this checkout on its path with the LLaMA-Factory import hook; then every part in its own
#       time box. Writes gpu_check.json and gpu_check.log under $OUT (default: DIR/out).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
COMMAND="${1:-}"
shift || true

case "$COMMAND" in
prepare)
    # pip's warnings about index locations this machine's pip config names but lacks are noise here.
    exec "${TRACT_VENV:-.venv}/bin/python" -m benchmarks.gpu_check.prepare "$@" \
        2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
    ;;
run)
    DIR=.gpu_check
    PARTS_ARGS=()
    while [ $# -gt 0 ]; do
        case "$1" in
        --dir) DIR="$2"; shift 2 ;;
        *) PARTS_ARGS+=("$1"); shift ;;
        esac
    done
    DIR="$(cd "$DIR" && pwd)"
    PY="${PYTHON:-python3}"
    OUT="${OUT:-$DIR/out}"
    VENV="${GPU_CHECK_VENV:-$(mktemp -d /tmp/tract-gpu-check.XXXXXX)}"
    [ -n "${GPU_CHECK_VENV:-}" ] || trap 'rm -rf "$VENV"' EXIT
    mkdir -p "$OUT"
    {
        echo "[gpu_check] $(date -u +%FT%TZ) installing $(ls "$DIR"/wheels/*.whl | wc -l) wheels into $VENV"
        rm -rf "$VENV" && "$PY" -m venv --without-pip "$VENV"
        "$PY" -m pip --python "$VENV/bin/python" install --quiet --disable-pip-version-check --no-index --no-deps \
            --ignore-installed --no-compile --no-cache-dir "$DIR"/wheels/*.whl
        SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
        BASE_SITE="$("$PY" -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')"
        # The machine's own packages (torch, triton, ...) after the venv's; then this checkout and its hook.
        echo "import site; site.addsitedir('$BASE_SITE')" > "$SITE/00_machine_site.pth"
        printf '%s\n%s\n' "$REPO" "$REPO/patches" > "$SITE/01_llamafactory_tract_checkout.pth"
        cp patches/llamafactory_tract.pth "$SITE/llamafactory_tract.pth"
        # LLaMA-Factory launches `torchrun` from PATH (FORCE_TORCHRUN, DeepSpeed): the venv's, over the same torch.
        printf '#!%s\nfrom torch.distributed.run import main\nmain()\n' "$VENV/bin/python" > "$VENV/bin/torchrun"
        chmod +x "$VENV/bin/torchrun"
        export PATH="$VENV/bin:$PATH"
        "$VENV/bin/python" -m benchmarks.gpu_check.run --assets "$DIR/assets" --out "$OUT" "${PARTS_ARGS[@]}"
    } 2>&1 | tee "$OUT/gpu_check.log"
    ;;
*)
    echo "usage: bash scripts/gpu_check.sh prepare|run [options]   (see the top of this file)" >&2
    exit 2
    ;;
esac
