"""The emulator as a DYNAP-SE1 on the wire: a pyusb backend whose devices answer like the board.

:class:`VirtualDynapseBackend` subclasses ``usb.backend.IBackend``, so
``usb.core.find(idVendor=0x152A, idProduct=0x841D, backend=...)`` sees a device with a serial
number, ``bcdDevice`` firmware 3, configuration 1, interface 0 and bulk-IN endpoint 0x82.  The
driver (:class:`drivers.dynapse1.board.DynapseBoard`) talks to it with exactly the bytes it sends
to silicon.  Each device is backed by a :class:`VirtualFpga`, which plays the FPGA:

* registers of every module (SYSINFO reports logic version 5, chip identifier 64);
* CHIP/ID + CHIP/CONTENT: chip words are decoded with :mod:`drivers.dynapse1.chip_words` and
  applied to the :class:`~emulator.simulator.BoardSimulator` (biases, CAM, SRAM, tau, monitor,
  host input spikes — routed with the word's dx/dy from the selected chip);
* the 0xC6 acknowledgement ``0xC6 0x00``;
* the SRAM module (single and burst writes) as FPGA memory; a 0→1 edge on SPIKEGEN/RUN
  decodes the generator memory and loads it into the simulator (dummy events with core mask 0
  only add their ISI to the next event);
* POISSONSPIKEGEN writes become per-source rates; MUX/TIMESTAMP_RESET resets the clock and
  puts the reset word on the stream;
* bulk IN: the simulator's spikes encoded by :class:`drivers.dynapse1.event_words.StreamEncoder`,
  with wrap words at every 2^15 µs boundary and a timestamp word at the end of each packet, so
  the host clock advances even when nothing fires.

Clocks
------
``fast``: a bulk read with nothing buffered simulates one USB packet period (the
USB/EARLY_PACKET_DELAY register the host wrote; 1 ms by default) and returns its bytes.  Time
advances only when the host reads (``host_paced`` is True, so the driver reads synchronously).
``realtime``: a read simulates up to the wall clock (at least one packet period, waiting if the
emulator is ahead); :attr:`VirtualFpga.lag_us` reports how far it is behind.

Side channel
------------
:meth:`VirtualDynapseBackend.membrane_channel` returns ``(chip, core) -> (t_us, volts)`` for the
monitored neuron.  **Silicon has no such USB path** (its analog monitor is an SMA output); the
driver only uses it when the opener passes it, and returns None on silicon.

Fault injection (tests): :meth:`VirtualDynapseBackend.unplug` (device gone: every transfer then
fails with ENODEV, like libusb's LIBUSB_ERROR_NO_DEVICE), ``VirtualFpga.ack_fault``
(``"missing"`` = empty acknowledgement, ``"wrong"``, ``"timeout"``) and ``VirtualFpga.stall_bulk``
(bulk IN times out).
"""

from __future__ import annotations

import array
import errno
import logging
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import usb.backend
import usb.core

from drivers.dynapse1 import chip_words as cw
from drivers.dynapse1 import fpga_registers as fr
from drivers.dynapse1 import spikegen_words as sg
from drivers.dynapse1.event_words import StreamEncoder
from drivers.dynapse1.spikes import SpikeEvents
from drivers.dynapse1.topology import N_NEURONS_PER_CORE, USB_PRODUCT_ID, USB_VENDOR_ID

log = logging.getLogger(__name__)

GET_DESCRIPTOR = 6
DESC_TYPE_STRING = 3
LANGID_EN_US = 0x0409
MANUFACTURER = "NeuroLab emulator"
PRODUCT = "Dynap-se"
FPGA_SRAM_WORDS = 1 << 20  # ISSI 61WV102416: 1 Mi × 16 bit
#: Longest span one real-time read simulates, so a far-behind emulator still answers promptly.
MAX_REALTIME_STEP_US = 50_000


def _gone() -> usb.core.USBError:
    return usb.core.USBError("No such device (it may have been disconnected)", -4, errno.ENODEV)


def _timeout(what: str) -> usb.core.USBTimeoutError:
    return usb.core.USBTimeoutError(f"Operation timed out ({what})", -7, errno.ETIMEDOUT)


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
    idVendor: int = USB_VENDOR_ID
    idProduct: int = USB_PRODUCT_ID
    bcdDevice: int = 0x0000 | fr.REQUIRED_FIRMWARE_VERSION
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
    bConfigurationValue: int = fr.USB_CONFIGURATION
    iConfiguration: int = 0
    bmAttributes: int = 0x80
    bMaxPower: int = 250
    extra_descriptors: bytes = b""


@dataclass
class _InterfaceDescriptor:
    bLength: int = 9
    bDescriptorType: int = 4
    bInterfaceNumber: int = fr.USB_INTERFACE
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
    bEndpointAddress: int = fr.EVENT_ENDPOINT_IN
    bmAttributes: int = 2  # bulk
    wMaxPacketSize: int = 512
    bInterval: int = 0
    bRefresh: int = 0
    bSynchAddress: int = 0
    extra_descriptors: bytes = b""


# --- the virtual FPGA ---------------------------------------------------------------------------


@dataclass
class VirtualFpga:
    """Registers, FPGA SRAM and the event stream of one emulated board around a simulator.

    ``simulator`` is an :class:`emulator.simulator.BoardSimulator` (or anything with its
    facade).  Thread-safe: control transfers and bulk reads may come from different threads.
    """

    serial: str
    simulator: Any
    clock: str = "fast"
    registers: dict[tuple[int, int], int] = field(default_factory=dict)
    ack_fault: str | None = None  # None, "missing", "wrong" or "timeout"
    stall_bulk: bool = False
    lag_us: float = 0.0

    def __post_init__(self) -> None:
        if self.clock not in ("fast", "realtime"):
            raise ValueError(f"clock must be 'fast' or 'realtime', got {self.clock!r}")
        self._lock = threading.RLock()
        self._memory = np.zeros(FPGA_SRAM_WORDS, np.uint16)
        self._burst_address = 0
        self._encoder = StreamEncoder()
        self._out = bytearray()
        self._pending_ack = False
        self._wall_origin: float | None = None
        self._sim_origin_us = 0
        self.registers.update(
            {
                (fr.Module.SYSINFO, fr.SysinfoParam.LOGIC_VERSION): fr.REQUIRED_LOGIC_VERSION,
                (fr.Module.SYSINFO, fr.SysinfoParam.CHIP_IDENTIFIER): fr.DYNAPSE_CHIP_IDENTIFIER,
                (fr.Module.SYSINFO, fr.SysinfoParam.DEVICE_IS_MASTER): 1,
                (fr.Module.SYSINFO, fr.SysinfoParam.LOGIC_CLOCK): fr.FPGA_LOGIC_CLOCK_MHZ,
                (fr.Module.USB, fr.UsbParam.EARLY_PACKET_DELAY): 8 * fr.USB_EARLY_PACKET_UNIT_CYCLES,
            }
        )

    @property
    def lag_s(self) -> float:
        """How far simulated time trails the wall clock [s] (real-time clock only; 0 on the fast clock)."""
        return self.lag_us / 1e6

    # --- registers ---

    def reg(self, module: int, param: int) -> int:
        return self.registers.get((int(module), int(param)), 0)

    def read_register(self, module: int, param: int) -> int:
        with self._lock:
            return self.reg(module, param)

    def write_register(self, module: int, param: int, value: int) -> None:
        """Store the value and perform the side effect the FPGA module has."""
        with self._lock:
            module, param = int(module), int(param)
            previous = self.reg(module, param)
            if module == fr.Module.SYSINFO:
                return  # read-only
            self.registers[(module, param)] = value
            if module == fr.Module.MUX and param == fr.MuxParam.TIMESTAMP_RESET and value and not previous:
                self._reset_timestamps()
            elif module == fr.Module.CHIP and param == fr.ChipParam.CONTENT:
                self.apply_chip_word(fr.chip_id_from_device(self.reg(fr.Module.CHIP, fr.ChipParam.ID)), value)
            elif module == fr.Module.SRAM:
                self._sram_write(param, value)
            elif module == fr.Module.SPIKEGEN and param == fr.SpikeGenParam.RUN:
                if value and not previous:
                    self._start_spike_generator()
                elif previous and not value:
                    self.simulator.stop_spike_generator()
            elif module == fr.Module.POISSONSPIKEGEN:
                if param == fr.PoissonParam.WRITEADDRESS:
                    rate = sg.poisson_rate_hz(self.reg(module, fr.PoissonParam.WRITEDATA))
                    chip = self.reg(module, fr.PoissonParam.CHIPID)  # inverse of fr.poisson_chip_id_value
                    self.simulator.set_poisson_rate(chip, value, rate)
                elif param == fr.PoissonParam.RUN:
                    self.simulator.set_poisson_running(bool(value))

    def _reset_timestamps(self) -> None:
        self.simulator.reset_timestamps()
        self._out += self._encoder.reset()
        self._wall_origin = None

    # --- FPGA SRAM and the spike generator ---

    def _sram_write(self, param: int, value: int) -> None:
        burst = self.reg(fr.Module.SRAM, fr.SramParam.BURSTMODE)
        if param == fr.SramParam.ADDRESS:
            if burst:
                self._burst_address = value
            elif self.reg(fr.Module.SRAM, fr.SramParam.RWCOMMAND) == 1:
                self._memory[value % FPGA_SRAM_WORDS] = self.reg(fr.Module.SRAM, fr.SramParam.WRITEDATA) & 0xFFFF
            else:
                self.registers[(fr.Module.SRAM, fr.SramParam.READDATA)] = int(self._memory[value % FPGA_SRAM_WORDS])
        elif param == fr.SramParam.WRITEDATA and burst:
            low, high = sg.unpack_burst_word(value)
            self._memory[self._burst_address % FPGA_SRAM_WORDS] = low
            self._memory[(self._burst_address + 1) % FPGA_SRAM_WORDS] = high
            self._burst_address += 2

    def _start_spike_generator(self) -> None:
        m = fr.Module.SPIKEGEN
        variable = bool(self.reg(m, fr.SpikeGenParam.VARMODE))
        n_events = self.reg(m, fr.SpikeGenParam.STIMCOUNT) + 1
        base = self.reg(m, fr.SpikeGenParam.BASEADDR)
        unit_us = sg.isi_unit_us(max(1, self.reg(m, fr.SpikeGenParam.ISIBASE)))
        words = self._memory[base : base + n_events * (2 if variable else 1)]
        events = sg.decode_generator_memory(words, n_events, variable, self.reg(m, fr.SpikeGenParam.ISI))
        program: list[tuple[int, int, int, float]] = []
        carried_us = 0.0
        for e in events:
            carried_us += e.isi * unit_us
            if e.core_mask == 0:
                continue  # a dummy event: only its delay counts
            program.append((e.chip, e.neuron, e.core_mask, carried_us))
            carried_us = 0.0
        self.simulator.load_spike_generator(program, bool(self.reg(m, fr.SpikeGenParam.REPEAT)))
        self.simulator.start_spike_generator()

    # --- chip words ---

    def apply_chip_word(self, chip: int, word: int) -> None:
        """Apply one CHIP/CONTENT word to ``chip`` of the simulator."""
        kind = cw.classify_chip_word(word)
        sim = self.simulator
        if kind is cw.ChipWordKind.CAM:
            c = cw.decode_cam_word(word)
            sim.write_cam(chip, c.neuron, c.cam_index, c.pre_core, c.pre_neuron, int(c.synapse))
        elif kind is cw.ChipWordKind.SRAM:
            s = cw.decode_sram_word(word)
            r = s.route
            sim.write_sram(chip, s.neuron, s.cell, s.virtual_core, r.sx, r.dx, r.sy, r.dy, s.core_mask)
        elif kind is cw.ChipWordKind.BIAS:
            b = cw.decode_bias_word(word)
            core, name = cw.bias_name_of_address(b.address)
            if core is None:
                sim.set_global_bias(chip, name, b.coarse, b.fine)
            else:
                sim.set_bias(chip, core, name, b.coarse, b.fine, high=b.high, normal=b.normal, enabled=b.enabled)
        elif kind is cw.ChipWordKind.INPUT_SPIKE:
            s = cw.decode_input_spike_word(word)
            destination = cw.route_destination(chip, s.route)
            if isinstance(destination, int):
                sim.inject_spike(destination, s.source_core, s.source_neuron, s.core_mask)
        elif kind is cw.ChipWordKind.CORE_TAU:
            sim.set_core_tau(chip, (word >> 8) & 3, bool(word >> 11 & 1))
        elif kind is cw.ChipWordKind.NEURON_TAU2:
            sim.set_tau2(chip, word & 0x3FF, True)
        elif kind is cw.ChipWordKind.MONITOR_SELECT:
            neuron = word & 0x3FF
            sim.select_monitor(chip, neuron // N_NEURONS_PER_CORE, neuron % N_NEURONS_PER_CORE)
        # MONITOR_RESET only disconnects the output until the next select: nothing to simulate.

    def chip_config_batch(self, payload: bytes) -> None:
        """A 0xC6 data stage: every entry must be CHIP/CONTENT."""
        with self._lock:
            for entry in fr.unpack_entries(payload):
                self.write_register(entry.module, entry.param, entry.value)
            self._pending_ack = True

    def take_ack(self) -> bytes:
        with self._lock:
            if self.ack_fault == "timeout":
                raise _timeout("chip-config acknowledgement")
            if self.ack_fault == "missing" or not self._pending_ack:
                return b""
            self._pending_ack = False
            return b"\xc6\x01" if self.ack_fault == "wrong" else fr.CHIP_CONFIG_ACK

    # --- bulk IN ---

    @property
    def streaming(self) -> bool:
        return bool(self.reg(fr.Module.USB, fr.UsbParam.RUN) and self.reg(fr.Module.MUX, fr.MuxParam.RUN))

    @property
    def packet_period_us(self) -> int:
        cycles = self.reg(fr.Module.USB, fr.UsbParam.EARLY_PACKET_DELAY)
        return max(fr.USB_EARLY_PACKET_UNIT_US, cycles // fr.USB_EARLY_PACKET_UNIT_CYCLES * fr.USB_EARLY_PACKET_UNIT_US)

    def bulk_read(self, size: int, timeout_ms: int) -> bytes:
        """Up to ``size`` bytes of the event stream; raises a pyusb timeout when there are none."""
        with self._lock:
            if not self._out and self.streaming and not self.stall_bulk:
                self._simulate_packet()
            if self._out:
                data = bytes(self._out[:size])
                del self._out[:size]
                return data
        time.sleep(min(timeout_ms, 20) / 1000)  # like a device with nothing to send
        raise _timeout("bulk IN")

    def _simulate_packet(self) -> None:
        sim = self.simulator
        start = int(sim.now_us)
        step = self.packet_period_us
        if self.clock == "realtime":
            now = time.monotonic()
            if self._wall_origin is None:
                self._wall_origin, self._sim_origin_us = now, start
            wall_us = self._sim_origin_us + (now - self._wall_origin) * 1e6
            if start + step > wall_us:  # ahead of the wall clock: wait for the packet period
                time.sleep((start + step - wall_us) / 1e6)
                self.lag_us = 0.0
            else:
                self.lag_us = wall_us - start
                step = int(min(max(step, wall_us - start), MAX_REALTIME_STEP_US))
        events: SpikeEvents = sim.run(step / 1e6)
        end = int(sim.now_us)
        if len(events):
            self._out += self._encoder.encode(events)
        self._out += self._encoder.advance_to(end)

    # --- emulator-only side channel ---

    def read_membrane(self, chip: int, core: int) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            return self.simulator.read_membrane(chip, core)


# --- the pyusb backend ----------------------------------------------------------------------------


class _Handle:
    def __init__(self, device: _VirtualDevice) -> None:
        self.device = device


@dataclass(eq=False)
class _VirtualDevice:
    fpga: VirtualFpga
    descriptor: _DeviceDescriptor
    plugged: bool = True


class VirtualDynapseBackend(usb.backend.IBackend):
    """A pyusb backend whose bus holds emulated DYNAP-SE1 boards.

    ``is_emulator`` and ``host_paced`` tell :func:`drivers.dynapse1.board.open_board` how to
    open its boards (``host_paced`` is True when every board runs on the fast clock).
    """

    is_emulator = True

    def __init__(self) -> None:
        super().__init__()
        self._devices: list[_VirtualDevice] = []

    # --- bus management ---

    def add_board(self, serial: str, simulator: Any, clock: str = "fast") -> VirtualFpga:
        """Plug a board with ``serial`` backed by ``simulator``."""
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
        if config_value != fr.USB_CONFIGURATION:
            raise usb.core.USBError(f"invalid configuration {config_value}", -2, errno.EINVAL)

    def get_configuration(self, dev_handle):
        self._live(dev_handle)
        return fr.USB_CONFIGURATION

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

    def _string_descriptor(self, fpga: VirtualFpga, index: int) -> bytes:
        if index == 0:
            return bytes((4, DESC_TYPE_STRING)) + LANGID_EN_US.to_bytes(2, "little")
        text = {1: MANUFACTURER, 2: PRODUCT, 3: fpga.serial}.get(index)
        if text is None:
            raise usb.core.USBError(f"no string descriptor {index}", -9, errno.EPIPE)
        body = text.encode("utf-16-le")
        return bytes((2 + len(body), DESC_TYPE_STRING)) + body

    def ctrl_transfer(self, dev_handle, bmRequestType, bRequest, wValue, wIndex, data, timeout):
        fpga = self._live(dev_handle).fpga
        device_to_host = bool(bmRequestType & 0x80)
        if device_to_host:
            if bmRequestType == 0x80 and bRequest == GET_DESCRIPTOR and wValue >> 8 == DESC_TYPE_STRING:
                reply = self._string_descriptor(fpga, wValue & 0xFF)
            elif bmRequestType == fr.REQUEST_TYPE_VENDOR_IN and bRequest == fr.VR_FPGA_CONFIG:
                reply = fr.pack_register_value(fpga.read_register(wValue, wIndex))
            elif bmRequestType == fr.REQUEST_TYPE_VENDOR_IN and bRequest == fr.VR_CHIP_CONFIG_MULTIPLE:
                reply = fpga.take_ack()
            else:
                raise usb.core.USBError(f"request 0x{bRequest:02X} stalled", -9, errno.EPIPE)
            n = min(len(reply), len(data))
            data[:n] = array.array("B", reply[:n])
            return n
        payload = bytes(data)
        if bmRequestType != fr.REQUEST_TYPE_VENDOR_OUT:
            raise usb.core.USBError(f"request type 0x{bmRequestType:02X} stalled", -9, errno.EPIPE)
        if bRequest == fr.VR_FPGA_CONFIG:
            fpga.write_register(wValue, wIndex, fr.unpack_register_value(payload))
        elif bRequest in (fr.VR_FPGA_CONFIG_MULTIPLE, fr.VR_CHIP_CONFIG_MULTIPLE):
            if len(payload) != wValue * fr.ENTRY_SIZE or wValue > fr.MAX_ENTRIES_PER_TRANSFER:
                raise usb.core.USBError(f"request 0x{bRequest:02X}: {wValue} entries but {len(payload)} bytes", -9, errno.EPIPE)
            if bRequest == fr.VR_CHIP_CONFIG_MULTIPLE:
                fpga.chip_config_batch(payload)
            else:
                for entry in fr.unpack_entries(payload):
                    fpga.write_register(entry.module, entry.param, entry.value)
        else:
            raise usb.core.USBError(f"vendor request 0x{bRequest:02X} stalled", -9, errno.EPIPE)
        return len(payload)

    def bulk_read(self, dev_handle, ep, intf, buff, timeout):
        device = self._live(dev_handle)
        if ep != fr.EVENT_ENDPOINT_IN:
            raise usb.core.USBError(f"no IN endpoint 0x{ep:02X}", -9, errno.EPIPE)
        data = device.fpga.bulk_read(len(buff), timeout)
        if not device.plugged:
            raise _gone()
        buff[: len(data)] = array.array("B", data)
        return len(data)


#: The virtual FPGA behind every board opened by :func:`open_emulated_board` (weak: closed boards go).
_FPGA_OF_BOARD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def virtual_fpga_of(board: Any) -> VirtualFpga | None:
    """The :class:`VirtualFpga` (and through it the simulator and the measured real-time lag)
    behind a board opened by :func:`open_emulated_board`; None for any other board."""
    try:
        return _FPGA_OF_BOARD.get(board)
    except TypeError:  # not weak-referenceable: certainly not ours
        return None


def open_emulated_board(
    serial: str = "EMU00000", config: Any = None, clock: str = "fast", *, separate_process: bool = False, **board_options: Any
):
    """A :class:`~drivers.dynapse1.board.DynapseBoard` on a fresh emulated board.

    The board is opened through the same driver path as silicon (libcaer start-up, version
    checks, streaming); only the bias settling wait is skipped (``settle_s=0``) because the
    emulator's biases take effect at once.  With ``separate_process`` the FPGA and simulator run
    in a child process (:mod:`emulator.fpga_process`), which the GUI uses so that simulating a
    full board never competes with drawing; the child ends when the board is garbage-collected
    or the program exits.
    """
    from drivers.dynapse1.board import open_board

    backend = VirtualDynapseBackend()
    if separate_process:
        from emulator.fpga_process import RemoteVirtualFpga

        fpga: Any = backend.plug(RemoteVirtualFpga(serial, config, clock))
    else:
        from emulator.simulator import BoardSimulator

        fpga = backend.add_board(serial, BoardSimulator(serial, config), clock)
    board_options.setdefault("settle_s", 0.0)
    try:
        board = open_board(serial, backend=backend, **board_options)
    except BaseException:
        if separate_process:
            fpga.close()
        raise
    _FPGA_OF_BOARD[board] = fpga
    if separate_process:
        weakref.finalize(board, fpga.close)
    return board
