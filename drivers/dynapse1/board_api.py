"""The Board interface: what calibration, conversion and the GUI may ask of a DYNAP-SE1 board.

There is one implementation, :class:`drivers.dynapse1.board.DynapseBoard`, which
speaks the USB wire protocol through pyusb.  Whether pyusb reaches silicon or the
emulator's virtual device (``emulator.virtual_usb``) is decided only when the
board is opened; nothing above this interface can tell the two apart except
through :attr:`Board.is_emulated` and the optional analog-monitor capability,
which silicon exposes on SMA connectors rather than over USB.

This module holds the contract only (a :class:`typing.Protocol`) so that the
application core can type against it without importing pyusb.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from .bias_table import BiasValue
from .netlist import InputAddress, Netlist
from .spikes import SpikeEvents

__all__ = ["BiasValue", "Board", "SpikeGenEvent", "StreamCounters"]


@dataclass(frozen=True)
class SpikeGenEvent:
    """One FPGA spike-generator event: fire virtual source ``source`` after ``isi_us`` µs."""

    source: InputAddress
    core_mask: int  # one-hot destination cores on source.chip (1..15)
    isi_us: float  # delay since the previous event in the list


@dataclass
class StreamCounters:
    """Health of the event stream since the board was opened."""

    received_events: int = 0
    dropped_events: int = 0  # lost in host buffers (a consumer's queue was full)
    corrupt_words: int = 0  # words the decoder could not interpret (counted, skipped)
    #: timestamp words that did not move the clock forward (delivered, not dropped; libcaer logs them)
    non_monotonic_timestamps: int = 0
    fpga_dropped_events: int | None = None  # the FPGA's own drop counters at the last read; None: not exposed


@runtime_checkable
class Board(Protocol):
    """A connected DYNAP-SE1 board, real or emulated."""

    serial: str
    firmware_version: int
    logic_version: int
    is_emulated: bool
    counters: StreamCounters

    # --- biases -----------------------------------------------------------------
    def set_bias(self, chip: int, core: int, name: str, value: BiasValue) -> None:
        """Write one per-core bias: the whole :class:`BiasValue`, flags included."""
        ...

    def get_bias(self, chip: int, core: int, name: str) -> BiasValue:
        """The value last written (the chip cannot be read back)."""
        ...

    def apply_bias_set(self, biases: Mapping[tuple[int, int, str], BiasValue]) -> None:
        """Validate every entry first, then write all of them as one transaction.

        A transfer that fails part-way is rolled back (the previous values are written again);
        the cache then holds what the board was last sent and a ``BiasWriteError`` says which
        biases hold which value.  Listeners hear of every bias whose cached value changed.
        """
        ...

    def add_bias_listener(self, callback: Callable[[int, int, str, BiasValue], None]) -> None:
        """Call ``callback(chip, core, name, value)`` after every bias write, whoever made it."""
        ...

    # --- connectivity -------------------------------------------------------------
    def write_netlist(self, netlist: Netlist) -> list[str]:
        """Check limits (64 CAM, 4 SRAM) and write CAM/SRAM words; return aliasing warnings."""
        ...

    def clear_connections(self, chips: list[int] | None = None, cores: list[int] | None = None) -> None:
        """Clear the CAMs and SRAMs of ``chips`` (default all), or of at least the neurons of ``cores``."""
        ...

    def set_tau2(self, chip: int, core: int, neuron: int, use_tau2: bool = True) -> None: ...

    # --- stimulus -----------------------------------------------------------------
    def load_spike_generator(self, events: list[SpikeGenEvent], repeat: bool = False) -> None: ...

    def start_spike_generator(self) -> None: ...

    def stop_spike_generator(self) -> None: ...

    def set_poisson_rates(self, chip: int, rates_hz: Mapping[int, float]) -> None:
        """Rates per Poisson source id (0..1023, the virtual input neuron id) on ``chip``."""
        ...

    # --- monitoring -----------------------------------------------------------------
    def monitor_neuron(self, chip: int, core: int, neuron: int) -> None:
        """Route one neuron per core to the analog monitor output."""
        ...

    def read_membrane(self, chip: int, core: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(t_us, volts) of the monitored neuron since the last call, or None on silicon."""
        ...

    # --- event stream -------------------------------------------------------------
    def reset_timestamps(self) -> None: ...

    def read_events(self, duration_s: float) -> SpikeEvents:
        """Collect the events of the next ``duration_s`` of board time (timestamps and wrap words
        advance the clock even when no neuron fires).  An emulator in fast mode simulates exactly
        this span; silicon takes that long in wall-clock time."""
        ...

    def iter_events(self) -> Iterator[SpikeEvents]:
        """Yield batches as they arrive (blocking); stops when the board is closed or unplugged."""
        ...

    def add_event_callback(self, callback: Callable[[SpikeEvents], None]) -> None: ...

    @property
    def connected(self) -> bool: ...

    def close(self) -> None: ...
