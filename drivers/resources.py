"""Find NeuroLab's shipped data files (``resources/``), installed or run from a source checkout.

The one lookup of shipped data: the driver's published bias sets, the GUI's presets and the tests
all find files through :func:`resource_path`.  It sits in ``drivers`` because the lowest layer
that reads shipped data (the bias files) lives here; everything above may use it.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path


def resource_root() -> Traversable:
    """The folder of shipped resources: the installed package ``neurolab_gui.resources``, else ``resources/``."""
    try:
        return files("neurolab_gui.resources")
    except ModuleNotFoundError:  # source tree without an install: resources/ beside the packages
        return Path(__file__).resolve().parents[1] / "resources"


def resource_path(*parts: str) -> Path:
    """Filesystem path of a shipped resource, e.g. ``resource_path("biases", "low_power.json")``.

    Raises ``FileNotFoundError`` naming the missing file.
    """
    root = resource_root()
    path = Path(str(root.joinpath(*parts)))
    if not path.exists():
        raise FileNotFoundError(f"NeuroLab resource not found: {'/'.join(parts)} (looked in {root})")
    return path
