"""Every output a command takes is tried before the command does its work.

Bug (hostile test 4, #5): the up-front check caught only a missing folder or a folder as the path;
a folder the user cannot write (another user's, a read-only file system, /proc) was found when the
result was written, after the training, conversion or calibration (exit 1, the run lost).  The check
now creates and removes a temporary file where the output will go.  The folder is made unwritable
by a patched ``os.open`` (chmod does not stop root, who runs some test machines).
"""

from __future__ import annotations

import errno

import pytest

from neurolab_gui.cli import main
from tests.unwritable_folder import refuse_files_in

# each command's argv up to the output path (CKPT, NIR: an input file, never read)
COMMANDS = {
    "train --out": ["train", "--task", "ecg", "--out"],
    "convert --json": ["convert", "CKPT", "--json"],
    "convert --nir": ["convert", "CKPT", "--nir"],
    "robustness --json": ["robustness", "CKPT", "--json"],
    "demo --json": ["demo", "--json"],
    "nir-import OUT": ["nir-import", "NIR"],
    "calibrate --profile": ["calibrate", "--board", "emulator", "--cores", "1", "--profile"],
    "robot demo --record": ["robot", "demo", "--record"],
}


@pytest.mark.parametrize("code, why", [(errno.EACCES, "Permission denied"), (errno.EROFS, "Read-only file system")])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_output_in_an_unwritable_folder_is_refused_before_any_work(tmp_path, capsys, monkeypatch, command, code, why):
    folder = tmp_path / "locked"
    folder.mkdir()
    name = "out.json" if "profile" in command else "out.h5" if "record" in command else "out.pt"
    argv = [str(tmp_path / "in.pt") if a in ("CKPT", "NIR") else a for a in COMMANDS[command]] + [str(folder / name)]
    refuse_files_in(monkeypatch, folder, code)
    with pytest.raises(SystemExit) as stop:  # argparse's usage error: nothing has run
        main(argv)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert stop.value.code == 2 and "Traceback" not in err
    assert len(errors) == 1 and f"directory {folder} is not writable ({why})" in errors[0], err
    option = command.split()[-1]
    assert option == "OUT" or f"argument {option}" in errors[0]
    assert list(folder.iterdir()) == []  # the trial file was never made, nothing left


def test_the_trial_file_is_removed_and_a_writable_folder_passes(tmp_path):
    from neurolab_gui.cli.arguments import output_path_problem

    assert output_path_problem(tmp_path / "r.json") is None
    assert output_path_problem(tmp_path / "new" / "deeper" / "p.json", parents=True) is None
    assert list(tmp_path.iterdir()) == []  # no .part file, no folder made


def test_a_virtual_file_system_folder_is_refused(capsys):
    """/proc cannot hold a new file even for root (the report's case: found after the conversion)."""
    with pytest.raises(SystemExit) as stop:
        main(["train", "--task", "ecg", "--out", "/proc/neurolab-test.pt"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "argument --out: cannot write /proc/neurolab-test.pt: directory /proc is not writable" in err
