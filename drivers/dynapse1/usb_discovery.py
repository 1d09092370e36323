"""Find DYNAP-SE1 boards on the USB bus (or on any pyusb backend, e.g. the emulator's).

Discovery is separate from the transport so that ``neurolab doctor`` and
``neurolab devices`` can list boards, and explain permission problems, without
opening them.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from .topology import USB_PRODUCT_ID, USB_VENDOR_ID

log = logging.getLogger(__name__)

_PYUSB_IMPORT = threading.Lock()
_pyusb: ModuleType | None = None  # set once every module is imported


def pyusb() -> ModuleType:
    """pyusb's ``usb`` package, with ``usb.core``, ``usb.util`` and ``usb.backend.libusb1`` loaded.

    The driver imports pyusb only when it touches USB (``neurolab --version`` and ``doctor`` must
    work without it), and always through here: pyusb's modules import one another in a cycle
    (``usb`` -> ``usb.legacy`` -> ``usb.core``, ``usb.backend.libusb1`` -> ``usb.core``), so two
    threads importing different parts of it at once take Python's per-module import locks in
    opposite orders, and Python breaks that deadlock by handing one of them the half-initialised
    ``usb.core`` ("partially initialized module 'usb.core' has no attribute 'USBError'").  The app
    does just that: the connection bar lists boards on the GUI thread while a worker opens the
    board.  One thread at a time imports it here.
    """
    global _pyusb
    if _pyusb is None:  # the transport asks on every transfer: once imported, no lock
        with _PYUSB_IMPORT:
            import usb
            import usb.backend.libusb1
            import usb.core
            import usb.util

            _pyusb = usb
    return _pyusb


def libusb_backend() -> Any | None:
    """The pyusb libusb-1.0 backend, or None if no libusb library can be loaded.

    Uses the library shipped by the ``libusb-package`` wheel when present, so a bare
    machine needs no system libusb; falls back to the system library.
    """
    usb = pyusb()
    try:
        import libusb_package

        backend = usb.backend.libusb1.get_backend(find_library=libusb_package.find_library)
        if backend is not None:
            return backend
    except ImportError:
        pass
    return usb.backend.libusb1.get_backend()


@dataclass(frozen=True)
class FoundBoard:
    """A board seen on a bus, before it is opened."""

    bus: int | None
    address: int | None
    serial: str | None  # None when the string descriptor could not be read
    firmware_version: int  # low byte of bcdDevice
    accessible: bool
    problem: str = ""  # why it is not accessible, with the fix


def find_boards(backend: Any | None = None) -> list[FoundBoard]:
    """Every device with the DYNAP-SE1 VID/PID on ``backend`` (default: the libusb backend).

    Never raises for a device that cannot be opened: it is reported with
    ``accessible=False`` and a ``problem`` saying how to fix permissions.
    """
    usb = pyusb()
    backend = backend if backend is not None else libusb_backend()
    if backend is None:
        return []
    found: list[FoundBoard] = []
    for dev in usb.core.find(find_all=True, idVendor=USB_VENDOR_ID, idProduct=USB_PRODUCT_ID, backend=backend) or []:
        firmware = int(getattr(dev, "bcdDevice", 0)) & 0xFF
        try:
            serial = usb.util.get_string(dev, dev.iSerialNumber) if dev.iSerialNumber else ""
            found.append(FoundBoard(dev.bus, dev.address, serial, firmware, True))
        except (usb.core.USBError, ValueError, NotImplementedError) as exc:
            problem = (
                f"cannot open the device ({exc}). Install the udev rule: "
                "sudo cp resources/udev/60-dynapse.rules /etc/udev/rules.d/ && "
                "sudo udevadm control --reload-rules && sudo udevadm trigger; "
                "then add yourself to plugdev and log in again"
            )
            found.append(FoundBoard(dev.bus, dev.address, None, firmware, False, problem))
    return found


def find_device(serial: str | None = None, backend: Any | None = None) -> Any:
    """The ``usb.core.Device`` of the board with ``serial`` (or the only board) on ``backend``.

    Raises ``LookupError`` naming what was found when there is no match or, without a serial,
    more than one board.
    """
    usb = pyusb()
    backend = backend if backend is not None else libusb_backend()
    if backend is None:
        raise LookupError("no libusb backend available: pip install libusb-package, or apt install libusb-1.0-0")
    devices = list(usb.core.find(find_all=True, idVendor=USB_VENDOR_ID, idProduct=USB_PRODUCT_ID, backend=backend) or [])
    serials: list[str] = []
    for dev in devices:
        try:
            dev_serial = usb.util.get_string(dev, dev.iSerialNumber) if dev.iSerialNumber else ""
        except (usb.core.USBError, ValueError, NotImplementedError):
            dev_serial = "?"
        serials.append(dev_serial)
        if serial is not None and dev_serial == serial:
            return dev
    if serial is None and len(devices) == 1:
        return devices[0]
    if not devices:
        raise LookupError("no DYNAP-SE1 board found (VID 0x152A, PID 0x841D); run `neurolab devices`")
    if serial is None:
        raise LookupError(f"{len(devices)} DYNAP-SE1 boards found ({', '.join(serials)}); choose one by serial")
    raise LookupError(f"no DYNAP-SE1 board with serial {serial!r}; found: {', '.join(serials)}")
