#!/usr/bin/env bash
# Create .venv and install NeuroLab into it with everything it needs, from the project's own files.
# torch's CPU build goes in first so that no multi-GB CUDA build is pulled.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0" || .venv/bin/python -m pip install --quiet torch --index-url https://download.pytorch.org/whl/cpu
.venv/bin/python -m pip install --quiet -e ".[dev,ray]"
