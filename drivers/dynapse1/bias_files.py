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

Biases a file does not name are libcaer's silent value 7/0.  Loading validates every entry
(name, coarse 0–7, fine 0–255) and raises :class:`BiasFileError` naming the file and the entry.

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
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .bias_table import CORE_BIASES, SILENT, BiasValue, bias_spec, check_coarse_fine
from .topology import N_CHIPS, N_CORES_PER_CHIP, check_chip, check_core

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
    def from_dict(cls, data: Mapping[str, Any], origin: str = "<dict>") -> BiasSet:
        if not isinstance(data, Mapping) or data.get("format") != FORMAT_TAG:
            raise BiasFileError(f"{origin}: not a NeuroLab bias file (expected format: {FORMAT_TAG})")
        out = cls(name=str(data.get("name", "")), source=str(data.get("source", "")))
        out.defaults = _parse_biases(data.get("defaults", {}), f"{origin} defaults")
        for key, biases in (data.get("cores") or {}).items():
            try:
                chip_s, core_s = str(key).split("/")
                chip, core = check_chip(int(chip_s)), check_core(int(core_s))
            except ValueError as exc:
                raise BiasFileError(f"{origin}: core key {key!r} must be 'chip/core' with chip and core 0..3 ({exc})") from None
            out.cores[(chip, core)] = _parse_biases(biases, f"{origin} core {key}")
        return out

    @classmethod
    def load(cls, path: str | Path) -> BiasSet:
        """Read a JSON or YAML bias file (by suffix; YAML accepts JSON too)."""
        path = Path(path)
        text = path.read_text()
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except Exception as exc:
            raise BiasFileError(f"{path}: cannot parse ({exc})") from exc
        return cls.from_dict(data, str(path))


def _parse_biases(raw: Any, origin: str) -> dict[str, BiasValue]:
    if not isinstance(raw, Mapping):
        raise BiasFileError(f"{origin}: expected a mapping of bias name to {{coarse, fine}}")
    out: dict[str, BiasValue] = {}
    for name, entry in raw.items():
        try:
            bias_spec(name)
            if not isinstance(entry, Mapping):
                raise ValueError("entry must be a mapping with coarse and fine")
            coarse, fine = check_coarse_fine(entry["coarse"], entry["fine"])
            out[name] = BiasValue(coarse, fine, bool(entry.get("high", True)), bool(entry.get("normal", True)), bool(entry.get("enabled", True)))
        except (KeyError, ValueError, TypeError) as exc:
            raise BiasFileError(f"{origin}: bias {name!r}: {exc}") from None
    return out


# --- importers -----------------------------------------------------------------------------------

_CTXCTL_CALL = re.compile(r"\[\s*(\d+)\s*\]\s*\.\s*set_bias\s*\((.*)\)\s*$")


def _convert_coarse(coarse: int, reverse: bool) -> int:
    return 7 - coarse if reverse else coarse


def import_cortexcontrol(text: str, *, name: str = "", reverse_coarse: bool = True) -> BiasSet:
    """Parse a CortexControl bias script (``[group].set_bias(name, fine, coarse)`` lines).

    Lines that are comments, blank, or not ``set_bias`` calls are ignored; a ``set_bias`` call that
    does not parse raises :class:`BiasFileError` with its line number.
    """
    out = BiasSet(name=name, source="CortexControl bias script (coarse converted 7 - c)" if reverse_coarse else "CortexControl bias script")
    for number, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0].strip()
        if "set_bias" not in code:
            continue
        match = _CTXCTL_CALL.search(code)
        try:
            if match is None:
                raise ValueError("expected <group>[index].set_bias(name, fine, coarse)")
            group = int(match.group(1))
            args = ast.literal_eval(f"({match.group(2)},)")
            if len(args) < 3:
                raise ValueError("set_bias needs name, fine and coarse")
            bias_name, fine, coarse = str(args[0]), int(args[1]), int(args[2])
            bias_spec(bias_name)
            chip, core = divmod(group, N_CORES_PER_CHIP)
            check_chip(chip)
            coarse_l, fine = check_coarse_fine(_convert_coarse(coarse, reverse_coarse), fine)
        except (ValueError, KeyError, SyntaxError) as exc:
            raise BiasFileError(f"CortexControl script line {number}: {exc}: {line.strip()!r}") from None
        out.cores.setdefault((chip, core), {})[bias_name] = BiasValue(coarse_l, fine)
    return out


def _first(d: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        if k in d:
            return d[k]
    return None


def import_samna_json(text: str, *, name: str = "", reverse_coarse: bool = True) -> BiasSet:
    """Parse a samna ``Dynapse1Configuration`` JSON export (see the module docstring)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BiasFileError(f"samna JSON: cannot parse ({exc})") from exc
    out = BiasSet(name=name, source="samna Dynapse1Configuration JSON (coarse converted 7 - c)" if reverse_coarse else "samna JSON")
    found = 0

    def visit(node: Any, chip: int | None, core: int | None, path: str) -> None:
        nonlocal found
        if isinstance(node, Mapping):
            chip = _first(node, "chipId", "chip_id", "chip") if isinstance(_first(node, "chipId", "chip_id", "chip"), int) else chip
            core = _first(node, "coreId", "core_id", "core") if isinstance(_first(node, "coreId", "core_id", "core"), int) else core
            param = _first(node, "paramName", "param_name")
            if param is not None and _first(node, "coarseValue", "coarse_value") is not None:
                try:
                    if chip is None or core is None:
                        raise ValueError("cannot tell which chip/core it belongs to")
                    bias_spec(str(param))
                    coarse = _convert_coarse(int(_first(node, "coarseValue", "coarse_value")), reverse_coarse)
                    coarse, fine = check_coarse_fine(coarse, int(_first(node, "fineValue", "fine_value")))
                    out.cores.setdefault((check_chip(chip), check_core(core)), {})[str(param)] = BiasValue(coarse, fine)
                    found += 1
                except (ValueError, KeyError, TypeError) as exc:
                    raise BiasFileError(f"samna JSON at {path}: parameter {param!r}: {exc}") from None
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

    visit(data, None, None, "$")
    if not found:
        raise BiasFileError("samna JSON: no parameters (paramName/coarseValue/fineValue) found")
    return out


def load_bias_file(path: str | Path) -> BiasSet:
    """Load any supported bias file by its content: NeuroLab JSON/YAML, samna JSON, or a ctxctl script."""
    path = Path(path)
    text = path.read_text()
    if path.suffix.lower() == ".py":
        return import_cortexcontrol(text, name=path.stem)
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BiasFileError(f"{path}: cannot parse ({exc})") from exc
        if isinstance(data, Mapping) and data.get("format") == FORMAT_TAG:
            return BiasSet.from_dict(data, str(path))
        return import_samna_json(text, name=path.stem)
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
        raise KeyError(f"unknown bias set {name!r}; known: {', '.join(published_bias_set_names())}")
    return BiasSet.load(path)
