"""Calibration profiles against hostile and foreign files (issue 14 item 2, profile half, and its row).

Every bad profile must give a ProfileError that names the file, the entry and the rule -- never a
raw OverflowError/RecursionError/UnicodeDecodeError and never a silently coerced value -- and a
profile of another board must not be applied unless the user overrides on purpose.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.dynapse1.board_api import BiasValue
from drivers.dynapse1.netlist import NeuronAddress
from neurolab_gui.core.calibration.profile import (
    CalibrationProfile,
    NeuronCalibration,
    ProfileError,
    apply_profile,
    load_profile,
    save_profile,
)

SERIAL = "NLEMU-PROF"


def _profile() -> CalibrationProfile:
    biases = {(0, 1, "IF_DC_P"): BiasValue(3, 50, True), (0, 2, "IF_TAU1_N"): BiasValue(1, 200, False)}
    neurons = [NeuronCalibration(0, 1, n, 0.3 + 0.01 * n, 0.2, -1.5) for n in range(4)]
    return CalibrationProfile(SERIAL, biases, neurons, [NeuronAddress(0, 1, 2)], chip_s=12.5,
                              summary={"gain_cv": 0.12, "eta": float("nan"), "per_core": {"1": [0.1, 0.2]}})


@pytest.fixture()
def saved(tmp_path):
    path = save_profile(_profile(), tmp_path / "p.json")
    return path, json.loads(path.read_text())


def test_round_trip_keeps_everything(saved):
    path, _ = saved
    loaded = load_profile(path, expected_serial=SERIAL)
    ref = _profile()
    assert loaded.biases == ref.biases and loaded.neurons == ref.neurons and loaded.selected == ref.selected
    assert loaded.summary["eta"] is None  # NaN in a summary is written as null, which the strict reader accepts


def test_not_measured_values_are_written_as_null_and_read_back(tmp_path):
    """Board-level profiles have no inhibitory gain: NaN in memory, null in the file, NaN again after loading."""
    import math

    p = _profile()
    p.neurons[0].gain_inh = float("nan")
    p.neurons.append(NeuronCalibration(0, 1, 9, 3.2e12, float("nan"), 8e-11))  # board level: DC gain Hz/A, rheobase A
    path = save_profile(p, tmp_path / "b.json")
    assert load_profile(path).neurons[-1].gain_exc == 3.2e12
    assert json.loads(path.read_text())["neurons"][0]["gain_inh"] is None and "NaN" not in path.read_text()
    assert math.isnan(load_profile(path).neurons[0].gain_inh)
    p.neurons[1].gain_exc = float("inf")
    with pytest.raises(ProfileError, match=r"neurons\[1\]\.gain_exc: inf is not a finite number"):
        save_profile(p, tmp_path / "c.json")
    assert not (tmp_path / "c.json").exists()


def _write(path, data) -> None:
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("mutate, entry, rule", [
    (lambda d: d["neurons"][1].update(gain_exc=float("nan")), r"neurons\[1\]\.gain_exc", r"nan is not a finite number"),
    (lambda d: d["neurons"][0].update(gain_inh=float("inf")), r"neurons\[0\]\.gain_inh", r"inf is not a finite number"),
    (lambda d: d["neurons"][0].update(offset_hz=1e300), r"neurons\[0\]\.offset_hz", r"not a finite number in"),
    (lambda d: d["neurons"][0].update(gain_exc="0.3"), r"neurons\[0\]\.gain_exc", r'must be a number, got "0.3"'),
    (lambda d: d["neurons"][0].update(gain_exc=True), r"neurons\[0\]\.gain_exc", r"must be a number, got true"),
    (lambda d: d["neurons"][0].update(chip=1.0), r"neurons\[0\]\.chip", r"must be an integer in 0..3, got 1.0"),
    (lambda d: d["neurons"][0].update(extra=1), r"neurons\[0\]", r"unknown field\(s\) extra"),
    (lambda d: d["neurons"][0].pop("offset_hz"), r"neurons\[0\]", r"missing field\(s\) offset_hz"),
    (lambda d: d["neurons"].append(dict(d["neurons"][0])), r"neurons\[4\]", r"duplicate neuron"),
    (lambda d: d["biases"][0].update(high="false"), r"biases\[0\]\.high", r'must be true or false, got "false"'),
    (lambda d: d["biases"][0].update(high=1), r"biases\[0\]\.high", r"must be true or false, got 1"),
    (lambda d: d["biases"][0].update(coarse=3.9), r"biases\[0\]\.coarse", r"must be an integer in 0..7, got 3.9"),
    (lambda d: d["biases"][0].update(fine=True), r"biases\[0\]\.fine", r"must be an integer in 0..255, got true"),
    (lambda d: d["biases"][0].update(name="IF_DC"), r"biases\[0\]\.name", r'unknown bias name "IF_DC"'),
    (lambda d: d["biases"].append(dict(d["biases"][0])), r"biases\[2\]", r"duplicate bias IF_DC_P"),
    (lambda d: d.update(biases={"0": 1}), r"biases", r"must be an array, got an object"),
    (lambda d: d.update(emulated="yes"), r"emulated", r'must be true or false, got "yes"'),
    (lambda d: d.update(chip_s=float("nan")), r"chip_s", r"nan is not a finite number"),
    (lambda d: d["summary"]["per_core"].update(x=[1.0, float("-inf")]), r"summary\.per_core\.x\[1\]", r"-inf is not a finite number"),
    (lambda d: d.update(selected=[[0, 1]]), r"selected\[0\]", r"must be \[chip, core, neuron\]"),
    (lambda d: d.update(selected=[[0, 1, 2]] * 5000), r"selected", r"has 5000 entries, more than the 4096"),
    (lambda d: d.update(schema=True), r"schema", r"unsupported profile schema true"),
    (lambda d: d.update(schema=1.0), r"schema", r"unsupported profile schema 1.0"),  # was accepted as 1
    (lambda d: d.update(unknown_top=1), r"", r"unknown field\(s\) unknown_top"),
])
def test_each_rule_names_the_file_the_entry_and_the_rule(saved, tmp_path, mutate, entry, rule):
    _, data = saved
    mutate(data)
    bad = tmp_path / "bad.json"
    _write(bad, data)
    with pytest.raises(ProfileError, match=rf"^{bad}: {entry}.*{rule}" if entry else rf"^{bad}: .*{rule}"):
        load_profile(bad)


@pytest.mark.parametrize("raw, rule", [
    (b'{"schema": 1, "serial": "A", "chip_s": 1e400}', r"chip_s: inf is not a finite number"),
    (b"[" * 200_000 + b"]" * 200_000, r"nested more than 12 levels deep"),
    (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, r"nested more than 12 levels deep"),
    (b'{"schema": 1, "serial": "A", "summary": ' + b'{"x": ' * 14 + b"1" + b"}" * 15, r"nested 15 levels deep, more than 12"),
    ('{"schema": 1, "serial": "café"}'.encode("latin-1"), r"not UTF-8 text \(byte 0xe9 at offset 28\)"),
    (b'{"schema": 1, "serial": "A", "chip_s": ' + b"9" * 5000 + b"}", r"integer 9+\.\.\. is out of range"),
    (b'{"schema": 1, "serial": "A", "chip_s": -Infinity}', r"chip_s: -inf is not a finite number"),
    (b"{", r"is not valid JSON"),
    (b"", r"is not valid JSON"),
    (b"[1, 2]", r"must be an object, got an array"),
    # was loaded as board EMU00003: the last of two keys won
    (b'{"schema": 1, "serial": "EMU00004", "serial": "EMU00003"}', r'key "serial" appears more than once in one object'),
    (b'{"schema": 1, "serial": "A", "summary": {"x": 1, "y": {"z": 1, "z": 2}}}', r'key "z" appears more than once'),
])
def test_hostile_files_give_profile_errors_not_raw_exceptions(tmp_path, raw, rule):
    bad = tmp_path / "bad.json"
    bad.write_bytes(raw)
    with pytest.raises(ProfileError, match=rule) as info:
        load_profile(bad)
    assert str(bad) in str(info.value)


def test_oversized_file_is_refused_without_parsing(tmp_path):
    bad = tmp_path / "big.json"
    bad.write_bytes(b" " * (9 << 20))
    with pytest.raises(ProfileError, match=rf"big\.json: {9 << 20} bytes; a calibration profile may have at most"):
        load_profile(bad)


class _Board:
    """Records what an applied profile writes; the real Board validates the same mapping."""

    def __init__(self, serial: str) -> None:
        self.serial = serial
        self.written: list[dict] = []

    def apply_bias_set(self, biases) -> None:
        self.written.append(dict(biases))


def test_another_boards_profile_is_refused_unless_overridden(saved):
    path, _ = saved
    profile = load_profile(path)
    other = _Board("OTHER-BOARD")
    with pytest.raises(ProfileError, match="profile is for board 'NLEMU-PROF', but the connected board is 'OTHER-BOARD'"):
        apply_profile(other, profile)
    assert other.written == []
    messages: list[str] = []
    apply_profile(other, profile, allow_other_board=True, log=messages.append)
    assert other.written == [profile.biases] and "override" in messages[0]
    own = _Board(SERIAL)
    apply_profile(own, profile)
    assert own.written == [profile.biases]
    with pytest.raises(ProfileError, match="not 'OTHER-BOARD'"):
        load_profile(path, expected_serial="OTHER-BOARD")


def test_cli_apply_profile_checks_the_serial(saved, capsys):
    """``neurolab calibrate --apply-profile`` on the emulator: another board's profile exits 2; the override applies it."""
    from neurolab_gui.cli import main

    path, _ = saved
    assert main(["calibrate", "--apply-profile", str(path), "--emulator-serial", "NLEMU-OTHER"]) == 2
    out = capsys.readouterr().err
    assert out.startswith("error: ") and "profile is for board 'NLEMU-PROF'" in out
    assert main(["calibrate", "--apply-profile", str(path), "--emulator-serial", "NLEMU-OTHER", "--allow-other-board"]) == 0
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert "override" in out and "2 biases" in out
    (path.parent / "bad.json").write_bytes(b"[" * 100_000)
    assert main(["calibrate", "--apply-profile", str(path.parent / "bad.json")]) == 2
    assert "nested" in capsys.readouterr().err


# ---- property-based -----------------------------------------------------------------------------

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 300), st.floats(allow_nan=False, allow_infinity=False),
                     st.text(max_size=6), st.sampled_from(["IF_DC_P", "false", "true", "1"]))
_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
                       max_leaves=8)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.lists(st.one_of(st.integers(0, 5), st.sampled_from(
    ["biases", "neurons", "selected", "summary", "chip", "core", "neuron", "name", "coarse", "fine", "high",
     "gain_exc", "gain_inh", "offset_hz", "chip_s", "emulated", "serial", "schema"])), min_size=1, max_size=3),
       value=_values)
def test_property_any_mutation_loads_exactly_or_is_refused(tmp_path, path, value):
    """Set one entry anywhere to any JSON value: either a ProfileError or a profile whose fields have their exact types."""
    data = _profile().to_dict()
    node = data
    for key in path[:-1]:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            break
    try:
        node[path[-1]] = value
    except (IndexError, TypeError):
        pass
    f = tmp_path / "m.json"
    f.write_text(json.dumps(data))
    try:
        p = load_profile(f)
    except ProfileError as exc:
        assert str(exc).startswith(str(f))
        return
    for (chip, core, _name), b in p.biases.items():
        assert type(chip) is int and type(core) is int and type(b.coarse) is int and type(b.fine) is int and type(b.high) is bool
    for n in p.neurons:
        assert all(type(v) is float for v in (n.gain_exc, n.gain_inh, n.offset_hz))
    assert type(p.emulated) is bool and isinstance(p.chip_s, float)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300))
def test_property_random_bytes_only_raise_profile_errors(tmp_path, raw):
    f = tmp_path / "r.json"
    f.write_bytes(raw)
    try:
        load_profile(f)
    except ProfileError:
        pass


@pytest.mark.parametrize("key", ["biases", "neurons", "selected"])
def test_a_profile_missing_a_required_key_is_refused_by_name(saved, capsys, key):
    """Bug: a profile without ``biases`` was applied as a no-op ("applied 0 biases")."""
    from neurolab_gui.cli import main

    path, data = saved
    del data[key]
    path.write_text(json.dumps(data))
    assert main(["calibrate", "--apply-profile", str(path), "--emulator-serial", SERIAL]) == 2
    out = capsys.readouterr().err
    assert out.startswith(f"error: {path}: {key}: missing (a profile holds schema, serial, biases, neurons, selected")
    assert "applied" not in out and len(out.splitlines()) == 1
    data[key] = []  # an explicit empty list is a profile that calibrated nothing of that kind, not a damaged file
    path.write_text(json.dumps(data))
    assert main(["calibrate", "--apply-profile", str(path), "--emulator-serial", SERIAL]) == 0


def test_two_saves_of_one_boards_profile_at_once_neither_fail_nor_show_a_reader_a_corrupt_profile(tmp_path):
    """Bug: the temporary file was always ``<serial>.json.tmp``: two saves at once (the app and the CLI
    calibrating the same board) failed with FileNotFoundError and a reader saw a corrupt profile."""
    from tests.test_user_files import race

    target = tmp_path / f"{SERIAL}.json"
    profiles = []
    for who in range(4):
        p = _profile()
        p.biases = {k: BiasValue(who, 10 * who, True) for k in p.biases}  # whose profile a reader saw
        p.summary = {"who": who, "pad": [float(who)] * 20_000}
        profiles.append(p)
    save_profile(profiles[0], target)

    def read(path) -> None:
        loaded = load_profile(path, expected_serial=SERIAL)
        who = loaded.summary["who"]
        if {(v.coarse, v.fine) for v in loaded.biases.values()} != {(who, 10 * who)} or len(loaded.summary["pad"]) != 20_000:
            raise ValueError("a mixture of two saves")

    errors, bad, reads = race(target, [lambda p=p: save_profile(p, target) for p in profiles], read, rounds=15)
    assert errors == [] and bad == 0 and reads > 0
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary file left behind


def test_a_small_file_declaring_a_huge_network_is_refused_before_anything_that_size_is_allocated(saved, tmp_path):
    """Bug: a 200-byte ``network`` with ``shape: [4096, 4352]`` made the reader allocate a 140 MB matrix
    before any other check; the unit count is now checked against the readout rows the file holds."""
    import tracemalloc

    _, data = saved
    data["network"] = {"fingerprint": "0" * 64, "shape": [4096, 4352], "connections": [[0, 1, 1]],
                       "readout_weight": [[0.5]], "readout_bias": [0.0]}
    bad = tmp_path / "bad.json"
    _write(bad, data)
    tracemalloc.start()
    try:
        with pytest.raises(ProfileError, match=rf"^{bad}: network\.readout_weight\[0\]: must be an array of 4096 numbers"):
            load_profile(bad)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, peak  # 140 MB before; the read buffer is 8 MiB (numpy reports its arrays to tracemalloc)


def test_a_broken_symlink_as_the_boards_profile_is_refused_by_name_not_taken_for_no_profile(tmp_path, capsys, monkeypatch):
    """Bug: ``<serial>.json`` linking to a file that is gone counted as "no calibration profile" (deploy ran, rc 0)."""
    from neurolab_gui.cli import main
    from neurolab_gui.core.calibration.profile import default_profile_dir, find_profile
    from tests.test_cli_options import _tiny_checkpoint, _write_task

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    link = default_profile_dir() / "EMU00093.json"
    link.parent.mkdir(parents=True)
    link.symlink_to(tmp_path / "gone.json")
    ckpt = _tiny_checkpoint(tmp_path / "m.pt", str(_write_task(tmp_path / "d.npz")))
    assert main(["deploy", str(ckpt), "--board", "emulator:93", "--n-test", "3"]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err and "deploying" not in captured.out  # refused before the board is written
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and f"{link} is a broken symbolic link to {tmp_path / 'gone.json'}" in errors[0], captured.err
    with pytest.raises(ProfileError, match="is a broken symbolic link"):
        load_profile(link)
    assert find_profile("EMU00094") is None  # nothing there at all is still "no profile"
