"""``DynapseBoard``: the :class:`~drivers.dynapse1.board_api.Board` implementation over USB.

One code path for silicon and the emulator: the board talks to a
:class:`~drivers.dynapse1.usb_transport.UsbTransport` around a pyusb device and never asks
which backend produced it.  Two facts about the *backend* are passed in by the opener, not
discovered here:

``prefetch``
    Whether a reader thread may read bulk IN continuously.  True for silicon and for the
    emulator in real-time mode (the board runs on its own clock and data must not pile up).
    False for the emulator in *fast* mode, where reading bulk IN is what advances simulated
    time: :meth:`DynapseBoard.read_events` then reads synchronously until the stream's clock
    reaches the end of the requested span, so exactly that span is simulated (to the FPGA's
    USB packet period, 1 ms by default).  Callbacks still fire from those reads;
    :meth:`iter_events` and :meth:`start_streaming` start the reader thread in either mode
    (streaming is then explicitly asked for).
``membrane_channel``
    ``callable(chip, core) -> (t_us, volts)``: the emulator's side channel for the analog
    monitor.  Silicon has SMA outputs, not a USB path, so it is None there and
    :meth:`read_membrane` returns None.

Board time
----------
Timestamps come from the stream (µs since the last timestamp reset).  ``read_events(d)``
returns the events in ``[t0, t0 + d)`` where ``t0`` is where the previous window ended
(host-paced) or the latest board time received (prefetching); events beyond the window are
kept for the next call.

A timestamp reset inside the window (the FPGA's, :meth:`DynapseBoard.reset_timestamps` from
another thread, a glitch) does not end it: the window goes on from the new time base for the
board time it still lacks, so every read still covers ``d`` of board time (what a caller that
counts spikes per window or paces a loop by reads relies on) and blocks no longer than ``d``
plus the stall timeout.  Its events are then those before the reset (old time base) followed by
those after it (timestamps from 0): a batch is in stream order, and its timestamps go back once
per reset, as the board's clock did.  The next host-paced read starts where this one ended, in
the new base, so no event is lost or returned twice across the reset.  (Before, the window kept
its end in the old time base and waited until the new clock caught up with it: a reset after an
hour of acquisition blocked one read for an hour and returned an hour of spikes.)
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from drivers.arguments import finite_number

from . import chip_words as cw
from . import fpga_registers as fr
from . import libcaer_sequences as ls
from . import spikegen_words as sg
from .bias_table import CORE_BIASES, GLOBAL_BIASES, SILENT, SILENT_GLOBAL, BiasValue, bias_spec
from .board_api import SpikeGenEvent, StreamCounters
from .event_words import StreamDecoder, TimestampReset
from .netlist import Netlist
from .netlist_compiler import CompiledNetlist, compile_netlist
from .spikes import SpikeEvents
from .topology import (
    N_CHIPS,
    N_CORES_PER_CHIP,
    N_NEURONS_PER_CHIP,
    N_NEURONS_PER_CORE,
    SynapseType,
    check_chip,
    check_core,
    check_neuron,
)
from .usb_transport import AckError, DeviceGone, TransportError, TransportTimeout, UsbTransport

log = logging.getLogger(__name__)

#: libcaer's low-power start-up set (reference §7); biases it does not name are silent.
LOW_POWER_BIASES: dict[str, BiasValue] = {
    "IF_DC_P": BiasValue(1, 30),
    "IF_THR_N": BiasValue(4, 120),
    "IF_TAU1_N": BiasValue(7, 5, high=False),
    "IF_TAU2_N": BiasValue(6, 100),
    "IF_RFR_N": BiasValue(3, 3),
    "IF_BUF_P": BiasValue(3, 80),
    "IF_AHTAU_N": BiasValue(7, 35),
    "PULSE_PWLK_P": BiasValue(3, 106),
    "R2R_P": BiasValue(4, 85),
    "NPDPIE_TAU_F_P": BiasValue(7, 40),
    "NPDPII_TAU_S_P": BiasValue(7, 40),
    "NPDPII_THR_S_P": BiasValue(7, 40),
}
_ITER_QUEUE_BATCHES = 1024
#: How often the stream refreshes ``counters.fpga_dropped_events`` from the FPGA's statistics [s].
FPGA_COUNTER_PERIOD_S = 1.0
#: USB packet period the board streams with outside batch reads (libcaer's default, 8 × 125 µs).
STREAMING_PACKET_PERIOD_UNITS = 8
#: Longest packet period a synchronous batch read asks for (128 × 125 µs = 16 ms).
BATCH_PACKET_PERIOD_MAX_UNITS = 128


def batch_packet_period_units(duration_us: int) -> int:
    """USB early-packet delay (in 125 µs units) for a synchronous read of ``duration_us``.

    A batch read does not need 1 ms latency, so it asks the FPGA for fewer, fuller packets: the
    longest period ≤ 16 ms that divides the window exactly, so the window still ends on a
    packet boundary.  Silicon sends fewer USB transfers; the emulator on its fast clock simulates
    one packet period per read, so this also cuts its per-read overhead by up to 16×.
    """
    units, remainder = divmod(int(duration_us), fr.USB_EARLY_PACKET_UNIT_US)
    if remainder or units <= STREAMING_PACKET_PERIOD_UNITS:
        return STREAMING_PACKET_PERIOD_UNITS
    return max(d for d in range(1, BATCH_PACKET_PERIOD_MAX_UNITS + 1) if units % d == 0)
_END = object()


class BoardVersionError(RuntimeError):
    """Firmware or FPGA logic version is not the one this driver speaks."""


BiasKey = tuple[int, int, str]


class BiasWriteError(TransportError):
    """A bias write failed part-way through; what the board holds is spelled out.

    The driver writes a bias set one USB batch at a time and, when a batch fails, writes the
    previous values of every bias already sent (roll-back).  Then:

    * ``rolled_back`` True: the board holds the previous values of every bias of the request and
      the caches never changed;
    * ``rolled_back`` False (the roll-back failed too, e.g. the board is gone): ``on_board`` maps
      each bias of the request that was sent to the value the board was *last sent*, which is
      also what the driver's cache (and so the bias model and the sliders) now shows;
      ``unconfirmed`` are those whose last batch was not acknowledged.  Reconnecting rewrites the
      cache to the board.

    Attributes
    ----------
    requested : the bias set that was asked for
    on_board : last value sent, for every bias of the request that was sent at all
    unconfirmed : biases whose last batch was not acknowledged
    rolled_back : whether every bias sent was restored
    cause : the transport error of the write
    """

    def __init__(self, message: str, *, requested: Mapping[BiasKey, BiasValue], on_board: Mapping[BiasKey, BiasValue],
                 unconfirmed: set[BiasKey], rolled_back: bool, cause: Exception) -> None:
        super().__init__(message)
        self.requested = dict(requested)
        self.on_board = dict(on_board)
        self.unconfirmed = set(unconfirmed)
        self.rolled_back = rolled_back
        self.cause = cause

    @staticmethod
    def kind_for(cause: Exception) -> type[BiasWriteError]:
        """The subclass that is also the cause's kind, so ``except AckError``/``DeviceGone`` still match."""
        for base, kind in _BIAS_WRITE_ERROR_KINDS:
            if isinstance(cause, base):
                return kind
        return BiasWriteError


class BiasWriteAckError(BiasWriteError, AckError):
    """A bias write failed on a missing or wrong acknowledgement."""


class BiasWriteTimeout(BiasWriteError, TransportTimeout):
    """A bias write failed on a transfer timeout."""


class BiasWriteDeviceGone(BiasWriteError, DeviceGone):
    """The board disappeared during a bias write."""


_BIAS_WRITE_ERROR_KINDS = ((AckError, BiasWriteAckError), (TransportTimeout, BiasWriteTimeout), (DeviceGone, BiasWriteDeviceGone))


class DynapseBoard:
    """A DYNAP-SE1 board (real or emulated) behind a :class:`UsbTransport`.

    Use :func:`open_board` (silicon) or ``emulator.virtual_board.open_emulated_board``.
    """

    def __init__(
        self,
        transport: UsbTransport,
        *,
        is_emulated: bool = False,
        prefetch: bool = True,
        membrane_channel: Callable[[int, int], tuple[np.ndarray, np.ndarray]] | None = None,
        device_finder: Callable[[], Any] | None = None,
        settle_s: float = 4.0,
        stall_timeout_s: float = 2.0,
        isi_base_cycles: int = sg.DEFAULT_ISI_BASE_CYCLES,
    ) -> None:
        self.transport = transport
        self.is_emulated = is_emulated
        self.prefetch = prefetch
        self.counters = StreamCounters()
        self.settle_s = settle_s
        self.stall_timeout_s = stall_timeout_s
        self.isi_base_cycles = isi_base_cycles
        self._membrane_channel = membrane_channel
        self._device_finder = device_finder
        self._closed = False
        self._selected_chip: int | None = None
        self._biases: dict[BiasKey, BiasValue] = {}
        self._unconfirmed_biases: set[BiasKey] = set()
        self._global_biases: dict[tuple[int, str], tuple[int, int]] = {}
        self._tau2: set[tuple[int, int, int]] = set()
        self._netlist_words: dict[int, list[int]] = {}
        #: per chip, the cells this driver knows to be set since it last cleared the chip (see
        #: clear_connections): chip-global neuron -> CAM entries in use, neurons with SRAM cells written;
        #: a chip is absent while its state is not known (before its first clear, after a failed write)
        self._cam_in_use: dict[int, dict[int, int]] = {}
        self._sram_in_use: dict[int, set[int]] = {}
        self._bias_listeners: list[Callable[[int, int, str, BiasValue], None]] = []
        self._event_callbacks: list[Callable[[SpikeEvents], None]] = []
        self._disconnect_listeners: list[Callable[[str], None]] = []
        self._close_listeners: list[Callable[[], None]] = []
        self._iter_queues: list[queue.Queue] = []
        self._decoder = StreamDecoder()
        self._fpga_statistics: list[tuple[int, int]] | None = None
        self._fpga_counters_read_at = 0.0
        self._cond = threading.Condition(threading.RLock())
        #: Held while selecting a chip and writing its words, and across a whole bias transaction, so
        #: that writes from two threads (a sweep and the GUI) neither land on the wrong chip nor
        #: interleave with a roll-back.
        self._chip_write_lock = threading.RLock()
        #: the window of the read in progress (None: no read): [start, end) in the time base of the
        #: stream fed to it so far; done once the stream passed its end
        self._window_end: int | None = None
        self._window_start = 0
        self._window_done = False
        self._window_parts: list[SpikeEvents] = []
        #: the stream received after a read's window ended, for the next read: event batches and
        #: the resets between them, in order (events after a reset are in the new time base)
        self._carry: list[SpikeEvents | TimestampReset] = []
        self._cursor: int | None = None
        transport.on_disconnect = self._on_disconnect
        self.serial = ""
        self.firmware_version = 0
        self.logic_version = 0
        self.is_master = True
        self.logic_clock_mhz = fr.FPGA_LOGIC_CLOCK_MHZ

    # --- lifecycle -----------------------------------------------------------------------------

    def open(self) -> DynapseBoard:
        """Open the device, check versions, send libcaer's default configuration, start streaming."""
        self.transport.open()
        self.serial = self.transport.serial
        self.firmware_version = self.transport.firmware_version
        if self.firmware_version != fr.REQUIRED_FIRMWARE_VERSION:
            raise BoardVersionError(
                f"board {self.serial}: firmware version {self.firmware_version}, this driver needs "
                f"{fr.REQUIRED_FIRMWARE_VERSION}; update it with iniVation's Flashy"
            )
        self.logic_version = self.transport.read_register(fr.Module.SYSINFO, fr.SysinfoParam.LOGIC_VERSION)
        if self.logic_version != fr.REQUIRED_LOGIC_VERSION:
            raise BoardVersionError(
                f"board {self.serial}: FPGA logic version {self.logic_version}, this driver needs "
                f"{fr.REQUIRED_LOGIC_VERSION}; update it with iniVation's Flashy"
            )
        self._read_device_info()
        self._send_default_configuration()
        self._start_stream()
        return self

    def _read_device_info(self) -> None:
        """The reads libcaer's ``populateDeviceInfo`` makes at open, in its order: master flag,
        logic clock, chip identifier, and whether the AER and MUX modules keep statistics."""
        master, clock, chip_identifier, aer_statistics, mux_statistics = self.transport.send(
            [fr.register_read(module, param) for module, param in ls.DEVICE_INFO_READS]
        )
        self.is_master, self.logic_clock_mhz = bool(master), int(clock)
        if chip_identifier != fr.DYNAPSE_CHIP_IDENTIFIER:
            log.warning("board %s reports chip identifier %d, not a Dynap-se's %d", self.serial, chip_identifier, fr.DYNAPSE_CHIP_IDENTIFIER)
        self._fpga_statistics = [
            (module, counter)
            for has, module, counter in (
                (mux_statistics, fr.Module.MUX, fr.MuxParam.STATISTICS_AER_DROPPED),
                (aer_statistics, fr.Module.AER, fr.AerParam.STATISTICS_EVENTS_DROPPED),
            )
            if has
        ]

    def _send_default_configuration(self) -> None:
        """libcaer's start-up sequence (``libcaer_sequences.default_configuration``), plus every
        core reset to tau1 so that the driver's tau cache is true from the start."""
        with self._chip_write_lock:  # it selects every chip in turn
            self._selected_chip = None
            self.transport.send(
                ls.default_configuration(
                    self._silent_bias_words(),
                    self._low_power_bias_words(),
                    extra_chip_words=lambda chip: [cw.core_tau_word(core, tau2=False) for core in range(N_CORES_PER_CHIP)],
                )
            )
            self._selected_chip = N_CHIPS - 1
        for chip in range(N_CHIPS):
            for core in range(N_CORES_PER_CHIP):
                for name in CORE_BIASES:
                    self._biases[(chip, core, name)] = LOW_POWER_BIASES.get(name, SILENT)
            for name in GLOBAL_BIASES:
                self._global_biases[(chip, name)] = SILENT_GLOBAL[name]
        self._unconfirmed_biases.clear()
        if self.settle_s > 0:
            time.sleep(self.settle_s)  # libcaer waits for the biases to settle

    @staticmethod
    def _bias_word(core: int, name: str, value: BiasValue) -> int:
        """The bias word of ``value``: every field of the value goes onto the wire."""
        return cw.core_bias_word(core, name, value.coarse, value.fine, high=value.high, normal=value.normal, enabled=value.enabled)

    @staticmethod
    def _global_bias_words() -> list[int]:
        return [cw.global_bias_word(name, *SILENT_GLOBAL[name]) for name in ls.LIBCAER_GLOBAL_BIAS_ORDER]

    def _silent_bias_words(self) -> list[int]:
        """libcaer ``setSilentBiases``, in its order."""
        words = [self._bias_word(core, name, SILENT) for core in range(N_CORES_PER_CHIP) for name in ls.LIBCAER_CORE_BIAS_ORDER]
        return words + self._global_bias_words()

    def _low_power_bias_words(self) -> list[int]:
        """libcaer ``setLowPowerBiases``, in its order (the chip-global biases as in the silent set)."""
        words = [
            self._bias_word(core, name, LOW_POWER_BIASES.get(name, SILENT))
            for core in range(N_CORES_PER_CHIP)
            for name in ls.LIBCAER_CORE_BIAS_ORDER
        ]
        return words + self._global_bias_words()

    def _start_stream(self) -> None:
        self.transport.send(fr.single_writes(fr.start_streaming_sequence()))
        if self.prefetch:
            self.start_streaming()

    def close(self) -> None:
        """Stop streaming and release the device; idempotent, safe after an unplug."""
        if self._closed:
            return
        self._closed = True
        self.transport.stop_reader()
        if self.transport.connected:
            try:
                self.transport.send(fr.single_writes(fr.stop_streaming_sequence()))
            except Exception as exc:  # closing must succeed even if the board just vanished
                log.debug("stop sequence failed while closing: %s", exc)
        self.transport.close()
        self._end_iterators()
        with self._cond:
            self._cond.notify_all()
        for callback in list(self._close_listeners):
            try:
                callback()
            except Exception:  # closing must succeed whatever a listener does
                log.exception("close listener failed")

    def add_close_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once the board was closed by :meth:`close` (e.g. to end an
        emulated board's child process with the board, not when it is garbage-collected)."""
        self._close_listeners.append(callback)

    def __enter__(self) -> DynapseBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return not self._closed and self.transport.connected

    def add_disconnect_listener(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(reason)`` when the board disappears (unplug, power loss)."""
        self._disconnect_listeners.append(callback)

    def _on_disconnect(self, reason: str) -> None:
        self._end_iterators()
        with self._cond:
            self._cond.notify_all()
        for callback in list(self._disconnect_listeners):
            try:
                callback(reason)
            except Exception:
                log.exception("disconnect listener failed")

    def reconnect(self, timeout_s: float = 10.0, poll_s: float = 0.5) -> None:
        """Find the same board again (by serial) and restore everything the host configured.

        Biases, tau2 switches and the last netlist are rewritten from the host's cache; the
        spike and Poisson generators must be loaded again.  Raises :class:`DeviceGone` if the
        board does not reappear within ``timeout_s``.
        """
        if self._device_finder is None:
            raise DeviceGone("this board was opened without a way to find it again")
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                device = self._device_finder()
                break
            except LookupError:
                if time.monotonic() > deadline:
                    raise DeviceGone(f"board {self.serial} did not reappear within {timeout_s} s") from None
                time.sleep(poll_s)
        biases, global_biases, tau2, netlist_words = dict(self._biases), dict(self._global_biases), set(self._tau2), dict(self._netlist_words)
        self.transport.reattach(device)
        self._closed = False
        self._decoder.reset()
        self._cursor = None
        self._carry = []
        self.open_after_reattach()
        for (chip, name), (coarse, fine) in global_biases.items():
            self.set_global_bias(chip, name, coarse, fine)
        self.apply_bias_set(biases)
        for chip, words in netlist_words.items():
            self._write_chip_words(chip, words)
        self._netlist_words = netlist_words
        self._cam_in_use.clear()  # the chips lost their tables with their power: nothing is known
        self._sram_in_use.clear()
        for chip, core, neuron in sorted(tau2):
            self.set_tau2(chip, core, neuron, True)

    def open_after_reattach(self) -> None:
        """Version checks, default configuration and stream start on a freshly attached device."""
        self.firmware_version = self.transport.firmware_version
        self.logic_version = self.transport.read_register(fr.Module.SYSINFO, fr.SysinfoParam.LOGIC_VERSION)
        self._send_default_configuration()
        self._start_stream()

    # --- chip words --------------------------------------------------------------------------------

    def _write_chip_words(self, chip: int, words: list[int]) -> None:
        if not words:
            return
        with self._chip_write_lock:
            if self._selected_chip != chip:
                self._selected_chip = None  # unknown until the selection went through
                self.transport.write_register(fr.Module.CHIP, fr.ChipParam.ID, fr.chip_id_to_device(chip))
                self._selected_chip = chip
            self.transport.write_chip_words(words)

    # --- biases ----------------------------------------------------------------------------------

    def set_bias(self, chip: int, core: int, name: str, value: BiasValue) -> None:
        """Write one per-core bias, all of ``value`` (flags included), and remember it."""
        self.apply_bias_set({(chip, core, name): value})

    def get_bias(self, chip: int, core: int, name: str) -> BiasValue:
        """The value last written (the chip cannot be read back)."""
        check_chip(chip)
        check_core(core)
        bias_spec(name)
        return self._biases[(chip, core, name)]

    def set_global_bias(self, chip: int, name: str, coarse: int, fine: int) -> None:
        """Write a chip-global bias (U_/D_ BUFFER, SSP, SSN)."""
        check_chip(chip)
        word = cw.global_bias_word(name, coarse, fine)
        self._write_chip_words(chip, [word])
        self._global_biases[(chip, name)] = (coarse, fine)

    def get_global_bias(self, chip: int, name: str) -> tuple[int, int]:
        return self._global_biases[(check_chip(chip), name)]

    @property
    def unconfirmed_biases(self) -> set[BiasKey]:
        """Biases whose last write was not acknowledged by the board (see :class:`BiasWriteError`)."""
        return set(self._unconfirmed_biases)

    def apply_bias_set(self, biases: Mapping[BiasKey, BiasValue]) -> None:
        """Write a bias set as one transaction: validated first, then written one chip at a time.

        Nothing is written when an entry is invalid (``ValueError`` naming it).  When a transfer
        fails part-way the biases already sent are written back to their previous values and
        :class:`BiasWriteError` says what the board holds; the cache and the listeners follow
        what the board was last sent, so board, cache and everything listening agree.
        """
        requested: dict[BiasKey, BiasValue] = {}
        words: dict[BiasKey, int] = {}
        for key, value in biases.items():
            try:
                chip, core, name = key
                chip, core = check_chip(chip), check_core(core)
                bias_spec(name)
                if not isinstance(value, BiasValue):
                    raise TypeError(f"expected a BiasValue, got {type(value).__name__}")
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"bias {key!r} = {value!r} rejected, nothing written: {exc}") from exc
            requested[(chip, core, name)] = value
            words[(chip, core, name)] = self._bias_word(core, name, value)
        if not requested:
            return
        self._check_alive("bias write")
        with self._chip_write_lock:
            cached, failure = self._write_bias_transaction(requested, words)
        # listeners run outside the lock (a listener may take its own lock, e.g. the bias model's)
        for (chip, core, name), value in cached.items():
            for listener in list(self._bias_listeners):
                listener(chip, core, name, value)
        if failure is not None:
            raise failure

    def _write_bias_transaction(
        self, requested: dict[BiasKey, BiasValue], words: dict[BiasKey, int]
    ) -> tuple[dict[BiasKey, BiasValue], BiasWriteError | None]:
        """Send, roll back on failure, update the cache; returns what was cached and the error to raise."""
        order = sorted(requested, key=lambda k: k[0])  # one chip selection per chip
        previous = {key: self._biases.get(key, SILENT) for key in order}
        acked, unacked, error = self._send_bias_words([(key, words[key]) for key in order])
        if error is None:
            self._cache_biases(requested, acked)
            return requested, None
        # Roll back every bias that may have reached the chip, in the same order.
        sent = acked + unacked
        back_acked, back_unacked, back_error = self._send_bias_words(
            [(key, self._bias_word(key[1], key[2], previous[key])) for key in sent]
        )
        restored = set(back_acked) | set(back_unacked)
        on_board = {key: previous[key] if key in restored else requested[key] for key in sent}
        confirmed = [key for key in sent if key in back_acked or (key not in restored and key in acked)]
        self._cache_biases(on_board, confirmed)
        failed_chip = unacked[0][0] if unacked else order[len(acked)][0]
        if back_error is None:
            message = (f"bias write failed on chip {failed_chip} ({error}); the {len(sent)} biases already sent were "
                       "written back: the board holds the previous values, nothing changed")
        else:
            changed = sum(on_board[k] != previous[k] for k in sent)
            message = (f"bias write failed on chip {failed_chip} ({error}) and so did the roll-back ({back_error}): "
                       f"{changed} of {len(requested)} biases hold the new value, the others the previous one; "
                       f"{len(self._unconfirmed_biases & set(sent))} writes are unconfirmed. "
                       "The caches show what the board was last sent; reconnect to write them all again")
        log.error(message)
        failure = BiasWriteError.kind_for(error)(message, requested=requested, on_board=on_board,
                                                 unconfirmed=self._unconfirmed_biases & set(sent), rolled_back=back_error is None,
                                                 cause=error)
        failure.__cause__ = error
        return on_board, failure

    def _send_bias_words(self, items: list[tuple[BiasKey, int]]) -> tuple[list[BiasKey], list[BiasKey], TransportError | None]:
        """Send bias words (grouped by chip) one USB batch at a time, stopping at the first failure.

        Returns the keys of the acknowledged batches, the keys of the batch that failed (its words
        may have reached the chip: an acknowledgement can be lost after the data went out; empty
        when the board is gone) and the error, or None.
        """
        acked: list[BiasKey] = []
        i = 0
        while i < len(items):
            chip = items[i][0][0]
            batch = [items[i]]
            while i + len(batch) < len(items) and len(batch) < fr.MAX_ENTRIES_PER_TRANSFER and items[i + len(batch)][0][0] == chip:
                batch.append(items[i + len(batch)])
            if not self.transport.connected:  # gone: this batch cannot have been sent
                self.transport.wait_disconnect_reported()
                return acked, [], DeviceGone(f"bias write: the board is disconnected ({self.transport.disconnect_reason})")
            try:
                self._write_chip_words(chip, [word for _, word in batch])
            except DeviceGone as exc:  # unplugged or powered off: the transfer did not arrive (and the
                self._selected_chip = None  # chip loses its biases with its power; reconnect rewrites them)
                return acked, [], exc
            except TransportError as exc:
                self._selected_chip = None  # the selection may not have reached the board either
                return acked, [key for key, _ in batch], exc
            acked.extend(key for key, _ in batch)
            i += len(batch)
        return acked, [], None

    def _cache_biases(self, values: Mapping[BiasKey, BiasValue], confirmed: list[BiasKey]) -> None:
        """Cache what the board was sent; ``confirmed`` are the keys whose batch was acknowledged."""
        confirmed_set = set(confirmed)
        for key, value in values.items():
            self._biases[key] = value
            if key in confirmed_set:
                self._unconfirmed_biases.discard(key)
            else:
                self._unconfirmed_biases.add(key)

    def add_bias_listener(self, callback: Callable[[int, int, str, BiasValue], None]) -> None:
        self._bias_listeners.append(callback)

    # --- connectivity ----------------------------------------------------------------------------

    def write_netlist(self, netlist: Netlist) -> list[str]:
        """Compile (limits checked first, nothing written on error) and write CAM/SRAM words."""
        compiled: CompiledNetlist = compile_netlist(netlist)
        for warning in compiled.warnings:
            log.warning(warning)
        # the compiler writes all 64 CAM entries of every post neuron (those beyond its fan-in
        # cleared), so afterwards exactly the first fan-in entries of each are in use
        fan_in: dict[int, dict[int, int]] = {}
        for c in netlist.connections:
            per_chip = fan_in.setdefault(c.post.chip, {})
            gid = c.post.core * N_NEURONS_PER_CORE + c.post.neuron
            per_chip[gid] = per_chip.get(gid, 0) + c.multiplicity
        for chip, words in compiled.words_by_chip().items():
            cam, sram = self._cam_in_use.pop(chip, None), self._sram_in_use.pop(chip, None)  # unknown while writing
            self._write_chip_words(chip, words)
            self._netlist_words[chip] = words
            if cam is not None and sram is not None:
                cam.update(fan_in.get(chip, {}))
                sram.update(cw.decode_sram_word(w).neuron for w in compiled.sram_words.get(chip, []))
                self._cam_in_use[chip], self._sram_in_use[chip] = cam, sram
        return compiled.warnings

    def clear_connections(self, chips: list[int] | None = None, cores: list[int] | None = None) -> None:
        """Clear every CAM and SRAM cell of ``chips`` (default all) and restore the host routes.

        ``cores`` limits the clearing to the neurons of those cores (a quarter of the words per
        core): enough for a network that uses only them while the other cores are silent.

        Once a chip has been cleared, the driver knows which cells its netlists set since (it is
        the only writer), and a later clear writes only those: the chip ends in the same state as
        after clearing all 65,536 CAM entries, without the ~70,000 words that takes (seconds over
        USB).  Until then, and after a reattach or a failed write, every cell is written.
        """
        chips = [check_chip(c) for c in (range(N_CHIPS) if chips is None else chips)]
        core_list = list(range(N_CORES_PER_CHIP)) if cores is None else sorted({check_core(c) for c in cores})
        neurons = [core * N_NEURONS_PER_CORE + n for core in core_list for n in range(N_NEURONS_PER_CORE)]
        for chip in chips:
            cam, sram = self._cam_in_use.pop(chip, None), self._sram_in_use.pop(chip, None)
            if cores is None:
                self._netlist_words.pop(chip, None)
            if cam is None or sram is None:
                self._write_chip_words(chip, cw.clear_cam_words(neurons))
                self._write_chip_words(chip, cw.clear_sram_words(neurons))
                self._write_chip_words(chip, [cw.host_route_sram_word(chip, n) for n in neurons])
                if cores is None:  # the whole chip is known clear now; after some cores, the rest is still unknown
                    self._cam_in_use[chip], self._sram_in_use[chip] = {}, set()
                continue
            cleared = set(neurons)
            self._write_chip_words(chip, [cw.encode_cam_word(gid, i, 0, 0, SynapseType.GABA_B)
                                          for gid, n in sorted(cam.items()) if gid in cleared for i in range(n)])
            routed = sorted(n for n in sram if n in cleared)
            self._write_chip_words(chip, cw.clear_sram_words(routed))
            self._write_chip_words(chip, [cw.host_route_sram_word(chip, n) for n in routed])
            self._cam_in_use[chip] = {gid: n for gid, n in cam.items() if gid not in cleared}
            self._sram_in_use[chip] = {n for n in sram if n not in cleared}

    def set_tau2(self, chip: int, core: int, neuron: int, use_tau2: bool = True) -> None:
        """Switch one neuron to IF_TAU2_N, or back to IF_TAU1_N.

        The chip has no per-neuron "back to tau1" word, so that resets the whole core to tau1
        and switches the core's other tau2 neurons again.
        """
        key = (check_chip(chip), check_core(core), check_neuron(neuron))
        if use_tau2:
            self._write_chip_words(chip, [cw.neuron_tau2_word(core * N_NEURONS_PER_CORE + neuron)])
            self._tau2.add(key)
            return
        self._tau2.discard(key)
        others = [n for (c, k, n) in self._tau2 if (c, k) == (chip, core)]
        words = [cw.core_tau_word(core, tau2=False)] + [cw.neuron_tau2_word(core * N_NEURONS_PER_CORE + n) for n in sorted(others)]
        self._write_chip_words(chip, words)

    # --- stimulus --------------------------------------------------------------------------------

    def load_spike_generator(self, events: list[SpikeGenEvent], repeat: bool = False, base_address: int = 0) -> None:
        """Write ``events`` into the FPGA SRAM (burst mode) and set up SPIKEGEN (variable ISI)."""
        if not events:
            raise ValueError("the spike generator needs at least one event")
        items = []
        for i, e in enumerate(events):
            if e.source.core != 0:
                raise ValueError(f"event {i}: FPGA spike-generator sources are core 0 only, got core {e.source.core}")
            items.append((e.source.chip, e.source.neuron, e.core_mask, e.isi_us))
        fpga_events = sg.events_from_delays(items, self.isi_base_cycles)
        if repeat and not any(e.isi for e in fpga_events):
            # the FPGA would replay the list with no time between passes; nothing is sent
            raise ValueError("repeat mode needs ISIs that add up to at least one ISI unit (the list would replay infinitely often)")
        memory = sg.encode_generator_memory(fpga_events, variable_isi=True)
        spikegen = fr.Module.SPIKEGEN
        self.transport.send(
            [
                fr.single_write(spikegen, fr.SpikeGenParam.RUN, 0),
                *ls.sram_write_words(base_address, memory),
                *fr.single_writes(
                    [
                        fr.RegisterWrite(spikegen, fr.SpikeGenParam.VARMODE, 1),
                        fr.RegisterWrite(spikegen, fr.SpikeGenParam.BASEADDR, base_address),
                        fr.RegisterWrite(spikegen, fr.SpikeGenParam.STIMCOUNT, len(fpga_events) - 1),
                        fr.RegisterWrite(spikegen, fr.SpikeGenParam.ISIBASE, self.isi_base_cycles),
                        fr.RegisterWrite(spikegen, fr.SpikeGenParam.REPEAT, int(repeat)),
                    ]
                ),
            ]
        )

    def start_spike_generator(self) -> None:
        """A 0→1 edge on SPIKEGEN/RUN starts playback from the first event."""
        self.transport.send(fr.single_writes([fr.RegisterWrite(fr.Module.SPIKEGEN, fr.SpikeGenParam.RUN, v) for v in (0, 1)]))

    def stop_spike_generator(self) -> None:
        self.transport.write_register(fr.Module.SPIKEGEN, fr.SpikeGenParam.RUN, 0)

    def set_poisson_rates(self, chip: int, rates_hz: Mapping[int, float]) -> None:
        """Rates per Poisson source (0..1023) targeting ``chip``; validated first, then RUN on."""
        check_chip(chip)
        codes = []
        for source, rate in rates_hz.items():
            if not 0 <= int(source) < N_NEURONS_PER_CHIP:
                raise ValueError(f"Poisson source {source} out of range 0..{N_NEURONS_PER_CHIP - 1}; nothing written")
            codes.append((int(source), sg.poisson_rate_code(float(rate))))
        run = fr.single_write(fr.Module.POISSONSPIKEGEN, fr.PoissonParam.RUN, 1)
        self.transport.send([*ls.poisson_rates(chip, codes), run])

    def stop_poisson(self) -> None:
        self.transport.write_register(fr.Module.POISSONSPIKEGEN, fr.PoissonParam.RUN, 0)

    # --- FPGA memory, synapse reconfiguration, statistics ---------------------------------------

    def write_fpga_sram(self, address: int, words: list[int] | np.ndarray) -> None:
        """Write 16-bit words into the FPGA SRAM from ``address`` (libcaer ``caerDynapseWriteSramWords``;
        a single word goes without burst mode).  The spike generator's program lives there."""
        self.transport.send(ls.sram_write_words(address, words))

    def configure_synapse_reconfig(
        self, chip: int, *, run: bool, sram_base_address: int = 0, use_sram_kernels: bool = False, global_kernel: int | None = None
    ) -> None:
        """Set up the FPGA's synapse-reconfiguration (DVS mapper) module for ``chip``.

        CHIPSELECT takes the device chip encoding (0/8/4/12) as libcaer sends it.
        ``global_kernel`` is the raw GLOBALKERNEL value (table address 16–12, four 3-bit weights 11–0).
        """
        module = fr.Module.SYNAPSERECONFIG
        p = fr.SynapseReconfigParam
        writes = [fr.RegisterWrite(module, p.SRAMBASEADDR, sram_base_address), fr.RegisterWrite(module, p.USESRAMKERNELS, int(use_sram_kernels))]
        if global_kernel is not None:
            if not 0 <= int(global_kernel) < 1 << 17:
                raise ValueError(f"global kernel 0x{int(global_kernel):X} does not fit 17 bits; nothing written")
            writes.append(fr.RegisterWrite(module, p.GLOBALKERNEL, int(global_kernel)))
        writes.append(fr.RegisterWrite(module, p.RUN, int(run)))
        self.transport.send([ls.synapse_reconfig_select_chip(chip), *fr.single_writes(writes)])

    def read_fpga_drop_counters(self) -> int | None:
        """Events the FPGA itself dropped (MUX STATISTICS_AER_DROPPED + AER STATISTICS_EVENTS_DROPPED),
        read as libcaer reads 64-bit counters; None when the logic has no statistics.  The total is
        also kept in ``counters.fpga_dropped_events``, beside the host-side ``dropped_events``."""
        read = self.transport.read_register
        if self._fpga_statistics is None:  # which modules count drops is fixed by the logic: ask once
            self._fpga_statistics = [
                (module, counter)
                for module, has_param, counter in (
                    (fr.Module.MUX, fr.MuxParam.HAS_STATISTICS, fr.MuxParam.STATISTICS_AER_DROPPED),
                    (fr.Module.AER, fr.AerParam.HAS_STATISTICS, fr.AerParam.STATISTICS_EVENTS_DROPPED),
                )
                if read(module, has_param)
            ]
        total = sum(ls.read64(module, counter, read) for module, counter in self._fpga_statistics)
        self.counters.fpga_dropped_events = total if self._fpga_statistics else None
        self._fpga_counters_read_at = time.monotonic()
        return self.counters.fpga_dropped_events

    def _refresh_fpga_counters(self) -> None:
        """Read the FPGA's drop counters at most every :data:`FPGA_COUNTER_PERIOD_S` (from the stream)."""
        if time.monotonic() - self._fpga_counters_read_at < FPGA_COUNTER_PERIOD_S or self._closed:
            return
        try:
            self.read_fpga_drop_counters()
        except (TransportError, RuntimeError) as exc:  # a lost board is reported by the stream itself
            self._fpga_counters_read_at = time.monotonic()
            log.debug("FPGA drop counters not read: %s", exc)

    # --- monitoring ----------------------------------------------------------------------------------

    def monitor_neuron(self, chip: int, core: int, neuron: int) -> None:
        self._write_chip_words(check_chip(chip), cw.monitor_words(core, neuron))

    def read_membrane(self, chip: int, core: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Emulator side channel only; None on silicon (its monitor is an SMA output)."""
        if self._membrane_channel is None:
            return None
        return self._membrane_channel(check_chip(chip), check_core(core))

    # --- event stream ----------------------------------------------------------------------------

    def start_streaming(self) -> None:
        """Start the reader thread (events then flow to callbacks and iterators continuously)."""
        with self._cond:
            self._cursor = None
        self.transport.start_reader(self._ingest)

    def _ingest(self, chunk: bytes) -> None:
        """Decode one chunk and dispatch it (reader thread or a synchronous read)."""
        with self._cond:
            events, stats = self._decoder.decode(chunk)
            self.counters.received_events += stats.events
            self.counters.corrupt_words += stats.corrupt_words + stats.stray_bytes
            self.counters.non_monotonic_timestamps += stats.non_monotonic_timestamps
            if self._window_end is not None:
                start = 0
                for reset in stats.resets:  # each time base of the chunk in turn
                    self._feed_window(events.slice(start, reset.event_index))
                    self._feed_window(reset)
                    start = reset.event_index
                self._feed_window(events.slice(start, len(events)))
                # every reset of the stream has been fed: the window is in the decoder's time base
                if not self._window_done and self._decoder.now_us >= self._window_end:
                    self._window_done = True
            self._cond.notify_all()
        if len(events):
            for callback in list(self._event_callbacks):
                try:
                    callback(events)
                except Exception:
                    log.exception("event callback failed")
            for q in list(self._iter_queues):
                try:
                    q.put_nowait(events)
                except queue.Full:
                    self.counters.dropped_events += len(events)
        self._refresh_fpga_counters()

    def _feed_window(self, item: SpikeEvents | TimestampReset) -> None:
        """Give the next piece of the stream to the read in progress (under ``_cond``).

        Events of the window are collected, those after it carried; a reset before the window's
        end restarts the window at 0 in the new time base for the board time it still lacks.
        Once the window is done, everything (resets included) is carried for the next read.
        """
        assert self._window_end is not None
        if self._window_done:
            if isinstance(item, TimestampReset) or len(item):
                self._carry.append(item)
            return
        if isinstance(item, TimestampReset):
            if item.time_before_us >= self._window_end:
                self._window_done = True  # the board time had passed the window's end before the reset
                self._carry.append(item)
            else:
                self._window_end -= max(item.time_before_us, self._window_start)
                self._window_start = 0
            return
        ts = item.timestamp_us
        inside = (ts >= self._window_start) & (ts < self._window_end)
        if inside.any():
            self._window_parts.append(item.select(inside))
        later = ts >= self._window_end
        if later.any():  # events within one time base are in time order: the window is over
            self._window_done = True
            self._carry.append(item.select(later))

    def _check_alive(self, what: str) -> None:
        if self._closed:
            raise DeviceGone(f"{what}: the board is closed")
        if not self.transport.connected:
            self.transport.wait_disconnect_reported()  # the disconnect listeners run before the caller hears of it
            raise DeviceGone(f"{what}: the board is disconnected ({self.transport.disconnect_reason})")

    def read_events(self, duration_s: float) -> SpikeEvents:
        """The events of the next ``duration_s`` of board time (see the module docstring).

        A timestamp reset inside the window continues it from the new time base: the read still
        covers ``duration_s`` of board time, returns the events before the reset and then those
        after it (timestamps from 0), and blocks at most ``duration_s`` of board time plus the
        stall timeout.  Consecutive host-paced reads lose and repeat no event across a reset.

        ``duration_s`` must be a finite number >= 0 (a ``ValueError`` at the call names it; NaN,
        inf and ``"0.1"`` failed inside with Python's own messages).
        """
        duration_s = finite_number("read_events duration_s", duration_s, strict=False)
        self._check_alive("read_events")
        threaded = self.transport.reader_running
        duration_us = round(duration_s * 1e6)
        with self._cond:
            carry = self._carry
            if threaded or self._cursor is None:
                t0 = self._decoder.now_us  # in the latest time base: what came before its reset is past
                last_reset = max((i for i, item in enumerate(carry) if isinstance(item, TimestampReset)), default=-1)
                carry = carry[last_reset + 1 :]
            else:
                t0 = self._cursor  # in the time base of the carry's start, where the last read ended
            self._carry = []
            self._window_start, self._window_end, self._window_done, self._window_parts = t0, t0 + duration_us, False, []
            for item in carry:
                self._feed_window(item)
            if not self._window_done and self._decoder.now_us >= self._window_end:
                self._window_done = True
        packet_units = STREAMING_PACKET_PERIOD_UNITS if threaded else batch_packet_period_units(duration_us)
        if packet_units != STREAMING_PACKET_PERIOD_UNITS:
            self._set_packet_period(packet_units)
        try:
            last_progress = time.monotonic()
            while True:
                with self._cond:
                    if self._window_done:
                        break
                self._check_alive("read_events")
                if threaded:
                    with self._cond:
                        before = self._decoder.now_us
                        self._cond.wait(0.05)
                        progressed = self._decoder.now_us != before
                    if not self.transport.reader_running and self.transport.connected:
                        threaded = False  # the reader was stopped under us: continue synchronously
                else:
                    chunk = self.transport.read_bulk()
                    progressed = bool(chunk)
                    if chunk:
                        self._ingest(chunk)
                if progressed:
                    last_progress = time.monotonic()
                elif time.monotonic() - last_progress > self.stall_timeout_s:
                    raise TransportTimeout(f"no data from board {self.serial} for {self.stall_timeout_s} s (board time stuck at {self._decoder.now_us} µs)")
        finally:
            with self._cond:
                parts = self._window_parts
                self._cursor = self._window_end  # in the time base the window ended in
                self._window_end = None
                self._window_parts = []
            if packet_units != STREAMING_PACKET_PERIOD_UNITS and self.transport.connected:
                self._set_packet_period(STREAMING_PACKET_PERIOD_UNITS)
        return SpikeEvents.concatenate(parts)

    def _set_packet_period(self, units: int) -> None:
        self.transport.write_register(fr.Module.USB, fr.UsbParam.EARLY_PACKET_DELAY, units * fr.USB_EARLY_PACKET_UNIT_CYCLES)

    def iter_events(self) -> Iterator[SpikeEvents]:
        """Yield batches as they arrive; ends when the board is closed or unplugged."""
        if not self.connected:
            return
        q: queue.Queue = queue.Queue(maxsize=_ITER_QUEUE_BATCHES)
        self._iter_queues.append(q)
        try:
            self.start_streaming()
            while True:
                try:
                    item = q.get(timeout=0.1)
                except queue.Empty:
                    if not self.connected:
                        return
                    continue
                if item is _END:
                    return
                yield item
        finally:
            if q in self._iter_queues:
                self._iter_queues.remove(q)

    def _end_iterators(self) -> None:
        for q in list(self._iter_queues):
            try:
                q.put_nowait(_END)
            except queue.Full:
                pass

    def add_event_callback(self, callback: Callable[[SpikeEvents], None]) -> None:
        """``callback(batch)`` for every decoded batch (from the reader thread when prefetching)."""
        self._event_callbacks.append(callback)
        if self.prefetch and self.connected:
            self.start_streaming()

    def remove_event_callback(self, callback: Callable[[SpikeEvents], None]) -> None:
        self._event_callbacks.remove(callback)

    def reset_timestamps(self, timeout_s: float = 2.0) -> None:
        """Zero the board clock; returns once the stream has delivered the reset."""
        self._check_alive("reset_timestamps")
        resets_before = self._decoder.total.timestamp_resets
        self.transport.write_registers(fr.timestamp_reset_pulse())
        deadline = time.monotonic() + timeout_s
        while self._decoder.total.timestamp_resets == resets_before:
            if time.monotonic() > deadline:
                raise TransportTimeout(f"timestamp reset not seen in the stream within {timeout_s} s")
            self._check_alive("reset_timestamps")
            if self.transport.reader_running:
                with self._cond:
                    self._cond.wait(0.05)
            else:
                chunk = self.transport.read_bulk()
                if chunk:
                    self._ingest(chunk)
        with self._cond:
            self._cursor = None
            self._carry = []

    @property
    def board_time_us(self) -> int:
        """The latest board time the stream has told the host."""
        return self._decoder.now_us


def open_board(serial: str | None = None, *, backend: Any | None = None, **board_options: Any) -> DynapseBoard:
    """Open a DYNAP-SE1 by serial (or the only one present) on ``backend`` (default libusb).

    ``board_options`` go to :class:`DynapseBoard` (e.g. ``settle_s``).  The backend may offer
    ``membrane_channel(serial)`` (an emulator side channel), ``is_emulator`` and ``host_paced``;
    silicon's libusb backend has none of them.
    """
    from .usb_discovery import find_device, libusb_backend, pyusb

    if backend is None:
        backend = libusb_backend()
        if backend is None:
            raise RuntimeError("no libusb backend available: pip install libusb-package, or apt install libusb-1.0-0")
    device = find_device(serial, backend)
    transport = UsbTransport(device)
    actual_serial = pyusb().util.get_string(device, device.iSerialNumber) or serial or ""
    channel_factory = getattr(backend, "membrane_channel", None)
    board_options.setdefault("is_emulated", bool(getattr(backend, "is_emulator", False)))
    board_options.setdefault("prefetch", not bool(getattr(backend, "host_paced", False)))
    board_options.setdefault("membrane_channel", channel_factory(actual_serial) if channel_factory else None)
    board_options.setdefault("device_finder", lambda: find_device(actual_serial, backend))
    board = DynapseBoard(transport, **board_options)
    try:
        return board.open()
    except Exception:
        board.close()
        raise
