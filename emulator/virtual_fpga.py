"""The virtual FPGA of an emulated DYNAP-SE1: what the board does with each USB transfer.

:class:`VirtualFpga` answers the vendor control transfers and bulk reads that the pyusb backend
(:mod:`emulator.virtual_usb`) hands it, around a :class:`~emulator.simulator.BoardSimulator`:

* registers of every module (SYSINFO reports logic version 5, chip identifier 64; the MUX and
  AER statistics report the FPGA's drop counters);
* CHIP/ID + 0xC6 chip words: decoded by :mod:`emulator.fpga_decoding` (its own reading of the
  documented layout, not the driver's codecs) and applied to the simulator (biases, CAM, SRAM,
  tau, monitor, host input spikes routed with the word's dx/dy from the selected chip), then the
  ``0xC6 0x00`` acknowledgement;
* the SRAM module as FPGA memory (single-word commands and burst mode, libcaer's protocol); a
  0→1 edge on SPIKEGEN/RUN decodes the generator memory into the simulator (dummy events with
  core mask 0 reach no core; their ISIs keep the time, a last one's before a repeating list wraps);
* POISSONSPIKEGEN and SYNAPSERECONFIG with their chip selects in the device encoding 0/8/4/12;
  MUX/TIMESTAMP_RESET resets the clock and puts the reset word on the stream;
* bulk IN: the simulator's spikes (:class:`~emulator.fpga_stream.StreamEncoder`), with wrap
  words at every 2^15 µs boundary and a timestamp word at the end of each packet, so the host
  clock advances even when nothing fires.

Transfers libcaer never sends
-----------------------------
The FPGA also checks every transfer against what libcaer's ``dynapse.c`` sends (which
registers it writes or reads and through which request, the SRAM burst order, the chip-select
encodings, acknowledgement reads, the layout bits of chip words).  Anything else is applied
when it has an obvious meaning, but counted in :attr:`VirtualFpga.unexpected_count` and logged
in :attr:`VirtualFpga.unexpected_transfers` (and at WARNING level), so a sequence that works
only on the emulator is caught: the test suite fails on any such entry.

Clocks
------
``fast``: a bulk read with nothing buffered simulates one USB packet period (the
USB/EARLY_PACKET_DELAY register the host wrote; 1 ms by default) and returns its bytes.  Time
advances only when the host reads.  ``realtime``: a read simulates up to the wall clock (at least
one packet period, waiting if the emulator is ahead; :class:`~emulator.clock.RealTimeClock`);
:attr:`VirtualFpga.lag_us` reports how far it is behind.

Fault injection (tests): ``ack_fault`` (``"missing"`` = empty acknowledgement, ``"wrong"``,
``"timeout"``) and ``stall_bulk`` (bulk IN times out).
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import usb.core

from . import fpga_decoding as fd
from .clock import RealTimeClock
from .fpga_stream import StreamEncoder, load_encoder_kernel
from .routing import route_destination
from .unexpected_transfers import UNEXPECTED_IN_PROCESS, UNEXPECTED_LOG_LENGTH

log = logging.getLogger(__name__)

FPGA_SRAM_WORDS = 1 << 20  # ISSI 61WV102416: 1 Mi × 16 bit
N_NEURONS_PER_CORE = 256
N_SOURCES = 1024
#: Longest span one real-time read simulates, so a far-behind emulator still answers promptly.
MAX_REALTIME_STEP_US = 50_000


def usb_timeout(what: str) -> usb.core.USBTimeoutError:
    return usb.core.USBTimeoutError(f"Operation timed out ({what})", -7, errno.ETIMEDOUT)


def usb_stall(what: str) -> usb.core.USBError:
    return usb.core.USBError(f"Pipe error ({what})", -9, errno.EPIPE)


@dataclass
class SynapseReconfig:
    """State of the SYNAPSERECONFIG (DVS-to-synapse mapper) module.  The emulator has no DVS
    input, so it only holds what the host configured (the chip decoded from 0/8/4/12)."""

    chip: int | None = None
    run: bool = False
    use_sram_kernels: bool = False
    sram_base_address: int = 0
    global_kernels: dict[int, int] = field(default_factory=dict)  # table address → four 3-bit weights


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
    #: The FPGA's own drop counters (MUX AER dropped, AER events dropped), reported through SYSINFO-style reads.
    dropped_aer_events: int = 0
    dropped_transactions: int = 0

    def __post_init__(self) -> None:
        if self.clock not in ("fast", "realtime"):
            raise ValueError(f"clock must be 'fast' or 'realtime', got {self.clock!r}")
        self._lock = threading.RLock()
        self._memory = np.zeros(FPGA_SRAM_WORDS, np.uint16)
        self._sram_pointer = 0
        self._last_sram_param: int | None = None
        self._encoder = StreamEncoder()
        load_encoder_kernel()  # its first call would otherwise hold the GIL mid-run
        self._out = bytearray()
        self._pending_ack = False
        self._wall = RealTimeClock()
        self.synapse_reconfig = SynapseReconfig()
        self.unexpected_transfers: deque[str] = deque(maxlen=UNEXPECTED_LOG_LENGTH)
        self.unexpected_count = 0
        self.registers.update(
            {
                (fd.SYSINFO, 0): fd.LOGIC_VERSION,
                (fd.SYSINFO, 1): fd.CHIP_IDENTIFIER,
                (fd.SYSINFO, 2): 1,  # device is master
                (fd.SYSINFO, 3): fd.LOGIC_CLOCK_MHZ,
                (fd.MUX, fd.MUX_HAS_STATISTICS): 1,
                (fd.AER, fd.AER_HAS_STATISTICS): 1,
                (fd.USB, fd.USB_EARLY_PACKET_DELAY): 8 * fd.USB_CYCLES_PER_UNIT,
            }
        )

    @property
    def lag_s(self) -> float:
        """How far simulated time trails the wall clock [s] (real-time clock only; 0 on the fast clock)."""
        return self.lag_us / 1e6

    def _unexpected(self, what: str) -> None:
        self.unexpected_count += 1
        self.unexpected_transfers.append(what)
        UNEXPECTED_IN_PROCESS.append((self.serial, what))
        log.warning("board %s received a transfer libcaer never sends: %s", self.serial, what)

    def clear_unexpected(self) -> None:
        """Forget the unexpected transfers seen so far (tests that provoke them on purpose)."""
        with self._lock:
            for entry in self.unexpected_transfers:
                try:
                    UNEXPECTED_IN_PROCESS.remove((self.serial, entry))
                except ValueError:
                    pass
            self.unexpected_transfers.clear()
            self.unexpected_count = 0

    # --- USB vendor requests (called by the pyusb backend) ---

    def control_out(self, request: int, value: int, index: int, data: bytes) -> None:
        """A host→device vendor request; raises a pyusb stall for a request the FX2 does not know."""
        with self._lock:
            if request == fd.REQUEST_CONFIG:
                if len(data) != 4:
                    self._unexpected(f"0xBF write {value}/{index} with {len(data)} data bytes (libcaer sends 4)")
                    raise usb_stall("0xBF needs 4 data bytes")
                if index not in fd.WRITABLE.get(value, ()):
                    self._unexpected(f"0xBF write to {value}/{index}, a register libcaer never writes with 0xBF")
                self._write(value, index, fd.unpack_value(data), via_multiple=False)
            elif request in (fd.REQUEST_CONFIG_MULTIPLE, fd.REQUEST_CHIP_MULTIPLE):
                if len(data) != value * fd.ENTRY_BYTES or not 0 < value <= fd.MAX_ENTRIES:
                    self._unexpected(f"request 0x{request:02X} declaring {value} entries with {len(data)} bytes")
                    raise usb_stall(f"request 0x{request:02X}: {value} entries but {len(data)} bytes")
                entries = fd.unpack_entries(data)
                if request == fd.REQUEST_CHIP_MULTIPLE:
                    self._chip_words(entries)
                else:
                    self._multiple(entries)
            else:
                self._unexpected(f"vendor request 0x{request:02X} OUT")
                raise usb_stall(f"vendor request 0x{request:02X}")

    def control_in(self, request: int, value: int, index: int, length: int) -> bytes:
        """A device→host vendor request: a register read or the 0xC6 acknowledgement."""
        with self._lock:
            if request == fd.REQUEST_CONFIG:
                if index not in fd.READABLE.get(value, ()):
                    self._unexpected(f"0xBF read of {value}/{index}, a register libcaer never reads")
                return fd.pack_value(self._read(value, index))
            if request == fd.REQUEST_CHIP_MULTIPLE:
                return self.take_ack()
            self._unexpected(f"vendor request 0x{request:02X} IN")
            raise usb_stall(f"vendor request 0x{request:02X}")

    def take_ack(self) -> bytes:
        """The 0xC6 acknowledgement; the host's read consumes the outstanding batch even when a
        fault is injected (a failed acknowledgement is not a protocol error of the host)."""
        with self._lock:
            pending, self._pending_ack = self._pending_ack, False
            if self.ack_fault == "timeout":
                raise usb_timeout("chip-config acknowledgement")
            if self.ack_fault == "missing":
                return b""
            if not pending:
                self._unexpected("0xC6 acknowledgement read with no chip-word batch outstanding")
                return b""
            return b"\xc6\x01" if self.ack_fault == "wrong" else fd.ACK

    def _multiple(self, entries: list[tuple[int, int, int]]) -> None:
        resets = [v for m, p, v in entries if (m, p) == (fd.MUX, fd.MUX_TIMESTAMP_RESET)]
        if resets and (resets != [1, 0] or len(entries) != 2):
            self._unexpected(f"0xC2 with timestamp-reset values {resets} among {len(entries)} entries (libcaer: the pulse 1, 0 alone)")
        burst = self.reg(fd.SRAM, fd.SRAM_BURSTMODE)
        for module, param, value in entries:
            if (module, param) == (fd.SRAM, fd.SRAM_WRITEDATA) and not burst:
                self._unexpected("0xC2 SRAM WRITEDATA with burst mode off (libcaer sends burst data only in burst mode)")
            elif (module, param) not in ((fd.SRAM, fd.SRAM_WRITEDATA), (fd.MUX, fd.MUX_TIMESTAMP_RESET)):
                self._unexpected(f"0xC2 entry {module}/{param} (libcaer sends only the timestamp-reset pulse and SRAM burst data that way)")
            self._write(module, param, value, via_multiple=True)

    def _chip_words(self, entries: list[tuple[int, int, int]]) -> None:
        if self._pending_ack:
            self._unexpected("0xC6 batch sent before the previous batch's acknowledgement was read")
        for module, param, value in entries:
            if (module, param) != (fd.CHIP, fd.CHIP_CONTENT):
                self._unexpected(f"0xC6 entry {module}/{param} (libcaer sends only CHIP/CONTENT words that way)")
                self._write(module, param, value, via_multiple=True)
                continue
            self.registers[(fd.CHIP, fd.CHIP_CONTENT)] = value
            chip = self.selected_chip
            if chip is None:
                self._unexpected(f"chip word 0x{value:08X} with no valid chip selected")
                continue
            self.apply_chip_word(chip, value)
        self._pending_ack = True

    # --- registers ---

    def reg(self, module: int, param: int) -> int:
        return self.registers.get((int(module), int(param)), 0)

    @property
    def selected_chip(self) -> int | None:
        """The chip CHIP/ID selects (None for a value that is not 0/8/4/12)."""
        return fd.CHIP_OF_DEVICE_ID.get(self.reg(fd.CHIP, fd.CHIP_ID))

    def read_register(self, module: int, param: int) -> int:
        with self._lock:
            return self._read(int(module), int(param))

    def _read(self, module: int, param: int) -> int:
        counters = {
            (fd.MUX, fd.MUX_AER_DROPPED): self.dropped_aer_events >> 32,
            (fd.MUX, fd.MUX_AER_DROPPED + 1): self.dropped_aer_events & 0xFFFFFFFF,
            (fd.AER, fd.AER_EVENTS_DROPPED): self.dropped_transactions >> 32,
            (fd.AER, fd.AER_EVENTS_DROPPED + 1): self.dropped_transactions & 0xFFFFFFFF,
        }
        if (module, param) in counters:
            return counters[(module, param)]
        return self.reg(module, param)

    def write_register(self, module: int, param: int, value: int) -> None:
        """Store a register value and perform the module's side effect (no protocol checks: tests and tools)."""
        with self._lock:
            self._write(int(module), int(param), int(value), via_multiple=False)

    def _write(self, module: int, param: int, value: int, *, via_multiple: bool) -> None:
        previous = self.reg(module, param)
        if module == fd.SYSINFO:
            return  # read-only
        if module == fd.SRAM:
            self._sram_write(param, value, via_multiple)
            return
        self.registers[(module, param)] = value
        if module == fd.MUX and param == fd.MUX_TIMESTAMP_RESET and value and not previous:
            self._reset_timestamps()
        elif module == fd.CHIP and param == fd.CHIP_ID:
            if value not in fd.CHIP_OF_DEVICE_ID:
                self._unexpected(f"CHIP/ID {value} (libcaer sends the device encoding 0, 8, 4 or 12)")
        elif module == fd.CHIP and param == fd.CHIP_CONTENT:
            if self.selected_chip is not None:
                self.apply_chip_word(self.selected_chip, value)
        elif module == fd.SPIKEGEN and param == fd.SPIKEGEN_RUN:
            if value and not previous:
                self._start_spike_generator()
            elif previous and not value:
                self.simulator.stop_spike_generator()
        elif module == fd.POISSON:
            self._poisson_write(param, value)
        elif module == fd.SYNAPSERECONFIG:
            self._synapse_reconfig_write(param, value)

    def _poisson_write(self, param: int, value: int) -> None:
        if param == fd.POISSON_CHIPID:
            if value not in fd.CHIP_OF_DEVICE_ID:
                self._unexpected(f"POISSONSPIKEGEN/CHIPID {value} (libcaer sends the device encoding 0, 8, 4 or 12)")
        elif param == fd.POISSON_WRITEADDRESS:
            chip = fd.CHIP_OF_DEVICE_ID.get(self.reg(fd.POISSON, fd.POISSON_CHIPID))
            if chip is None or not 0 <= value < N_SOURCES:
                self._unexpected(f"Poisson rate for source {value} with CHIPID {self.reg(fd.POISSON, fd.POISSON_CHIPID)}")
                return
            self.simulator.set_poisson_rate(chip, value, fd.poisson_rate_hz(self.reg(fd.POISSON, fd.POISSON_WRITEDATA)))
        elif param == fd.POISSON_RUN:
            self.simulator.set_poisson_running(bool(value))

    def _synapse_reconfig_write(self, param: int, value: int) -> None:
        state = self.synapse_reconfig
        if param == fd.SYNRECONF_CHIPSELECT:
            state.chip = fd.CHIP_OF_DEVICE_ID.get(value)
            if state.chip is None:
                self._unexpected(f"SYNAPSERECONFIG/CHIPSELECT {value} (libcaer sends the device encoding 0, 8, 4 or 12)")
        elif param == fd.SYNRECONF_RUN:
            state.run = bool(value)
        elif param == fd.SYNRECONF_USESRAMKERNELS:
            state.use_sram_kernels = bool(value)
        elif param == fd.SYNRECONF_SRAMBASEADDR:
            state.sram_base_address = value
        elif param == fd.SYNRECONF_GLOBALKERNEL:
            state.global_kernels[(value >> 12) & 0x1F] = value & 0xFFF

    def _reset_timestamps(self) -> None:
        self.simulator.reset_timestamps()
        self._out += self._encoder.reset()
        self._wall.restart()

    # --- FPGA SRAM and the spike generator ---

    def _sram_write(self, param: int, value: int, via_multiple: bool) -> None:
        """libcaer's SRAM protocol: RWCOMMAND and WRITEDATA set up a command that an ADDRESS write
        executes; a burst starts at the address written last (with burst mode off) and every
        WRITEDATA then stores two words and advances it by two."""
        burst = self.reg(fd.SRAM, fd.SRAM_BURSTMODE)
        if param == fd.SRAM_ADDRESS:
            if burst:
                self._unexpected("SRAM ADDRESS written with burst mode on (libcaer writes the start address with burst mode off)")
            address = value % FPGA_SRAM_WORDS
            self._sram_pointer = address
            if self.reg(fd.SRAM, fd.SRAM_RWCOMMAND) == fd.SRAM_WRITE:
                self._memory[address] = self.reg(fd.SRAM, fd.SRAM_WRITEDATA) & 0xFFFF
            else:
                self.registers[(fd.SRAM, fd.SRAM_READDATA)] = int(self._memory[address])
        elif param == fd.SRAM_BURSTMODE and value and not burst and self._last_sram_param != fd.SRAM_ADDRESS:
            self._unexpected("SRAM burst mode turned on without writing the start address just before (libcaer's order)")
        elif param == fd.SRAM_WRITEDATA and burst:
            if not via_multiple:
                self._unexpected("SRAM burst data in a 0xBF write (libcaer sends burst data in 0xC2 transfers)")
            low, high = fd.burst_halves(value)
            self._memory[self._sram_pointer % FPGA_SRAM_WORDS] = low
            self._memory[(self._sram_pointer + 1) % FPGA_SRAM_WORDS] = high
            self._sram_pointer += 2
            self._last_sram_param = param
            return
        self.registers[(fd.SRAM, param)] = value
        self._last_sram_param = param

    def sram_words(self, address: int, count: int) -> np.ndarray:
        """A copy of ``count`` words of FPGA SRAM from ``address`` (tests, tools)."""
        with self._lock:
            return self._memory[address : address + count].copy()

    def _start_spike_generator(self) -> None:
        reg = self.reg
        variable = bool(reg(fd.SPIKEGEN, fd.SPIKEGEN_VARMODE))
        n_events = reg(fd.SPIKEGEN, fd.SPIKEGEN_STIMCOUNT) + 1
        base = reg(fd.SPIKEGEN, fd.SPIKEGEN_BASEADDR)
        unit_us = max(1, reg(fd.SPIKEGEN, fd.SPIKEGEN_ISIBASE)) / fd.LOGIC_CLOCK_MHZ
        step = 2 if variable else 1
        words = self._memory[base : base + n_events * step].astype(np.int64)
        # dummy events (core mask 0) stay in the list: they reach no core but take their place in
        # time, also as the list's last event, whose ISI a repeating list plays before it wraps
        program: list[tuple[int, int, int, float]] = []
        for i in range(len(words) // step):
            chip, neuron, mask = fd.spike_generator_event(int(words[i * step]))
            isi = int(words[i * step + 1]) if variable else reg(fd.SPIKEGEN, fd.SPIKEGEN_ISI)
            program.append((chip, neuron, mask, isi * unit_us))
        self.simulator.load_spike_generator(program, bool(reg(fd.SPIKEGEN, fd.SPIKEGEN_REPEAT)))
        self.simulator.start_spike_generator()

    # --- chip words ---

    def apply_chip_word(self, chip: int, word: int) -> None:
        """Apply one CHIP/CONTENT word to ``chip`` of the simulator."""
        kind = fd.classify(word)
        stray = fd.stray_bits(word, kind)
        if stray:
            self._unexpected(f"{kind} word 0x{word:08X} with bits 0x{stray:08X} outside its layout")
        sim = self.simulator
        if kind == "cam":
            c = fd.decode_cam(word)
            sim.write_cam(chip, c.neuron, c.cam_index, c.pre_core, c.pre_neuron, c.synapse_type)
        elif kind == "sram":
            s = fd.decode_sram(word)
            sim.write_sram(chip, s.neuron, s.cell, s.virtual_core, s.sx, s.dx, s.sy, s.dy, s.core_mask)
        elif kind == "bias":
            b = fd.decode_bias(word)
            if b is None:
                self._unexpected(f"bias word 0x{word:08X} for an address no bias has")
            elif b.core is None:
                sim.set_global_bias(chip, b.name, b.coarse, b.fine)
            else:
                sim.set_bias(chip, b.core, b.name, b.coarse, b.fine, high=b.high, normal=b.normal, enabled=b.enabled)
        elif kind == "input_spike":
            s = fd.decode_input_spike(word)
            destination = route_destination(chip, s.sx, s.dx, s.sy, s.dy)
            if destination >= 0:  # a route off the grid reaches no chip
                sim.inject_spike(destination, s.source_core, s.source_neuron, s.core_mask)
        elif kind == "core_tau":
            sim.set_core_tau(chip, (word >> 8) & 3, bool(word >> 11 & 1))
        elif kind == "neuron_tau2":
            sim.set_tau2(chip, word & 0x3FF, True)
        elif kind == "monitor_select":
            neuron = word & 0x3FF
            sim.select_monitor(chip, neuron // N_NEURONS_PER_CORE, neuron % N_NEURONS_PER_CORE)
        # monitor_reset only disconnects the output until the next select: nothing to simulate.

    # --- bulk IN ---

    @property
    def streaming(self) -> bool:
        return bool(self.reg(fd.USB, fd.USB_RUN) and self.reg(fd.MUX, fd.MUX_RUN))

    @property
    def packet_period_us(self) -> int:
        cycles = self.reg(fd.USB, fd.USB_EARLY_PACKET_DELAY)
        return max(fd.USB_UNIT_US, cycles // fd.USB_CYCLES_PER_UNIT * fd.USB_UNIT_US)

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
        raise usb_timeout("bulk IN")

    def _simulate_packet(self) -> None:
        sim = self.simulator
        start = int(sim.now_us)
        step = self.packet_period_us
        if self.clock == "realtime":
            if not self._wall.started:
                self._wall.start(start / 1e6)
            behind_us = self._wall.wait_until((start + step) / 1e6) * 1e6
            if behind_us > 0:  # behind the wall clock: catch up by simulating a longer span
                self.lag_us = behind_us + step
                step = int(min(step + behind_us, MAX_REALTIME_STEP_US))
            else:
                self.lag_us = 0.0
        events = sim.run(step / 1e6)
        end = int(sim.now_us)
        if len(events):
            self._out += self._encoder.encode(events)
        self._out += self._encoder.advance_to(end)

    # --- emulator-only side channel ---

    def read_membrane(self, chip: int, core: int) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            return self.simulator.read_membrane(chip, core)
