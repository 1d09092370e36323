"""Calibration profiles: what a calibration found for one board, saved as JSON per board serial.

Default location ``~/.local/share/neurolab/calibration/<serial>.json`` (``$XDG_DATA_HOME`` is
honoured); any path can be given instead.  A profile holds the bias set of the calibrated cores,
the per-neuron gains and offsets measured, the neurons selected for the network's units, the
chip time used, the date and the summary numbers.  :func:`load_profile` validates everything
(schema version, serial, bias names and ranges, addresses, array lengths) and raises
:class:`ProfileError` naming the first problem; nothing is half-loaded.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from drivers.dynapse1.bias_table import CORE_BIASES, check_coarse_fine
from drivers.dynapse1.board_api import BiasValue
from drivers.dynapse1.netlist import NeuronAddress

SCHEMA_VERSION = 1
_SERIAL_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class ProfileError(ValueError):
    """A calibration profile that cannot be used, with the reason."""


@dataclass
class NeuronCalibration:
    """Measured transfer parameters of one neuron (gains in Hz/Hz per CAM copy, offset in Hz)."""

    chip: int
    core: int
    neuron: int
    gain_exc: float
    gain_inh: float
    offset_hz: float

    @property
    def address(self) -> NeuronAddress:
        return NeuronAddress(self.chip, self.core, self.neuron)


@dataclass
class CalibrationProfile:
    """One board's calibration (see the module docstring)."""

    serial: str
    biases: dict[tuple[int, int, str], BiasValue]
    neurons: list[NeuronCalibration]
    selected: list[NeuronAddress] = field(default_factory=list)
    chip_s: float = 0.0
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    emulated: bool = False
    summary: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA_VERSION,
            "serial": self.serial,
            "created": self.created,
            "emulated": self.emulated,
            "chip_s": self.chip_s,
            "biases": [{"chip": c, "core": k, "name": n, "coarse": v.coarse, "fine": v.fine, "high": v.high}
                       for (c, k, n), v in sorted(self.biases.items())],
            "neurons": [asdict(n) for n in self.neurons],
            "selected": [[a.chip, a.core, a.neuron] for a in self.selected],
            "summary": self.summary,
        }

    @classmethod
    def from_dict(cls, data: object, expected_serial: str | None = None) -> CalibrationProfile:
        """Validate and build a profile; raises :class:`ProfileError` naming the first problem."""
        if not isinstance(data, dict):
            raise ProfileError("a calibration profile must be a JSON object")
        if data.get("schema") != SCHEMA_VERSION:
            raise ProfileError(f"unsupported profile schema {data.get('schema')!r} (this NeuroLab reads {SCHEMA_VERSION})")
        serial = data.get("serial")
        if not isinstance(serial, str) or not _SERIAL_RE.match(serial):
            raise ProfileError(f"bad board serial {serial!r}")
        if expected_serial is not None and serial != expected_serial:
            raise ProfileError(f"profile is for board {serial!r}, not {expected_serial!r}")
        chip_s = data.get("chip_s", 0.0)
        if not isinstance(chip_s, (int, float)) or not math.isfinite(chip_s) or chip_s < 0:
            raise ProfileError(f"chip_s must be a non-negative number, got {chip_s!r}")
        biases: dict[tuple[int, int, str], BiasValue] = {}
        for i, b in enumerate(_list(data, "biases")):
            try:
                name = b["name"]
                if name not in CORE_BIASES:
                    raise ProfileError(f"biases[{i}]: unknown bias name {name!r}")
                NeuronAddress(int(b["chip"]), int(b["core"]), 0)
                coarse, fine = check_coarse_fine(int(b["coarse"]), int(b["fine"]))
                biases[(int(b["chip"]), int(b["core"]), name)] = BiasValue(coarse, fine, bool(b.get("high", True)))
            except ProfileError:
                raise
            except (KeyError, TypeError, ValueError) as exc:
                raise ProfileError(f"biases[{i}]: {exc}") from None
        neurons = []
        for i, n in enumerate(_list(data, "neurons")):
            try:
                nc = NeuronCalibration(int(n["chip"]), int(n["core"]), int(n["neuron"]), float(n["gain_exc"]),
                                       float(n["gain_inh"]), float(n["offset_hz"]))
                NeuronAddress(nc.chip, nc.core, nc.neuron)  # range check
            except (KeyError, TypeError, ValueError) as exc:
                raise ProfileError(f"neurons[{i}]: {exc}") from None
            neurons.append(nc)
        selected = []
        for i, s in enumerate(_list(data, "selected")):
            try:
                selected.append(NeuronAddress(*[int(v) for v in s]))
            except (TypeError, ValueError) as exc:
                raise ProfileError(f"selected[{i}]: {exc}") from None
        if len(set(selected)) != len(selected):
            raise ProfileError("selected neurons must be distinct")
        summary = data.get("summary", {})
        if not isinstance(summary, dict):
            raise ProfileError("summary must be an object")
        return cls(serial, biases, neurons, selected, float(chip_s), str(data.get("created", "")), bool(data.get("emulated", False)), summary)


def _list(data: dict, key: str) -> list:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise ProfileError(f"{key} must be a list")
    return value


def default_profile_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "neurolab" / "calibration"


def profile_path(serial: str, directory: str | Path | None = None) -> Path:
    if not _SERIAL_RE.match(serial):
        raise ProfileError(f"bad board serial {serial!r}")
    return Path(directory) if directory is not None and Path(directory).suffix == ".json" else \
        (Path(directory) if directory is not None else default_profile_dir()) / f"{serial}.json"


def save_profile(profile: CalibrationProfile, path: str | Path | None = None) -> Path:
    """Write ``profile`` as JSON (atomically: a temporary file renamed into place); returns the path."""
    CalibrationProfile.from_dict(json.loads(json.dumps(profile.to_dict(), default=_jsonable)))  # validate first
    target = profile_path(profile.serial, path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(profile.to_dict(), indent=1, default=_jsonable))
    tmp.replace(target)
    return target


def load_profile(serial_or_path: str | Path, expected_serial: str | None = None) -> CalibrationProfile:
    """Load a profile by board serial (default location) or by path, validated."""
    p = Path(serial_or_path)
    path = p if p.suffix == ".json" else profile_path(str(serial_or_path))
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ProfileError(f"no calibration profile at {path}") from None
    except json.JSONDecodeError as exc:
        raise ProfileError(f"{path} is not valid JSON: {exc}") from None
    return CalibrationProfile.from_dict(data, expected_serial)


def _jsonable(value: object) -> object:
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"cannot store {type(value).__name__} in a profile")


def profile_from_network_calibration(serial: str, result, emulated: bool) -> CalibrationProfile:
    """Profile of a :class:`~.engine.NetworkCalibration` (biases, per-neuron fits, selection)."""
    exc, inh = result.fits_after["AMPA"], result.fits_after["GABA_B"]
    idx_i = {a: i for i, a in enumerate(inh.addresses)}
    neurons = []
    for i, a in enumerate(exc.addresses):
        j = idx_i.get(a)
        if not exc.valid[i] or j is None or not inh.valid[j]:
            continue
        neurons.append(NeuronCalibration(a.chip, a.core, a.neuron, float(exc.gain[i]), float(inh.gain[j]), float(exc.offset[i])))
    return CalibrationProfile(serial, dict(result.mapped.biases), neurons, list(result.selected), float(result.chip_s),
                              emulated=emulated, summary=result.summary())
