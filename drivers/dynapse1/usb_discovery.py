"""Find DYNAP-SE1 boards on the USB bus (or on any pyusb backend, e.g. the emulator's).

Discovery is separate from the transport so that ``neurolab doctor`` and
``neurolab devices`` can list boards, and explain permission problems, without
opening them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .topology import USB_PRODUCT_ID, USB_VENDOR_ID

log = logging.getLogger(__name__)


def libusb_backend() -> Any | None:
    """The pyusb libusb-1.0 backend, or None if no libusb library can be loaded.

    Uses the library shipped by the ``libusb-package`` wheel when present, so a bare
    machine needs no system libusb; falls back to the system library.
    """
    import usb.backend.libusb1

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
    import usb.core
    import usb.util

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
