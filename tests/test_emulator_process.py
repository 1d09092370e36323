"""The emulated board in its own process: same driver path, same events, crash = unplug."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.dynapse1.board_api import BiasValue
from drivers.dynapse1.usb_transport import DeviceGone
from emulator.virtual_board import open_emulated_board, virtual_fpga_of


def _window(board, seconds: float):
    board.reset_timestamps()
    return board.read_events(seconds)


def test_board_in_a_child_process_streams_the_same_spikes_as_in_process():
    local = open_emulated_board("EMUPROC1")
    remote = open_emulated_board("EMUPROC1", separate_process=True)
    try:
        fpga = virtual_fpga_of(remote)
        assert fpga is not None and fpga.pid is not None and fpga.lag_s == 0.0
        for board in (local, remote):  # same bias change through the same wire path
            board.set_bias(0, 1, "IF_DC_P", BiasValue(1, 30))
        a, b = _window(local, 0.05), _window(remote, 0.05)
        assert len(a) > 100
        for column in ("timestamp_us", "chip", "core", "neuron"):
            np.testing.assert_array_equal(getattr(a, column), getattr(b, column))
        assert remote.get_bias(0, 1, "IF_DC_P") == BiasValue(1, 30)
        t_us, volts = remote.read_membrane(0, 0)
        assert len(t_us) == len(volts)
    finally:
        local.close()
        remote.close()


def test_a_crashed_emulator_process_looks_like_an_unplugged_board():
    board = open_emulated_board("EMUPROC2", separate_process=True)
    try:
        virtual_fpga_of(board).kill()
        with pytest.raises(DeviceGone):
            board.read_events(0.01)
        assert not board.connected
    finally:
        board.close()


def test_a_bad_configuration_is_reported_by_the_parent():
    with pytest.raises(Exception, match="AttributeError"):
        open_emulated_board("EMUPROC3", config=object(), separate_process=True)
