"""``python -m neurolab_gui`` runs the ``neurolab`` command."""

import sys

from neurolab_gui.cli import main

sys.exit(main())
