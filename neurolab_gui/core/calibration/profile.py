"""Calibration profiles: what a calibration found for one board, saved as JSON per board serial.

Default location ``~/.local/share/neurolab/calibration/<serial>.json`` (``$XDG_DATA_HOME`` is
honoured); any path can be given instead.  A profile holds the bias set of the calibrated cores,
the per-neuron gains and offsets measured, the neurons selected for the network's units, the
chip time used, the date and the summary numbers.

One strict schema (:data:`SCHEMA_VERSION`), checked in full before anything is used; nothing is
half-loaded.  The file is UTF-8 JSON of at most :data:`MAX_FILE_BYTES`, nested at most
:data:`MAX_DEPTH` deep, without ``NaN``/``Infinity`` literals or numbers beyond float range
(``1e400``); every object has exactly its known fields, each once; booleans are JSON ``true``/``false`` (not
``"false"`` or ``1``), integers are JSON integers (not ``3.9`` or ``true``), gains and offsets are
finite (``null`` where a value was not measured).  A :class:`ProfileError` names the file, the entry (``neurons[12].gain_exc``) and the rule.

A profile belongs to one board: :func:`apply_profile` refuses a profile whose serial is not the
board's unless the caller passes ``allow_other_board=True`` (the user's explicit override).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from drivers.dynapse1.bias_table import CORE_BIASES, N_COARSE, N_FINE
from drivers.dynapse1.board_api import BiasValue
from drivers.dynapse1.netlist import NeuronAddress
from drivers.dynapse1.topology import N_CHIPS, N_CORES_PER_CHIP, N_NEURONS
from drivers.user_files import UserFileError, read_regular, write_replacing

SCHEMA_VERSION = 1
_SERIAL_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
#: A profile of a whole board (4096 neurons) is ~0.5 MB; anything far bigger is not a profile.
MAX_FILE_BYTES = 8 << 20
#: JSON nesting: the schema itself needs 3 levels; ``summary`` may nest a few more.
MAX_DEPTH = 12
#: Bound on a stored gain or offset: network profiles hold Hz/Hz per CAM copy and Hz, board-level
#: profiles the DC gain in Hz/A (~1e12) and the rheobase in A; beyond this a value is corrupt.
MAX_ABS_VALUE = 1e18
_MAX_BIASES = N_CHIPS * N_CORES_PER_CHIP * len(CORE_BIASES)
_TOP_FIELDS = {"schema", "serial", "created", "emulated", "chip_s", "biases", "neurons", "selected", "summary", "network"}
#: What every profile :meth:`CalibrationProfile.to_dict` writes carries: its format, its board and
#: what was calibrated (an empty list is an explicit "none"; a missing key is a damaged file).
_REQUIRED_FIELDS = ("schema", "serial", "biases", "neurons", "selected")
_NETWORK_FIELDS = ("fingerprint", "shape", "connections", "readout_weight", "readout_bias")
_FINGERPRINT_RE = re.compile(r"^[0-9a-f]{64}$")
#: a unit's fan-in: 64 CAM entries, each one copy at most
_MAX_COPIES = 64
#: hidden units and sources (inputs, bias channel, units) of the largest network a board holds
_MAX_UNITS, _MAX_SOURCES = N_NEURONS, N_NEURONS + 256
_MAX_CLASSES = 4096
_BIAS_FIELDS = ("chip", "core", "name", "coarse", "fine", "high")
_NEURON_FIELDS = ("chip", "core", "neuron", "gain_exc", "gain_inh", "offset_hz")


class ProfileError(ValueError):
    """A calibration profile that cannot be used, with the file, the entry and the rule."""


@dataclass
class NeuronCalibration:
    """Measured transfer parameters of one neuron (gains in Hz/Hz per CAM copy, offset in Hz).

    NaN means "not measured" (board-level profiles have no inhibitory gain); the file stores it as
    ``null``, never as a ``NaN`` literal.
    """

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
class ProfileNetwork:
    """The network a network calibration left on the board: compensated CAM copies and board-fitted readout.

    Stored for the network it was calibrated from (``fingerprint``,
    :func:`~neurolab_gui.core.conversion.deployment.network_fingerprint`); deployment uses it only
    for that network.  The file holds the non-zero copies as ``[unit, source, copies]`` triples.
    """

    fingerprint: str
    multiplicity: np.ndarray  # signed CAM copies [H, F + 1 + H]
    readout_weight: np.ndarray  # [classes, H]
    readout_bias: np.ndarray  # [classes]

    def to_dict(self) -> dict:
        rows, cols = np.nonzero(self.multiplicity)
        return {
            "fingerprint": self.fingerprint,
            "shape": [int(n) for n in self.multiplicity.shape],
            "connections": [[int(r), int(c), int(self.multiplicity[r, c])] for r, c in zip(rows, cols, strict=True)],
            "readout_weight": np.asarray(self.readout_weight, float).tolist(),
            "readout_bias": np.asarray(self.readout_bias, float).tolist(),
        }


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
    #: the compensated network of a network calibration (None: a board-level calibration, or an older profile)
    network: ProfileNetwork | None = None

    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA_VERSION,
            "serial": self.serial,
            "created": self.created,
            "emulated": self.emulated,
            "chip_s": self.chip_s,
            "biases": [{"chip": c, "core": k, "name": n, "coarse": v.coarse, "fine": v.fine, "high": v.high}
                       for (c, k, n), v in sorted(self.biases.items())],
            "neurons": [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in asdict(n).items()}
                        for n in self.neurons],
            "selected": [[a.chip, a.core, a.neuron] for a in self.selected],
            "summary": _finite_or_null(self.summary),
            **({"network": self.network.to_dict()} if self.network is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: object, expected_serial: str | None = None, origin: str = "profile") -> CalibrationProfile:
        """Validate and build a profile; raises :class:`ProfileError` naming ``origin``, the entry and the rule."""
        return _Reader(origin).profile(data, expected_serial)


class _Reader:
    """The schema check; every error names the file (``origin``), the entry and the rule."""

    def __init__(self, origin: str) -> None:
        self.origin = origin

    def error(self, entry: str, rule: str) -> ProfileError:
        return ProfileError(f"{self.origin}: {entry}: {rule}" if entry else f"{self.origin}: {rule}")

    def missing(self) -> str:
        return (f"missing (a profile holds {', '.join(_REQUIRED_FIELDS)}; "
                f"optional: {', '.join(sorted(_TOP_FIELDS - set(_REQUIRED_FIELDS)))})")

    def obj(self, value: object, entry: str, fields: tuple[str, ...] | set[str], required: bool = True) -> dict:
        if not isinstance(value, dict):
            raise self.error(entry, f"must be an object, got {_json_type(value)}")
        unknown = sorted(str(k) for k in set(value) - set(fields))
        if unknown:
            raise self.error(entry, f"unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(fields))})")
        missing = [f for f in fields if f not in value] if required else []
        if missing:
            raise self.error(entry, f"missing field(s) {', '.join(missing)}")
        return value

    def integer(self, value: object, entry: str, lo: int, hi: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(entry, f"must be an integer in {lo}..{hi}, got {_json_repr(value)}")
        if not lo <= value <= hi:
            raise self.error(entry, f"{value} is outside {lo}..{hi}")
        return value

    def number(self, value: object, entry: str, lo: float = -MAX_ABS_VALUE, hi: float = MAX_ABS_VALUE,
               allow_null: bool = False) -> float:
        if value is None and allow_null:
            return math.nan  # "not measured"
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise self.error(entry, f"must be a number, got {_json_repr(value)}")
        if not (math.isfinite(value) and lo <= value <= hi):
            raise self.error(entry, f"{value!r} is not a finite number in [{lo:g}, {hi:g}]")
        return float(value)

    def boolean(self, value: object, entry: str) -> bool:
        if not isinstance(value, bool):
            raise self.error(entry, f"must be true or false, got {_json_repr(value)}")
        return value

    def array(self, value: object, entry: str, limit: int) -> list:
        if not isinstance(value, list):
            raise self.error(entry, f"must be an array, got {_json_type(value)}")
        if len(value) > limit:
            raise self.error(entry, f"has {len(value)} entries, more than the {limit} a board can hold")
        return value

    def address(self, chip: object, core: object, neuron: object, entry: str) -> tuple[int, int, int]:
        return (self.integer(chip, f"{entry}.chip", 0, N_CHIPS - 1), self.integer(core, f"{entry}.core", 0, N_CORES_PER_CHIP - 1),
                self.integer(neuron, f"{entry}.neuron", 0, N_NEURONS // (N_CHIPS * N_CORES_PER_CHIP) - 1))

    def finite_tree(self, value: object, entry: str) -> None:
        """Every number in a free-form object is finite (null stands for "not measured")."""
        stack = [(value, entry)]
        while stack:  # visits every node once; depth was bounded when the file was parsed
            node, where = stack.pop()
            if isinstance(node, float) and not math.isfinite(node):
                raise self.error(where, f"{node!r} is not a finite number (write null for a missing value)")
            if isinstance(node, dict):
                stack.extend((v, f"{where}.{k}") for k, v in node.items())
            elif isinstance(node, list):
                stack.extend((v, f"{where}[{i}]") for i, v in enumerate(node))

    def profile(self, data: object, expected_serial: str | None) -> CalibrationProfile:
        data = self.obj(data, "", _TOP_FIELDS, required=False)
        for key in ("schema", "serial"):
            if key not in data:
                raise self.error(key, self.missing())
        if type(data["schema"]) is not int or data["schema"] != SCHEMA_VERSION:  # not 1.0, not true
            raise self.error("schema", f"unsupported profile schema {_json_repr(data['schema'])} (this NeuroLab reads {SCHEMA_VERSION})")
        serial = data["serial"]
        if not isinstance(serial, str) or not _SERIAL_RE.match(serial):
            raise self.error("serial", f"bad board serial {_json_repr(serial)} (1-64 letters, digits, '_', '.', '-')")
        if expected_serial is not None and serial != expected_serial:
            raise self.error("serial", f"profile is for board {serial!r}, not {expected_serial!r}")
        chip_s = self.number(data.get("chip_s", 0.0), "chip_s", 0.0, 1e9)
        created = data.get("created", "")
        if not isinstance(created, str) or len(created) > 64:
            raise self.error("created", f"must be a date text of at most 64 characters, got {_json_type(created)}")
        emulated = self.boolean(data.get("emulated", False), "emulated")
        for key in _REQUIRED_FIELDS:  # a profile without its biases would be applied as a silent no-op
            if key not in data:
                raise self.error(key, self.missing())
        biases: dict[tuple[int, int, str], BiasValue] = {}
        for i, raw in enumerate(self.array(data.get("biases", []), "biases", _MAX_BIASES)):
            entry = f"biases[{i}]"
            b = self.obj(raw, entry, _BIAS_FIELDS)
            chip, core, _ = self.address(b["chip"], b["core"], 0, entry)
            name = b["name"]
            if not isinstance(name, str) or name not in CORE_BIASES:
                raise self.error(f"{entry}.name", f"unknown bias name {_json_repr(name)}")
            coarse = self.integer(b["coarse"], f"{entry}.coarse", 0, N_COARSE - 1)
            fine = self.integer(b["fine"], f"{entry}.fine", 0, N_FINE - 1)
            if (chip, core, name) in biases:
                raise self.error(entry, f"duplicate bias {name} of chip {chip} core {core}")
            biases[(chip, core, name)] = BiasValue(coarse, fine, self.boolean(b["high"], f"{entry}.high"))
        neurons = []
        seen: set[tuple[int, int, int]] = set()
        for i, raw in enumerate(self.array(data.get("neurons", []), "neurons", N_NEURONS)):
            entry = f"neurons[{i}]"
            n = self.obj(raw, entry, _NEURON_FIELDS)
            addr = self.address(n["chip"], n["core"], n["neuron"], entry)
            if addr in seen:
                raise self.error(entry, f"duplicate neuron chip {addr[0]} core {addr[1]} neuron {addr[2]}")
            seen.add(addr)
            neurons.append(NeuronCalibration(*addr, *(self.number(n[k], f"{entry}.{k}", allow_null=True)
                                                      for k in ("gain_exc", "gain_inh", "offset_hz"))))
        selected = []
        for i, raw in enumerate(self.array(data.get("selected", []), "selected", N_NEURONS)):
            if not isinstance(raw, list) or len(raw) != 3:
                raise self.error(f"selected[{i}]", f"must be [chip, core, neuron], got {_json_repr(raw)}")
            selected.append(NeuronAddress(*self.address(*raw, f"selected[{i}]")))
        if len(set(selected)) != len(selected):
            raise self.error("selected", "selected neurons must be distinct")
        summary = data.get("summary", {})
        if not isinstance(summary, dict):
            raise self.error("summary", f"must be an object, got {_json_type(summary)}")
        self.finite_tree(summary, "summary")
        network = self.network(data["network"]) if data.get("network") is not None else None
        return CalibrationProfile(serial, biases, neurons, selected, chip_s, created, emulated, summary, network)

    def network(self, raw: object) -> ProfileNetwork:
        n = self.obj(raw, "network", _NETWORK_FIELDS)
        fingerprint = n["fingerprint"]
        if not isinstance(fingerprint, str) or not _FINGERPRINT_RE.match(fingerprint):
            raise self.error("network.fingerprint", f"must be 64 lower-case hex digits (SHA-256), got {_json_repr(fingerprint)}")
        shape = self.array(n["shape"], "network.shape", 2)
        if len(shape) != 2:
            raise self.error("network.shape", f"must be [units, sources], got {_json_repr(shape)}")
        units = self.integer(shape[0], "network.shape[0]", 1, _MAX_UNITS)
        sources = self.integer(shape[1], "network.shape[1]", units + 1, _MAX_SOURCES)
        # the readout first: its rows hold one number per unit, so the declared unit count is checked
        # against data the file really holds before the [units, sources] matrix is allocated (a
        # 200-byte file declaring 4096 units made the reader allocate 140 MB)
        weight = self.array(n["readout_weight"], "network.readout_weight", _MAX_CLASSES)
        rows = []
        for i, row in enumerate(weight):
            entry = f"network.readout_weight[{i}]"
            if not isinstance(row, list) or len(row) != units:
                raise self.error(entry, f"must be an array of {units} numbers (one per unit of network.shape)")
            rows.append([self.number(v, f"{entry}[{j}]") for j, v in enumerate(row)])
        bias = self.array(n["readout_bias"], "network.readout_bias", _MAX_CLASSES)
        if len(bias) != len(rows) or not rows:
            raise self.error("network.readout_bias", f"must have one number per readout row ({len(rows)}), got {len(bias)}")
        b = [self.number(v, f"network.readout_bias[{j}]") for j, v in enumerate(bias)]
        copies: dict[tuple[int, int], int] = {}
        for i, triple in enumerate(self.array(n["connections"], "network.connections", units * _MAX_COPIES)):
            entry = f"network.connections[{i}]"
            if not isinstance(triple, list) or len(triple) != 3:
                raise self.error(entry, f"must be [unit, source, copies], got {_json_repr(triple)}")
            r = self.integer(triple[0], f"{entry}[0]", 0, units - 1)
            c = self.integer(triple[1], f"{entry}[1]", 0, sources - 1)
            v = self.integer(triple[2], f"{entry}[2]", -_MAX_COPIES, _MAX_COPIES)
            if v == 0 or (r, c) in copies:
                raise self.error(entry, "zero copies or a repeated (unit, source)")
            copies[(r, c)] = v
        m = np.zeros((units, sources), np.int64)
        for (r, c), v in copies.items():
            m[r, c] = v
        over = np.flatnonzero(np.abs(m).sum(1) > _MAX_COPIES)
        if len(over):
            raise self.error("network.connections", f"unit {int(over[0])} uses more than {_MAX_COPIES} CAM entries")
        return ProfileNetwork(fingerprint, m, np.array(rows, float), np.array(b, float))


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "an integer",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _json_repr(value: object) -> str:
    text = json.dumps(value) if isinstance(value, (str, int, float, bool, type(None))) else _json_type(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _finite_or_null(value: object) -> object:
    """``value`` with NaN/inf floats replaced by None: the strict reader refuses non-finite literals."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
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
    """Write ``profile`` as JSON; returns the path.

    Atomically (:func:`drivers.user_files.write_replacing`): a reader sees the old profile or the
    new one, never part of one, also while another process saves the same board's profile.
    """
    data = json.loads(json.dumps(profile.to_dict(), default=_jsonable))  # numpy values become plain JSON
    data["summary"] = _finite_or_null(data["summary"])  # NaN inside numpy arrays, too
    target = profile_path(profile.serial, path)
    CalibrationProfile.from_dict(data, origin=str(target))  # validate first: what is written can be read back
    # through a uniquely named temporary file: the app and the CLI may save the same board's profile at once
    return write_replacing(target, json.dumps(data, indent=1, allow_nan=False))


def _names_a_path(serial_or_path: str | Path) -> bool:
    """Whether ``serial_or_path`` is a path rather than a board serial: a ``Path``, a ``.json`` name,
    a name with a directory separator (``/dev/zero``, ``./p``), or something that exists here."""
    text = str(serial_or_path)
    return (isinstance(serial_or_path, Path) or text.endswith(".json") or os.sep in text
            or (os.altsep is not None and os.altsep in text) or os.path.lexists(text))


def _refuse_broken_link(path: Path) -> None:
    """A :class:`ProfileError` if ``path`` is a symbolic link to nothing (``exists()`` is then False)."""
    if path.is_symlink():
        try:
            to = f" to {os.readlink(path)}"
        except OSError:
            to = ""
        raise ProfileError(f"{path} is a broken symbolic link{to}: the calibration profile it named does not exist")


def load_profile(serial_or_path: str | Path, expected_serial: str | None = None) -> CalibrationProfile:
    """Load a profile by path, or by board serial from the default location, validated (see the module docstring).

    A path must name a regular file of at most :data:`MAX_FILE_BYTES` (:func:`drivers.user_files.read_regular`).
    """
    path = Path(serial_or_path) if _names_a_path(serial_or_path) else profile_path(str(serial_or_path))
    try:
        raw = read_regular(path, MAX_FILE_BYTES, "a calibration profile")
    except FileNotFoundError:
        _refuse_broken_link(path)
        raise ProfileError(f"no calibration profile at {path}") from None
    except UserFileError as exc:
        raise ProfileError(str(exc)) from None
    return CalibrationProfile.from_dict(parse_profile_text(raw, str(path)), expected_serial, str(path))


def parse_profile_text(raw: bytes, origin: str) -> object:
    """The JSON value of a profile file, or a :class:`ProfileError` naming ``origin`` and the rule broken."""
    if len(raw) > MAX_FILE_BYTES:
        raise ProfileError(f"{origin}: larger than {MAX_FILE_BYTES >> 20} MiB; not a calibration profile")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError(f"{origin}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    try:
        # NaN/Infinity/1e400 parse to non-finite floats, refused by the schema with their entry's name
        value = json.loads(text, parse_constant=float, parse_int=_bounded_int, object_pairs_hook=_unique_keys)
    except ProfileError as exc:
        raise ProfileError(f"{origin}: {exc}") from None
    except RecursionError:  # the C scanner stops at Python's recursion limit
        raise ProfileError(f"{origin}: JSON nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:
        raise ProfileError(f"{origin} is not valid JSON: {exc}") from None
    depth = _depth(value)
    if depth > MAX_DEPTH:
        raise ProfileError(f"{origin}: JSON nested {depth} levels deep, more than {MAX_DEPTH}")
    return value


def _depth(value: object) -> int:
    """Deepest array/object nesting of a parsed JSON value (iterative: no recursion on hostile input)."""
    deepest, stack = 0, [(value, 1)]
    while stack:  # visits every node once
        node, level = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object whose keys are all different: with a repeated key the file says two things
    (``"serial": "A", "serial": "B"``), and silently taking the last one is a guess."""
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise ProfileError(f"key {_json_repr(key)} appears more than once in one object")
        seen.add(key)
    return dict(pairs)


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 18:
        raise ProfileError(f"integer {text[:40]}... is out of range")
    return int(text)


def apply_profile(board, profile: CalibrationProfile, *, allow_other_board: bool = False,
                  log: Callable[[str], None] | None = None) -> None:
    """Write ``profile``'s biases to ``board``, after checking that the profile is this board's.

    A profile measured on another board describes another chip's mismatch: it is refused with a
    :class:`ProfileError` unless ``allow_other_board`` (the user's explicit override), and then
    ``log`` is told.  The bias set is validated in full by the board before anything is written.
    """
    if profile.serial != board.serial:
        if not allow_other_board:
            raise ProfileError(
                f"profile is for board {profile.serial!r}, but the connected board is {board.serial!r}: its gains and "
                "biases describe another chip's mismatch (override only on purpose: allow_other_board / --allow-other-board)"
            )
        if log is not None:
            log(f"warning: applying board {profile.serial!r}'s profile to board {board.serial!r} (override)")
    board.apply_bias_set(profile.biases)


def find_profile(serial: str, directory: str | Path | None = None) -> CalibrationProfile | None:
    """The profile saved for board ``serial`` (in ``directory``, default :func:`default_profile_dir`), or None.

    A profile that exists but is broken, or was written for another board, raises
    :class:`ProfileError` rather than being silently skipped.
    """
    path = profile_path(serial, Path(directory) / f"{serial}.json" if directory is not None else None)
    if not path.exists():
        _refuse_broken_link(path)  # a link to a profile that is gone is a damaged setup, not "no profile"
        return None
    return load_profile(path, expected_serial=serial)


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
    network = None
    if result.network_fingerprint:
        m = result.mapped
        network = ProfileNetwork(result.network_fingerprint, np.asarray(m.multiplicity, np.int64).copy(),
                                 np.asarray(m.readout_weight, float).copy(), np.asarray(m.readout_bias, float).copy())
    return CalibrationProfile(serial, dict(result.mapped.biases), neurons, list(result.selected), float(result.chip_s),
                              emulated=emulated, summary=result.summary(), network=network)
