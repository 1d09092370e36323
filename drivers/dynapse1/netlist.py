"""Netlist: the connections a network needs, in board addresses, before they become CAM/SRAM words.

The conversion pipeline produces a :class:`Netlist`; :meth:`Board.write_netlist`
checks it against the hardware limits (64 CAM entries per neuron, 4 SRAM entries
per neuron, CAM aliasing) and writes it.  Keeping it a plain data object lets the
same netlist go to the board, to the Brian2 reference model and to a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .topology import SynapseType, check_chip, check_core, check_neuron


@dataclass(frozen=True)
class NeuronAddress:
    """A physical neuron: chip, core and id within the core."""

    chip: int
    core: int
    neuron: int

    def __post_init__(self) -> None:
        check_chip(self.chip)
        check_core(self.core)
        check_neuron(self.neuron)


@dataclass(frozen=True)
class InputAddress:
    """A virtual source driven by the FPGA spike generator or the Poisson generator.

    Input spikes are injected on ``chip`` (0..3) and seen by the CAMs there as coming
    from source ``(core, neuron)``.  The FPGA spike generator's 14-bit event word has
    no core field, so its sources are always core 0 (samna's convention for FPGA
    spike generators); the 1024 Poisson sources are ``core * 256 + neuron``.
    """

    chip: int
    neuron: int
    core: int = 0

    def __post_init__(self) -> None:
        check_chip(self.chip)
        check_core(self.core)
        check_neuron(self.neuron)


@dataclass(frozen=True)
class Connection:
    """``multiplicity`` identical CAM entries on ``post`` listening to ``pre`` with ``synapse``.

    The on-chip efficacy is multiplicity × the core's weight bias for that synapse type.
    """

    pre: NeuronAddress | InputAddress
    post: NeuronAddress
    synapse: SynapseType
    multiplicity: int = 1

    def __post_init__(self) -> None:
        if self.multiplicity < 1:
            raise ValueError(f"connection multiplicity must be >= 1, got {self.multiplicity}")


@dataclass
class Netlist:
    """A list of connections plus the neurons whose spikes the host must receive."""

    connections: list[Connection] = field(default_factory=list)
    #: Neurons whose spikes must reach the host (SRAM cell 0 → USB); by default every post neuron.
    monitored: set[NeuronAddress] = field(default_factory=set)

    def add(self, pre: NeuronAddress | InputAddress, post: NeuronAddress, synapse: SynapseType, multiplicity: int = 1) -> None:
        self.connections.append(Connection(pre, post, SynapseType(synapse), multiplicity))

    def neurons(self) -> set[NeuronAddress]:
        """Every physical neuron that appears as a source or a target."""
        out: set[NeuronAddress] = set(self.monitored)
        for c in self.connections:
            out.add(c.post)
            if isinstance(c.pre, NeuronAddress):
                out.add(c.pre)
        return out

    def fan_in(self) -> dict[NeuronAddress, int]:
        """CAM entries used per target neuron."""
        out: dict[NeuronAddress, int] = {}
        for c in self.connections:
            out[c.post] = out.get(c.post, 0) + c.multiplicity
        return out
