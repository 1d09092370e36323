"""Find NeuroLab's shipped data files, installed or run from a source checkout."""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path


def resource_path(*parts: str) -> Path:
    """Filesystem path of a shipped resource, e.g. ``resource_path("biases", "low_power.json")``.

    Raises ``FileNotFoundError`` naming the missing file.
    """
    try:
        root: Traversable = files("neurolab_gui.resources")
    except ModuleNotFoundError:  # source tree without an install: resources/ beside the packages
        root = Path(__file__).resolve().parents[2] / "resources"
    target = root.joinpath(*parts)
    path = Path(str(target))
    if not path.exists():
        raise FileNotFoundError(f"NeuroLab resource not found: {'/'.join(parts)} (looked in {root})")
    return path
