"""Spike events as columns of numpy arrays: what the board emits and the host records.

One event is (timestamp in µs, chip, core, neuron-within-core).  Batches are kept
as parallel arrays, never as per-event Python objects, so that millions of events
per second can pass through the decoder, the recorder and the raster.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .topology import N_NEURONS_PER_CHIP, N_NEURONS_PER_CORE


@dataclass
class SpikeEvents:
    """A batch of spike events, sorted by time as they arrive.

    Attributes
    ----------
    timestamp_us : int64 array, microseconds since the last timestamp reset
    chip, core : uint8 arrays
    neuron : uint16 array, neuron id within its core (0..255)
    """

    timestamp_us: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    chip: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    core: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    neuron: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint16))

    def __post_init__(self) -> None:
        self.timestamp_us = np.asarray(self.timestamp_us, dtype=np.int64)
        self.chip = np.asarray(self.chip, dtype=np.uint8)
        self.core = np.asarray(self.core, dtype=np.uint8)
        self.neuron = np.asarray(self.neuron, dtype=np.uint16)
        n = len(self.timestamp_us)
        if not (len(self.chip) == len(self.core) == len(self.neuron) == n):
            raise ValueError("SpikeEvents columns must all have the same length")

    def __len__(self) -> int:
        return len(self.timestamp_us)

    @property
    def global_id(self) -> np.ndarray:
        """Board-wide neuron index 0..4095 for every event."""
        return (
            self.chip.astype(np.int64) * N_NEURONS_PER_CHIP
            + self.core.astype(np.int64) * N_NEURONS_PER_CORE
            + self.neuron.astype(np.int64)
        )

    @classmethod
    def concatenate(cls, batches: list[SpikeEvents]) -> SpikeEvents:
        """Join batches in the given order."""
        if not batches:
            return cls()
        return cls(
            np.concatenate([b.timestamp_us for b in batches]),
            np.concatenate([b.chip for b in batches]),
            np.concatenate([b.core for b in batches]),
            np.concatenate([b.neuron for b in batches]),
        )

    def slice(self, start: int, stop: int) -> SpikeEvents:
        """Events ``start`` to ``stop`` (views, no copy)."""
        return SpikeEvents(self.timestamp_us[start:stop], self.chip[start:stop], self.core[start:stop], self.neuron[start:stop])

    def select(self, mask: np.ndarray) -> SpikeEvents:
        """The events where boolean ``mask`` is true."""
        return SpikeEvents(self.timestamp_us[mask], self.chip[mask], self.core[mask], self.neuron[mask])

    def counts(self, n_neurons: int = 4096) -> np.ndarray:
        """Spike count per board-wide neuron index."""
        return np.bincount(self.global_id, minlength=n_neurons)
