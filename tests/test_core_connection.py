"""ConnectionManager against the emulated board: open, acquire, pause without waiting, lag, close."""

from __future__ import annotations

import time

from emulator.virtual_board import virtual_fpga_of
from neurolab_gui.core.connection import ConnectionTarget, emulator_lag_s


def wait_for(condition, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_emulator_target_opens_a_board_with_that_seed_and_mismatch(session):
    assert session.connect("emulator", seed=7, mismatch=False, clock="fast", acquire=False)
    fpga = virtual_fpga_of(session.board)
    assert fpga is not None and fpga.clock == "fast"
    assert session.board.serial == "EMU00007" and session.board.is_emulated
    assert not fpga.simulator.config.mismatch.enabled and fpga.simulator.config.seed == 7
    assert emulator_lag_s(session.board) is None  # the fast clock has no wall-clock lag
    # the bias model was filled from the board's start-up values
    assert session.biases.value(0, 0, "IF_DC_P") == session.board.get_bias(0, 0, "IF_DC_P")


def test_acquisition_forwards_pauses_at_once_and_resumes(session):
    assert session.connect("emulator", seed=1, clock="realtime")
    session.biases.apply_preset("samna_recommended", overrides={"IF_DC_P": (5, 60)}, cores=[(0, 0)])
    wait_for(lambda: len(session.spikes.ring) > 100)
    started = time.monotonic()
    session.connection.stop_acquisition()
    assert time.monotonic() - started < 0.5  # no waiting for the iterator to yield
    held = len(session.spikes.ring)
    time.sleep(0.3)
    assert len(session.spikes.ring) == held
    session.connection.start_acquisition()
    wait_for(lambda: len(session.spikes.ring) > held)
    status = session.connection.poll_status()
    assert status.state == "connected" and status.lag_s is not None and status.received_events >= held


def test_closing_the_board_is_noticed_and_reconnect_opens_it_again(session):
    assert session.connect("emulator", seed=2, clock="fast", acquire=False)
    session.board.close()  # as if it vanished under us
    assert session.connection.poll_status().state == "unplugged"
    assert session.board is None
    assert session.connection.reconnect()
    assert session.connection.status.state == "connected" and session.board.connected
    assert session.connection.target == ConnectionTarget("emulator", 2, True, "fast")
