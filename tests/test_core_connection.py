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
    # hostile report 3, #11: timestamps that went back are shown beside the corrupt words
    session.board.counters.non_monotonic_timestamps = 3
    assert session.connection.poll_status().non_monotonic_timestamps == 3


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


def test_a_status_poll_that_read_the_board_before_a_disconnect_does_not_call_it_unplugged(session, monkeypatch):
    # The 2 Hz poll runs on its own thread: it read the board, then the user's Disconnect closed
    # that board, and the poll took the closed board for an unplugged one (status "unplugged",
    # a second ``disconnected("unplugged")``), over the user's "closed by user".
    import threading

    assert session.connect("emulator", seed=2, clock="fast", acquire=False)
    board = session.board
    checking, closed = threading.Event(), threading.Event()
    real_connected = type(board).connected

    def connected_held_on_the_poller(self) -> bool:
        if threading.current_thread().name == "poller":
            checking.set()
            closed.wait(10)
        return real_connected.fget(self)

    monkeypatch.setattr(type(board), "connected", property(connected_held_on_the_poller))
    reasons: list[str] = []
    session.connection.disconnected.connect(reasons.append)
    poller = threading.Thread(target=session.connection.poll_status, name="poller")
    poller.start()
    assert checking.wait(10)
    session.connection.disconnect()
    closed.set()
    poller.join(10)
    status = session.connection.status
    assert (status.state, status.message) == ("disconnected", "closed by user")
    assert reasons == ["closed by user"]
