"""The emulated board in its own process: same driver path, same events, crash = unplug."""

from __future__ import annotations

import errno
import os
import signal
import time

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


def _poll_until_unplugged(manager, limit_s: float) -> float:
    """Poll the status as the GUI's timer does; return how long until it read 'unplugged'."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        started = time.monotonic()
        status = manager.poll_status()  # must never raise
        assert time.monotonic() - started < 0.5, "poll_status blocked"
        if status.state == "unplugged":
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"board still reads {manager.status.state!r} after {limit_s} s")


@pytest.mark.parametrize("sig", [signal.SIGSTOP, signal.SIGKILL], ids=["SIGSTOP", "kill-9"])
def test_a_stopped_or_killed_emulator_child_reads_as_unplugged_within_2_s(sig):
    from neurolab_gui.core.connection import ConnectionManager, ConnectionTarget

    manager = ConnectionManager()
    assert manager.connect(ConnectionTarget(seed=7, clock="realtime", separate_process=True))
    fpga = virtual_fpga_of(manager.board)
    try:
        assert manager.poll_status().state == "connected"
        os.kill(fpga.pid, sig)
        assert _poll_until_unplugged(manager, 2.0) < 2.0
        assert not fpga.alive and fpga.pid is not None
        started = time.monotonic()
        manager.disconnect()
        assert time.monotonic() - started < 2.0
    finally:
        manager.disconnect()
        fpga.close()


def test_every_call_into_a_stopped_child_times_out_as_a_missing_device():
    import usb.core

    from emulator.fpga_process import RemoteVirtualFpga

    fpga = RemoteVirtualFpga("EMUPROC4")
    try:
        assert fpga.control_in(0xBF, 6, 0, 4) == (5).to_bytes(4, "big")  # logic version
        os.kill(fpga.pid, signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(usb.core.USBError) as excinfo:
            fpga.control_in(0xBF, 6, 0, 4)
        assert excinfo.value.errno == errno.ENODEV and time.monotonic() - started < 2.0
        with pytest.raises(usb.core.USBError):  # and every later call, at once
            fpga.bulk_read(512, 10)
        assert "stopped" in fpga.lost_reason
    finally:
        fpga.close()


def test_bias_write_and_close_on_a_stopped_child_fail_fast_as_unplugged():
    board = open_emulated_board("EMUPROC5", separate_process=True)
    fpga = virtual_fpga_of(board)
    try:
        os.kill(fpga.pid, signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(DeviceGone):
            board.set_bias(0, 0, "IF_DC_P", BiasValue(1, 30))
        assert time.monotonic() - started < 2.0 and not board.connected
        started = time.monotonic()
        board.close()
        assert time.monotonic() - started < 2.0
    finally:
        board.close()
        fpga.close()


@pytest.mark.unexpected_transfers_ok
def test_a_child_hands_its_unexpected_transfers_to_the_parent_when_closed():
    from emulator.fpga_process import RemoteVirtualFpga
    from emulator.virtual_fpga import UNEXPECTED_IN_PROCESS

    fpga = RemoteVirtualFpga("EMUPROC6")
    fpga.control_out(0xBF, 18, 3, (1).to_bytes(4, "big"))  # a host chip id where libcaer sends 8
    assert fpga.unexpected_count == 1
    fpga.close()
    assert any(serial == "EMUPROC6" and "CHIPID 1" in what for serial, what in UNEXPECTED_IN_PROCESS)


def test_closing_from_several_threads_at_once_closes_once_and_raises_nowhere():
    """The board's close listener ends the child on a thread of its own while the finalizer or a test
    may close it too: concurrent closes killed the child mid-close and closed its pipe twice (EBADF,
    printed by the thread's excepthook into the app's stdout)."""
    import threading

    from emulator.fpga_process import RemoteVirtualFpga

    fpga = RemoteVirtualFpga("EMUPROC7")
    pid = fpga._process.pid
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def close() -> None:
        start.wait()
        try:
            fpga.close()
        except BaseException as exc:  # noqa: BLE001 - the test collects whatever a closer raises
            errors.append(exc)

    closers = [threading.Thread(target=close) for _ in range(4)]
    for thread in closers:
        thread.start()
    for thread in closers:
        thread.join(30)
    assert errors == [] and not any(thread.is_alive() for thread in closers)
    assert fpga._process.exitcode == 0, "the child was killed instead of closed"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    fpga.close()  # and once more after the fact: still nothing


def test_a_child_whose_parent_is_gone_ends_quietly(capfd):
    """The child's answer to a parent that went away (closed its end of the pipe) ends the child
    without a BrokenPipeError traceback in the terminal they share."""
    import multiprocessing

    from emulator.fpga_process import _serve

    parent_end, child_end = multiprocessing.Pipe()
    parent_end.close()  # the parent exits while the child builds its board
    _serve(child_end, "EMUPROC8", None, "fast")  # its "ready" answer finds nobody: returns
    assert "Traceback" not in capfd.readouterr().err


class _CountingBackend:
    """Counts the control transfers the driver makes through a virtual backend."""

    def __init__(self, backend):
        self.transfers = 0
        original = backend.ctrl_transfer

        def counted(*args, **kwargs):
            self.transfers += 1
            return original(*args, **kwargs)

        backend.ctrl_transfer = counted


def test_opening_a_board_in_a_child_waits_once_per_acknowledged_batch_not_once_per_transfer():
    """libcaer's start-up is ~2,500 control transfers; every 0xC6 batch is posted and only its
    acknowledgement's read waits, so the open costs at most one round trip per two transfers
    (it was one per transfer).  Counted, not timed."""
    from drivers.dynapse1.board import open_board
    from emulator.config import EmulatorConfig
    from emulator.fpga_process import RemoteVirtualFpga
    from emulator.virtual_usb import VirtualDynapseBackend

    backend = VirtualDynapseBackend()
    fpga = backend.plug(RemoteVirtualFpga("EMUPROC7", EmulatorConfig(), "fast"))
    counter = _CountingBackend(backend)
    board = open_board("EMUPROC7", backend=backend, settle_s=0.0)
    try:
        assert counter.transfers > 2000
        assert fpga.posted > 1000  # the chip-word batches of the default configuration
        # descriptors are answered in this process; the first bulk read of the stream may follow
        assert fpga.round_trips + fpga.posted <= counter.transfers + 2
        assert fpga.round_trips <= counter.transfers // 2 + 50
        board.set_bias(0, 1, "IF_DC_P", BiasValue(1, 30))  # and the posted writes took effect
        assert fpga.read_membrane(0, 0) is not None
    finally:
        board.close()
        fpga.close()


@pytest.mark.unexpected_transfers_ok
def test_a_refused_posted_batch_fails_the_next_control_transfer_which_is_not_carried_out():
    import usb.core

    from emulator.fpga_process import RemoteVirtualFpga

    def chip_id(device_id: int) -> tuple:  # 0xBF CHIP/ID <- a chip's device id
        return 0xBF, 5, 1, device_id.to_bytes(4, "big")

    fpga = RemoteVirtualFpga("EMUPROC8")
    try:
        fpga.control_out(*chip_id(8))  # chip 1
        fpga.control_out(0xC6, 2, 0, bytes(4))  # declares 2 entries, carries 1: the FPGA stalls
        assert (fpga.posted, fpga.round_trips) == (1, 1)
        with pytest.raises(usb.core.USBError, match="2 entries but 4 bytes"):
            fpga.control_out(*chip_id(4))  # reports the refusal instead of selecting chip 2
        assert fpga.control_in(0xBF, 5, 1, 4) == (8).to_bytes(4, "big")  # still chip 1
        assert any("declaring 2 entries" in what for what in fpga.unexpected_transfers)
    finally:
        fpga.close()
