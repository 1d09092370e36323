#!/usr/bin/env bash
# Create .venv and install NeuroLab into it with everything it needs, from the project's own files.
# torch's CPU build goes in first so that no multi-GB CUDA build is pulled.
# Runs pip again only when what it installs from changed (NeuroLab itself is an editable install):
# re-running pip on a set-up .venv costs seconds of every start and needs the package index.
# Remove .venv to set up afresh.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TORCH="torch==2.13.0"
TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu

too_old() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && return 1 || return 0; }

if [ -x .venv/bin/python ]; then
    if too_old .venv/bin/python; then
        echo "error: .venv was made with $(.venv/bin/python -V 2>&1); NeuroLab needs Python 3.11 or newer: remove .venv and run this again (PYTHON=python3.11 to choose the interpreter)" >&2
        exit 1
    fi
else
    if ! command -v "$PYTHON" > /dev/null; then
        echo "error: $PYTHON not found; NeuroLab needs Python 3.11 or newer (PYTHON=python3.11 bash $0)" >&2
        exit 1
    fi
    if too_old "$PYTHON"; then
        echo "error: $PYTHON is $("$PYTHON" -V 2>&1); NeuroLab needs Python 3.11 or newer (PYTHON=python3.11 bash $0)" >&2
        exit 1
    fi
    "$PYTHON" -m venv .venv
fi

stamp=.venv/.neurolab-setup
wanted=$( (cat pyproject.toml scripts/setup.sh; .venv/bin/python -V) | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/neurolab ] && [ "$(cat "$stamp" 2>/dev/null)" = "$wanted" ]; then
    exit 0
fi

pip=(.venv/bin/python -m pip)
"${pip[@]}" install --quiet --upgrade pip
# Which torch build would the configured indexes give?  On Linux x86-64 the one on PyPI is the
# CUDA build (it pulls the nvidia-* wheels, gigabytes); a local wheel (pip's find-links) or
# another platform's may be the CPU build.  Ask pip without installing, and take the CPU index
# when the answer is a CUDA build.
report=$(mktemp)
trap 'rm -f "$report"' EXIT
torch_source=()
if "${pip[@]}" install --quiet --dry-run --ignore-installed --report "$report" "$TORCH" 2>/dev/null; then
    if .venv/bin/python -c 'import json, sys; names = [p["metadata"]["name"].lower() for p in json.load(open(sys.argv[1]))["install"]]; sys.exit(0 if any(n.startswith("nvidia") for n in names) else 1)' "$report"; then
        torch_source=(--index-url "$TORCH_CPU_INDEX" --extra-index-url https://pypi.org/simple)
    fi
else
    torch_source=(--index-url "$TORCH_CPU_INDEX" --extra-index-url https://pypi.org/simple)
fi
echo "installing $TORCH (CPU build${torch_source:+ from $TORCH_CPU_INDEX}) and NeuroLab's dependencies into .venv (minutes on a fresh machine)"
"${pip[@]}" install --quiet "$TORCH" "${torch_source[@]}"
"${pip[@]}" install --quiet -e ".[dev,ray]"
echo "$wanted" > "$stamp"
