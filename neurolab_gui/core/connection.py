"""Choosing, opening, watching and closing the board.

:class:`ConnectionManager` lists what can be connected (every DYNAP-SE1 on the
USB bus, plus the emulator, which is always there), opens one, runs the
acquisition thread that pulls event batches off it, notices when it goes away
(unplugged, closed) and can reconnect to the same choice.  It never raises for
an unplugged board: a failed open or a lost board becomes a ``disconnected`` /
``error`` state with a message, and the application stays up.

Threads: the acquisition thread emits :attr:`ConnectionManager.events` with
whole :class:`SpikeEvents` batches; subscribers (monitors, recorder) must be
cheap and thread-safe.  Opening a board takes seconds (an emulator child
process starts, every bias is read back), so the GUI calls
:meth:`ConnectionManager.connect_in_background`, which opens it on a worker
thread and emits ``connected``/``status_changed`` from there (the Qt layer
relays them to the GUI thread).  Everything else is called from the GUI thread
or a script.  :meth:`poll_status` is meant for a ~2 Hz timer.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from drivers.dynapse1.board_api import Board
from drivers.dynapse1.spikes import SpikeEvents

from .boards import emulator_lag_s, emulator_serial_for, open_emulator, open_silicon, start_emulator_process
from .events import Signal

log = logging.getLogger(__name__)

EMULATOR = "emulator"


@dataclass(frozen=True)
class BoardChoice:
    """Something the connection bar offers: the emulator or a board seen on USB."""

    kind: str  # "emulator" or "usb"
    serial: str
    label: str
    accessible: bool = True
    problem: str = ""


@dataclass(frozen=True)
class ConnectionTarget:
    """What to (re)connect to."""

    board: str = EMULATOR  # "emulator" or a serial number
    seed: int = 0
    mismatch: bool = True
    clock: str = "realtime"  # emulator only: "realtime" for live use, "fast" for batch work
    #: emulator only: simulate in a child process so a full board never competes with the GUI thread
    separate_process: bool = False

    def describe(self) -> str:
        if self.board == EMULATOR:
            return f"emulator (seed {self.seed}, mismatch {'on' if self.mismatch else 'off'}, {self.clock} clock)"
        return f"DYNAP-SE1 {self.board}"


@dataclass(frozen=True)
class ConnectionStatus:
    """What the status bar shows."""

    state: str = "disconnected"  # disconnected, connecting, connected, disconnecting, unplugged, error
    target: str = ""
    serial: str = ""
    emulated: bool = False
    event_rate_hz: float = 0.0
    received_events: int = 0
    dropped_events: int = 0  # lost in host queues
    fpga_dropped_events: int | None = None  # the FPGA's own drop counters (None: the logic has none)
    corrupt_words: int = 0
    non_monotonic_timestamps: int = 0  # timestamp words that did not move the board clock forward
    lag_s: float | None = None  # emulator in real-time mode: how far simulated time trails the wall clock
    message: str = ""


BoardOpener = Callable[[ConnectionTarget], Board]


def app_target(board: str = EMULATOR, seed: int = 0, mismatch: bool = True) -> ConnectionTarget:
    """The board as ``neurolab gui`` opens it: an emulator in its own process on the real-time clock
    (a full emulated board must never stall drawing), or silicon by serial."""
    return ConnectionTarget(board, int(seed), bool(mismatch), separate_process=True)


def open_board(target: ConnectionTarget) -> Board:
    """Open the emulator or a real board (through :mod:`.boards`, which imports them only when needed)."""
    if target.board == EMULATOR:
        return open_emulator(emulator_serial_for(target.seed), seed=target.seed, mismatch=target.mismatch, clock=target.clock,
                             separate_process=target.separate_process)
    return open_silicon(target.board)


def start_early(target: ConnectionTarget) -> None:
    """Start what :func:`open_board` would wait for longest, without waiting: an emulator's child
    process boots while the caller imports and builds the window, and the open adopts it.  Nothing
    for silicon or an in-process emulator.  Never raises: whatever went wrong, the open itself
    meets it again and reports it with the window up."""
    if target.board == EMULATOR and target.separate_process:
        try:
            start_emulator_process(emulator_serial_for(target.seed), seed=target.seed, mismatch=target.mismatch, clock=target.clock)
        except Exception as exc:  # noqa: BLE001 - only a head start is lost
            log.warning("could not start %s ahead: %s", target.describe(), exc)


def list_boards() -> list[BoardChoice]:
    """The emulator first, then every DYNAP-SE1 on the USB bus (a missing libusb only hides real boards)."""
    choices = [BoardChoice(EMULATOR, "", "Emulator")]
    try:
        from drivers.dynapse1.usb_discovery import find_boards

        for found in find_boards():
            serial = found.serial or f"bus{found.bus}-addr{found.address}"
            label = f"DYNAP-SE1 {serial}" + ("" if found.accessible else " (no permission)")
            choices.append(BoardChoice("usb", serial, label, found.accessible, found.problem))
    except Exception as exc:  # no libusb, no pyusb: the emulator still works
        log.info("USB discovery unavailable: %s", exc)
    return choices


class ConnectionManager:
    """Owns the open board and its acquisition thread.

    Parameters
    ----------
    opener : callable
        ``opener(target) -> Board``; :func:`open_board` by default.  Tests pass the
        same function with a fast-clock target rather than a fake board.
    """

    def __init__(self, opener: BoardOpener = open_board) -> None:
        self._opener = opener
        self._board: Board | None = None
        self._target: ConnectionTarget | None = None
        self._status = ConnectionStatus()
        self._lock = threading.RLock()
        self._connect_lock = threading.Lock()  # one open at a time (a worker's or a script's)
        # Bumped by disconnect() only: a connect requested before it (still queued, closing the old
        # board, opening, announcing) is then cancelled.  A connect's own close of the board it
        # replaces does not bump it, so a second Connect never cancels the first.
        self._generation = 0
        self._announcing: Board | None = None  # the board whose ``connected`` listeners run now
        self._late_reason = ""  # the reason of a disconnect that came while announcing
        #: closes under way on a worker (:meth:`disconnect_in_background`); a connect opens only after them
        self._closing: set[concurrent.futures.Future] = set()
        self._reader: threading.Thread | None = None
        self._forwarding = threading.Event()
        self._forward_lock = threading.Lock()
        # acquisition_paused, nested or from several threads at once: how many pauses are open,
        # and whether forwarding ran before the first of them (only the last one out resumes it)
        self._pause_lock = threading.Lock()
        self._pauses = 0
        self._resume_after_pauses = False
        self._received = 0
        self._rate_mark = (time.monotonic(), 0)
        self._rate = 0.0
        #: ``connected(board)`` after a board was opened.
        self.connected = Signal("board connected")
        #: ``disconnected(reason: str)`` after the board was closed or lost.
        self.disconnected = Signal("board disconnected")
        #: ``events(batch: SpikeEvents)`` from the acquisition thread.
        self.events = Signal("board events")
        #: ``status_changed(status: ConnectionStatus)``.
        self.status_changed = Signal("connection status")

    # --- state ----------------------------------------------------------------------------
    @property
    def board(self) -> Board | None:
        return self._board

    @property
    def target(self) -> ConnectionTarget | None:
        return self._target

    @property
    def status(self) -> ConnectionStatus:
        return self._status

    def _set_status(self, **changes) -> None:
        self._status = replace(self._status, **changes)
        self.status_changed.emit(self._status)

    # --- connect / disconnect -------------------------------------------------------------
    def connect(self, target: ConnectionTarget, acquire: bool = True) -> bool:
        """Close any open board, then open ``target``.  Returns False (state ``error``) if it cannot be opened.

        Blocks while the board opens (seconds); the GUI uses :meth:`connect_in_background`.
        A :meth:`disconnect` from another thread while this runs cancels it (returns False,
        state ``disconnected``).
        """
        return self._connect(target, acquire, self._generation)

    def _connect(self, target: ConnectionTarget, acquire: bool, generation: int) -> bool:
        """:meth:`connect`, cancelled by any :meth:`disconnect` after ``generation`` was read (the request's time)."""
        with self._connect_lock:
            # A board being closed in the background is released first: never two open at once
            # (the same USB device claimed twice), and its "disconnected" comes before our "connected".
            self._wait_for_closes()
            # A Disconnect pressed after the Connect, while this waited for an earlier connect or
            # closed the board it replaces, found no board to close: it must still win.
            if not self._close_for_switch(generation) or generation != self._generation:
                self._set_status(state="disconnected", event_rate_hz=0.0, lag_s=None, message="connection cancelled")
                return False
            self._target = target
            self._set_status(state="connecting", target=target.describe(), message="")
            try:
                board = self._opener(target)
            except Exception as exc:
                log.warning("could not open %s: %s", target.describe(), exc)
                self._set_status(state="error", message=f"could not open {target.describe()}: {exc}")
                return False
            except BaseException as exc:  # Ctrl-C in a script: no board, so not left "connecting"
                self._set_status(state="disconnected", message=f"connecting to {target.describe()} was interrupted "
                                                               f"({type(exc).__name__})")
                raise
            with self._lock:
                if generation != self._generation:  # disconnected while it was opening
                    superseded = True
                else:
                    superseded = False
                    self._board = board
                    self._announcing = board
                    self._received = 0
                    self._rate_mark = (time.monotonic(), 0)
                    self._rate = 0.0
                    # Under the lock, so that a disconnect's "disconnected" can only come after it.
                    self._set_status(
                        state="connected",
                        serial=str(getattr(board, "serial", "")),
                        emulated=bool(getattr(board, "is_emulated", False)),
                        message=f"connected to {target.describe()}",
                    )
            if superseded:
                with contextlib.suppress(Exception):
                    board.close()
                self._set_status(state="disconnected", message="connection cancelled")
                return False
            return self._announce(board, generation, acquire)

    def _announce(self, board: Board, generation: int, acquire: bool) -> bool:
        """Tell the listeners about the new board and start acquisition (end of :meth:`connect`).

        The user may press Disconnect while this runs (the status already says connected): the
        listeners then fail on the closed board.  That is the user's disconnect, not a failed
        open: the failure is dropped, and the ``disconnected`` signal, which :meth:`disconnect`
        leaves to this method meanwhile, is emitted here, after ``connected``, so that every
        listener ends detached.
        """
        listener_errors = self.connected.emit_collecting(board)
        failure: Exception | None = None
        if acquire:
            try:
                self.start_acquisition()
            except Exception as exc:  # noqa: BLE001 - re-raised below unless the user disconnected
                failure = exc
        with self._lock:
            self._announcing = None
            late = generation != self._generation
            reason = self._late_reason
        if late:
            for exc in [*listener_errors, *([failure] if failure else [])]:
                log.info("connect ended by a disconnect while announcing the board: %s", exc)
            self.disconnected.emit(reason)
            return False
        for exc in listener_errors:
            self.connected.report(exc)
        if failure is not None:
            raise failure
        return True

    def connect_in_background(self, target: ConnectionTarget, acquire: bool = True) -> concurrent.futures.Future:
        """:meth:`connect` on a worker thread; returns a future of its bool result.

        The status turns ``connecting`` at once; ``connected``/``status_changed`` are emitted from
        the worker.  A second request waits for the first to finish, then switches boards.
        """
        future: concurrent.futures.Future = concurrent.futures.Future()
        # Read now, on the caller's thread: a Disconnect pressed before the worker runs cancels it.
        generation = self._generation
        self._set_status(state="connecting", target=target.describe(), message="")

        def run() -> None:
            try:
                future.set_result(self._connect(target, acquire, generation))
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
                log.exception("connecting to %s failed", target.describe())
                self._set_status(state="error", message=f"could not open {target.describe()}: {exc}")
                future.set_exception(exc)

        threading.Thread(target=run, name="neurolab-connect", daemon=True).start()
        return future

    def reconnect(self) -> bool:
        """Open the last target again (after an unplug or an error)."""
        if self._target is None:
            raise RuntimeError("nothing to reconnect to: no board was ever chosen")
        return self.connect(self._target)

    def reconnect_in_background(self) -> concurrent.futures.Future:
        """:meth:`reconnect` on a worker thread (see :meth:`connect_in_background`)."""
        if self._target is None:
            raise RuntimeError("nothing to reconnect to: no board was ever chosen")
        return self.connect_in_background(self._target)

    def disconnect(self, reason: str = "closed by user") -> None:
        """Stop acquisition and close the board; a no-op when none is open.

        Every connect requested before this call is cancelled, wherever it is: still queued,
        closing the board it replaces, opening (the board is closed as soon as it is open) or
        announcing the new board.
        """
        with self._lock:
            self._generation += 1
            board, deferred = self._take_board(reason)
        if board is not None:
            self._close_taken(board, reason, "disconnected", deferred)
        self._wait_for_closes()  # one requested in the background earlier: closed too when this returns

    def disconnect_in_background(self, reason: str = "closed by user", before_close: Callable[[], object] | None = None
                                 ) -> concurrent.futures.Future:
        """:meth:`disconnect` on a worker thread (the GUI's Disconnect); a future of None, set once
        the board is closed.

        Closing a board waits for its USB reader thread to end, and an emulator's child process may
        be busy answering that reader's read for a few hundred ms (seen: 210-790 ms on the first
        disconnect): never on the GUI thread.  The caller returns at once: every connect requested
        before is cancelled now, as by :meth:`disconnect`, and the state turns ``disconnecting``.
        The worker calls ``before_close()`` first, with the board still open (the session stops
        the board's running job there, which restores the board before it ends), then closes it
        and says ``disconnected``.  A connect requested meanwhile waits for the close to finish.
        """
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            self._generation += 1
            board = self._board
            if board is None:
                future.set_result(None)
                return future
            # A connect announcing this board sees the generation move and emits "disconnected"
            # itself when its listeners are done (see _announce): with this reason, and only once.
            announcing = board is self._announcing
            self._late_reason = reason
            self._closing.add(future)
            self._set_status(state="disconnecting", event_rate_hz=0.0, lag_s=None, message=f"disconnecting: {reason}")

        def run() -> None:
            try:
                if before_close is not None:
                    before_close()
            except Exception:  # noqa: BLE001 - the board must be closed whatever the preparation did
                log.exception("preparing to close the board failed; closing it anyway")
            try:
                with self._lock:
                    # Not ours any more: unplugged (poll_status said so) or replaced by a connect.
                    taken, deferred = self._take_board(reason) if self._board is board else (None, False)
                if taken is not None:
                    self._close_taken(taken, reason, "disconnected", deferred or announcing)
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
                log.exception("closing the board failed")
                future.set_exception(exc)
            else:
                future.set_result(None)
            finally:
                with self._lock:
                    self._closing.discard(future)

        threading.Thread(target=run, name="neurolab-disconnect", daemon=True).start()
        return future

    def _wait_for_closes(self, timeout_s: float = 30.0) -> None:
        """Wait (at most ``timeout_s``) for the closes :meth:`disconnect_in_background` started."""
        with self._lock:
            pending = list(self._closing)
        if pending and concurrent.futures.wait(pending, timeout_s).not_done:
            log.warning("a board being closed in the background did not close within %.0f s", timeout_s)

    def _close_for_switch(self, generation: int) -> bool:
        """Close the open board for a connect requested at ``generation``; False (nothing closed)
        if a :meth:`disconnect` came after the request.  The state stays ``connecting``: a
        switch, not a disconnect (the Connect button stays disabled)."""
        with self._lock:
            if generation != self._generation:
                return False
            board, deferred = self._take_board("switching boards")
        if board is not None:
            self._close_taken(board, "switching boards", "connecting", deferred)
        return True

    def _take_board(self, reason: str) -> tuple[Board | None, bool]:
        """Stop forwarding and forget the open board (call under ``_lock``).

        Returns
        -------
        board : the board to close, or None when none was open
        deferred : whether a connect is still announcing it; that connect then emits
            ``disconnected`` itself once its ``connected`` listeners are done (see
            :meth:`_announce`), never the two out of order.  Read under the same lock hold as
            the board, or both could emit it.
        """
        board = self._board
        if board is None:
            return None, False
        self.stop_acquisition()
        self._board = None
        self._late_reason = reason
        return board, board is self._announcing

    def _close_taken(self, board: Board, reason: str, state: str, deferred: bool) -> None:
        """Close a board :meth:`_take_board` took, then say so (status ``state``; ``disconnected``
        unless ``deferred``)."""
        try:
            board.close()  # ends the board's iterator and so the acquisition thread
        except Exception as exc:  # an unplugged board may fail to close; it is gone either way
            log.info("closing the board raised %s", exc)
        self._set_status(state=state, event_rate_hz=0.0, lag_s=None, message=reason)
        if not deferred:
            self.disconnected.emit(reason)

    # --- acquisition ------------------------------------------------------------------------
    #
    # One thread per open board consumes ``board.iter_events()`` for as long as the board is
    # open; "acquiring" only gates whether its batches are forwarded to :attr:`events`.  Pausing
    # therefore never has to wait for the iterator to yield (a silent board may not yield for a
    # long time), and the thread ends by itself when the board is closed or unplugged.  While a
    # measurement reads the board itself (:meth:`acquisition_paused`) the thread's batches are
    # the very events the measurement collects with ``read_events``; they are dropped here and the
    # measurement forwards its own copy through :meth:`feed`, so nothing is counted twice.

    @property
    def acquiring(self) -> bool:
        return self._forwarding.is_set() and self._reader is not None and self._reader.is_alive()

    def start_acquisition(self) -> None:
        """Forward every batch the board streams to :attr:`events` (starts the reader thread once)."""
        board = self._board
        if board is None:
            raise RuntimeError("no board connected")
        self._forwarding.set()
        if self._reader is not None and self._reader.is_alive():
            return
        self._reader = threading.Thread(target=self._read_loop, args=(board,), name="neurolab-acquisition", daemon=True)
        self._reader.start()

    def stop_acquisition(self) -> None:
        """Stop forwarding batches; returns once no batch is being forwarded any more."""
        self._forwarding.clear()
        with self._forward_lock:  # wait for a batch that is being forwarded right now
            pass

    @contextlib.contextmanager
    def acquisition_paused(self) -> Iterator[Board]:
        """Stop forwarding while a measurement reads the board itself, then resume.

        Re-entrant, also across threads: the pauses are counted and forwarding resumes when the
        last one ends, if it ran before the first began.  (Each pause used to remember whether
        forwarding ran when it began: a second pauser saw it stopped, and the first to leave
        restarted it under the other's measurement.)
        """
        board = self._board
        if board is None:
            raise RuntimeError("no board connected")
        with self._pause_lock:
            if self._pauses == 0:
                self._resume_after_pauses = self._forwarding.is_set()
            self._pauses += 1
            self.stop_acquisition()
        try:
            yield board
        finally:
            with self._pause_lock:  # held while resuming, so a pause that begins now stops it again after
                self._pauses -= 1
                if self._pauses == 0 and self._resume_after_pauses and self._board is board and board.connected:
                    self.start_acquisition()

    def feed(self, batch: SpikeEvents) -> None:
        """Forward a batch read by someone else (a measurement) to the same subscribers."""
        if len(batch):
            self._received += len(batch)
            self.events.emit(batch)

    def _read_loop(self, board: Board) -> None:
        try:
            for batch in board.iter_events():
                if not len(batch) or not self._forwarding.is_set():
                    continue
                with self._forward_lock:
                    if self._forwarding.is_set() and self._board is board:
                        self._received += len(batch)
                        self.events.emit(batch)
        except Exception as exc:
            log.warning("acquisition stopped: %s", exc)
        # iter_events ended on its own: the board was closed or unplugged; poll_status notices

    # --- status ---------------------------------------------------------------------------
    def poll_status(self) -> ConnectionStatus:
        """Refresh rates and counters, and detect a lost board; call from a ~2 Hz timer."""
        board = self._board
        if board is None:
            return self._status
        if not board.connected:
            with self._lock:
                if self._board is not board:
                    # Closed by a disconnect (or replaced by a connect) since it was read here:
                    # that one has said so already; it is not an unplug.
                    return self._status
                self._forwarding.clear()
                self._reader = None
                self._board = None
            self._set_status(state="unplugged", event_rate_hz=0.0, lag_s=None, message="board unplugged; reconnect when it is back")
            self.disconnected.emit("unplugged")
            return self._status
        now = time.monotonic()
        t0, n0 = self._rate_mark
        if now - t0 > 0.1:
            self._rate = (self._received - n0) / (now - t0)
            self._rate_mark = (now, self._received)
        counters = board.counters
        try:
            lag = emulator_lag_s(board)
        except Exception as exc:  # a status poll must never raise; a lost board shows as unplugged next poll
            log.debug("lag unavailable: %s", exc)
            lag = None
        self._set_status(
            event_rate_hz=self._rate,
            received_events=int(counters.received_events),
            dropped_events=int(counters.dropped_events),
            fpga_dropped_events=getattr(counters, "fpga_dropped_events", None),
            corrupt_words=int(counters.corrupt_words),
            non_monotonic_timestamps=int(getattr(counters, "non_monotonic_timestamps", 0)),
            lag_s=lag,
        )
        return self._status
