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


def test_cli_entry_point_lists_the_emulator_and_exits_0_when_nothing_is_wrong(capsys, monkeypatch):
    import drivers.dynapse1.usb_discovery as discovery

    monkeypatch.setattr(discovery, "libusb_backend", lambda: VirtualDynapseBackend())  # a bus with no board on it
    code = main(["devices", "--no-open"])
    out = capsys.readouterr().out
    assert "emulator  serial EMU00000" in out and "real boards: none found" in out
    assert code == 0


def test_cli_entry_point_exits_1_and_says_how_to_fix_a_missing_libusb(capsys, monkeypatch):
    import drivers.dynapse1.usb_discovery as discovery

    monkeypatch.setattr(discovery, "libusb_backend", lambda: None)
    code = main(["devices", "--no-open"])
    out = capsys.readouterr().out
    assert "libusb not available (pip install libusb-package" in out and "emulator  serial EMU00000" in out
    assert code == 1
