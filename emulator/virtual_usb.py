"""The emulator as a USB device: a pyusb backend whose devices answer like a DYNAP-SE1.

:class:`VirtualDynapseBackend` subclasses ``usb.backend.IBackend``, so
``usb.core.find(idVendor=0x152A, idProduct=0x841D, backend=...)`` sees a device with a serial
number, ``bcdDevice`` firmware 3, configuration 1, interface 0 and bulk-IN endpoint 0x82.  The
driver (:class:`drivers.dynapse1.board.DynapseBoard`) talks to it with exactly the bytes it sends
to silicon.  This module does USB only (descriptors, handles, plugging); every vendor request
and bulk read goes unchanged to the device's FPGA: a :class:`~emulator.virtual_fpga.VirtualFpga`
in this process or a :class:`~emulator.fpga_process.RemoteVirtualFpga` in a child process.
Boards are put together by :mod:`emulator.virtual_board`.

Side channel
------------
:meth:`VirtualDynapseBackend.membrane_channel` returns ``(chip, core) -> (t_us, volts)`` for the
monitored neuron.  **Silicon has no such USB path** (its analog monitor is an SMA output); the
driver only uses it when the opener passes it, and returns None on silicon.

Fault injection (tests): :meth:`VirtualDynapseBackend.unplug` (device gone: every transfer then
fails with ENODEV, like libusb's LIBUSB_ERROR_NO_DEVICE); the FPGA's own faults are described
in :mod:`emulator.virtual_fpga`.
"""

from __future__ import annotations

import array
import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import usb.backend
import usb.core

from . import fpga_decoding as fd

if TYPE_CHECKING:  # imported where a board is built in this process: it loads numba, which a board in a child never needs here
    from .virtual_fpga import VirtualFpga

GET_DESCRIPTOR = 6
DESC_TYPE_STRING = 3
LANGID_EN_US = 0x0409
MANUFACTURER = "NeuroLab emulator"
PRODUCT = "Dynap-se"
REQUEST_TYPE_VENDOR_OUT = 0x40
REQUEST_TYPE_VENDOR_IN = 0xC0


def _gone() -> usb.core.USBError:
    return usb.core.USBError("No such device (it may have been disconnected)", -4, errno.ENODEV)


# --- descriptors ----------------------------------------------------------------------------------


@dataclass
class _DeviceDescriptor:
    bus: int
    address: int
    bLength: int = 18
    bDescriptorType: int = 1
    bcdUSB: int = 0x0200
    bDeviceClass: int = 0xFF
    bDeviceSubClass: int = 0
    bDeviceProtocol: int = 0
    bMaxPacketSize0: int = 64
    idVendor: int = fd.VENDOR_ID
    idProduct: int = fd.PRODUCT_ID
    bcdDevice: int = 0x0000 | fd.FIRMWARE_VERSION
    iManufacturer: int = 1
    iProduct: int = 2
    iSerialNumber: int = 3
    bNumConfigurations: int = 1
    port_number: int | None = None
    port_numbers: tuple | None = None
    speed: int | None = 3  # high speed


@dataclass
class _ConfigurationDescriptor:
    bLength: int = 9
    bDescriptorType: int = 2
    wTotalLength: int = 25
    bNumInterfaces: int = 1
    bConfigurationValue: int = fd.CONFIGURATION
    iConfiguration: int = 0
    bmAttributes: int = 0x80
    bMaxPower: int = 250
    extra_descriptors: bytes = b""


@dataclass
class _InterfaceDescriptor:
    bLength: int = 9
    bDescriptorType: int = 4
    bInterfaceNumber: int = fd.INTERFACE
    bAlternateSetting: int = 0
    bNumEndpoints: int = 1
    bInterfaceClass: int = 0xFF
    bInterfaceSubClass: int = 0
    bInterfaceProtocol: int = 0
    iInterface: int = 0
    extra_descriptors: bytes = b""


@dataclass
class _EndpointDescriptor:
    bLength: int = 7
    bDescriptorType: int = 5
    bEndpointAddress: int = fd.EVENT_ENDPOINT
    bmAttributes: int = 2  # bulk
    wMaxPacketSize: int = 512
    bInterval: int = 0
    bRefresh: int = 0
    bSynchAddress: int = 0
    extra_descriptors: bytes = b""


# --- the pyusb backend ----------------------------------------------------------------------------


class _Handle:
    def __init__(self, device: _VirtualDevice) -> None:
        self.device = device


@dataclass(eq=False)
class _VirtualDevice:
    fpga: Any  # VirtualFpga or RemoteVirtualFpga
    descriptor: _DeviceDescriptor
    plugged: bool = True


class VirtualDynapseBackend(usb.backend.IBackend):
    """A pyusb backend whose bus holds emulated DYNAP-SE1 boards.

    ``is_emulator`` and ``host_paced`` tell :func:`drivers.dynapse1.board.open_board` how to
    open its boards (``host_paced`` is True when every board runs on the fast clock).
    Each board's FPGA needs ``serial``, ``clock``, ``control_out``, ``control_in``,
    ``bulk_read`` and ``read_membrane``.
    """

    is_emulator = True

    def __init__(self) -> None:
        super().__init__()
        self._devices: list[_VirtualDevice] = []

    # --- bus management ---

    def add_board(self, serial: str, simulator: Any, clock: str = "fast") -> VirtualFpga:
        """Plug a board with ``serial`` backed by ``simulator``."""
        from .virtual_fpga import VirtualFpga

        return self.plug(VirtualFpga(serial, simulator, clock))

    def plug(self, fpga: Any) -> Any:
        """Plug a board whose FPGA already exists: a :class:`VirtualFpga`, or a
        :class:`~emulator.fpga_process.RemoteVirtualFpga` running in its own process."""
        serial = fpga.serial
        if len(serial) > 126:
            raise ValueError("serial number too long for a USB string descriptor")
        if any(d.fpga.serial == serial and d.plugged for d in self._devices):
            raise ValueError(f"a virtual board with serial {serial!r} is already plugged in")
        self._devices.append(_VirtualDevice(fpga, _DeviceDescriptor(bus=0, address=len(self._devices) + 1)))
        return fpga

    def board(self, serial: str) -> VirtualFpga:
        for d in self._devices:
            if d.fpga.serial == serial:
                return d.fpga
        raise LookupError(f"no virtual board {serial!r}")

    def unplug(self, serial: str) -> None:
        """Simulate pulling the cable: transfers on open handles fail with ENODEV."""
        for d in self._devices:
            if d.fpga.serial == serial:
                d.plugged = False

    def replug(self, serial: str) -> None:
        """Plug an unplugged board back in (a new device on the bus, same serial and state)."""
        for d in list(self._devices):
            if d.fpga.serial == serial and not d.plugged:
                self._devices.remove(d)
                self._devices.append(_VirtualDevice(d.fpga, _DeviceDescriptor(bus=0, address=len(self._devices) + 1)))
                return
        raise LookupError(f"no unplugged virtual board {serial!r}")

    @property
    def host_paced(self) -> bool:
        return bool(self._devices) and all(d.fpga.clock == "fast" for d in self._devices)

    def membrane_channel(self, serial: str):
        """``(chip, core) -> (t_us, volts)`` of the monitored neuron (emulator only)."""
        return self.board(serial).read_membrane

    # --- IBackend ---

    def enumerate_devices(self):
        return [d for d in self._devices if d.plugged]

    def get_device_descriptor(self, dev: _VirtualDevice) -> _DeviceDescriptor:
        return dev.descriptor

    def get_configuration_descriptor(self, dev, config):
        if config != 0:
            raise IndexError("the DYNAP-SE1 has one configuration")
        return _ConfigurationDescriptor()

    def get_interface_descriptor(self, dev, intf, alt, config):
        if (intf, alt, config) != (0, 0, 0):
            raise IndexError("the DYNAP-SE1 has one interface")
        return _InterfaceDescriptor()

    def get_endpoint_descriptor(self, dev, ep, intf, alt, config):
        if ep != 0:
            raise IndexError("the DYNAP-SE1 has one endpoint")
        return _EndpointDescriptor()

    def _live(self, handle: _Handle) -> _VirtualDevice:
        if not handle.device.plugged:
            raise _gone()
        return handle.device

    def open_device(self, dev):
        if not dev.plugged:
            raise _gone()
        return _Handle(dev)

    def close_device(self, dev_handle):
        """Nothing to release: a virtual handle holds no OS resource."""

    def set_configuration(self, dev_handle, config_value):
        self._live(dev_handle)
        if config_value != fd.CONFIGURATION:
            raise usb.core.USBError(f"invalid configuration {config_value}", -2, errno.EINVAL)

    def get_configuration(self, dev_handle):
        self._live(dev_handle)
        return fd.CONFIGURATION

    def set_interface_altsetting(self, dev_handle, intf, altsetting):
        self._live(dev_handle)

    def claim_interface(self, dev_handle, intf):
        self._live(dev_handle)

    def release_interface(self, dev_handle, intf):
        """Interfaces of a virtual device need no release."""

    def clear_halt(self, dev_handle, ep):
        self._live(dev_handle)

    def reset_device(self, dev_handle):
        self._live(dev_handle)

    def is_kernel_driver_active(self, dev_handle, intf):
        return False

    def detach_kernel_driver(self, dev_handle, intf):
        """No kernel driver is bound to a virtual device."""

    def attach_kernel_driver(self, dev_handle, intf):
        """No kernel driver is bound to a virtual device."""

    def _string_descriptor(self, fpga: Any, index: int) -> bytes:
        if index == 0:
            return bytes((4, DESC_TYPE_STRING)) + LANGID_EN_US.to_bytes(2, "little")
        text = {1: MANUFACTURER, 2: PRODUCT, 3: fpga.serial}.get(index)
        if text is None:
            raise usb.core.USBError(f"no string descriptor {index}", -9, errno.EPIPE)
        body = text.encode("utf-16-le")
        return bytes((2 + len(body), DESC_TYPE_STRING)) + body

    def ctrl_transfer(self, dev_handle, bmRequestType, bRequest, wValue, wIndex, data, timeout):
        fpga = self._live(dev_handle).fpga
        if bmRequestType & 0x80:
            if bmRequestType == 0x80 and bRequest == GET_DESCRIPTOR and wValue >> 8 == DESC_TYPE_STRING:
                reply = self._string_descriptor(fpga, wValue & 0xFF)
            elif bmRequestType == REQUEST_TYPE_VENDOR_IN:
                reply = fpga.control_in(bRequest, wValue, wIndex, len(data))
            else:
                raise usb.core.USBError(f"request 0x{bRequest:02X} stalled", -9, errno.EPIPE)
            n = min(len(reply), len(data))
            data[:n] = array.array("B", reply[:n])
            return n
        if bmRequestType != REQUEST_TYPE_VENDOR_OUT:
            raise usb.core.USBError(f"request type 0x{bmRequestType:02X} stalled", -9, errno.EPIPE)
        payload = bytes(data)
        fpga.control_out(bRequest, wValue, wIndex, payload)
        return len(payload)

    def bulk_read(self, dev_handle, ep, intf, buff, timeout):
        device = self._live(dev_handle)
        if ep != fd.EVENT_ENDPOINT:
            raise usb.core.USBError(f"no IN endpoint 0x{ep:02X}", -9, errno.EPIPE)
        data = device.fpga.bulk_read(len(buff), timeout)
        if not device.plugged:
            raise _gone()
        buff[: len(data)] = array.array("B", data)
        return len(data)
