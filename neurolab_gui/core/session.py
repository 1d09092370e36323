"""The application session: one object that holds everything the GUI, console and scripts share.

A :class:`Session` owns the connection (board choice, acquisition), the bias
model, the spike and membrane monitors, the stimulus controller, the recorder
and the loaded model / conversion / calibration state, and wires them together:

* a newly connected board is attached to the bias model (its biases fill the
  sliders) and the membrane monitor, and the spike buffer starts afresh;
* every event batch goes first to the recorder (while recording), then to the spike
  monitor: a monitor that raises on a batch can never cost the recording that batch;
* every bias change goes to the recorder's bias log; connecting, unplugging and
  reconnecting are marked in the recording (a reconnect starts a new epoch: a new board clock).

It is the ``session`` object of the GUI's console.  It never imports Qt.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from drivers.arguments import boolean, non_negative_int
from drivers.dynapse1.board_api import Board
from drivers.dynapse1.spikes import SpikeEvents

from .bias_model import BiasChange, BiasModel
from .boards import MAX_EMULATOR_SEED
from .connection import EMULATOR, BoardOpener, ConnectionManager, ConnectionTarget, open_board
from .events import Signal
from .jobs import Job, JobSlot
from .monitors import MembraneMonitor, SpikeMonitor
from .recording import Recorder, RecorderStatus
from .robot_session import RobotSession
from .session_file import MEMBRANE_COLUMNS, MEMBRANE_STREAM, SessionFile
from .session_stimulus import StimulusController

log = logging.getLogger(__name__)

#: Sessions that connected a board (weakly); those still open at interpreter exit are closed then.
_CONNECTED: weakref.WeakSet[Session] = weakref.WeakSet()
_CONNECTED_LOCK = threading.Lock()


def _close_sessions_at_exit() -> None:
    """``atexit``: close every session a script left open (its board, job and recording).

    Its acquisition and reader threads are daemon threads, which the interpreter would freeze
    wherever they are, and an emulator's child process would be terminated under its open board.
    """
    with _CONNECTED_LOCK:
        sessions = list(_CONNECTED)
    for session in sessions:
        if session.board is None and session.recorder is None:
            continue
        try:
            # the recorder's own exit hook (it runs next) waits for the writers, once, bounded
            session.close(recording_wait=False)
        except Exception:  # the others must still close; at exit nobody else can report it
            log.exception("closing a session left open at exit failed")


def _close_at_exit(session: Session) -> None:
    """Have ``session`` closed at interpreter exit if it is still open then."""
    with _CONNECTED_LOCK:
        _CONNECTED.add(session)
        # moved to the end at every connect: atexit runs the last registered hook first, so this
        # runs before the hooks of modules the connect imported (multiprocessing's, which ends an
        # emulator's child process; the recorder's, which a close would otherwise wait on)
        atexit.unregister(_close_sessions_at_exit)
        atexit.register(_close_sessions_at_exit)


class Session:
    """Everything one NeuroLab window works on.

    Parameters
    ----------
    opener : how boards are opened (default: emulator or pyusb driver)
    spike_capacity : events kept in the live ring buffer (bounded memory)

    Notes
    -----
    Close a session when done: :meth:`close`, or ``with Session() as s:``, which closes it also
    when the block raises.  Garbage collection never closes a connected session (its acquisition
    thread keeps it alive); one still open when the interpreter exits is closed then (its board
    job stopped, its recording finished, its board closed), before the interpreter tears down
    the threads and libraries those use.
    """

    def __init__(self, opener: BoardOpener = open_board, spike_capacity: int = 4_000_000) -> None:
        self.connection = ConnectionManager(opener)
        #: The board's one job at a time (sweep, calibration, deployment, board run): start board
        #: jobs with ``session.board_jobs.start(job)``, which refuses a second one.
        self.board_jobs = JobSlot("the board")
        self.biases = BiasModel()
        self.spikes = SpikeMonitor(spike_capacity)
        self.membrane = MembraneMonitor()
        self.stimulus = StimulusController(lambda: self.board, lambda: self.spikes.ring.latest_us, self.record_input, self.mark)
        #: The PushBot robot: connect, watch, drive, close the loop through :attr:`board`.
        self.robot = RobotSession(self)
        self._recorder: Recorder | None = None
        #: The recording being replayed as the event source (instead of a board), if any.
        self.replay: Any = None
        self._replay_lock = threading.Lock()
        self._replay_pending: object | None = None  # open_recording_in_background's, until the board closed
        #: The recorder that was stopped last (its writer may still be finishing the file).
        self.last_recorder: Recorder | None = None
        # reentrant: recording_changed is emitted under it, and a handler may start or stop a recording
        self._recorder_lock = threading.RLock()
        #: Run emulated boards in a child process (the desktop app does; scripts and tests that
        #: inspect the simulator directly keep it in-process).  The child is started with the
        #: ``spawn`` method, which runs the main script's top level again in the child: a script
        #: that sets this must keep its code under ``if __name__ == "__main__":``.
        self.emulator_in_separate_process = False
        #: The loaded or trained network (conversion pipeline object), if any.
        self.model: Any = None
        #: The data set (``conversion.tasks.Task``) the model is trained and evaluated on, if loaded.
        self.task: Any = None
        #: The latest conversion result (mapping, quantised weights, stage accuracies), if any.
        self.conversion: Any = None
        #: ``recording_changed(path or None)`` when recording started (path) or stopped (None).
        self.recording_changed = Signal("recording changed")
        #: ``replay_changed(replay source or None)`` when a recording was opened for replay or closed.
        self.replay_changed = Signal("replay changed")
        #: ``recording_finished(path, error or None)`` when a stopped recording's file is complete
        #: (from the writer thread, well under a second after the stop).
        self.recording_finished = Signal("recording finished")
        #: ``model_changed(model)`` when a network was loaded or trained.
        self.model_changed = Signal("model changed")
        #: ``conversion_changed(result)`` when a conversion or calibration produced new results.
        self.conversion_changed = Signal("conversion changed")
        #: The network as written on the connected board (``conversion.deployment.Deployment``), if any.
        self.deployment: Any = None
        #: What the last network calibration from the app found (gain CV, accuracy and chip time
        #: before/after, the profile's path), or None.
        self.calibration_summary: dict | None = None
        #: ``deployment_changed(deployment or None)`` when a network was written on the board (None: gone).
        self.deployment_changed = Signal("deployment changed")
        #: ``deployment_biases_changed(n)`` when the number of biases that differ from those
        #: :attr:`deployment` was written with changes (an undo, a redo or an edit since; 0: they
        #: match again).  Undoing a calibration restores the biases, not the network it wrote.
        self.deployment_biases_changed = Signal("deployment biases changed")
        self._deployed_biases: dict = {}  # the bias table when the deployment was written
        self._deployment_drift: set = set()  # keys whose value differs from it now
        self._deployment_lock = threading.Lock()

        self.connection.connected.connect(self._on_connected)
        self.connection.disconnected.connect(self._on_disconnected)
        self.connection.events.connect(self._on_events)
        self.biases.changed.connect(self._on_bias_change)
        self.membrane.samples.connect(self._on_membrane_samples)

    # --- board ------------------------------------------------------------------------
    @property
    def board(self) -> Board | None:
        """The connected board, or None."""
        return self.connection.board

    #: Why the board closes when a recording is opened (the connection's status message).
    REPLAY_REASON = "replaying a recording"

    def open_recording(self, path: str | Path, salvage: bool = False):
        """Replay a session file as the event source: closes the board, returns the paused
        :class:`~neurolab_gui.core.replay.ReplaySource` (also ``session.replay``).  ``salvage``
        opens a file with missing or damaged segments without them (``SessionFile(path, salvage=True)``).

        The file is opened and checked before anything is closed: a file that is not a
        readable recording raises ``ValueError``/``OSError`` and leaves the board, its
        deployment and any running replay as they were.  A running board job is stopped first,
        as by :meth:`disconnect`.  Blocks while the board closes (scripts; the GUI uses
        :meth:`open_recording_in_background`).
        """
        file = self._recording_to_open(path, salvage)
        self._stop_board_job(5.0)
        self.connection.disconnect(self.REPLAY_REASON)
        return self._start_replay(file)

    def open_recording_in_background(self, path: str | Path, salvage: bool = False) -> Future:
        """:meth:`open_recording` without holding the caller while the board closes (File → Open
        recording); a future of the :class:`~neurolab_gui.core.replay.ReplaySource`.

        The file is checked at once (a bad one raises here, and nothing is closed).  The board is
        closed as :meth:`disconnect_in_background` closes it (its running job ends as stopped by the
        disconnect and restores the board first), and the replay opens once it is closed, announced
        by ``replay_changed``.  Without a board the replay is open when this returns.  A Connect,
        another recording opened or the session closed meanwhile supersede it: the future's result
        is then None and nothing opens.
        """
        file = self._recording_to_open(path, salvage)
        token = object()
        with self._replay_lock:
            self._replay_pending = token
        opened: Future = Future()

        def start(closed: Future) -> None:
            try:
                closed.result()  # a board that failed to close: the replay must not feed beside it
                opened.set_result(self._start_replay(file, token))
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits, and logged for the user
                log.error("could not open the recording %s: %s", file.path, exc, exc_info=exc)
                opened.set_exception(exc)

        self.disconnect_in_background(reason=self.REPLAY_REASON).add_done_callback(start)
        return opened

    def _recording_to_open(self, path: str | Path, salvage: bool = False) -> SessionFile:
        """Check that ``path`` may be replayed now and open it; closes the running replay."""
        if self._recorder is not None:
            raise RuntimeError(f"stop recording to {self._recorder.path} before opening a recording to replay")
        # raises on a bad, missing or foreign file, a damaged index or epoch table included
        # (SessionFile's own checks): nothing closed yet
        file = SessionFile(path, salvage=salvage)
        self.close_replay()
        return file

    def _start_replay(self, file: SessionFile, token: object | None = None):
        """Replay ``file`` (the board is closed); None when a later call superseded ``token``."""
        from .replay import ReplaySource

        self.spikes.reset_invalid_count()
        replay = ReplaySource(self, file)
        with self._replay_lock:
            # a Connect (its connected handler), another open or close_replay since: not ours any more
            current = token is None or (self._replay_pending is token and self.board is None)
            if current:  # the membrane monitor follows under the lock, so a close meanwhile detaches it
                self._replay_pending = None
                self.replay = replay
                self.membrane.attach(replay.membrane)
                for chip, core, neuron in replay.membrane.recorded:
                    self.membrane.select(chip, core, neuron)
        if not current:
            replay.close()
            return None
        self.replay_changed.emit(replay)
        return replay

    def close_replay(self) -> None:
        with self._replay_lock:
            self._replay_pending = None  # a replay still waiting for its board to close is not opened
            replay, self.replay = self.replay, None
            if replay is not None:
                self.membrane.detach()
        if replay is not None:
            replay.close()
            self.replay_changed.emit(None)

    def connect(self, board: str = EMULATOR, seed: int = 0, mismatch: bool = True, clock: str = "realtime", acquire: bool = True) -> bool:
        """Connect to ``"emulator"`` or a board serial; False (and an ``error`` status) if it cannot be opened.

        Arguments that are no valid request raise ``ValueError`` at once, before anything is
        closed or opened: ``seed`` must be an integer in 0..:data:`~.boards.MAX_EMULATOR_SEED`
        (its serial ``EMU<seed>`` must name the emulator again) and ``mismatch`` a bool
        (``bool("no")`` is True).  An unknown ``board`` or ``clock`` is a board that cannot be
        opened: False with the status.
        """
        seed = non_negative_int("seed", seed)
        if seed > MAX_EMULATOR_SEED:
            raise ValueError(f"seed must lie in 0..{MAX_EMULATOR_SEED}, got {seed}")
        mismatch = boolean("mismatch", mismatch)
        self.close_replay()
        target = ConnectionTarget(board, seed, mismatch, clock, separate_process=self.emulator_in_separate_process)
        return self.connection.connect(target, acquire=acquire)

    #: How a board job stopped by a disconnect ends: "<job> stopped: the board was disconnected".
    DISCONNECT_STOP_REASON = "the board was disconnected"

    def disconnect(self, job_wait_s: float = 5.0) -> None:
        """Stop the board's running job (waiting up to ``job_wait_s`` for it to restore the board,
        as :meth:`close` does), then close the board; blocks (scripts; the GUI uses
        :meth:`disconnect_in_background`)."""
        self._stop_board_job(job_wait_s)
        self.connection.disconnect()

    def disconnect_in_background(self, job_wait_s: float = 5.0, reason: str = "closed by user") -> Future:
        """:meth:`disconnect` without holding the caller (the GUI's Disconnect button): returns at
        once, the status turns ``disconnecting``, and a worker stops the running board job, waits for
        it (at most ``job_wait_s``) and closes the board.  The job ends as stopped by the disconnect
        (``"deployment stopped: the board was disconnected"``), not as a failure.  A future of None."""
        job = self.board_jobs.running
        if isinstance(job, Job):  # asked now, so the job stops while the worker starts
            job.cancel(self.DISCONNECT_STOP_REASON)
        return self.connection.disconnect_in_background(reason, before_close=lambda: self._stop_board_job(job_wait_s))

    def _stop_board_job(self, wait_s: float) -> None:
        """Cancel the board's running job as stopped by a disconnect and wait up to ``wait_s`` for it."""
        if not self.board_jobs.cancel_running(wait_s, self.DISCONNECT_STOP_REASON):
            running = self.board_jobs.running
            log.warning("the %s did not stop within %.0f s of its cancel; closing the board under it",
                        getattr(running, "name", "board job"), wait_s)

    def _on_connected(self, board: Board) -> None:
        _close_at_exit(self)  # after the open, which may have imported modules with exit hooks of their own
        self.close_replay()  # a live board replaces the replayed recording (or one about to open) as the source
        recorder = self._recorder
        if recorder is not None:
            recorder.mark("connected", f"board {getattr(board, 'serial', '')} connected", new_epoch=True)
        self.spikes.clear()
        self.spikes.reset_invalid_count()
        self.biases.attach(board)
        self.membrane.attach(board)

    def _on_disconnected(self, reason: str) -> None:
        self.spikes.clock.stop()  # the board's time no longer advances: the raster stays where it was
        recorder = self._recorder
        if recorder is not None:
            recorder.mark("unplugged" if reason == "unplugged" else "disconnected", reason)
        self.biases.detach()
        self.membrane.detach()
        if self.deployment is not None:  # the network left with the board
            self.set_deployment(None)

    def _on_events(self, batch: SpikeEvents) -> None:
        recorder = self._recorder
        if recorder is not None:  # first: the recorder only queues, and must not depend on the views
            recorder.record_spikes(batch)
        self.spikes.on_events(batch)

    def _on_membrane_samples(self, chip: int, core: int, neuron: int, t_us, volts) -> None:
        recorder = self._recorder
        if recorder is not None and self.replay is None:
            n = len(t_us)
            recorder.append(MEMBRANE_STREAM, {"t_us": t_us, "chip": [chip] * n, "core": [core] * n, "neuron": [neuron] * n, "v": volts})

    def _on_bias_change(self, change: BiasChange) -> None:
        recorder = self._recorder
        if recorder is not None:
            recorder.record_bias_change(change)
        if self.deployment is not None:
            self._track_deployment_bias(change)

    def _track_deployment_bias(self, change: BiasChange) -> None:
        """Count the biases that no longer hold the value the deployment was written with."""
        with self._deployment_lock:
            deployed = self._deployed_biases.get(change.key)
            if deployed is None:
                return
            before = len(self._deployment_drift)
            if change.new == deployed:
                self._deployment_drift.discard(change.key)
            else:
                self._deployment_drift.add(change.key)
            n = len(self._deployment_drift)
        if n != before:
            self.deployment_biases_changed.emit(n)

    @property
    def deployment_bias_changes(self) -> int:
        """How many biases differ from those :attr:`deployment` was written with (0: none, or nothing deployed)."""
        return len(self._deployment_drift)

    # --- model state ------------------------------------------------------------------
    def set_model(self, model: Any) -> None:
        self.model = model
        self.model_changed.emit(model)

    def set_conversion(self, result: Any) -> None:
        self.conversion = result
        self.conversion_changed.emit(result)

    def set_deployment(self, deployment: Any) -> None:
        """``deployment`` was written on the board with the biases it holds now (None: nothing deployed)."""
        # read outside our lock: the bias model calls _on_bias_change under its own lock
        biases = self.biases.snapshot() if deployment is not None else {}
        with self._deployment_lock:
            self.deployment = deployment
            self._deployed_biases = biases
            self._deployment_drift = set()
        self.deployment_changed.emit(deployment)

    # --- recording --------------------------------------------------------------------
    @property
    def recorder(self) -> Recorder | None:
        """The active recorder (None when not recording): streams such as the robot's are added
        with ``recorder.add_stream`` / ``recorder.append``."""
        return self._recorder

    def recording_status(self) -> RecorderStatus | None:
        """The active recording's counters, or the last one's while its writer finishes."""
        recorder = self._recorder or self.last_recorder
        return recorder.status() if recorder is not None else None

    @property
    def recording(self) -> Path | None:
        """Path of the file being recorded, or None."""
        recorder = self._recorder
        return recorder.path if recorder is not None else None

    def start_recording(self, path: str | Path, notes: str = "") -> Path:
        """Start writing events, stimulus and bias changes to a new HDF5 session file."""
        from neurolab_gui import __version__

        with self._recorder_lock:
            if self._recorder is not None:
                raise RuntimeError(f"already recording to {self._recorder.path}")
            board = self.board
            recorder = Recorder(
                path,
                software_version=__version__,
                board_serial=str(getattr(board, "serial", "")) if board is not None else "",
                board_emulated=bool(getattr(board, "is_emulated", False)) if board is not None else False,
                initial_biases=self.biases.snapshot(),
                clock_source=(
                    "emulator simulated time, 1 µs" if board is not None and board.is_emulated else "FPGA timestamp, 1 µs ticks"
                ),
                notes=notes,
            )
            recorder.add_stream(MEMBRANE_STREAM, MEMBRANE_COLUMNS, description="analog monitor (membrane) samples, board time µs, volts")
            recorder.finished_signal.connect(lambda path, error: self._on_recorder_finished(recorder, path, error))
            recorder.start()
            if board is not None:
                recorder.mark("connected", f"board {getattr(board, 'serial', '')} connected")
            self._recorder = recorder
            # announced under the lock: a writer that fails at once must not end the recording
            # (recording_changed(None)) before its start is announced (the relays only post)
            self.recording_changed.emit(recorder.path)
        return recorder.path

    def _on_recorder_finished(self, recorder: Recorder, path: Path, error: BaseException | None) -> None:
        """The writer is done (writer thread).  A failed one (disk full) ends the recording here: it
        accepts no more data, so keeping it would leave the session "recording" into nothing, with
        Stop, a new recording and Open recording waiting on a recorder that has already finished."""
        # under the lock, as start and stop announce: no other recording's announcement can come between
        with self._recorder_lock:
            if error is not None and self._recorder is recorder:  # not stopped by the user first
                self._recorder = None
                self.last_recorder = recorder
                self.recording_changed.emit(None)
            self.recording_finished.emit(path, error)

    def stop_recording(self, wait: bool = False, missing_ok: bool = False) -> Path | None:
        """Stop recording now (the file's ``stop_time``) and return the file's path at once.

        The writer finishes the file in the background (``recording_finished`` then fires);
        ``wait=True`` also waits for that, for scripts that open the file right away.
        ``missing_ok``: return None when not recording instead of raising; a writer that fails
        (disk full) ends the recording by itself, at any moment, so "stop if still recording"
        must be one step.
        """
        with self._recorder_lock:
            recorder = self._recorder
            if recorder is None:
                if missing_ok:
                    return None
                raise RuntimeError("not recording")
            self._recorder = None
            self.last_recorder = recorder
            # announced before the writer can finish, and under the lock that a failing writer
            # takes first: recording_finished must never arrive before this (it would be overwritten
            # by "finishing the recording…" for good)
            self.recording_changed.emit(None)
        recorder.request_stop()
        if wait:
            recorder.wait(10.0)
        return recorder.path

    def mark(self, kind: str, text: str = "") -> None:
        """Put a marker in the recording, if one is running (stimulus changes, demo phases, notes)."""
        recorder = self._recorder
        if recorder is not None:
            recorder.mark(kind, text)

    def record_input(self, events: SpikeEvents) -> None:
        """Log stimulus events that were sent, so input and output align in the recording."""
        recorder = self._recorder
        if recorder is not None:
            recorder.record_input(events)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self, job_wait_s: float = 5.0, recording_wait: bool = True) -> None:
        """Stop the robot, cancel the board's running job, stop recording and close the board.

        A cancelled board job (a calibration, a deployment) puts back the biases it started from,
        so the board is closed only after it ended, or after ``job_wait_s`` seconds (a cancelled
        network calibration stops within about a second and a half).  ``recording_wait``: wait for
        the recording's writer to finish the file (bounded; a writer stuck on its disk is logged and
        the board is closed all the same); the exit hook leaves that wait to the recorder's own hook.
        """
        self.robot.close()
        self._stop_board_job(job_wait_s)
        self.close_replay()
        try:
            self.stop_recording(wait=recording_wait, missing_ok=True)
        except TimeoutError as exc:  # a writer stuck on its disk: the board is closed all the same
            log.warning("%s; closing the board anyway (the file stays INCOMPLETE unless its writer finishes)", exc)
        finally:
            self.connection.disconnect("session closed")
