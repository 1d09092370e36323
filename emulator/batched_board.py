"""``BatchedBoard``: a :class:`~emulator.batched.BatchedSimulator` configured like a Board.

The same host-side path as one board: the netlist goes through the driver's compiler
(``drivers.dynapse1.netlist_compiler``) and the resulting CAM/SRAM words are applied by the
emulator's virtual FPGA, exactly as :class:`emulator.sim_board.SimulatorBoard` does for one
simulator; biases are set by name; the stimulus is a spike-generator program.  What differs from
the :class:`~drivers.dynapse1.board_api.Board` protocol: :meth:`BatchedBoard.read_events`
returns one :class:`SpikeEvents` per board of the batch, and :meth:`BatchedBoard.apply_bias_set`
can write one board only (``instance=``, a per-chip calibration).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from drivers.dynapse1.board_api import BiasValue, SpikeGenEvent
from drivers.dynapse1.netlist import Netlist, NeuronAddress
from drivers.dynapse1.netlist_compiler import compile_netlist
from drivers.dynapse1.spikes import SpikeEvents
from drivers.dynapse1.topology import N_CHIPS, N_NEURONS_PER_CHIP

from .batched import BatchedSimulator
from .config import EmulatorConfig


class BatchedBoard:
    """Board-like access to N emulated boards at once (see the module docstring).

    Parameters
    ----------
    serials : one serial per board (its mismatch)
    config : shared emulator configuration
    threads : worker threads over boards (0 = one per CPU core)
    chips : chips to simulate (``BatchedSimulator``'s ``chips``; None = all)
    record_all_spikes : ``BatchedSimulator``'s (False: ``sim.last_spikes`` stays empty)
    """

    is_emulated = True

    def __init__(self, serials: Sequence[str], config: EmulatorConfig | None = None, threads: int = 0,
                 chips: Sequence[int] | None = None, record_all_spikes: bool = True) -> None:
        self.sim = BatchedSimulator(serials, config, threads, chips, record_all_spikes)
        self._biases: list[dict[tuple[int, int, str], BiasValue]] = [{} for _ in self.sim.serials]

    @property
    def serials(self) -> tuple[str, ...]:
        return self.sim.serials

    def __len__(self) -> int:
        return len(self.sim)

    def apply_bias_set(self, biases: Mapping[tuple[int, int, str], BiasValue], instance: int | None = None) -> None:
        """Write ``biases`` on every board, or on board ``instance`` only.

        Every value is validated (by the first write) before the next is written; a bad entry
        raises with the earlier entries written, as on a board without the Board's transaction."""
        for (chip, core, name), v in biases.items():
            self.sim.set_bias(chip, core, name, v.coarse, v.fine, high=v.high, normal=v.normal, enabled=v.enabled,
                              instance=instance)
            for index in range(len(self._biases)) if instance is None else (instance,):
                self._biases[index][(chip, core, name)] = v

    def get_bias(self, chip: int, core: int, name: str, instance: int = 0) -> BiasValue:
        """The value last written to board ``instance`` through this object."""
        return self._biases[instance][(chip, core, name)]

    def write_netlist(self, netlist: Netlist) -> list[str]:
        """The netlist's CAM/SRAM words, compiled by the driver, applied to the shared tables."""
        from .virtual_fpga import VirtualFpga

        compiled = compile_netlist(netlist)
        fpga = VirtualFpga("BATCH", self.sim)
        for chip, words in compiled.words_by_chip().items():
            for word in words:
                fpga.apply_chip_word(chip, word)
        return compiled.warnings

    def clear_connections(self, chips: list[int] | None = None) -> None:
        for chip in chips if chips is not None else range(N_CHIPS):
            self.sim.clear_cam(chip)
            self.sim.default_sram(chip)

    def load_spike_generator(self, events: list[SpikeGenEvent], repeat: bool = False) -> None:
        self.sim.load_spike_generator([(e.source.chip, e.source.neuron, e.core_mask, e.isi_us) for e in events], repeat)

    def start_spike_generator(self) -> None:
        self.sim.start_spike_generator()

    def stop_spike_generator(self) -> None:
        self.sim.stop_spike_generator()

    def reset_timestamps(self) -> None:
        self.sim.reset_timestamps()

    def reset_network_state(self) -> None:
        self.sim.reset_network_state()

    def keep_events_of(self, neurons: Sequence[NeuronAddress] | None) -> None:
        """:meth:`read_events` returns events of these neurons only (None: all); see
        ``BatchedSimulator.keep_host_events_of``."""
        self.sim.keep_host_events_of(None if neurons is None else [a.chip * N_NEURONS_PER_CHIP + a.core * 256 + a.neuron
                                                                   for a in neurons])

    def read_events(self, duration_s: float) -> list[SpikeEvents]:
        """Advance every board by ``duration_s``; per board, the events the host receives."""
        return self.sim.run(duration_s)

    def close(self) -> None:
        pass
