"""Run an emulated board in its own process, so a full-board simulation never stalls the GUI.

:class:`RemoteVirtualFpga` has the interface the virtual pyusb backend uses of a
:class:`~emulator.virtual_usb.VirtualFpga` (registers, chip-config batches and their
acknowledgement, bulk IN, the membrane side channel, the real-time lag), but the FPGA and its
:class:`~emulator.simulator.BoardSimulator` live in a child process started with the ``spawn``
method (safe with Qt and with the driver's reader threads, unlike ``fork``).  Every call is one
request/reply over a pipe, so the wire traffic the driver produces is unchanged: it is still the
same control and bulk transfers, only answered from another process.

If the child dies, every later transfer fails with ``ENODEV``, which the driver already treats
as a board that was unplugged: the application shows a disconnected board and stays up.
"""

from __future__ import annotations

import errno
import logging
import multiprocessing
import threading
from multiprocessing.connection import Connection
from typing import Any

import usb.core

log = logging.getLogger(__name__)

#: VirtualFpga methods the backend calls, forwarded verbatim.
_FORWARDED_CALLS = frozenset({"read_register", "write_register", "chip_config_batch", "take_ack", "bulk_read", "read_membrane"})
#: VirtualFpga attributes that may be read or (for fault injection) written remotely.
_FORWARDED_ATTRIBUTES = frozenset({"lag_us", "lag_s", "streaming", "ack_fault", "stall_bulk"})


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


def _serve(conn: Connection, serial: str, config: Any, clock: str) -> None:
    """Child process main loop: one VirtualFpga, one request at a time."""
    from emulator.simulator import BoardSimulator
    from emulator.virtual_usb import VirtualFpga

    try:
        fpga = VirtualFpga(serial, BoardSimulator(serial, config), clock)
    except BaseException as exc:  # report a bad configuration to the parent instead of dying silently
        conn.send(("err", _encode_exception(exc)))
        return
    conn.send(("ok", None))
    while True:
        try:
            op, name, args = conn.recv()
        except (EOFError, OSError):
            return  # parent gone
        if op == "close":
            conn.send(("ok", None))
            return
        try:
            if op == "call" and name in _FORWARDED_CALLS:
                result = getattr(fpga, name)(*args)
            elif op == "get" and name in _FORWARDED_ATTRIBUTES:
                result = getattr(fpga, name)
            elif op == "set" and name in _FORWARDED_ATTRIBUTES:
                setattr(fpga, name, args[0])
                result = None
            else:
                raise ValueError(f"emulator process: unsupported request {op} {name}")
            conn.send(("ok", result))
        except BaseException as exc:
            conn.send(("err", _encode_exception(exc)))


class RemoteVirtualFpga:
    """A :class:`~emulator.virtual_usb.VirtualFpga` running in a child process (see module docstring).

    Parameters
    ----------
    serial : the emulated board's serial number (also seeds its mismatch)
    config : an :class:`emulator.config.EmulatorConfig` (must be picklable), or None for defaults
    clock : ``"fast"`` or ``"realtime"``
    start_timeout_s : how long to wait for the child to import and build the board
    """

    def __init__(self, serial: str, config: Any = None, clock: str = "fast", start_timeout_s: float = 120.0) -> None:
        if clock not in ("fast", "realtime"):
            raise ValueError(f"clock must be 'fast' or 'realtime', got {clock!r}")
        self.serial = serial
        self.clock = clock
        self._lock = threading.Lock()
        self._alive = True
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child_conn, serial, config, clock), name=f"neurolab-emulator-{serial}", daemon=True
        )
        self._process.start()
        child_conn.close()
        if not self._conn.poll(start_timeout_s):
            self.close()
            raise TimeoutError(f"emulator process for {serial!r} did not start within {start_timeout_s:.0f} s")
        status, payload = self._conn.recv()
        if status != "ok":
            self.close()
            raise _decode_exception(*payload)

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def _request(self, op: str, name: str, *args: Any) -> Any:
        with self._lock:
            if not self._alive:
                raise usb.core.USBError("emulator process has ended", -4, errno.ENODEV)
            try:
                self._conn.send((op, name, args))
                status, payload = self._conn.recv()
            except (EOFError, OSError, BrokenPipeError) as exc:
                self._alive = False
                log.error("emulator process for %s died: %s", self.serial, exc)
                raise usb.core.USBError("emulator process has ended", -4, errno.ENODEV) from exc
        if status != "ok":
            raise _decode_exception(*payload)
        return payload

    # --- the VirtualFpga interface used by the backend ---

    def read_register(self, module: int, param: int) -> int:
        return self._request("call", "read_register", module, param)

    def write_register(self, module: int, param: int, value: int) -> None:
        self._request("call", "write_register", module, param, value)

    def chip_config_batch(self, payload: bytes) -> None:
        self._request("call", "chip_config_batch", payload)

    def take_ack(self) -> bytes:
        return self._request("call", "take_ack")

    def bulk_read(self, size: int, timeout_ms: int) -> bytes:
        return self._request("call", "bulk_read", size, timeout_ms)

    def read_membrane(self, chip: int, core: int):
        return self._request("call", "read_membrane", chip, core)

    @property
    def lag_us(self) -> float:
        return self._request("get", "lag_us")

    @property
    def lag_s(self) -> float:
        return self._request("get", "lag_s")

    @property
    def streaming(self) -> bool:
        return self._request("get", "streaming")

    def set_fault(self, name: str, value: Any) -> None:
        """Fault injection for tests: ``ack_fault`` or ``stall_bulk`` on the remote FPGA."""
        self._request("set", name, value)

    def close(self, timeout_s: float = 5.0) -> None:
        """End the child process (idempotent)."""
        with self._lock:
            if self._alive and self._process.is_alive():
                try:
                    self._conn.send(("close", "", ()))
                    if self._conn.poll(timeout_s):
                        self._conn.recv()
                except (EOFError, OSError, BrokenPipeError):
                    log.debug("emulator process for %s already gone while closing", self.serial)
            self._alive = False
        self._process.join(timeout_s)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout_s)
        self._conn.close()

    def kill(self) -> None:
        """Kill the child abruptly (tests: the emulator crashing looks like an unplugged board)."""
        self._process.kill()
        self._process.join(5.0)
