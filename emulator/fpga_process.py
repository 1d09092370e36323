"""Run an emulated board in its own process, so a full-board simulation never stalls the GUI.

:class:`RemoteVirtualFpga` has the interface the virtual pyusb backend uses of a
:class:`~emulator.virtual_fpga.VirtualFpga` (vendor requests, bulk IN, the membrane side
channel, the real-time lag), but the FPGA and its :class:`~emulator.simulator.BoardSimulator`
live in a child process started with the ``spawn`` method (safe with Qt and with the driver's
reader threads, unlike ``fork``).  Every call is one request/reply over a pipe, so the wire
traffic the driver produces is unchanged: the same control and bulk transfers, only answered
from another process.

A child that dies or stops is an unplugged board
------------------------------------------------
Every request has a deadline, and while it waits the parent checks the child every
:data:`LIVENESS_POLL_S`; a watchdog thread checks it between requests too.  A child that has
exited, been killed, or been stopped (``SIGSTOP``: Linux ``/proc`` state ``T``) is declared lost
within about :data:`LIVENESS_POLL_S`: it is killed, the pending and every later request fails
with ``ENODEV`` (which the driver treats as an unplugged board), and the listeners registered
with :meth:`RemoteVirtualFpga.add_lost_listener` are told, so the board reads as unplugged even
when no transfer is in flight.  A child that is alive but does not answer within
:data:`REQUEST_TIMEOUT_S` is treated the same way.

Fewer round trips, the same transfers
------------------------------------
A 0xC6 chip-word batch is always followed by the read of its acknowledgement (libcaer's
``sendUSBCommandVerifyMultiple``; the driver's transport does the same), so the batch itself is
*posted*: sent to the child without waiting for a reply, and the acknowledgement's request,
answered in order after it, is the one round trip of the pair.  A batch the child's FPGA refuses
(a stall) is reported by the next control transfer, which the child then does not carry out, so
exactly the transfers before the refused one take effect, as when each waited.  Opening a board
(libcaer's default configuration: 1,244 acknowledged batches) takes half the round trips;
:attr:`RemoteVirtualFpga.round_trips` and :attr:`RemoteVirtualFpga.posted` count them.

Starting early
--------------
A child spends about 0.7 s of CPU before it answers (mostly numba and its stream encoder's kernel).
:func:`start_early` spawns it ahead (``neurolab gui`` does so before it imports Qt); the first
:class:`RemoteVirtualFpga` for the same serial, configuration and clock adopts it instead of
spawning another.

When the child is closed it hands over the transfers libcaer never sends that its FPGA logged
(``emulator.unexpected_transfers.UNEXPECTED_IN_PROCESS``), so the test suite's check covers boards in a
child process too.
"""

from __future__ import annotations

import errno
import logging
import multiprocessing
import os
import pickle
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import usb.core

from .fpga_decoding import REQUEST_CHIP_MULTIPLE
from .unexpected_transfers import UNEXPECTED_IN_PROCESS

log = logging.getLogger(__name__)

#: How often a waiting request (and the watchdog) checks that the child is alive and running [s].
LIVENESS_POLL_S = 0.2
#: Longest a running child may take to answer one request (a full-board packet on a loaded machine) [s].
REQUEST_TIMEOUT_S = 30.0

#: VirtualFpga methods the backend calls, forwarded verbatim.
_FORWARDED_CALLS = frozenset({"control_out", "control_in", "read_membrane", "clear_unexpected"})
#: VirtualFpga attributes that may be read or (for fault injection) written remotely.
_FORWARDED_ATTRIBUTES = frozenset({"streaming", "ack_fault", "stall_bulk", "unexpected_count", "dropped_aer_events", "dropped_transactions"})


def _encode_exception(exc: BaseException) -> tuple[str, tuple]:
    """Exceptions as plain data: pyusb's errors do not survive pickling with their fields intact."""
    if isinstance(exc, usb.core.USBError):
        kind = "timeout" if isinstance(exc, usb.core.USBTimeoutError) else "usb"
        return kind, (exc.strerror, exc.backend_error_code, exc.errno)
    return "other", (type(exc).__name__, str(exc))


def _decode_exception(kind: str, fields: tuple) -> BaseException:
    if kind == "timeout":
        return usb.core.USBTimeoutError(*fields)
    if kind == "usb":
        return usb.core.USBError(*fields)
    name, message = fields
    builtin = {"ValueError": ValueError, "KeyError": KeyError, "TypeError": TypeError, "IndexError": IndexError}
    return builtin.get(name, RuntimeError)(f"{message}" if name in builtin else f"{name}: {message}")


def _gone(reason: str) -> usb.core.USBError:
    return usb.core.USBError(f"emulator process {reason}", -4, errno.ENODEV)


def _serve(conn: Connection, serial: str, config: Any, clock: str) -> None:
    """Child process main loop: one VirtualFpga, one request at a time; ends quietly when the parent is gone.

    A parent that exits or drops the connection while the child answers (an app closed during a
    connect, a script that ends without closing its board) leaves nobody to tell: a broken pipe on
    the answer ends the child like an end of file on the request does, instead of printing a
    traceback into the terminal the parent shared.
    """
    try:
        _serve_requests(conn, serial, config, clock)
    except (BrokenPipeError, ConnectionResetError):
        return


def _serve_requests(conn: Connection, serial: str, config: Any, clock: str) -> None:
    from emulator.simulator import BoardSimulator
    from emulator.virtual_fpga import VirtualFpga

    try:
        fpga = VirtualFpga(serial, BoardSimulator(serial, config), clock)
    except BaseException as exc:  # report a bad configuration to the parent instead of dying silently
        conn.send(("err", _encode_exception(exc)))
        return
    conn.send(("ok", None))
    refused: tuple[str, tuple] | None = None  # a posted batch's failure, not yet reported
    while True:
        try:
            op, name, args = conn.recv()
        except (EOFError, OSError):
            return  # parent gone
        if op == "close":  # hand the parent what libcaer would never have sent, for its checks
            conn.send(("ok", list(fpga.unexpected_transfers)))
            return
        if op == "post":  # a chip-word batch: no reply; a failure answers the next control transfer
            if refused is None:
                try:
                    fpga.control_out(*args)
                except BaseException as exc:
                    refused = _encode_exception(exc)
            continue
        if refused is not None and op == "call" and name in ("control_out", "control_in"):
            conn.send(("err", refused))  # instead of carrying it out, as if the batch had raised
            refused = None
            continue
        try:
            if op == "bulk":
                try:
                    data = fpga.bulk_read(*args)
                except usb.core.USBTimeoutError:
                    data = None
                result = (data, fpga.lag_us)
            elif op == "call" and name in _FORWARDED_CALLS:
                result = getattr(fpga, name)(*args)
            elif op == "get" and name in _FORWARDED_ATTRIBUTES:
                result = getattr(fpga, name)
            elif op == "get" and name == "unexpected_transfers":
                result = list(fpga.unexpected_transfers)
            elif op == "set" and name in _FORWARDED_ATTRIBUTES:
                setattr(fpga, name, args[0])
                result = None
            else:
                raise ValueError(f"emulator process: unsupported request {op} {name}")
            conn.send(("ok", result))
        except BaseException as exc:
            conn.send(("err", _encode_exception(exc)))


def _died_at_start(serial: str, exitcode: int | None) -> str:
    """Why a child that ended before it answered did so, as far as the parent can tell."""
    how = "was killed" if exitcode is None or exitcode < 0 else f"exited with code {exitcode}"
    return (f"the emulator process for {serial!r} {how} before the board was ready. "
            "A script that opens the emulator in a separate process must run its code under "
            "`if __name__ == \"__main__\":` (the child process is started with the 'spawn' method, "
            "which runs the script's top level again in the child)")


def child_state(pid: int | None) -> str:
    """``"running"``, ``"stopped"`` (SIGSTOP, traced) or ``"dead"`` (exited, zombie) from Linux
    ``/proc``; ``"unknown"`` where there is no ``/proc`` (then only the deadline applies)."""
    if pid is None:
        return "dead"
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return "dead" if os.path.isdir("/proc/self") else "unknown"
    except OSError:
        return "unknown"
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    if state in (b"T", b"t"):
        return "stopped"
    if state in (b"Z", b"X", b"x"):
        return "dead"
    return "running"


def _spawn(serial: str, config: Any, clock: str) -> tuple[Any, Connection]:
    context = multiprocessing.get_context("spawn")
    conn, child_conn = context.Pipe()
    process = context.Process(target=_serve, args=(child_conn, serial, config, clock), name=f"neurolab-emulator-{serial}", daemon=True)
    process.start()
    child_conn.close()
    return process, conn


#: Children spawned by :func:`start_early`, by (serial, pickled configuration, clock), not adopted yet.
_EARLY: dict[tuple[str, bytes, str], tuple[Any, Connection]] = {}
_EARLY_LOCK = threading.Lock()


def _early_key(serial: str, config: Any, clock: str) -> tuple[str, bytes, str]:
    return serial, pickle.dumps(config), clock


def start_early(serial: str, config: Any = None, clock: str = "fast") -> None:
    """Spawn the child of the board ``serial`` now, so that it boots while this process does other
    work; the next :class:`RemoteVirtualFpga` with the same arguments adopts it.  A second call for
    the same board does nothing; a child never adopted ends with this process."""
    if clock not in ("fast", "realtime"):
        raise ValueError(f"clock must be 'fast' or 'realtime', got {clock!r}")
    key = _early_key(serial, config, clock)
    with _EARLY_LOCK:
        if key not in _EARLY:
            _EARLY[key] = _spawn(serial, config, clock)


def discard_early() -> None:
    """End the children :func:`start_early` spawned that no board adopted."""
    with _EARLY_LOCK:
        early = list(_EARLY.values())
        _EARLY.clear()
    for process, conn in early:
        process.kill()
        process.join(5.0)
        conn.close()


def _adopt_or_spawn(serial: str, config: Any, clock: str) -> tuple[Any, Connection]:
    with _EARLY_LOCK:
        early = _EARLY.pop(_early_key(serial, config, clock), None) if _EARLY else None
    if early is not None and early[0].is_alive():
        return early
    return _spawn(serial, config, clock)


class RemoteVirtualFpga:
    """A :class:`~emulator.virtual_fpga.VirtualFpga` running in a child process (see module docstring).

    Parameters
    ----------
    serial : the emulated board's serial number (also seeds its mismatch)
    config : an :class:`emulator.config.EmulatorConfig` (must be picklable), or None for defaults
    clock : ``"fast"`` or ``"realtime"``
    start_timeout_s : how long to wait for the child to import and build the board
    request_timeout_s : longest a running child may take to answer one request
    """

    def __init__(
        self, serial: str, config: Any = None, clock: str = "fast", start_timeout_s: float = 120.0, request_timeout_s: float = REQUEST_TIMEOUT_S
    ) -> None:
        if clock not in ("fast", "realtime"):
            raise ValueError(f"clock must be 'fast' or 'realtime', got {clock!r}")
        self.serial = serial
        self.clock = clock
        self.request_timeout_s = float(request_timeout_s)
        self._lock = threading.Lock()  # one request at a time on the pipe
        self._state_lock = threading.Lock()
        self._alive = True
        # close() is reached from several threads (the board's close listener ends the child on a
        # thread of its own, the garbage collector's finalizer, tests): one closes, the others wait
        # for it.  Two at once killed the child mid-close and closed the pipe's descriptor twice
        # (EBADF, or worse a descriptor number another file had reused meanwhile).
        self._close_lock = threading.Lock()
        self._closed = False
        self._lost_reason = ""
        self._listeners: list[Callable[[str], None]] = []
        self._lag_us = 0.0
        #: requests that waited for the child's reply, and chip-word batches posted without waiting
        self.round_trips = 0
        self.posted = 0
        self._process, self._conn = _adopt_or_spawn(serial, config, clock)
        if not self._conn.poll(start_timeout_s):
            self.close()
            raise TimeoutError(f"emulator process for {serial!r} did not start within {start_timeout_s:.0f} s")
        try:
            status, payload = self._conn.recv()
        except (EOFError, OSError):  # the child ended before it answered: say so, not EOFError's ""
            self._process.join(1.0)
            code = self._process.exitcode
            self.close()
            raise RuntimeError(_died_at_start(serial, code)) from None
        if status != "ok":
            self.close()
            raise _decode_exception(*payload)
        self._closing = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name=f"neurolab-emulator-watchdog-{serial}", daemon=True)
        self._watchdog.start()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def alive(self) -> bool:
        """False once the child has been declared lost (dead, stopped or unresponsive) or closed."""
        return self._alive

    @property
    def lost_reason(self) -> str:
        return self._lost_reason

    def add_lost_listener(self, callback: Callable[[str], None]) -> None:
        """``callback(reason)`` once, from whichever thread notices, when the child is lost."""
        self._listeners.append(callback)

    # --- liveness ---

    def _health(self) -> str | None:
        """Why the child can no longer serve (None while it is running)."""
        if not self._process.is_alive():
            return f"ended (exit code {self._process.exitcode})"
        state = child_state(self._process.pid)
        if state == "stopped":
            return "is stopped (SIGSTOP) and does not answer"
        if state == "dead":
            return "has died"
        return None

    def _lose(self, reason: str) -> None:
        with self._state_lock:
            if not self._alive:
                return
            self._alive = False
            self._lost_reason = reason
        log.error("emulator process for %s %s; the board reads as unplugged", self.serial, reason)
        try:
            self._process.kill()  # a stopped child would otherwise linger; SIGKILL ends it too
        except (OSError, ValueError):
            pass
        for callback in list(self._listeners):
            try:
                callback(f"emulator process {reason}")
            except Exception:  # a faulty listener must not hide the loss from the others
                log.exception("lost-listener failed")

    def _watch(self) -> None:
        while not self._closing.wait(LIVENESS_POLL_S):
            if not self._alive:
                return
            reason = self._health()
            if reason is not None:
                self._lose(reason)
                return

    def _post(self, name: str, *args: Any) -> None:
        """Send a request that has no reply (see "Fewer round trips" in the module docstring)."""
        with self._lock:
            if not self._alive:
                raise _gone(self._lost_reason or "has ended")
            try:
                self._conn.send(("post", name, args))
            except OSError as exc:  # BrokenPipeError: the child is gone
                self._lose(f"has ended ({exc.__class__.__name__})")
                raise _gone("has ended") from exc
            self.posted += 1

    def _request(self, op: str, name: str, *args: Any) -> Any:
        with self._lock:
            if not self._alive:
                raise _gone(self._lost_reason or "has ended")
            self.round_trips += 1
            try:
                self._conn.send((op, name, args))
                deadline = time.monotonic() + self.request_timeout_s
                while not self._conn.poll(LIVENESS_POLL_S):
                    reason = self._health() if self._alive else self._lost_reason
                    if reason is None and time.monotonic() > deadline:
                        reason = f"did not answer {op} {name} within {self.request_timeout_s:.0f} s"
                    if reason is not None:
                        self._lose(reason)
                        raise _gone(reason)
                status, payload = self._conn.recv()
            except (EOFError, OSError, BrokenPipeError) as exc:
                self._lose(f"has ended ({exc.__class__.__name__})")
                raise _gone("has ended") from exc
        if status != "ok":
            raise _decode_exception(*payload)
        return payload

    # --- the VirtualFpga interface used by the backend ---

    def control_out(self, request: int, value: int, index: int, data: bytes) -> None:
        if request == REQUEST_CHIP_MULTIPLE:  # its acknowledgement's read follows: that waits
            self._post("control_out", request, value, index, data)
        else:
            self._request("call", "control_out", request, value, index, data)

    def control_in(self, request: int, value: int, index: int, length: int) -> bytes:
        return self._request("call", "control_in", request, value, index, length)

    def bulk_read(self, size: int, timeout_ms: int) -> bytes:
        data, self._lag_us = self._request("bulk", "", size, timeout_ms)
        if data is None:
            raise usb.core.USBTimeoutError("Operation timed out (bulk IN)", -7, errno.ETIMEDOUT)
        return data

    def read_membrane(self, chip: int, core: int):
        return self._request("call", "read_membrane", chip, core)

    @property
    def lag_us(self) -> float:
        """The child's real-time lag as of the last bulk read (kept here: reading it never waits)."""
        return self._lag_us

    @property
    def lag_s(self) -> float:
        return self._lag_us / 1e6

    @property
    def streaming(self) -> bool:
        return self._request("get", "streaming")

    @property
    def unexpected_transfers(self) -> list[str]:
        return self._request("get", "unexpected_transfers")

    @property
    def unexpected_count(self) -> int:
        return self._request("get", "unexpected_count")

    def clear_unexpected(self) -> None:
        self._request("call", "clear_unexpected")

    def set_fault(self, name: str, value: Any) -> None:
        """Fault injection for tests: ``ack_fault``, ``stall_bulk`` or the FPGA drop counters."""
        self._request("set", name, value)

    def close(self, timeout_s: float = 5.0) -> None:
        """End the child process (idempotent); a stopped or unresponsive child is killed at once."""
        closing = getattr(self, "_closing", None)
        if closing is not None:
            closing.set()
        with self._close_lock:
            if not self._closed:
                self._close_child(timeout_s)
                self._closed = True

    def _close_child(self, timeout_s: float) -> None:
        with self._state_lock:
            was_alive, self._alive = self._alive, False
        graceful = was_alive and self._process.is_alive() and child_state(self._process.pid) in ("running", "unknown")
        if graceful and self._lock.acquire(timeout=timeout_s):
            try:
                self._conn.send(("close", "", ()))
                if self._conn.poll(timeout_s):
                    _, unexpected = self._conn.recv()
                    UNEXPECTED_IN_PROCESS.extend((self.serial, what) for what in unexpected or ())
            except (EOFError, OSError, BrokenPipeError):
                log.debug("emulator process for %s already gone while closing", self.serial)
            finally:
                self._lock.release()
            self._process.join(timeout_s)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout_s)
        self._conn.close()

    def kill(self) -> None:
        """Kill the child abruptly (tests: the emulator crashing looks like an unplugged board)."""
        self._process.kill()
        self._process.join(5.0)
