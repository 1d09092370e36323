"""``BatchedBoard``: a :class:`~emulator.batched.BatchedSimulator` configured like a Board.

The same host-side path as one board, because it *is* :class:`emulator.sim_board.SimulatorBoard`
over a batch: the netlist goes through the driver's compiler (``drivers.dynapse1.netlist_compiler``)
and the resulting CAM/SRAM words are applied by the emulator's virtual FPGA; biases are set by
name; the stimulus is a spike-generator program.  What differs from
the :class:`~drivers.dynapse1.board_api.Board` protocol: :meth:`BatchedBoard.read_events`
returns one :class:`SpikeEvents` per board of the batch, and :meth:`BatchedBoard.apply_bias_set`
can write one board only (``instance=``, a per-chip calibration).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from drivers.dynapse1.board_api import BiasValue
from drivers.dynapse1.netlist import NeuronAddress
from drivers.dynapse1.spikes import SpikeEvents
from drivers.dynapse1.topology import N_NEURONS_PER_CHIP, N_NEURONS_PER_CORE

from .batched import BatchedSimulator
from .config import EmulatorConfig
from .sim_board import SimulatorBoard


class BatchedBoard(SimulatorBoard):
    """Board-like access to N emulated boards at once (see the module docstring).

    Parameters
    ----------
    serials : one serial per board (its mismatch)
    config : shared emulator configuration
    threads : worker threads over boards (0 = one per CPU core)
    chips : chips to simulate (``BatchedSimulator``'s ``chips``; None = all)
    record_all_spikes : ``BatchedSimulator``'s (False: ``sim.last_spikes`` stays empty)
    """

    def __init__(self, serials: Sequence[str], config: EmulatorConfig | None = None, threads: int = 0,
                 chips: Sequence[int] | None = None, record_all_spikes: bool = True) -> None:
        super().__init__(BatchedSimulator(serials, config, threads, chips, record_all_spikes))
        self.serial = "BATCH"
        self._per_board: list[dict[tuple[int, int, str], BiasValue]] = [{} for _ in self.sim.serials]

    @property
    def serials(self) -> tuple[str, ...]:
        return self.sim.serials

    def __len__(self) -> int:
        return len(self.sim)

    def apply_bias_set(self, biases: Mapping[tuple[int, int, str], BiasValue], instance: int | None = None) -> None:
        """Write ``biases`` on every board, or on board ``instance`` only.

        Each value is validated by its first write; a bad entry raises with the earlier entries
        written (as :class:`SimulatorBoard`, without the Board's transaction)."""
        for (chip, core, name), v in biases.items():
            self.sim.set_bias(chip, core, name, v.coarse, v.fine, high=v.high, normal=v.normal, enabled=v.enabled,
                              instance=instance)
            for index in range(len(self._per_board)) if instance is None else (instance,):
                self._per_board[index][(chip, core, name)] = v

    def get_bias(self, chip: int, core: int, name: str, instance: int = 0) -> BiasValue:
        """The value last written to board ``instance`` through this object."""
        return self._per_board[instance][(chip, core, name)]

    def reset_network_state(self) -> None:
        self.sim.reset_network_state()

    def keep_events_of(self, neurons: Sequence[NeuronAddress] | None) -> None:
        """:meth:`read_events` returns events of these neurons only (None: all); see
        ``BatchedSimulator.keep_host_events_of``."""
        self.sim.keep_host_events_of(None if neurons is None else [
            a.chip * N_NEURONS_PER_CHIP + a.core * N_NEURONS_PER_CORE + a.neuron for a in neurons])

    def read_events(self, duration_s: float) -> list[SpikeEvents]:  # type: ignore[override]
        """Advance every board by ``duration_s``; per board, the events the host receives."""
        events = self.sim.run(duration_s)
        self.counters.received_events += sum(len(e) for e in events)
        return events
