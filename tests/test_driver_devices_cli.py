"""``neurolab devices`` lists boards with serial, firmware and logic version (virtual bus as the real one)."""

from __future__ import annotations

from emulator.simulator import BoardSimulator
from emulator.virtual_usb import VirtualDynapseBackend
from neurolab_gui.cli import main
from neurolab_gui.cli.devices import list_lines


def test_lists_boards_on_a_bus_and_the_emulator():
    bus = VirtualDynapseBackend()
    bus.add_board("BOARD007", BoardSimulator("BOARD007"))
    lines, problems = list_lines(bus)
    assert problems == 0
    assert any("DYNAP-SE1 serial BOARD007 firmware 3 logic 5" in line for line in lines)
    assert any(line.startswith("emulator  serial EMU00000 firmware 3 logic 5") for line in lines)


def test_cli_entry_point_runs(capsys):
    code = main(["devices", "--no-open"])
    out = capsys.readouterr().out
    assert "emulator  serial EMU00000" in out and code in (0, 1)
