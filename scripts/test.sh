#!/usr/bin/env bash
# Set up (if needed: setup.sh does nothing on a .venv it set up from the same files) and run the
# import-layer contracts, then the whole test suite headless.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export QT_QPA_PLATFORM=offscreen
.venv/bin/lint-imports
# pytest exits 5 when it collected no test: that is a failure here, never a green run.
.venv/bin/python -m pytest "$@"
