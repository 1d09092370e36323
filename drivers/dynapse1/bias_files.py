"""Bias sets as plain JSON/YAML files, and importers for CortexControl scripts and samna JSON.

File format (JSON or YAML, same structure; coarse in libcaer numbering, 0 = largest current)::

    format: neurolab-biases
    version: 1
    name: ug_default
    source: "iniLabs DYNAP-SE user guide, loadDefaultBiases (reference §7)"
    defaults:                    # written to all 16 cores
      IF_DC_P: {coarse: 5, fine: 2}
      IF_TAU1_N: {coarse: 4, fine: 255, high: false}
    cores:                       # optional overrides, key "chip/core"
      "1/2": {IF_DC_P: {coarse: 7, fine: 0}}

Biases a file does not name are libcaer's silent value 7/0.

One strict schema, checked completely before a :class:`BiasSet` is returned (so nothing is sent
from a file that is wrong anywhere): top-level keys ``format`` (required), ``version`` (1),
``name``, ``source``, ``defaults``, ``cores`` and nothing else; bias names known; each entry a
mapping of ``coarse`` and ``fine`` (required, real integers 0–7 / 0–255: not ``3.9``, not
``true``, not ``"3"``, not ``inf``) and ``high``/``normal``/``enabled`` (optional, real booleans:
not ``"false"``, not ``0``); ``cores`` a mapping keyed ``"chip/core"``.  Before parsing: a regular
file (not ``/dev/zero``, a FIFO or a directory) of at most :data:`MAX_FILE_BYTES` (YAML
:data:`MAX_YAML_BYTES`), UTF-8, nesting at most :data:`MAX_DEPTH`;
YAML without anchors/aliases or non-standard tags; no NaN/Infinity literals or duplicate keys.
Every violation raises :class:`BiasFileError` naming the file, the entry (``defaults.IF_DC_P.high``)
and the rule.

Importers parse text; they never execute it.

* CortexControl (ctxctl) bias scripts: one ``set_bias`` call per line, e.g.
  ``model.get_bias_groups()[5].set_bias("IF_DC_P", 30, 2)`` or
  ``bias_groups[5].set_bias('IF_DC_P', 30, 2)``: group index = chip·4 + core, then name, **fine
  first**, then coarse in ctxctl numbering.  Coarse is converted with ``7 − c`` (the reference's
  unverified inference; the ``reverse_coarse`` parameter turns it off).
* samna JSON (``Dynapse1Configuration`` saved with samna's JSON serialiser): every object holding
  ``paramName``/``param_name``, ``coarseValue``/``coarse_value`` and ``fineValue``/``fine_value``
  is a bias; its chip and core come from the enclosing ``chips``/``cores`` list positions (or
  ``chipId``/``coreId`` keys).  Coarse is converted the same way.
"""

from __future__ import annotations

import ast
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..user_files import UserFileError, read_regular
from .bias_table import CORE_BIASES, N_COARSE, N_FINE, SILENT, BiasValue, UnknownNameError
from .topology import N_CHIPS, N_CORES_PER_CHIP

FORMAT_TAG = "neurolab-biases"


class BiasFileError(ValueError):
    """A bias file or script could not be read; the message names the file and the entry."""


@dataclass
class BiasSet:
    """Per-core biases: ``defaults`` for every core, ``cores[(chip, core)]`` overriding them."""

    name: str = ""
    source: str = ""
    defaults: dict[str, BiasValue] = field(default_factory=dict)
    cores: dict[tuple[int, int], dict[str, BiasValue]] = field(default_factory=dict)

    def value(self, chip: int, core: int, name: str) -> BiasValue:
        override = self.cores.get((chip, core), {})
        return override.get(name, self.defaults.get(name, SILENT))

    def to_board_mapping(self) -> dict[tuple[int, int, str], BiasValue]:
        """Every per-core bias of every core: what :meth:`Board.apply_bias_set` takes."""
        return {
            (chip, core, name): self.value(chip, core, name)
            for chip in range(N_CHIPS)
            for core in range(N_CORES_PER_CHIP)
            for name in CORE_BIASES
        }

    # --- plain files ---

    def to_dict(self) -> dict[str, Any]:
        def entry(v: BiasValue) -> dict[str, Any]:
            d: dict[str, Any] = {"coarse": v.coarse, "fine": v.fine}
            if not v.high:
                d["high"] = False
            if not v.normal:
                d["normal"] = False
            if not v.enabled:
                d["enabled"] = False
            return d

        out: dict[str, Any] = {"format": FORMAT_TAG, "version": 1, "name": self.name, "source": self.source}
        out["defaults"] = {n: entry(v) for n, v in self.defaults.items()}
        if self.cores:
            out["cores"] = {f"{c}/{k}": {n: entry(v) for n, v in biases.items()} for (c, k), biases in sorted(self.cores.items())}
        return out

    def save(self, path: str | Path) -> None:
        """Write JSON (``.json``) or YAML (``.yaml``/``.yml``)."""
        path = Path(path)
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        else:
            path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, data: Any, origin: str = "<dict>") -> BiasSet:
        """Check ``data`` (parsed JSON/YAML) against the schema; :class:`BiasFileError` names the entry."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT_TAG:
            raise BiasFileError(f"{origin}: not a NeuroLab bias file: {_format_problem(data)} (expected format: {FORMAT_TAG})")
        data = _mapping(data, origin, "the file")
        unknown = [k for k in data if k not in _TOP_FIELDS]
        if unknown:
            raise BiasFileError(f"{origin}: unknown top-level key {unknown[0]!r} (rule: known keys {', '.join(_TOP_FIELDS)})")
        if "version" in data and (isinstance(data["version"], bool) or data["version"] != 1):
            raise BiasFileError(f"{origin}: version {_describe(data['version'])} is not supported (rule: version 1)")
        for text_field in ("name", "source"):
            if not isinstance(data.get(text_field, ""), str):
                raise BiasFileError(f"{origin}: {text_field} must be text (rule: structure)")
        out = cls(name=data.get("name", ""), source=data.get("source", ""))
        out.defaults = _parse_biases(data.get("defaults", {}), f"{origin}: defaults")
        cores = _mapping(data.get("cores", {}), f"{origin}: cores", "cores ('chip/core' → biases)")
        for key, biases in cores.items():
            chip_core = _parse_core_key(key, f"{origin}: cores")
            out.cores[chip_core] = _parse_biases(biases, f"{origin}: cores[{key!r}]")
        return out

    @classmethod
    def load(cls, path: str | Path) -> BiasSet:
        """Read a JSON or YAML bias file (by suffix), checked completely (see the module docstring)."""
        path = Path(path)
        text = read_text(path)
        data = parse_yaml(text, str(path)) if path.suffix.lower() in (".yaml", ".yml") else parse_json(text, str(path))
        return cls.from_dict(data, str(path))


# --- reading and the schema ------------------------------------------------------------------------
#
# A bias file comes from anywhere (a colleague, a mailing list, an old lab PC), so it is read as
# hostile input: bounded in size and nesting before it is parsed, parsed without anything that can
# run code or expand (no YAML tags beyond the plain types, no anchors or aliases, no NaN/Infinity
# literals, no duplicate keys), and then checked against one strict schema, completely, before
# anything is returned -- so nothing is ever sent from a file that is wrong somewhere.

#: Largest bias file read: a NeuroLab file of all 16 cores is ~40 KB; samna exports that carry a
#: whole board configuration are a few MB.
MAX_FILE_BYTES = 32 * 1024 * 1024
#: YAML is parsed in pure Python (~1 MB/s): its limit keeps a load well under a second.
MAX_YAML_BYTES = 1024 * 1024
#: Deepest nesting of lists/mappings accepted (a NeuroLab file needs 4, a samna export about 10).
MAX_DEPTH = 64

_ENTRY_FIELDS = ("coarse", "fine", "high", "normal", "enabled")
_TOP_FIELDS = ("format", "version", "name", "source", "defaults", "cores")
_CORE_KEY = re.compile(r"([0-9]+)/([0-9]+)")


def read_text(path: str | Path, limit: int = MAX_FILE_BYTES) -> str:
    """The file's text: at most ``limit`` bytes of UTF-8 (a BOM is allowed), else :class:`BiasFileError`.

    Only a regular file is read (not ``/dev/zero``, a FIFO or a directory), and never more than
    ``limit + 1`` bytes whatever its size says (:func:`drivers.user_files.read_regular`).
    """
    path = Path(path)
    try:
        raw = read_regular(path, limit, "a bias file")
    except (UserFileError, FileNotFoundError) as exc:
        raise BiasFileError(str(exc)) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BiasFileError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start} cannot be decoded)") from None


def _check_json_depth(text: str, origin: str) -> None:
    """Refuse nesting deeper than :data:`MAX_DEPTH` before the parser recurses into it.

    Linear in the text (numpy): a quote opens or closes a string unless an odd run of
    backslashes precedes it; brackets count only outside strings.  (Text that is not JSON may be
    miscounted after its first error, where the parser stops anyway.)
    """
    chars = np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    if not chars.size:
        return
    positions = np.arange(chars.size)
    backslash = chars == ord("\\")
    last_other = np.maximum.accumulate(np.where(backslash, -1, positions))  # last non-backslash at or before i
    run_before = positions - 1 - np.concatenate(([-1], last_other[:-1]))  # backslashes right before i
    quote = (chars == ord('"')) & (run_before % 2 == 0)
    in_string = (np.cumsum(quote) - quote) % 2 == 1
    step = np.zeros(256, dtype=np.int8)
    step[[ord("["), ord("{")]] = 1
    step[[ord("]"), ord("}")]] = -1
    steps = np.where(in_string | quote, 0, step[chars])
    if steps.any() and int(np.cumsum(steps, dtype=np.int64).max()) > MAX_DEPTH:
        raise BiasFileError(f"{origin}: nested deeper than {MAX_DEPTH} levels (rule: nesting limit)")


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a bias file may hold")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice in one object")
        out[key] = value
    return out


def parse_json(text: str, origin: str) -> Any:
    """JSON with the limits above: depth, no NaN/Infinity, no duplicate keys."""
    _check_json_depth(text, origin)
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as exc:
        raise BiasFileError(f"{origin}: not valid JSON ({exc})") from None


def parse_yaml(text: str, origin: str) -> Any:
    """YAML restricted to plain data: no anchors/aliases, no tags beyond the standard types,
    nesting at most :data:`MAX_DEPTH`, no duplicate keys, at most :data:`MAX_YAML_BYTES`."""
    import yaml

    if len(text.encode("utf-8", "surrogatepass")) > MAX_YAML_BYTES:
        raise BiasFileError(f"{origin}: a YAML bias file may have at most {MAX_YAML_BYTES} bytes (use JSON for more)")
    try:
        depth = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                mark = event.start_mark
                raise BiasFileError(f"{origin}: line {mark.line + 1}: YAML anchors and aliases are not allowed in a bias file "
                                    "(rule: no aliases; they can expand a small file into a huge one)")
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise BiasFileError(f"{origin}: nested deeper than {MAX_DEPTH} levels (rule: nesting limit)")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
        return yaml.load(text, Loader=_strict_yaml_loader())  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise BiasFileError(f"{origin}: not valid YAML ({exc})") from None
    except RecursionError:
        raise BiasFileError(f"{origin}: nested too deeply (rule: nesting limit)") from None


@functools.cache
def _strict_yaml_loader() -> type:
    import yaml

    class StrictYamlLoader(yaml.SafeLoader):
        """SafeLoader that refuses duplicate mapping keys and keys that are not plain values."""

        def construct_mapping(self, node: Any, deep: bool = False) -> dict:
            seen: set = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:
                    raise yaml.constructor.ConstructorError(None, None, "a mapping key must be a plain value",
                                                            key_node.start_mark) from None
                if duplicate:
                    raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice in one mapping",
                                                            key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep)

    return StrictYamlLoader


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _integer(value: Any, where: str, field: str, top: int) -> int:
    """A real integer 0..top (not a bool, not 3.9, not "3", not inf)."""
    if isinstance(value, bool) or not isinstance(value, int):
        kind = "a boolean" if isinstance(value, bool) else f"a {type(value).__name__}"
        raise BiasFileError(f"{where}: {field} must be an integer 0..{top}, got {kind} {_describe(value)} (rule: integer fields)")
    if not 0 <= value <= top:
        raise BiasFileError(f"{where}: {field} value {value} out of range 0..{top} (rule: {field} range)")
    return value


def _boolean(value: Any, where: str, field: str) -> bool:
    if not isinstance(value, bool):
        raise BiasFileError(f"{where}: {field} must be true or false, got {type(value).__name__} {_describe(value)} "
                            "(rule: flags are booleans, not strings or numbers)")
    return value


def _mapping(value: Any, where: str, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise BiasFileError(f"{where}: {what} must be a mapping, got {type(value).__name__} {_describe(value)} (rule: structure)")
    for key in value:
        if not isinstance(key, str):
            raise BiasFileError(f"{where}: keys must be text, got {type(key).__name__} {_describe(key)} (rule: structure)")
    return value


def _parse_entry(name: str, entry: Any, where: str) -> BiasValue:
    if name not in CORE_BIASES:
        raise BiasFileError(f"{where}: unknown bias {name!r} (rule: known names; per-core biases are {', '.join(CORE_BIASES)})")
    where = f"{where}.{name}"
    entry = _mapping(entry, where, "a bias entry")
    unknown = [k for k in entry if k not in _ENTRY_FIELDS]
    if unknown:
        raise BiasFileError(f"{where}: unknown field {unknown[0]!r} (rule: known fields {', '.join(_ENTRY_FIELDS)})")
    for field_name in ("coarse", "fine"):
        if field_name not in entry:
            raise BiasFileError(f"{where}: missing {field_name!r} (rule: coarse and fine are required)")
    coarse = _integer(entry["coarse"], where, "coarse", N_COARSE - 1)
    fine = _integer(entry["fine"], where, "fine", N_FINE - 1)
    flags = {flag: _boolean(entry[flag], where, flag) for flag in ("high", "normal", "enabled") if flag in entry}
    return BiasValue(coarse, fine, **flags)


def _parse_biases(raw: Any, where: str) -> dict[str, BiasValue]:
    raw = _mapping(raw, where, "a mapping of bias name to {coarse, fine}")
    return {name: _parse_entry(name, entry, where) for name, entry in raw.items()}


def _parse_core_key(key: str, where: str) -> tuple[int, int]:
    match = _CORE_KEY.fullmatch(key)
    if match is None or not (0 <= int(match.group(1)) < N_CHIPS and 0 <= int(match.group(2)) < N_CORES_PER_CHIP):
        raise BiasFileError(f"{where}: core key {key!r} must be 'chip/core' with chip and core 0..3 (rule: core keys)")
    return int(match.group(1)), int(match.group(2))


# --- importers -----------------------------------------------------------------------------------

_CTXCTL_CALL = re.compile(r"\[\s*(\d+)\s*\]\s*\.\s*set_bias\s*\((.*)\)\s*$")


def _convert_coarse(coarse: int, reverse: bool) -> int:
    # only called with a coarse already checked to be 0..7, so the result is 0..7 too
    return 7 - coarse if reverse else coarse


def import_cortexcontrol(text: str, *, name: str = "", reverse_coarse: bool = True, origin: str = "CortexControl script") -> BiasSet:
    """Parse a CortexControl bias script (``[group].set_bias(name, fine, coarse)`` lines).

    Lines that are comments, blank, or not ``set_bias`` calls are ignored; a ``set_bias`` call that
    does not parse, or whose arguments are not a known name and two integers, raises
    :class:`BiasFileError` with its line number.
    """
    out = BiasSet(name=name, source="CortexControl bias script (coarse converted 7 - c)" if reverse_coarse else "CortexControl bias script")
    for number, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0].strip()
        if "set_bias" not in code:
            continue
        where = f"{origin} line {number}"
        match = _CTXCTL_CALL.search(code)
        try:
            if match is None:
                raise ValueError("expected <group>[index].set_bias(name, fine, coarse)")
            group = int(match.group(1))
            args = ast.literal_eval(f"({match.group(2)},)")
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
            raise BiasFileError(f"{where}: {exc}: {line.strip()[:80]!r}") from None
        if len(args) != 3 or not isinstance(args[0], str):
            raise BiasFileError(f"{where}: set_bias needs a bias name, fine and coarse: {line.strip()[:80]!r}")
        chip, core = divmod(group, N_CORES_PER_CHIP)
        if not 0 <= chip < N_CHIPS:
            raise BiasFileError(f"{where}: bias group {group} out of range 0..{N_CHIPS * N_CORES_PER_CHIP - 1} (rule: core range)")
        bias_name = args[0]
        if bias_name not in CORE_BIASES:
            raise BiasFileError(f"{where}: unknown bias {bias_name!r} (rule: known names)")
        fine = _integer(args[1], f"{where} {bias_name}", "fine", N_FINE - 1)
        coarse = _integer(args[2], f"{where} {bias_name}", "coarse", N_COARSE - 1)
        out.cores.setdefault((chip, core), {})[bias_name] = BiasValue(_convert_coarse(coarse, reverse_coarse), fine)
    return out


def _first(d: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        if k in d:
            return d[k]
    return None


def _index(value: Any) -> int | None:
    """A chip/core id of a samna object: an int, not a bool."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def import_samna_json(text: str, *, name: str = "", reverse_coarse: bool = True, origin: str = "samna JSON") -> BiasSet:
    """Parse a samna ``Dynapse1Configuration`` JSON export (see the module docstring)."""
    out = _samna_biases(parse_json(text, origin), name, reverse_coarse, origin)
    if out is None:
        raise BiasFileError(f"{origin}: no parameters (paramName/coarseValue/fineValue) found")
    return out


def _samna_biases(data: Any, name: str, reverse_coarse: bool, origin: str) -> BiasSet | None:
    """The biases of parsed samna JSON ``data``; None if it holds no parameter object at all."""
    out = BiasSet(name=name, source="samna Dynapse1Configuration JSON (coarse converted 7 - c)" if reverse_coarse else "samna JSON")
    found = 0

    def visit(node: Any, chip: int | None, core: int | None, path: str) -> None:
        nonlocal found
        if isinstance(node, Mapping):
            chip = _index(_first(node, "chipId", "chip_id", "chip")) if _index(_first(node, "chipId", "chip_id", "chip")) is not None else chip
            core = _index(_first(node, "coreId", "core_id", "core")) if _index(_first(node, "coreId", "core_id", "core")) is not None else core
            param = _first(node, "paramName", "param_name")
            if param is not None and _first(node, "coarseValue", "coarse_value") is not None:
                where = f"{origin} at {path}"
                if chip is None or core is None or not (0 <= chip < N_CHIPS and 0 <= core < N_CORES_PER_CHIP):
                    raise BiasFileError(f"{where}: parameter {_describe(param)}: cannot tell which chip/core (0..3) it belongs to")
                if param not in CORE_BIASES:
                    raise BiasFileError(f"{where}: unknown bias {_describe(param)} (rule: known names)")
                coarse = _integer(_first(node, "coarseValue", "coarse_value"), f"{where} {param}", "coarseValue", N_COARSE - 1)
                fine = _integer(_first(node, "fineValue", "fine_value"), f"{where} {param}", "fineValue", N_FINE - 1)
                out.cores.setdefault((chip, core), {})[param] = BiasValue(_convert_coarse(coarse, reverse_coarse), fine)
                found += 1
                return
            for key, value in node.items():
                visit(value, chip, core, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                if path.endswith(".chips"):
                    visit(value, i, core, f"{path}[{i}]")
                elif path.endswith(".cores"):
                    visit(value, chip, i, f"{path}[{i}]")
                else:
                    visit(value, chip, core, f"{path}[{i}]")

    visit(data, None, None, "$")  # depth is bounded by parse_json, so this recursion is too
    return out if found else None


def _format_problem(data: Any) -> str:
    """Why parsed ``data`` is not a NeuroLab bias file, in words (its ``format`` key is missing or other)."""
    if not isinstance(data, Mapping):
        kind = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number",
                type(None): "null"}.get(type(data), type(data).__name__)
        return f"the file holds {kind}, not an object with a \"format\" key"
    if "format" not in data:
        return "it has no \"format\" key"
    return f"its \"format\" is {_describe(data['format'])}"


#: What :func:`load_bias_file` reads, for its error messages.
ACCEPTED_FORMATS = (f'a NeuroLab bias file (JSON or YAML with "format": "{FORMAT_TAG}"), a samna Dynapse1Configuration '
                    "JSON export (objects with paramName, coarseValue and fineValue) or a CortexControl script (.py)")


def load_bias_file(path: str | Path) -> BiasSet:
    """Load any supported bias file by its content: NeuroLab JSON/YAML, samna JSON, or a ctxctl script.

    The file is read and checked completely first (see the module docstring); every problem is a
    :class:`BiasFileError` naming the file, the entry and the rule.  A file that sets no bias at
    all (a ``.py`` file without ``set_bias`` calls, a NeuroLab file with no entries) is refused
    too: loading it would change nothing, and the person could not tell that the file was not used.
    """
    path = Path(path)
    bias_set = _load_any_bias_file(path)
    if not bias_set.defaults and not bias_set.cores:  # (a core listed with no biases is one to silence)
        what = "no set_bias(name, fine, coarse) calls" if path.suffix.lower() == ".py" else "no defaults or cores entries"
        raise BiasFileError(f"no biases found in {path} ({what}); nothing to apply")
    return bias_set


def _load_any_bias_file(path: Path) -> BiasSet:
    suffix = path.suffix.lower()
    if suffix == ".py":
        return import_cortexcontrol(read_text(path), name=path.stem, origin=str(path))
    if suffix == ".json":
        text = read_text(path)
        data = parse_json(text, str(path))
        if isinstance(data, Mapping) and data.get("format") == FORMAT_TAG:
            return BiasSet.from_dict(data, str(path))
        samna = _samna_biases(data, path.stem, True, str(path))
        if samna is None:  # neither format: say what each needs, not only the samna importer's view
            raise BiasFileError(f"{path}: not a bias file NeuroLab reads ({_format_problem(data)}, and it holds no samna "
                                f"parameters paramName/coarseValue/fineValue). Accepted: {ACCEPTED_FORMATS}")
        return samna
    return BiasSet.load(path)


# --- the published sets shipped with NeuroLab -------------------------------------------------------


def published_bias_dir() -> Path:
    """Folder of the published bias sets (``resources/biases``, installed as ``neurolab_gui.resources``).

    This is the single source of those sets: the emulator, calibration, the robot demo and the GUI's
    presets all read them from here.
    """
    from ..resources import resource_path

    return resource_path("biases")


def published_bias_set_names() -> list[str]:
    """Names of the shipped published sets (reference §7), e.g. ``samna_recommended``."""
    return sorted(p.stem for p in published_bias_dir().glob("*.json"))


def published_bias_set(name: str) -> BiasSet:
    """One shipped published set; ``KeyError`` naming the known sets for an unknown name."""
    path = published_bias_dir() / f"{name}.json"
    if not path.is_file():
        raise UnknownNameError(f"unknown bias set {name!r}; known: {', '.join(published_bias_set_names())}")
    return BiasSet.load(path)
