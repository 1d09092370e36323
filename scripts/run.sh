#!/usr/bin/env bash
# Set up (if needed) and run the main job: the GUI on the emulator, or the headless demo without a display.
# Arguments go to that command: `neurolab gui` options with a display (e.g. --board SERIAL),
# `neurolab demo` options without one (e.g. --n-test 20).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if .venv/bin/python -c "import sys; from neurolab_gui.cli.doctor import display_available; sys.exit(0 if display_available()[0] else 1)"; then
    exec .venv/bin/neurolab gui "$@"
else
    echo "No display found: running the headless demo (neurolab demo $*)."
    exec .venv/bin/neurolab demo "$@"
fi
