"""A :class:`BoardSimulator` configured and driven like a Board, for the Brian2 reference stage.

The Brian2 stage runs the project's Brian2 model (``emulator.brian2_reference.run_brian2``) on
a simulator's current configuration.  To make sure that configuration is *exactly* what a board
would hold, the netlist goes through the driver's compiler (``drivers.dynapse1.netlist_compiler``)
and the resulting CAM/SRAM words are applied to the simulator by the emulator's virtual FPGA, biases are set by
name, and the stimulus is the same spike-generator program.  :class:`SimulatorBoard` wraps this
behind the subset of the Board interface the conversion uses (biases, ``write_netlist``,
spike generator, ``read_events``), so the same streaming and transfer-matching code serves it;
``read_events`` advances either the simulator itself or the Brian2 model.

Board stages proper use a real :class:`~drivers.dynapse1.board_api.Board` (silicon, or the
emulator behind the USB emulation); this wrapper skips the wire protocol and is meant for the
Brian2 reference and for fast unit tests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from drivers.dynapse1.board_api import BiasValue, SpikeGenEvent, StreamCounters
from drivers.dynapse1.netlist import Netlist
from drivers.dynapse1.netlist_compiler import compile_netlist
from drivers.dynapse1.spikes import SpikeEvents


class SimulatorBoard:
    """Board-like access to an ``emulator.simulator.BoardSimulator`` (see the module docstring).

    Parameters
    ----------
    simulator : the BoardSimulator to configure
    runner : ``runner(simulator, duration_s) -> SpikeEvents``; default ``simulator.run``
    """

    is_emulated = True
    firmware_version = 0
    logic_version = 0

    def __init__(self, simulator, runner: Callable[[object, float], SpikeEvents] | None = None) -> None:
        self.sim = simulator
        self.serial = getattr(simulator, "serial", "SIM")
        self.counters = StreamCounters()
        self._runner = runner or (lambda sim, d: sim.run(d))
        self._biases: dict[tuple[int, int, str], BiasValue] = {}

    def set_bias(self, chip: int, core: int, name: str, value: BiasValue) -> None:
        self.apply_bias_set({(chip, core, name): value})

    def get_bias(self, chip: int, core: int, name: str) -> BiasValue:
        return self._biases[(chip, core, name)]

    def apply_bias_set(self, biases: Mapping[tuple[int, int, str], BiasValue]) -> None:
        for (chip, core, name), v in biases.items():
            self.sim.set_bias(chip, core, name, v.coarse, v.fine, high=v.high, normal=v.normal, enabled=v.enabled)
            self._biases[(chip, core, name)] = v

    def write_netlist(self, netlist: Netlist) -> list[str]:
        # The driver's compiler produces the exact CAM/SRAM words a board would receive, and the
        # virtual FPGA applies them to the simulator the way it does for words arriving over USB.
        from .virtual_fpga import VirtualFpga

        compiled = compile_netlist(netlist)
        fpga = VirtualFpga(self.serial, self.sim)
        for chip, words in compiled.words_by_chip().items():
            for word in words:
                fpga.apply_chip_word(chip, word)
        return compiled.warnings

    def clear_connections(self, chips: list[int] | None = None, cores: list[int] | None = None) -> None:
        # clearing whole chips is cheap here, and clears at least ``cores``
        for chip in chips if chips is not None else range(4):
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

    def read_events(self, duration_s: float) -> SpikeEvents:
        events = self._runner(self.sim, duration_s)
        self.counters.received_events += len(events)
        return events

    @property
    def connected(self) -> bool:
        return True

    def close(self) -> None:
        pass
