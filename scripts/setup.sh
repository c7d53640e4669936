#!/usr/bin/env bash
# Set up FinTune in .venv. Usage: scripts/setup.sh [run|test]
#   run  - the engine and the dashboard
#   test - also the test tools and Debian's Chromium for the browser test
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-run}"
python="${PYTHON:-python3}"

if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)

# torch first: on a machine without an NVIDIA GPU a CPU build (a plain `torch` requirement would
# pull a multi-GB CUDA build); with a GPU the default (CUDA) build.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        "${pip[@]}" install "torch>=2.4,<3"
    else
        "${pip[@]}" install "torch==2.13.0"
    fi
fi

if [ "$mode" = "test" ]; then
    "${pip[@]}" install -e ".[test]"
    if ! command -v chromium >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
        sudo_cmd=()
        [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
        "${sudo_cmd[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq chromium curl >/dev/null
    fi
else
    "${pip[@]}" install -e .
fi
