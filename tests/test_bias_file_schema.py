"""Bias files as hostile input: one strict schema, limits before parsing, errors naming file, entry and rule.

One test per bias-file row of the fault issue's table, then property-based tests (hypothesis):
valid sets round-trip through JSON and YAML, every value in an entry is taken exactly when the
schema allows it, and no input -- random bytes, mutated files -- raises anything but
:class:`BiasFileError`.  Finally a bad file changes nothing on the (emulated) chip.
"""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.dynapse1.bias_files import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    BiasFileError,
    BiasSet,
    import_cortexcontrol,
    import_samna_json,
    load_bias_file,
)
from drivers.dynapse1.bias_table import CORE_BIASES, BiasValue

HEADER = {"format": "neurolab-biases", "version": 1}
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def write(tmp_path, text: str | bytes, suffix: str = ".json"):
    path = tmp_path / f"biases{suffix}"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def entry_file(tmp_path, entry: dict, suffix: str = ".json"):
    return write(tmp_path, json.dumps({**HEADER, "defaults": {"IF_DC_P": entry}}), suffix)


# --- the table's rows -------------------------------------------------------------------------------

BILLION_LAUGHS = """format: neurolab-biases
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
name: *i
"""


def test_yaml_alias_bomb_is_refused_at_once(tmp_path):
    path = write(tmp_path, BILLION_LAUGHS, ".yaml")
    assert path.stat().st_size < 1024  # a few hundred bytes that expand to 9**9 strings
    start = time.monotonic()
    with pytest.raises(BiasFileError, match=r"biases\.yaml: line 2: .*anchors and aliases.*rule: no aliases"):
        load_bias_file(path)
    assert time.monotonic() - start < 0.5


def test_cores_as_a_list_names_the_entry(tmp_path):
    path = write(tmp_path, json.dumps({**HEADER, "cores": [{"IF_DC_P": {"coarse": 1, "fine": 2}}]}))
    with pytest.raises(BiasFileError, match=r"biases\.json: cores: .*must be a mapping, got list"):
        load_bias_file(path)


@pytest.mark.parametrize(("text", "suffix"), [
    ('{"format": "neurolab-biases", "defaults": {"IF_DC_P": {"coarse": Infinity, "fine": 1}}}', ".json"),
    ('{"format": "neurolab-biases", "defaults": {"IF_DC_P": {"coarse": 1e400, "fine": 1}}}', ".json"),
    ('{"format": "neurolab-biases", "defaults": {"IF_DC_P": {"coarse": NaN, "fine": 1}}}', ".json"),
    ("format: neurolab-biases\ndefaults:\n  IF_DC_P: {coarse: .inf, fine: 1}\n", ".yaml"),
])
def test_coarse_inf_or_nan_is_refused(tmp_path, text, suffix):
    with pytest.raises(BiasFileError, match=r"biases\.(json|yaml): .*(not a number a bias file may hold|coarse must be an integer)"):
        load_bias_file(write(tmp_path, text, suffix))


def test_200k_deep_json_is_refused_quickly(tmp_path):
    depth = 200_000
    path = write(tmp_path, '{"format": "neurolab-biases", "defaults": ' + "[" * depth + "]" * depth + "}")
    start = time.monotonic()
    with pytest.raises(BiasFileError, match=rf"biases\.json: nested deeper than {MAX_DEPTH} levels"):
        load_bias_file(path)
    assert time.monotonic() - start < 1.0
    with pytest.raises(BiasFileError, match="nested deeper"):  # also through the samna importer
        import_samna_json("[" * depth + "]" * depth)


def test_deep_yaml_is_refused(tmp_path):
    with pytest.raises(BiasFileError, match="nested deeper"):
        load_bias_file(write(tmp_path, "format: neurolab-biases\ndefaults: " + "[" * 5000 + "]" * 5000 + "\n", ".yaml"))


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".py"])
def test_non_utf8_is_refused_with_the_offset(tmp_path, suffix):
    raw = b'{"format": "neurolab-biases", "name": "caf\xe9"}'
    with pytest.raises(BiasFileError, match=r"not UTF-8 text \(byte 0xe9 at offset 42"):
        load_bias_file(write(tmp_path, raw, suffix))


@pytest.mark.parametrize(("entry", "rule"), [
    ({"coarse": 1, "fine": 2, "high": "false"}, r"high must be true or false, got str 'false'"),
    ({"coarse": 1, "fine": 2, "enabled": 0}, r"enabled must be true or false, got int 0"),
    ({"coarse": 3.9, "fine": 2}, r"coarse must be an integer 0\.\.7, got a float 3\.9"),
    ({"coarse": 3.0, "fine": 2}, r"coarse must be an integer 0\.\.7, got a float 3\.0"),
    ({"coarse": True, "fine": 2}, r"coarse must be an integer 0\.\.7, got a boolean True"),
    ({"coarse": 1, "fine": "2"}, r"fine must be an integer 0\.\.255, got a str '2'"),
    ({"coarse": 1, "fine": 256}, r"fine value 256 out of range 0\.\.255 \(rule: fine range\)"),
    ({"coarse": 1, "fine": 2, "hihg": True}, r"unknown field 'hihg'"),
])
def test_wrong_types_are_refused_not_coerced(tmp_path, entry, rule):
    with pytest.raises(BiasFileError, match=rf"biases\.json: defaults\.IF_DC_P: {rule}"):
        load_bias_file(entry_file(tmp_path, entry))


def test_structure_rules(tmp_path):
    cases = [
        ({**HEADER, "defaults": {"IF_DC": {"coarse": 1, "fine": 1}}}, r"defaults: unknown bias 'IF_DC' \(rule: known names"),
        ({**HEADER, "extra": 1}, r"unknown top-level key 'extra'"),
        ({**HEADER, "version": 2}, r"version 2 is not supported"),
        ({**HEADER, "cores": {"1-2": {}}}, r"cores: core key '1-2' must be 'chip/core'"),
        ({**HEADER, "cores": {"0/0": {"IF_DC_P": [1, 2]}}}, r"cores\['0/0'\]\.IF_DC_P: a bias entry must be a mapping"),
    ]
    for data, rule in cases:
        with pytest.raises(BiasFileError, match=rule):
            load_bias_file(write(tmp_path, json.dumps(data)))
    with pytest.raises(BiasFileError, match="appears twice"):
        load_bias_file(write(tmp_path, '{"format": "neurolab-biases", "defaults": {}, "defaults": {}}'))
    with pytest.raises(BiasFileError, match="appears twice"):
        load_bias_file(write(tmp_path, "format: neurolab-biases\nname: a\nname: b\n", ".yaml"))


def test_yaml_code_tags_are_refused(tmp_path):
    text = 'format: neurolab-biases\nname: !!python/object/apply:os.system ["echo pwned"]\n'
    with pytest.raises(BiasFileError, match="not valid YAML"):
        load_bias_file(write(tmp_path, text, ".yaml"))


def test_size_limit_is_checked_before_reading(tmp_path):
    path = tmp_path / "huge.json"
    with path.open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(BiasFileError, match=rf"huge\.json: {MAX_FILE_BYTES + 1} bytes; a bias file may have at most"):
        load_bias_file(path)


def test_importers_take_integers_only():
    with pytest.raises(BiasFileError, match=r"line 1 IF_DC_P: fine must be an integer"):
        import_cortexcontrol('groups[0].set_bias("IF_DC_P", 30.9, 2)')
    with pytest.raises(BiasFileError, match=r"coarse must be an integer"):
        import_cortexcontrol('groups[0].set_bias("IF_DC_P", 30, True)')
    with pytest.raises(BiasFileError, match=r"line 1"):
        import_cortexcontrol("groups[0].set_bias(" + "(" * 200_000 + ")")
    samna = {"chips": [{"cores": [{"parameters": [{"paramName": "IF_DC_P", "coarseValue": 2.5, "fineValue": 3}]}]}]}
    with pytest.raises(BiasFileError, match=r"coarseValue must be an integer"):
        import_samna_json(json.dumps(samna))


def test_a_bad_file_sends_nothing_to_the_chip(tmp_path):
    from emulator.virtual_board import open_emulated_board, virtual_fpga_of
    from neurolab_gui.core.bias_model import BiasModel

    board = open_emulated_board("EMUFILES", clock="fast", prefetch=False)
    try:
        model = BiasModel(board)
        simulator = virtual_fpga_of(board).simulator
        before = [simulator.get_bias(c, k, n) for c in range(4) for k in range(4) for n in CORE_BIASES]
        cores = {f"{c}/{k}": {n: {"coarse": 2, "fine": 50} for n in CORE_BIASES} for c in range(4) for k in range(4)}
        cores["3/3"]["R2R_P"]["high"] = "false"  # the very last entry is wrong
        path = write(tmp_path, json.dumps({**HEADER, "cores": cores}))
        with pytest.raises(BiasFileError, match=r"cores\['3/3'\]\.R2R_P: high must be true or false"):
            model.load(path)
        assert [simulator.get_bias(c, k, n) for c in range(4) for k in range(4) for n in CORE_BIASES] == before
        assert not model.can_undo
    finally:
        board.close()


# --- properties --------------------------------------------------------------------------------------

values = st.builds(BiasValue, st.integers(0, 7), st.integers(0, 255), st.booleans(), st.booleans(), st.booleans())
bias_maps = st.dictionaries(st.sampled_from(list(CORE_BIASES)), values, max_size=6)
bias_sets = st.builds(
    BiasSet,
    name=st.text(max_size=20),
    source=st.text(max_size=20),
    defaults=bias_maps,
    cores=st.dictionaries(st.tuples(st.integers(0, 3), st.integers(0, 3)), bias_maps, max_size=4),
)


@PROPERTY
@given(bias_set=bias_sets, suffix=st.sampled_from([".json", ".yaml"]))
def test_valid_sets_round_trip(tmp_path, bias_set, suffix):
    path = tmp_path / f"set{suffix}"
    bias_set.save(path)
    if not bias_set.defaults and not bias_set.cores:  # it would apply nothing: refused, not silently "loaded"
        with pytest.raises(BiasFileError, match=f"no biases found in {path}"):
            load_bias_file(path)
        return
    assert load_bias_file(path) == bias_set


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 300), st.floats(allow_nan=False, allow_infinity=False),
                         st.text(max_size=5))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                           max_leaves=6)


@PROPERTY
@given(field=st.sampled_from(["coarse", "fine", "high", "normal", "enabled"]), value=json_values)
def test_an_entry_field_is_taken_exactly_when_the_schema_allows_it(tmp_path, field, value):
    entry = {"coarse": 1, "fine": 2, field: value}
    path = entry_file(tmp_path, entry)
    if field in ("coarse", "fine"):
        allowed = type(value) is int and 0 <= value <= (7 if field == "coarse" else 255)
    else:
        allowed = type(value) is bool
    if allowed:
        assert getattr(load_bias_file(path).defaults["IF_DC_P"], field) == value
    else:
        with pytest.raises(BiasFileError, match=rf"biases\.json: defaults\.IF_DC_P: .*{field}"):
            load_bias_file(path)


@PROPERTY
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".json", ".yaml", ".yml", ".py"]))
def test_random_bytes_give_a_bias_set_or_a_bias_file_error(tmp_path, data, suffix):
    try:
        load_bias_file(write(tmp_path, data, suffix))
    except BiasFileError:
        pass


VALID_TEXT = json.dumps({**HEADER, "defaults": {"IF_DC_P": {"coarse": 1, "fine": 2, "high": False}},
                         "cores": {"1/2": {"IF_THR_N": {"coarse": 3, "fine": 40}}}})


@PROPERTY
@given(position=st.integers(0, len(VALID_TEXT)), cut=st.integers(0, 5), insert=st.text(max_size=4),
       suffix=st.sampled_from([".json", ".yaml"]))
def test_mutated_files_give_a_bias_set_or_a_bias_file_error(tmp_path, position, cut, insert, suffix):
    text = VALID_TEXT[:position] + insert + VALID_TEXT[position + cut:]
    try:
        result = load_bias_file(write(tmp_path, text, suffix))
    except BiasFileError:
        return
    for value in [*result.defaults.values(), *(v for m in result.cores.values() for v in m.values())]:
        assert isinstance(value, BiasValue)


def test_pathological_strings_are_scanned_in_linear_time(tmp_path):
    # an unterminated string of escaped quotes: a regex-based scanner needed 75 s for 80 KB of this
    path = write(tmp_path, '{"format": "neurolab-biases", "name": "' + '\\"' * 500_000)
    start = time.monotonic()
    with pytest.raises(BiasFileError, match="not valid JSON"):
        load_bias_file(path)
    assert time.monotonic() - start < 2.0
