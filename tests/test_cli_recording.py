"""``neurolab record``, ``info`` and ``export`` end to end on the emulator, and their refusals."""

from __future__ import annotations

import json
from pathlib import Path

import h5py

from neurolab_gui.cli import main
from tests.cli_output import one_error_line


def test_record_info_and_export_on_the_emulator(tmp_path, capsys):
    path = tmp_path / "cli.h5"
    rc = main(["record", "--board", "emulator", "--seconds", "1.5", "--clock", "fast", "--preset", "samna_recommended",
               "--set", "0", "1", "IF_DC_P", "5", "60", "--notes", "cli test", str(path)])
    assert rc == 0
    assert "spikes" in capsys.readouterr().out
    assert main(["info", "--json", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["complete"] and info["spikes"] > 1000 and info["board_serial"] == "EMU00000"
    assert main(["info", str(path)]) == 0
    assert "complete" in capsys.readouterr().out
    with h5py.File(path) as f:
        assert len(f["events/spikes/t"]) == info["spikes"] and f.attrs["notes"] == "cli test"
        assert set(f["events/spikes/core"][:].tolist()) == {1}  # only the driven core fires

    assert main(["export", str(path), "--csv", str(tmp_path / "x.csv")]) == 0
    assert len((tmp_path / "x.csv").read_text().splitlines()) == info["spikes"] + 1
    assert main(["export", str(path), "--aedat", str(tmp_path / "x.aedat")]) == 0
    assert (tmp_path / "x.aedat").read_bytes().startswith(b"#!AER-DAT3.1\r\n")
    assert main(["export", str(path), "--nwb", str(tmp_path / "x.nwb")]) == 0
    from pynwb import validate

    assert validate(path=str(tmp_path / "x.nwb")) == []
    capsys.readouterr()
    assert main(["export", str(path), "--csv", str(tmp_path / "x.csv")]) == 2  # exists
    assert "already exists" in capsys.readouterr().err


def test_cli_refusals_name_the_problem(tmp_path, capsys):
    not_session = tmp_path / "other.h5"
    with h5py.File(not_session, "w") as f:
        f["x"] = 1
    assert main(["info", str(not_session)]) == 2
    assert "not a NeuroLab session file" in capsys.readouterr().err
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"\x00" * 100)
    assert main(["export", str(garbage), "--csv", str(tmp_path / "g.csv")]) == 2
    assert "cannot be opened" in capsys.readouterr().err and not (tmp_path / "g.csv").exists()
    assert main(["record", "--seconds", "1", str(not_session)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["record", "--seconds", "0", str(tmp_path / "new.h5")]) == 2


def _small_session(path):
    from drivers.dynapse1.spikes import SpikeEvents
    from neurolab_gui.core.recording import Recorder

    rec = Recorder(path, software_version="9.9", board_serial="EMU00001", board_emulated=True, segment_s=0.02, tick_s=0.005)
    rec.start()
    rec.record_spikes(SpikeEvents([1, 2, 3], [0, 0, 1], [0, 1, 2], [5, 6, 7]))
    rec.stop()
    return path


def test_export_never_overwrites_the_session_it_reads(tmp_path, capsys, monkeypatch):
    """Bug: `export FILE --csv FILE --force` replaced the recording with its own CSV export."""
    from neurolab_gui.core.session_file import segments_dir

    path = _small_session(tmp_path / "s.h5")
    original = path.read_bytes()
    (tmp_path / "link.h5").symlink_to(path)
    (tmp_path / "hard.h5").hardlink_to(path)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    segment = next(segments_dir(path).iterdir())
    for kind in ("csv", "aedat", "nwb"):
        for out in ("s.h5", str(path), "./sub/../s.h5", "link.h5", "hard.h5", str(segment)):
            for force in ([], ["--force"]):
                assert main(["export", "s.h5", f"--{kind}", out, *force]) == 2, (kind, out, force)
                line = one_error_line(capsys.readouterr().err)
                assert line.startswith(f"error: --{kind} {Path(out)} ") and ("session file s.h5 itself" in line or "segments folder" in line)
    assert main(["export", "link.h5", "--csv", "s.h5", "--force"]) == 2  # the input by its link, the output by its name
    assert "is the session file link.h5 itself" in capsys.readouterr().err
    assert path.read_bytes() == original and segment.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hard.h5", "link.h5", "s.h5", "s.h5.segments", "sub"]
    assert main(["export", "s.h5", "--csv", "out.csv"]) == 0 and main(["export", "s.h5", "--csv", "out.csv", "--force"]) == 0
    assert len((tmp_path / "out.csv").read_text().splitlines()) == 4  # a header and three spikes


def test_record_refuses_bad_options_by_name_before_opening_the_board(tmp_path, capsys):
    out = tmp_path / "r.h5"
    assert main(["record", "--seconds", "1", "--set", "0", "1", "IF_DC_P", "x", "6", str(out)]) == 2
    assert one_error_line(capsys.readouterr().err) == ("error: --set 0 1 IF_DC_P x 6: CHIP, CORE, COARSE and FINE must be "
                                                    "integers (e.g. --set 0 1 IF_DC_P 5 60)")
    assert main(["record", "--seconds", "1", "--board", "emulator:3", "--seed", "4", str(out)]) == 2
    assert "--board emulator:3 and --seed 4 name different seeds" in one_error_line(capsys.readouterr().err)
    for text in ('[{"paramName": 1}]', '{"name": "mine", "defaults": {}}', '{"format": "other"}'):
        bias_file = tmp_path / "b.json"
        bias_file.write_text(text)  # fell through to the samna importer's "no parameters ... found"
        assert main(["record", "--seconds", "1", "--bias-file", str(bias_file), str(out)]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert f"{bias_file}: not a bias file NeuroLab reads" in line and '"format": "neurolab-biases"' in line
        assert ('has no "format" key' in line) == ("name" in text) and ("holds an array" in line) == text.startswith("[")
    assert not out.exists() and not (tmp_path / "r.h5.segments").exists()


def test_record_refuses_a_bias_file_that_sets_no_bias(tmp_path, capsys):
    """A .py file with no set_bias calls (it is never run) or an empty NeuroLab file would apply nothing."""
    out = tmp_path / "r.h5"
    for name, text, what in (("ctx.py", "import os\nos.system('true')\n", "no set_bias(name, fine, coarse) calls"),
                             ("empty.json", '{"format": "neurolab-biases"}', "no defaults or cores entries")):
        bias_file = tmp_path / name
        bias_file.write_text(text)
        assert main(["record", "--seconds", "1", "--bias-file", str(bias_file), str(out)]) == 2
        err = capsys.readouterr().err
        assert one_error_line(err) == f"error: no biases found in {bias_file} ({what}); nothing to apply"
        assert "Traceback" not in err
    assert not out.exists() and not (tmp_path / "r.h5.segments").exists()


def test_record_takes_the_board_grammar_and_prints_unknown_names_without_quotes(tmp_path, capsys):
    """`record --board emulator:2` and `--board EMU00002` (what `neurolab devices` prints) record that emulator."""
    for board, name in (("emulator:2", "a.h5"), ("EMU00002", "b.h5")):
        assert main(["record", "--board", board, "--seconds", "0.2", "--clock", "fast", str(tmp_path / name)]) == 0
        assert main(["info", "--json", str(tmp_path / name)]) == 0
        assert json.loads(capsys.readouterr().out.splitlines()[-1])["board_serial"] == "EMU00002"
    assert main(["record", "--seconds", "0.2", "--clock", "fast", "--set", "0", "1", "NOPE", "5", "6", str(tmp_path / "c.h5")]) == 2
    assert one_error_line(capsys.readouterr().err).startswith("error: unknown bias name 'NOPE'; per-core biases are: ")
    assert main(["record", "--seconds", "0.2", "--clock", "fast", "--preset", "nosuchset", str(tmp_path / "d.h5")]) == 2
    assert one_error_line(capsys.readouterr().err).startswith("error: unknown bias set 'nosuchset'; known: ")
