"""The `neurolab` command: version, doctor, usage errors, and a clear refusal to open a window without a display."""

from __future__ import annotations

import pytest

from neurolab_gui import __version__
from neurolab_gui.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and __version__ in capsys.readouterr().out


def test_unknown_subcommand_and_bad_option_exit_2(capsys):
    for argv in (["bogus"], ["doctor", "--no-such-option"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        assert "usage: neurolab" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "verbose", "board", "seed", "mismatch"), [
    ([], 0, "emulator", 0, True),
    (["--seed", "3", "--no-mismatch"], 0, "emulator", 3, False),
    (["-v", "--board", "SERIAL9"], 1, "SERIAL9", 0, True),
    (["-vv", "gui", "--seed", "5"], 2, "emulator", 5, True),
])
def test_bare_neurolab_is_neurolab_gui_with_its_options(monkeypatch, argv, verbose, board, seed, mismatch):
    """README: "`neurolab` / `neurolab gui` ... `--board SERIAL`, `--seed N`, `--no-mismatch`";
    ``neurolab --seed 3`` was refused with "invalid choice: '3'" (newcomer report #6)."""
    import neurolab_gui.cli.gui as gui
    from neurolab_gui.cli.board_option import board_and_seed

    ran = []
    monkeypatch.setattr(gui, "run", lambda args: ran.append(args) or 0)  # parsed, no window opened
    assert main(argv) == 0
    [args] = ran
    assert (args.command, args.verbose, *board_and_seed(args), not args.no_mismatch) == ("gui", verbose, board, seed, mismatch)


def test_a_misspelt_command_is_still_named_as_an_invalid_choice(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["-v", "gu1", "--seed", "3"])
    assert exc.value.code == 2 and "invalid choice: 'gu1'" in capsys.readouterr().err


def test_doctor_reports_versions_libusb_boards_and_display(capsys):
    main(["doctor"])
    out = capsys.readouterr().out
    for item in ("Python", "Qt", "torch", "brian2", "numpy", "libusb", "DYNAP-SE1", "display"):
        assert item in out


def test_gui_without_a_display_says_what_to_do(monkeypatch, capsys):
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(var, raising=False)
    assert main(["gui"]) == 2
    assert "neurolab demo" in capsys.readouterr().err


def test_a_reader_that_goes_away_ends_the_command_quietly():
    """`neurolab devices | head -0`: the pipe's reader is gone; no BrokenPipeError traceback."""
    import os
    import subprocess
    import sys

    r, w = os.pipe()
    os.close(r)  # the reader went away before the first line
    try:
        done = subprocess.run([sys.executable, "-m", "neurolab_gui", "devices"], stdout=w, stderr=subprocess.PIPE,
                              timeout=120, check=False)
    finally:
        os.close(w)
    err = done.stderr.decode()
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert done.returncode == 1
