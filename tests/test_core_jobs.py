"""The one job model: a job delivers its progress and result, honours cancel, and reports failures."""

from __future__ import annotations

import math
import threading

import pytest

from neurolab_gui.core.cancellation import Cancelled
from neurolab_gui.core.jobs import CancelToken, Job, JobState, Progress, ProgressReporter, span


def _follow(job: Job) -> dict[str, list]:
    """Subscribe to every signal of ``job`` (before it starts) and collect what arrives."""
    seen: dict[str, list] = {"progress": [], "log": [], "finished": [], "failed": [], "cancelled": []}
    for name, values in seen.items():
        getattr(job, name).connect(lambda *args, values=values: values.append(args[0] if args else None))
    return seen


def test_progress_and_result_reach_the_subscribers_in_order():
    def work(progress, cancel):
        for k in range(1, 4):
            progress(Progress(k / 4, f"part {k}", step="counting"))
        return "done"

    job = Job("count", work)
    seen = _follow(job)
    assert job.start().result(timeout=10) == "done"
    assert [p.fraction for p in seen["progress"]] == [0.25, 0.5, 0.75]
    assert [p.message for p in seen["progress"]] == ["part 1", "part 2", "part 3"]
    assert all(math.isfinite(p.eta_s) and p.eta_s >= 0 for p in seen["progress"])  # the job estimates the time left
    assert seen["finished"] == ["done"] and seen["failed"] == [] and seen["cancelled"] == []
    assert seen["log"] == ["count started", "count: counting", "count finished"]
    assert job.state == JobState.FINISHED and job.last_progress.message == "part 3"


def test_cancel_stops_work_that_reports_progress_at_its_next_report():
    started, iterations = threading.Event(), []

    def work(progress, cancel):
        for k in range(100_000):  # never checks the token itself
            iterations.append(k)
            progress(Progress(k / 100_000, "busy"))
            started.set()
            threading.Event().wait(0.001)
        return "ran to the end"

    job = Job("busy", work)
    seen = _follow(job)
    job.start()
    assert started.wait(10)
    job.cancel()
    with pytest.raises(Cancelled, match="busy cancelled"):
        job.result(timeout=10)
    assert len(iterations) < 100_000
    assert len(seen["cancelled"]) == 1 and isinstance(seen["cancelled"][0], Cancelled)
    assert seen["finished"] == [] and seen["failed"] == [] and job.state == JobState.CANCELLED


def test_cancel_reaches_work_that_only_checks_the_token():
    def work(progress, cancel: CancelToken):
        while not cancel.wait(0.01):
            pass
        cancel.check("stopped on request")

    job = Job("waiting", work).start()
    job.cancel()
    with pytest.raises(Cancelled, match="stopped on request"):
        job.result(timeout=10)


def test_a_failure_is_reported_once_and_raised_by_result():
    def work(progress, cancel):
        progress(Progress(0.5, "half way"))
        raise ValueError("bias file names an unknown bias")

    job = Job("broken", work)
    seen = _follow(job)
    with pytest.raises(ValueError, match="unknown bias"):
        job.start().result(timeout=10)
    assert [type(e) for e in seen["failed"]] == [ValueError] and seen["finished"] == seen["cancelled"] == []
    assert seen["log"][-1] == "broken failed: bias file names an unknown bias"


def test_a_job_starts_once():
    job = Job("once", lambda progress, cancel: None).start()
    job.result(timeout=10)
    with pytest.raises(RuntimeError, match="already started"):
        job.start()


def test_spans_and_the_reporter_map_parts_onto_the_whole():
    seen: list[Progress] = []
    report = ProgressReporter(seen.append, CancelToken())
    report(0.1, "prepare", "first")
    inner = span(report.span(0.5, 1.0, "train"), 0.0, 0.5)  # the first half of the second half
    inner(Progress(1.0, "epoch 1/1"))
    report(0.3, "late report")  # never goes backwards
    assert [(p.fraction, p.step, p.message) for p in seen] == [(0.1, "prepare", "first"), (0.75, "train", "epoch 1/1"),
                                                              (0.75, "late report", "")]
    assert span(None, 0.0, 1.0) is None
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        ProgressReporter(seen.append, cancel)(0.9, "after cancel")
    assert len(seen) == 3  # nothing reported once cancelled


def test_the_eta_counts_down_a_planned_duration_until_the_fraction_tells_more():
    """Issue 16: an ETA from the first second.  A network calibration's fraction stays 0 until its
    first probe run ends (seconds on silicon); its plan says how long it expects to take."""
    seen: list[Progress] = []
    clock = [100.0]
    report = ProgressReporter(seen.append, CancelToken())
    report.t0 = clock[0]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("neurolab_gui.core.jobs.time.perf_counter", lambda: clock[0])
        report(0.0, "start")  # no plan yet: unknown
        report.emit(Progress(0.0, "planned: about 30 s", "plan", payload={"planned_s": 30.0}))
        clock[0] += 4.0
        report(0.0, "tune time constants")  # still nothing done: the plan, counted down
        clock[0] += 6.0
        report(0.5, "halfway")  # 10 s for half: the work's own pace from now on
    etas = [p.eta_s for p in seen]
    assert math.isnan(etas[0]) and etas[1:] == [30.0, 26.0, 10.0]


def test_progress_lines_for_the_terminal():
    assert Progress(0.5, "epoch 3/6", "train").line() == " 50.0% train: epoch 3/6"
    assert Progress(0.25, "round 1", eta_s=12.4).text() == "round 1 (ETA 12 s)"


def test_ctrl_c_cancels_the_clis_training_job_and_writes_no_checkpoint(tmp_path):
    """``neurolab train`` runs its work as a job: SIGINT cancels it cleanly (exit 130, no checkpoint)."""
    import signal
    import subprocess
    import sys

    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "task.npz", x=rng.random((64, 6, 3)), labels=rng.integers(0, 2, 64))
    out = tmp_path / "model.pt"
    cmd = [sys.executable, "-c", "import sys; from neurolab_gui.cli import main; sys.exit(main(sys.argv[1:]))",
           "train", "--task", str(tmp_path / "task.npz"), "--epochs", "100000", "--hidden", "4", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in proc.stdout:  # wait until the training reports its first epoch
            lines.append(line)
            if "epoch 1/100000" in line:
                break
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, "".join(lines) + rest
    assert "training cancelled; no checkpoint written" in rest
    assert not out.exists()


def test_an_async_consumer_may_give_up_waiting_without_hanging_its_loop():
    import asyncio

    job = Job("quiet", lambda progress, cancel: cancel.wait(60))  # reports nothing for a long time

    async def give_up() -> None:
        events = job.events()
        job.start()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(anext(events), 0.1)

    finished = threading.Event()
    threading.Thread(target=lambda: (asyncio.run(give_up()), finished.set()), daemon=True).start()
    assert finished.wait(20)  # asyncio.run joins its executor: no thread may be left waiting for an event
    job.cancel()
    job.result(timeout=10)
    assert job.state == JobState.CANCELLED
