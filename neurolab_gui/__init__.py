"""NeuroLab: put a BPTT-trained RNN onto DYNAP-SE1 spiking hardware (or its emulator) and watch every step.

``neurolab_gui.core`` is the Qt-free application core (models, conversion, calibration,
recording, sessions); ``neurolab_gui.qt`` holds the panels; ``neurolab_gui.cli`` the
``neurolab`` command.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("neurolab")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
