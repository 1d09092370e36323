"""Disconnect from the connection bar: the window never waits for the board to close, and a board
job the disconnect interrupts reads as stopped by it, not as a failure (hostile round 5, #2 and #3)."""

from __future__ import annotations

import logging

import torch
from PyQt6.QtCore import Qt
from PyQt6.QtTest import QTest

from emulator.virtual_board import virtual_fpga_of
from neurolab_gui.core.conversion.models import RateRNN, RNNConfig
from neurolab_gui.core.jobs import Job, JobState

LEFT = Qt.MouseButton.LeftButton


def test_disconnect_of_an_emulator_in_its_own_process_never_holds_the_window(make_window, qtbot, heartbeat):
    # The first close of an emulator child waited 210-790 ms on the GUI thread for the USB reader,
    # whose read the child was still answering.
    window = make_window()
    session, bar = window.session, window.connection_bar
    session.emulator_in_separate_process = True  # as `neurolab gui` runs it
    QTest.mouseClick(bar.connect_button, LEFT)
    qtbot.waitUntil(lambda: session.connection.status.state == "connected", timeout=60_000)
    board = session.board
    child = virtual_fpga_of(board)._process
    states = []
    session.connection.status_changed.connect(lambda s: states.append(s.state))

    with heartbeat.watch("disconnect"):
        QTest.mouseClick(bar.disconnect_button, LEFT)
        seen = []  # (status shown, Connect enabled) while the board closes
        qtbot.waitUntil(lambda: seen.append((window.state_label.text(), bar.connect_button.isEnabled()))
                        or session.connection.status.state == "disconnected", timeout=10_000)
    heartbeat.assert_no_stall()
    assert all(not enabled for shown, enabled in seen if shown.startswith("disconnecting"))  # no Connect racing the close
    assert [s for s in states if s != "connected"] == ["disconnecting", "disconnected"]  # the transition is shown (polls say connected)
    assert session.board is None and not board.connected
    qtbot.waitUntil(lambda: not child.is_alive(), timeout=10_000)  # the emulator's process ended with the board
    assert bar.connect_button.isEnabled()

    QTest.mouseClick(bar.connect_button, LEFT)  # and Connect again works
    qtbot.waitUntil(lambda: session.connection.status.state == "connected", timeout=60_000)
    assert session.board is not None and session.board is not board and session.board.connected


def test_disconnect_during_a_deployment_stops_it_as_disconnected_not_as_a_failure(make_window, qtbot, heartbeat, tmp_path,
                                                                                 monkeypatch, caplog, capfd):
    from neurolab_gui.core.conversion.checkpoint import save_checkpoint
    from neurolab_gui.core.conversion.tasks import load_task

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))  # no calibration profile anywhere
    torch.manual_seed(1)
    ckpt = save_checkpoint(tmp_path / "tiny.pt", RateRNN(RNNConfig(8, 8, 10, "leaky", 0.85, 4, "mean", 1.0)), {"task": "seq_digits"})
    window = make_window(seed=5, mismatch=True, clock="fast", acquire=True)
    session, panel, bar = window.session, window.model_panel, window.connection_bar
    panel.task_combo.setCurrentText("seq_digits")
    panel.qat_spin.setValue(0)
    for check in panel.stage_checks.values():
        check.setChecked(False)
    session.task = load_task("seq_digits")
    panel.load_checkpoint(str(ckpt))
    qtbot.waitUntil(lambda: panel.status.text() == "checkpoint loading finished", timeout=20_000)
    QTest.mouseClick(panel.convert_button, LEFT)
    qtbot.waitUntil(lambda: panel.status.text() == "conversion finished", timeout=60_000)
    board = session.board
    errors = list(window.reporter.errors)
    capfd.readouterr()
    caplog.clear()

    QTest.mouseClick(panel.deploy_button, LEFT)
    job = panel.job
    assert job.name == "deployment" and session.board_jobs.running is job
    with heartbeat.watch("disconnect during deployment"), caplog.at_level(logging.INFO):
        QTest.mouseClick(bar.disconnect_button, LEFT)
        qtbot.waitUntil(lambda: job.done and session.connection.status.state == "disconnected", timeout=20_000)
        qtbot.waitUntil(lambda: panel.status.text() == "deployment stopped: the board was disconnected", timeout=5_000)
    heartbeat.assert_no_stall()
    assert job.state == JobState.CANCELLED
    assert window.reporter.errors == errors  # no error box, no error in the log panel
    assert "deployment stopped: the board was disconnected" in window.log_panel.contents()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "Traceback" not in capfd.readouterr().err
    # the board's state afterwards: closed, nothing deployed, the slot free, Cancel off
    assert session.board is None and not board.connected
    assert session.deployment is None and session.board_jobs.running is None and not panel.cancel_button.isEnabled()

    QTest.mouseClick(bar.connect_button, LEFT)  # Connect again works
    qtbot.waitUntil(lambda: session.connection.status.state == "connected", timeout=60_000)
    assert session.board is not None and session.board.connected


def _job_meeting_a_closed_board(reason: str) -> Job:
    from drivers.dynapse1.usb_transport import DeviceGone

    def work(progress, cancel):
        assert cancel.wait(10)  # the board is closed under the work before its next cancel check
        raise DeviceGone("control transfer 0xC6 85/0: board is disconnected (not open)")

    job = Job("deployment", work, uses_board=True).start()
    job.cancel(reason)
    job.wait(10)
    return job


def test_a_job_stopped_by_a_disconnect_that_meets_the_closed_board_reads_as_stopped():
    job = _job_meeting_a_closed_board("the board was disconnected")
    assert job.state == JobState.CANCELLED and job.cancel_outcome == "stopped: the board was disconnected"


def test_a_board_lost_under_a_job_the_user_cancelled_is_still_a_failure():
    # only a stop with a reason (the disconnect) explains a lost board; the user's own Cancel does not
    assert _job_meeting_a_closed_board("").state == JobState.FAILED


def test_disconnect_during_a_sweep_says_stopped_by_the_disconnect_in_the_transfer_panel(make_window, qtbot):
    from tests.test_gui_user_actions import connect_fast_emulator, set_up_sweep

    window = make_window()
    connect_fast_emulator(window)
    window.session.biases.apply_preset("samna_recommended", cores=[(2, 3)])
    panel = window.transfer_panel
    set_up_sweep(panel)
    panel.steps_spin.setValue(20)
    panel.duration_spin.setValue(1.0)  # long enough that the sweep is still running at the click
    QTest.mouseClick(panel.sweep_button, LEFT)
    task = panel.task
    qtbot.waitUntil(lambda: panel.progress.value() > 0, timeout=20_000)
    QTest.mouseClick(window.connection_bar.disconnect_button, LEFT)
    qtbot.waitUntil(lambda: task.done and window.session.connection.status.state == "disconnected", timeout=20_000)
    assert task.state == JobState.CANCELLED
    # the panel hears of the end through a queued signal: wait for it, not only for the job
    qtbot.waitUntil(lambda: panel.status.text() == f"{task.name} stopped: the board was disconnected", timeout=5_000)
    assert window.reporter.errors == [] and panel.sweep_button.isEnabled()
