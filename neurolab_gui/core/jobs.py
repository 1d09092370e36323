"""Jobs: every long operation (training, conversion, calibration, a DC sweep) is run, reported and
cancelled one way, from the GUI, the CLI and scripts alike.

* :class:`CancelToken`: the one cancel flag.  It is a :class:`threading.Event`, so the ``cancel``
  parameter of every long call takes it; :meth:`CancelToken.check` raises
  :class:`~neurolab_gui.core.cancellation.Cancelled` once it is set.
* :class:`Progress`: the one progress report: a fraction in [0, 1], a message, the name of the
  current step, an ETA when one can be estimated, the chip time used, and intermediate results
  (``payload``, e.g. transfer curves as they are measured).
* :data:`ProgressSink`: what every long call's ``progress`` parameter is: any callable taking a
  :class:`Progress` (a job, a CLI printer, ``list.append``).  :func:`span` maps a part of the
  work into a sub-range of the fraction; :class:`ProgressReporter` adds the ETA, the chip time
  and a cancel check for calls that report named steps (the calibration engine).
* :class:`Job`: runs ``work(progress, cancel)`` on a worker thread and announces what happens on
  core :class:`~neurolab_gui.core.events.Signal` s: ``progress(Progress)``, ``log(str)``, then
  exactly one of ``finished(result)``, ``failed(exc)``, ``cancelled(exc)``.  The Qt layer relays
  them to the GUI thread (``neurolab_gui.qt.bridge.relay``); ``job.result()`` and ``await job``
  serve scripts and asyncio (qasync in the GUI).  An error is never swallowed: ``result()``
  re-raises it and ``failed`` carries it.
* :data:`USER_ERRORS`: the failures that are the user's input refused (a damaged checkpoint, a
  model the conversion cannot take, a missing file), as opposed to a fault of the code.  A job
  logs those at DEBUG only, since whoever waits on it reports the message (the CLI's
  ``error:`` line, ``neurolab_gui.cli.job_runner``; the app's error box); any other failure is
  logged at ERROR with its traceback, whoever waits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import math
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

from .cancellation import Cancelled
from .events import Signal

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Failures that mean "this input or setting is refused", with a message for the user, not a bug:
#: ``ValueError`` (the project's input errors derive from it: ``CheckpointError``,
#: ``ProfileError``, ``NIRImportError``, ``ImportRefused``, ``NonFiniteWeightsError``,
#: ``BiasFileError``, ``NetlistError``) and ``FileNotFoundError`` (a file the user named).
USER_ERRORS: tuple[type[Exception], ...] = (ValueError, FileNotFoundError)


class CancelToken(threading.Event):
    """The cancel flag of a long operation: ``cancel()`` asks, the work ``check()`` s.

    Being a :class:`threading.Event`, it is what every long call's ``cancel`` parameter takes.
    """

    #: Why the work was stopped, when someone other than the user stopped it (e.g. "the board was
    #: disconnected"); empty for the user's own Cancel.
    reason: str = ""

    def cancel(self, reason: str = "") -> None:
        """Ask the work to stop at its next check; ``reason``: why, when it is not the user's Cancel
        (the first reason given is kept)."""
        if reason and not self.is_set():
            self.reason = reason
        self.set()

    @property
    def cancelled(self) -> bool:
        return self.is_set()

    def check(self, message: str = "cancelled by the user") -> None:
        """Raise :class:`Cancelled` when cancellation was asked for."""
        if self.is_set():
            raise Cancelled(message)


def check_cancel(cancel: threading.Event | None, message: str = "cancelled by the user") -> None:
    """Raise :class:`Cancelled` when ``cancel`` (a :class:`CancelToken` or any event) is set."""
    if cancel is not None and cancel.is_set():
        raise Cancelled(message)


@dataclass(frozen=True)
class Progress:
    """One progress report.

    Attributes
    ----------
    fraction : overall progress in [0, 1]
    message : human-readable detail
    step : name of the current step (e.g. ``"measure transfer curves"``; empty when the work has none)
    eta_s : estimated wall-clock seconds left (nan until it can be estimated)
    chip_s : chip time used so far (0 where no board is involved)
    payload : intermediate results, e.g. ``{"curves": TransferCurves}`` as they are measured
    """

    fraction: float
    message: str = ""
    step: str = ""
    eta_s: float = float("nan")
    chip_s: float = 0.0
    payload: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        """``"step: message (ETA 12 s)"``, the parts that are known."""
        text = ": ".join(t for t in (self.step, self.message) if t)
        return f"{text} (ETA {self.eta_s:.0f} s)" if math.isfinite(self.eta_s) else text

    def line(self) -> str:
        """One line for a terminal: ``" 42.0% step: message (ETA 12 s)"``."""
        return f"{self.fraction:6.1%} {self.text()}"


#: The ``progress`` parameter of every long call.
ProgressSink = Callable[[Progress], None]


def span(sink: ProgressSink | None, lo: float, hi: float, step: str | None = None) -> ProgressSink | None:
    """A sink for a part of the work: its fractions in [0, 1] land in [lo, hi] of ``sink``.

    ``step`` (when given) names the part in the reports that reach ``sink``.  None stays None,
    so callers pass the result on without checking.
    """
    if sink is None:
        return None

    def report(event: Progress) -> None:
        sink(dataclasses.replace(event, fraction=lo + (hi - lo) * float(event.fraction), step=step or event.step))

    return report


@dataclass(frozen=True)
class CostPlan:
    """The parts of a long call, in order, each with its expected cost (seconds, or any one unit).

    A part's progress lands on its share of [0, 1] (:meth:`at`, :meth:`bounds`), so the fraction,
    and the ETA :class:`ProgressReporter` extrapolates from it, follow the work rather than the
    number of steps: a planning step that takes milliseconds no longer claims a tenth of the run.
    Parts of zero cost take no share; a plan whose costs are all zero shares [0, 1] equally.
    """

    costs: dict[str, float]

    @property
    def total(self) -> float:
        return float(sum(max(0.0, c) for c in self.costs.values()))

    def bounds(self, part: str) -> tuple[float, float]:
        """The part's ``(lo, hi)`` on [0, 1]; ``KeyError`` for a part the plan does not name."""
        if part not in self.costs:
            raise KeyError(f"no part {part!r} in the plan ({', '.join(self.costs)})")
        total = self.total
        weights = {name: (max(0.0, c) if total > 0 else 1.0) for name, c in self.costs.items()}
        scale = sum(weights.values())
        before = 0.0
        for name, weight in weights.items():
            if name == part:
                return before / scale, (before + weight) / scale
            before += weight
        raise AssertionError("unreachable")

    def at(self, part: str, local: float = 0.0) -> float:
        """The overall fraction when ``part`` is ``local`` (0-1) done."""
        lo, hi = self.bounds(part)
        return lo + (hi - lo) * min(1.0, max(0.0, float(local)))

    def span(self, sink: ProgressSink | None, part: str, step: str | None = None) -> ProgressSink | None:
        """:func:`span` of ``sink`` over ``part``'s share."""
        return span(sink, *self.bounds(part), step)


class _ChipClock(Protocol):
    chip_s: float


class ProgressReporter:
    """Reports named steps of a long call: ``report(fraction, step, message, **payload)``.

    Every report first checks the cancel token (raising ``cancelled_error``), keeps the fraction
    from going backwards, estimates the ETA (elapsed wall time scaled by the remaining fraction)
    and adds the chip time of ``board`` (a :class:`~.calibration.progress.MeteredBoard`), then
    hands a :class:`Progress` to ``sink``.  Before any fraction is done the ETA can only come
    from the work's own plan: a report whose payload holds ``planned_s`` (the seconds the work
    expects to take from then on) sets it, and it counts down until the fraction tells more.
    """

    def __init__(self, sink: ProgressSink | None, cancel: threading.Event | None, board: _ChipClock | None = None,
                 cancelled_error: type[Cancelled] = Cancelled, cancel_message: str = "cancelled by the user") -> None:
        self.sink = sink
        self.cancel = cancel
        self.board = board
        self.cancelled_error = cancelled_error
        self.cancel_message = cancel_message
        self.t0 = time.perf_counter()
        self.fraction = 0.0
        self._planned_end_s: float | None = None  # elapsed time the plan expects the work to end at

    def check(self) -> None:
        """Raise ``cancelled_error`` when the cancel token is set."""
        if self.cancel is not None and self.cancel.is_set():
            raise self.cancelled_error(self.cancel_message)

    def __call__(self, fraction: float, step: str, message: str = "", **payload: Any) -> None:
        self.emit(Progress(float(fraction), message, step, payload=dict(payload)))

    def emit(self, event: Progress) -> None:
        """Forward ``event`` (fraction already on this reporter's scale) with ETA and chip time."""
        self.check()
        self.fraction = min(1.0, max(self.fraction, float(event.fraction)))
        elapsed = time.perf_counter() - self.t0
        planned = event.payload.get("planned_s")
        if isinstance(planned, (int, float)) and math.isfinite(planned) and planned >= 0:
            self._planned_end_s = elapsed + float(planned)
        if self.fraction > 1e-3:
            eta = elapsed * (1.0 - self.fraction) / self.fraction
        elif self._planned_end_s is not None:
            eta = max(0.0, self._planned_end_s - elapsed)
        else:
            eta = float("nan")
        if self.sink is not None:
            chip_s = self.board.chip_s if self.board is not None else event.chip_s
            self.sink(dataclasses.replace(event, fraction=self.fraction, eta_s=eta, chip_s=chip_s))

    def span(self, lo: float, hi: float, step: str) -> ProgressSink:
        """A sink for a sub-call (e.g. the conversion's training) mapped into [lo, hi] as ``step``."""

        def report(event: Progress) -> None:
            self.emit(dataclasses.replace(event, fraction=lo + (hi - lo) * float(event.fraction), step=step))

        return report


class JobState(StrEnum):
    """Where a :class:`Job` is: pending (not started), running, then finished, failed or cancelled."""

    PENDING = "pending"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"


Work = Callable[[ProgressSink, CancelToken], T]


class Job(Generic[T]):
    """Run ``work(progress, cancel)`` on a daemon thread; subscribe to its signals before :meth:`start`.

    Signals
    -------
    progress(Progress) : every report of the work, with the job's own ETA
    log(str) : a line when the job starts, enters a new step and ends (also sent to :mod:`logging` at DEBUG)
    finished(result), failed(exc), cancelled(exc) : exactly one of them, once

    ``progress`` passed to the work raises :class:`Cancelled` once :meth:`cancel` was called, so
    work that reports progress stops at its next report even where it does not check ``cancel``.
    Work that returns although cancellation was asked for counts as cancelled (its result is kept
    and returned by :meth:`result`).
    """

    def __init__(self, name: str, work: Work[T], uses_board: bool = False) -> None:
        self.name = name
        #: The job drives the session's board: start it through :class:`JobSlot` (``session.board_jobs``).
        self.uses_board = uses_board
        self._work = work
        self.cancel_token = CancelToken()
        self._future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._thread: threading.Thread | None = None
        self.state = JobState.PENDING
        self.progress = Signal(f"{name} progress")
        self.log = Signal(f"{name} log")
        self.finished = Signal(f"{name} finished")
        self.failed = Signal(f"{name} failed")
        self.cancelled = Signal(f"{name} cancelled")
        self.last_progress = Progress(0.0)
        self._reporter = ProgressReporter(self._deliver, self.cancel_token, cancel_message=f"{name} cancelled")

    # --- control ---------------------------------------------------------------------------------
    def start(self) -> Job[T]:
        if self._thread is not None:
            raise RuntimeError(f"job {self.name!r} already started")
        self.state = JobState.RUNNING
        self._thread = threading.Thread(target=self._run, name=f"neurolab-{self.name}", daemon=True)
        self._say(f"{self.name} started")
        self._reporter.t0 = time.perf_counter()
        self._thread.start()
        return self

    def cancel(self, reason: str = "") -> None:
        """Ask the work to stop (at its next progress report or cancel check).

        ``reason`` says why when it is not the user's Cancel: the job then ends as
        ``"<name> stopped: <reason>"`` (:attr:`cancel_outcome`) instead of ``"<name> cancelled"``.
        """
        self.cancel_token.cancel(reason)

    @property
    def cancel_outcome(self) -> str:
        """How a cancelled job ended, for a status line: ``"cancelled"`` or ``"stopped: <reason>"``."""
        reason = self.cancel_token.reason
        return f"stopped: {reason}" if reason else "cancelled"

    @property
    def is_cancelled(self) -> bool:
        return self.cancel_token.is_set()

    @property
    def owner(self) -> threading.Thread | None:
        """The thread the work runs on (None before :meth:`start`): the board-using workflows it
        calls find the slot its own (:meth:`JobSlot.claimed`)."""
        return self._thread

    @property
    def done(self) -> bool:
        return self._future.done()

    def result(self, timeout: float | None = None) -> T:
        """Block until done; the result, or the work's exception (:class:`Cancelled` when cancelled) raised."""
        return self._future.result(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds (None: for ever) for the work to end; True when it has."""
        concurrent.futures.wait([self._future], timeout)
        return self.done

    def __await__(self):
        return asyncio.wrap_future(self._future).__await__()

    def events(self) -> AsyncIterator[Progress]:
        """The progress reports from now until the job ends, for ``async for`` (then see :meth:`result`)."""
        inbox: queue.Queue[Progress | None] = queue.Queue()

        def end(*_: object) -> None:
            inbox.put(None)

        self.progress.connect(inbox.put)
        for signal in (self.finished, self.failed, self.cancelled):
            signal.connect(end)
        if self.done:
            end()

        async def stream() -> AsyncIterator[Progress]:
            loop = asyncio.get_running_loop()
            try:
                while (event := await loop.run_in_executor(None, inbox.get)) is not None:
                    yield event
            finally:
                self.progress.disconnect(inbox.put)
                for signal in (self.finished, self.failed, self.cancelled):
                    signal.disconnect(end)
                inbox.put(None)  # a consumer that stopped early leaves no executor thread blocked on get()

        return stream()

    # --- the worker thread ---------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        log.debug("%s", text)  # the log signal is what subscribers show; logging keeps a debug trace
        self.log.emit(text)

    def _deliver(self, event: Progress) -> None:
        if event.step and event.step != self.last_progress.step:
            self._say(f"{self.name}: {event.step}")
        self.last_progress = event
        self.progress.emit(event)

    def _run(self) -> None:
        try:
            result = self._work(self._reporter.emit, self.cancel_token)
        except Cancelled as exc:
            self._end(JobState.CANCELLED, f"{self.name} {self.cancel_outcome}", exc=exc)
            return
        except BaseException as exc:
            if self.cancel_token.reason and isinstance(exc, ConnectionError):
                # Stopped because its resource was taken away (the board disconnected by the user)
                # and the work met the closed board before its next cancel check: that is the
                # stop that was asked for, not a failure (DeviceGone is a ConnectionError).
                log.debug("job %s met its closed resource after being stopped: %s", self.name, exc)
                self._end(JobState.CANCELLED, f"{self.name} {self.cancel_outcome}", exc=Cancelled(f"{self.name} {self.cancel_outcome}"))
                return
            if isinstance(exc, USER_ERRORS):
                # refused input: the message is the report, and whoever waits on the job gives it
                # (result() re-raises it, failed carries it); the traceback is only for debugging
                log.debug("job %s refused its input", self.name, exc_info=True)
            else:  # a fault of the code: its traceback is logged whether or not anyone waits
                log.exception("job %s failed", self.name)
            self._end(JobState.FAILED, f"{self.name} failed: {exc}", exc=exc)
            return
        if self.cancel_token.is_set():
            self._end(JobState.CANCELLED, f"{self.name} {self.cancel_outcome}", result=result)
        else:
            self._end(JobState.FINISHED, f"{self.name} finished", result=result)

    def _end(self, state: JobState, text: str, result: Any = None, exc: BaseException | None = None) -> None:
        self.state = state
        self._say(text)
        if exc is not None:
            self._future.set_exception(exc)
        else:
            self._future.set_result(result)
        if state == JobState.FINISHED:
            self.finished.emit(result)
        elif state == JobState.FAILED:
            self.failed.emit(exc)
        else:
            self.cancelled.emit(exc if exc is not None else Cancelled(f"{self.name} {self.cancel_outcome}"))


class BoardBusy(RuntimeError):
    """A job that needs the board was refused: another one is running on it."""


class SlotHold:
    """The slot held by work that is not a :class:`Job` (the robot's closed loop, on its own thread).

    Held from :meth:`JobSlot.hold` until :meth:`release`; ``name`` and ``done`` are what the slot
    asks of a :class:`Job`.
    """

    def __init__(self, name: str, owner: threading.Thread | None = None) -> None:
        self.name = name
        #: The thread whose calls the hold covers (:meth:`JobSlot.claimed`); None: no thread's (the
        #: robot's loop claims the slot on one thread and drives the board on another).
        self.owner = owner
        self._released = threading.Event()

    @property
    def done(self) -> bool:
        return self._released.is_set()

    def release(self) -> None:
        """Give the slot back (idempotent)."""
        self._released.set()


class JobSlot:
    """One job at a time on a shared resource: the session's board (``session.board_jobs``).

    Two jobs driving one board at once (a sweep and a calibration writing the same core's biases,
    a deployment under a sweep, the robot's closed loop under either) would spoil each other's
    measurements, so every board job, from any panel or script, is started through :meth:`start`,
    work that runs on its own thread claims the slot with :meth:`hold`, and a board-using workflow
    called directly (a script's ``run_deployed``) claims it for its call with :meth:`claimed`; each
    refuses while another holder is not done.

    Parameters
    ----------
    resource : what the jobs share, for the refusal's message
    """

    def __init__(self, resource: str = "the board") -> None:
        self.resource = resource
        self._lock = threading.Lock()
        self._job: Job | SlotHold | None = None

    @property
    def running(self) -> Job | SlotHold | None:
        """The job or hold that has the slot (claimed and not done), or None."""
        job = self._job
        return job if job is not None and not job.done else None

    def _claim(self, holder: Job | SlotHold) -> None:
        with self._lock:
            running = self.running
            if running is not None:
                raise BoardBusy(f"a {running.name} is running on {self.resource}; cancel it first")
            self._job = holder

    def hold(self, name: str) -> SlotHold:
        """Claim the slot for work that is not a :class:`Job`; it is free again after ``release()``.

        Raises
        ------
        BoardBusy
            another job or hold has the slot; nothing was claimed.
        """
        holder = SlotHold(name)
        self._claim(holder)
        return holder

    @contextlib.contextmanager
    def claimed(self, name: str) -> Iterator[None]:
        """Hold the slot for the ``with`` block, for work called directly on this thread.

        What every board-using workflow does around its work (:mod:`~neurolab_gui.core.workflows`,
        the sweep): called from a script, it claims the slot as :meth:`start` does for a job, so a
        second call from another thread, or one while a job runs, is refused with
        :class:`BoardBusy` instead of sharing the board (two runs at once overwrote each other's
        spike generator program; one reported accuracy 0.0).  Inside the job that runs it, or
        inside another claimed call on the same thread, the slot is already this thread's: the
        block runs without claiming again, so a job never refuses or waits on itself.

        Raises
        ------
        BoardBusy
            another thread's job or hold has the slot; the block did not run.
        """
        running = self.running
        if running is not None and running.owner is threading.current_thread():
            yield
            return
        holder = SlotHold(name, threading.current_thread())
        self._claim(holder)
        try:
            yield
        finally:
            holder.release()

    def cancel_running(self, timeout: float, reason: str = "") -> bool:
        """Cancel the job that has the slot and wait up to ``timeout`` seconds for its work to end
        (a board job restores the board when cancelled, so whoever closes the board waits for it).

        ``reason``: why it is stopped, when not by the user's Cancel (see :meth:`Job.cancel`).
        A :class:`SlotHold` is its owner's to release (the robot's loop stops with the robot).
        Returns True when no job runs any more.
        """
        job = self.running
        if isinstance(job, Job):
            job.cancel(reason)
            job.wait(timeout)
        return not isinstance(self.running, Job)

    def start(self, job: Job[T], prepare: Callable[[], None] | None = None) -> Job[T]:
        """Claim the slot for ``job``, call ``prepare()`` (e.g. a panel hooking the job's signals), start it.

        Raises
        ------
        BoardBusy
            another job holds the slot ("a sweep is running on the board; cancel it first");
            nothing was called or started.
        """
        self._claim(job)
        try:
            if prepare is not None:
                prepare()
            return job.start()
        except BaseException:
            with self._lock:
                if self._job is job:
                    self._job = None
            raise


def run_in_foreground(job: Job[T], sink: ProgressSink | None = None) -> T:
    """Start ``job``, hand its progress (with the job's ETA) to ``sink`` and wait for its result.

    What the CLI does with a long operation: Ctrl-C cancels the job and waits for its work to stop
    (then :class:`Cancelled` is raised), so the work can leave the board in a known state.
    """
    if sink is not None:
        job.progress.connect(sink)
    job.start()
    try:
        return job.result()
    except KeyboardInterrupt:
        job.cancel()
        return job.result()
