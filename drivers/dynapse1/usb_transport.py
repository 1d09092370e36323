"""The USB transport of a DYNAP-SE1: vendor control transfers and the bulk-IN event stream.

:class:`UsbTransport` wraps one ``usb.core.Device``.  It does not care which pyusb backend
the device came from (libusb for silicon, ``emulator.virtual_usb`` for the emulator).

Errors
------
Every transfer failure is turned into one of three exceptions, and the transport never hangs
(every transfer has a timeout):

* :class:`DeviceGone` — the device disappeared (unplugged, powered off).  The transport is then
  :attr:`~UsbTransport.connected` ``False``, the ``on_disconnect`` callback has been called once
  and every later call raises :class:`DeviceGone` until :meth:`UsbTransport.reattach`.  The
  callback has *returned* before any thread gets :class:`DeviceGone`: the thread that noticed runs
  it, the others wait for it (:meth:`UsbTransport.wait_disconnect_reported`, at most
  :data:`DISCONNECT_REPORT_WAIT_S`, so that a callback waiting on such a thread cannot deadlock).
  A callback that itself calls the transport gets :class:`DeviceGone` at once.
* :class:`AckError` — a 0xC6 chip-word batch was not acknowledged with ``0xC6 0x00`` (board not
  booted, long cable, wrong jumpers; user guide §7.1).
* :class:`TransportTimeout` — a control transfer timed out.

Reader thread
-------------
:meth:`UsbTransport.start_reader` starts one thread that reads bulk IN and hands each chunk to
a sink.  pyusb only offers synchronous transfers, so "several transfers in flight" is realised by
asking for ``transfers_in_flight × transfer_size`` bytes per read (libcaer: 8 × 8192): libusb
queues the whole request with the host controller (split into several URBs where the kernel
needs it), so the endpoint keeps being served while earlier packets complete.  Decoding and
callbacks run in the sink, never between two reads' submission and completion inside libusb.
A read timeout is normal (no data); the thread checks its stop flag at least every
``poll_timeout_ms`` so :meth:`stop_reader` returns promptly.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from . import fpga_registers as fr
from .usb_discovery import pyusb

log = logging.getLogger(__name__)

LIBUSB_ERROR_NO_DEVICE = -4
LIBUSB_ERROR_IO = -1
LIBUSB_ERROR_TIMEOUT = -7
_GONE_ERRNOS = {errno.ENODEV, errno.ENXIO, errno.ESHUTDOWN}
#: Longest wait of a thread for the ``on_disconnect`` callback another thread runs [s].
DISCONNECT_REPORT_WAIT_S = 5.0


class TransportError(IOError):
    """A USB transfer failed for a reason other than a timeout or a missing device."""


class DeviceGone(TransportError, ConnectionError):
    """The board is no longer on the bus (unplugged or powered off)."""


class AckError(TransportError):
    """A chip-configuration batch was not acknowledged by the board."""


class TransportTimeout(TransportError, TimeoutError):
    """A transfer did not complete within its timeout."""


def _is_timeout(exc: Exception) -> bool:
    return isinstance(exc, pyusb().core.USBTimeoutError) or getattr(exc, "backend_error_code", None) == LIBUSB_ERROR_TIMEOUT or getattr(exc, "errno", None) == errno.ETIMEDOUT


def _is_gone(exc: Exception) -> bool:
    return getattr(exc, "backend_error_code", None) == LIBUSB_ERROR_NO_DEVICE or getattr(exc, "errno", None) in _GONE_ERRNOS


class UsbTransport:
    """Control and bulk transfers to one DYNAP-SE1 (real or virtual) through pyusb.

    Parameters
    ----------
    device : usb.core.Device
    timeout_ms : control-transfer timeout.
    transfer_size, transfers_in_flight : bulk-IN request size is their product (libcaer 8192 × 8).
    poll_timeout_ms : bulk-read timeout of the reader thread (how fast it notices a stop).
    on_disconnect : called once, from whichever thread noticed, when the device disappears.
    """

    def __init__(
        self,
        device: Any,
        *,
        timeout_ms: int = 1000,
        transfer_size: int = 8192,
        transfers_in_flight: int = 8,
        poll_timeout_ms: int = 100,
        on_disconnect: Callable[[str], None] | None = None,
    ) -> None:
        self.device = device
        self.timeout_ms = timeout_ms
        self.transfer_size = transfer_size
        self.transfers_in_flight = transfers_in_flight
        self.poll_timeout_ms = poll_timeout_ms
        self.on_disconnect = on_disconnect
        self._connected = False
        self._disconnect_reason = ""
        self._gone_lock = threading.Lock()  # one thread is the first to notice a disconnect
        self._disconnect_reported = threading.Event()  # clear while on_disconnect runs
        self._disconnect_reported.set()
        self._reporting_thread: threading.Thread | None = None
        self._io_lock = threading.RLock()  # control transfers are serialised
        self._reader: threading.Thread | None = None
        self._stop_reader = threading.Event()

    # --- lifecycle -------------------------------------------------------------------------------

    def open(self) -> None:
        """Set configuration 1 and claim interface 0."""
        self._guard(lambda: self.device.set_configuration(fr.USB_CONFIGURATION), "set configuration", check=False)
        usb = pyusb()
        self._guard(lambda: usb.util.claim_interface(self.device, fr.USB_INTERFACE), "claim interface", check=False)
        self._connected = True
        self._disconnect_reason = ""

    def reattach(self, device: Any) -> None:
        """Use ``device`` (the same board found again after a replug) and open it."""
        self.stop_reader()
        self.device = device
        self.open()

    def close(self) -> None:
        """Stop the reader and release the interface; safe to call twice or after an unplug."""
        self.stop_reader()
        if self.device is None:
            return
        usb = pyusb()
        try:
            usb.util.release_interface(self.device, fr.USB_INTERFACE)
            usb.util.dispose_resources(self.device)
        except Exception as exc:  # the device may already be gone; closing must still succeed
            log.debug("ignoring error while releasing the device: %s", exc)
        self._connected = False

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def disconnect_reason(self) -> str:
        return self._disconnect_reason

    @property
    def serial(self) -> str:
        return self._guard(lambda: pyusb().util.get_string(self.device, self.device.iSerialNumber) or "", "read serial", check=False)

    @property
    def firmware_version(self) -> int:
        return int(self.device.bcdDevice) & 0xFF

    # --- error handling -------------------------------------------------------------------------

    def device_lost(self, reason: str) -> None:
        """Declare the device gone without a failed transfer (its backend knows it disappeared,
        e.g. an emulator process that died); behaves like an unplug noticed by a transfer."""
        self._mark_gone(reason)

    def _mark_gone(self, reason: str) -> None:
        with self._gone_lock:
            first = self._connected or not self._disconnect_reason
            if first:  # cleared before `connected` turns False, so that no thread sees one without the other
                self._disconnect_reported.clear()
                self._reporting_thread = threading.current_thread()
            self._connected = False
            self._disconnect_reason = reason
        if not first:
            return
        try:
            log.warning("DYNAP-SE1 disconnected: %s", reason)
            if self.on_disconnect is not None:
                try:
                    self.on_disconnect(reason)
                except Exception:  # a faulty listener must not hide the disconnect
                    log.exception("on_disconnect callback failed")
        finally:
            self._reporting_thread = None
            self._disconnect_reported.set()

    def wait_disconnect_reported(self, timeout_s: float = DISCONNECT_REPORT_WAIT_S) -> bool:
        """Wait until the ``on_disconnect`` callback of a disconnect has returned; True when it has.

        Called before :class:`DeviceGone` is raised, so that a caller catching it finds the
        disconnect listeners already run.  Returns at once where no callback runs, and in the
        callback's own thread (a listener that calls the board must not wait for itself).
        """
        if threading.current_thread() in (self._reporting_thread, self._reader):
            return True  # the listener itself, or the reader thread (which hands DeviceGone to nobody)
        if self._disconnect_reported.wait(timeout_s):
            return True
        log.warning("the disconnect listeners have not returned within %.1f s; raising DeviceGone anyway", timeout_s)
        return False

    def _guard(self, call: Callable[[], Any], what: str, *, check: bool = True) -> Any:
        usb = pyusb()
        if check and not self._connected:
            self.wait_disconnect_reported()
            raise DeviceGone(f"{what}: board is disconnected ({self._disconnect_reason or 'not open'})")
        try:
            return call()
        except usb.core.USBError as exc:
            if _is_timeout(exc):
                raise TransportTimeout(f"{what}: timed out after {self.timeout_ms} ms") from exc
            if _is_gone(exc):
                self._mark_gone(f"{what}: {exc}")
                self.wait_disconnect_reported()  # another thread may have noticed first and run the callback
                raise DeviceGone(f"{what}: the board is gone ({exc})") from exc
            raise TransportError(f"{what}: {exc}") from exc

    # --- control transfers ----------------------------------------------------------------------

    def send(self, transfers: Sequence[fr.ControlTransfer]) -> list[int]:
        """Send control transfers in order; returns the values of the register reads among them.

        After every 0xC6 chip-word batch the two-byte acknowledgement is read and checked, as
        libcaer's ``sendUSBCommandVerifyMultiple`` does; a missing or wrong one raises
        :class:`AckError` (the transfers before it were applied).
        """
        values: list[int] = []
        with self._io_lock:
            for index, t in enumerate(transfers):
                if t.direction_in:
                    values.append(self._read(t))
                    continue
                self._guard(
                    lambda t=t: self.device.ctrl_transfer(fr.REQUEST_TYPE_VENDOR_OUT, t.request, t.value, t.index, t.data, self.timeout_ms),
                    f"control transfer 0x{t.request:02X} {t.value}/{t.index}",
                )
                if t.is_chip_words:
                    self._check_ack(index)
        return values

    def _read(self, t: fr.ControlTransfer) -> int:
        data = self._guard(
            lambda: self.device.ctrl_transfer(fr.REQUEST_TYPE_VENDOR_IN, t.request, t.value, t.index, t.length, self.timeout_ms),
            f"read register {t.value}/{t.index}",
        )
        if len(data) != 4:
            raise TransportError(f"read register {t.value}/{t.index}: got {len(data)} bytes, expected 4")
        return fr.unpack_register_value(data)

    def _check_ack(self, index: int) -> None:
        try:
            ack = self._guard(
                lambda: self.device.ctrl_transfer(fr.REQUEST_TYPE_VENDOR_IN, fr.VR_CHIP_CONFIG_MULTIPLE, 0, 0, 2, self.timeout_ms),
                "chip-word acknowledgement",
            )
        except TransportTimeout as exc:
            raise AckError(f"chip-word batch {index} not acknowledged (timeout); is the board booted (ACT LED)?") from exc
        if bytes(ack) != fr.CHIP_CONFIG_ACK:
            raise AckError(
                f"chip-word batch {index} acknowledged with {bytes(ack).hex() or 'nothing'}, expected c600; "
                "check that the board is booted, the cable is short and the jumpers are right"
            )

    def write_register(self, module: int, param: int, value: int) -> None:
        """0xBF OUT: one FPGA register."""
        self.send([fr.single_write(module, param, value)])

    def read_register(self, module: int, param: int) -> int:
        """0xBF IN: one FPGA register."""
        return self.send([fr.register_read(module, param)])[0]

    def write_registers(self, writes: Sequence[fr.RegisterWrite]) -> None:
        """0xC2 OUT: several register writes, in batches of at most 85, no acknowledgement."""
        self.send(fr.multiple_writes(writes))

    def write_chip_words(self, words: Sequence[int]) -> None:
        """0xC6 OUT + 2-byte IN acknowledgement per batch of at most 85 chip words.

        The chip is the one last selected with CHIP/ID.  Raises :class:`AckError` when the
        acknowledgement is missing or wrong; the batches before it were applied.
        """
        self.send(fr.chip_word_transfers(words))

    # --- bulk IN -----------------------------------------------------------------------------------

    def read_bulk(self, timeout_ms: int | None = None) -> bytes:
        """One synchronous bulk-IN read of up to ``transfers_in_flight × transfer_size`` bytes.

        Returns ``b""`` when nothing arrived within the timeout; raises :class:`DeviceGone`.
        """
        size = self.transfer_size * self.transfers_in_flight
        try:
            data = self._guard(
                lambda: self.device.read(fr.EVENT_ENDPOINT_IN, size, timeout_ms if timeout_ms is not None else self.poll_timeout_ms),
                "bulk read",
            )
        except TransportTimeout:
            return b""
        return bytes(data)

    def start_reader(self, sink: Callable[[bytes], None]) -> None:
        """Start the reader thread; ``sink(chunk)`` gets every non-empty chunk, in order."""
        if self._reader is not None and self._reader.is_alive():
            return
        self._stop_reader.clear()
        self._reader = threading.Thread(target=self._reader_loop, args=(sink,), name="dynapse1-usb-reader", daemon=True)
        self._reader.start()

    @property
    def reader_running(self) -> bool:
        return self._reader is not None and self._reader.is_alive()

    def stop_reader(self, timeout_s: float = 5.0) -> None:
        """Ask the reader thread to stop and wait for it (at most ``timeout_s``)."""
        self._stop_reader.set()
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout_s)
            if reader.is_alive():
                log.error("USB reader thread did not stop within %.1f s", timeout_s)
        self._reader = None

    def _reader_loop(self, sink: Callable[[bytes], None]) -> None:
        while not self._stop_reader.is_set():
            try:
                chunk = self.read_bulk()
            except DeviceGone:
                return  # _mark_gone already reported it
            except TransportError as exc:
                self._mark_gone(f"bulk read failed: {exc}")
                return
            if chunk:
                try:
                    sink(chunk)
                except Exception:  # a consumer bug must not kill the stream silently
                    log.exception("event sink failed; stream continues")
