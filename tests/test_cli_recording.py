"""``neurolab record``, ``info`` and ``export`` end to end on the emulator, and their refusals."""

from __future__ import annotations

import json

import h5py

from neurolab_gui.cli import main


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
