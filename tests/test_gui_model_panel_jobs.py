"""The model panel's board jobs, driven by its real buttons: its Cancel follows the job it shows,
and closing the session cancels a running board job (hostile calibration test #5).

``make_window``: the window factory of tests/conftest.py.  The board work is replaced by held
stand-ins, so the races are forced with events, not timing.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

from PyQt6.QtCore import Qt
from PyQt6.QtTest import QTest

from neurolab_gui.core import workflows
from neurolab_gui.core.events import Signal
from neurolab_gui.core.jobs import Job, JobState, check_cancel
from neurolab_gui.qt.bridge import relay

LEFT = Qt.MouseButton.LeftButton


def _held_network_calibration(monkeypatch, seen: list | None = None) -> None:
    """"Calibrate network on board" starts a job that runs until cancelled, then "restores" the
    board it started on (``seen`` gets whether that board was still open then)."""

    def job(session, *_args, **_kwargs) -> Job:
        board = session.board

        def work(progress, cancel):
            cancel.wait(20)
            if seen is not None:
                seen.append(board is not None and board.connected)
            check_cancel(cancel, "network calibration cancelled")

        return Job("network calibration", work, uses_board=True)

    monkeypatch.setattr(workflows, "network_calibration_job", job)


def test_cancel_follows_the_calibration_started_while_the_board_run_still_announces_its_end(make_window, qtbot, monkeypatch):
    # "Run test set" done (job.done), then "Calibrate network on board" at once: the run's late
    # "finished" reached the panel after the calibration had enabled Cancel and switched it off,
    # so Cancel did nothing for the whole calibration.
    window = make_window()
    panel = window.model_panel
    announcing, release = threading.Event(), threading.Event()

    def run_job(session, n_test=None, seed=0) -> Job:
        run = Job("board run", lambda progress, cancel: None, uses_board=True)
        # connected before the panel's relays: the run is done but announces its end only on release
        run.finished.connect(lambda _result: (announcing.set(), release.wait(10)))
        return run

    monkeypatch.setattr(workflows, "run_job", run_job)
    _held_network_calibration(monkeypatch)

    QTest.mouseClick(panel.run_button, LEFT)
    run = panel.job
    assert run is not None and run.name == "board run"
    qtbot.waitUntil(announcing.is_set, timeout=5_000)
    assert run.done
    QTest.mouseClick(panel.calibrate_network_button, LEFT)
    calibration = panel.job
    assert calibration is not run and calibration.name == "network calibration" and not calibration.done
    assert panel.cancel_button.isEnabled()
    release.set()
    # the run's worker has posted its "finished" to the panel once it is gone; a marker posted to
    # the GUI thread after that is delivered after it
    qtbot.waitUntil(lambda: not any(t.name == "neurolab-board run" for t in threading.enumerate()), timeout=5_000)
    delivered, marker = threading.Event(), Signal("marker")
    relay(marker, delivered.set, panel)
    marker.emit()
    qtbot.waitUntil(delivered.is_set, timeout=5_000)

    assert panel.cancel_button.isEnabled(), "the earlier run's end switched off the calibration's Cancel"
    assert panel.status.text() != "board run finished"
    QTest.mouseClick(panel.cancel_button, LEFT)
    assert calibration.is_cancelled
    qtbot.waitUntil(lambda: calibration.done, timeout=2_000)
    qtbot.waitUntil(lambda: panel.status.text() == "network calibration cancelled", timeout=2_000)
    assert not panel.cancel_button.isEnabled()
    assert window.reporter.errors == []


def test_closing_the_session_cancels_the_running_board_job_and_waits_for_its_restore(make_window, qtbot, monkeypatch):
    # session.close() (the window closing) during the network calibration closed the board under
    # it: the job ran on, and its restore failed on the closed board (DeviceGone).
    window = make_window(seed=3, clock="fast", acquire=False)
    panel, session = window.model_panel, window.session
    seen: list[bool] = []
    _held_network_calibration(monkeypatch, seen)
    QTest.mouseClick(panel.calibrate_network_button, LEFT)
    calibration = panel.job
    assert calibration is not None and calibration.name == "network calibration" and not calibration.done
    session.close()
    assert calibration.done and calibration.state == JobState.CANCELLED
    assert seen == [True], "the job's restore ran after the board was closed"
    assert session.board is None and session.board_jobs.running is None


def test_undoing_the_calibration_marks_the_deployment_whose_biases_it_took_back(make_window, qtbot):
    # Hostile calibration #7: one undo restored every bias of a finished network calibration, but
    # the deployment still said "calibrated here" while the board no longer held those biases.
    # The stand-in calibration writes the board the way the engine does (inside the bias model's
    # external step) and leaves its network as the session's deployment.
    window = make_window(seed=3, clock="fast", acquire=False)
    panel, session = window.model_panel, window.session
    board = session.board
    keys = [(0, 0, "IF_DC_P"), (0, 0, "IF_AHW_P")]
    with session.biases.external_step("calibration"):
        for chip, core, name in keys:
            value = board.get_bias(chip, core, name)
            board.set_bias(chip, core, name, value.replace(fine=(value.fine + 40) % 256, high=not value.high))
    calibrated = {k: session.biases.value(*k) for k in keys}
    note = "calibrated here: gain CV 25.5% -> 1.9%"
    units = [SimpleNamespace(chip=0, core=0, neuron=n) for n in range(12)]
    mapped = SimpleNamespace(unit_addresses=units, n_inputs=2, n_sources=3, group_cores=[(0, 0)])
    session.set_deployment(SimpleNamespace(serial=board.serial, board=board, notes=[note], mapped=mapped))
    qtbot.waitUntil(lambda: note in panel.deployment_label.text(), timeout=2_000)
    assert "changed since" not in panel.deployment_label.text()

    window.undo_action.trigger()
    assert all(session.biases.value(*k) != calibrated[k] for k in keys)
    qtbot.waitUntil(lambda: "2 biases changed since calibration" in panel.deployment_label.text(), timeout=2_000)
    assert session.deployment_bias_changes == 2
    window.redo_action.trigger()  # the calibrated biases are back: the deployment runs as written again
    assert session.deployment_bias_changes == 0
    qtbot.waitUntil(lambda: "changed since" not in panel.deployment_label.text(), timeout=2_000)
    assert note in panel.deployment_label.text()
