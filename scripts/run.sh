#!/usr/bin/env bash
# Set up (if needed) and run the main job: the GUI on the emulator, or the headless demo without a display.
set -euo pipefail
cd "$(dirname "$0")/.."
# setup.sh again only when what it installs from changed (NeuroLab itself is an editable install):
# re-running pip on a set-up .venv costs seconds of every start.  Remove .venv to set up afresh.
stamp=.venv/.neurolab-setup
wanted=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/neurolab ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    bash scripts/setup.sh
    echo "$wanted" > "$stamp"
fi
if .venv/bin/python -c "import sys; from neurolab_gui.cli.doctor import display_available; sys.exit(0 if display_available()[0] else 1)"; then
    exec .venv/bin/neurolab gui "$@"
else
    echo "No display found: running the headless demo (neurolab demo)."
    exec .venv/bin/neurolab demo "$@"
fi
