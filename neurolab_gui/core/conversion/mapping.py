"""Map a constrained network onto DYNAP-SE1: neurons, input sources, netlist, biases, time.

Placement
    Hidden units of core group ``g`` go to core ``CORE_ORDER[g]`` of one chip (cores 1, 2, 3,
    then 0).  FPGA spike-generator sources are seen by the CAMs as (core 0, neuron id), so
    physical neurons on core 0 would alias with inputs of the same id; placing units on cores
    1-3 first avoids that, and on core 0 unit ids start above the highest input id.  Source
    address (core 0, neuron 0) is never used at all: a *cleared* CAM entry holds exactly that
    address (type GABA_B), so every neuron with spare CAM entries listens to it.
    Inputs are ``InputAddress(chip, 1 + k)`` for feature ``k``; the bias channel comes next,
    then the reset channel.  The input channels fire at ``input_rate_gain * r_max * x`` and the
    bias channel at ``bias_rate_gain * r_max``: the constrained network's source gains, which
    give the input and bias columns their own copy weight (:mod:`.constrain`, "per-group
    precision") while the cores' weight biases stay those of the recurrent copies.
    A network with more core groups than one chip holds spans several chips (up to the whole
    board): :func:`allocate_units` partitions the groups across chips to minimise the spikes that
    cross between them, every input channel is played on each chip that holds its targets, and
    :func:`check_routes` compiles the netlist to refuse what the chips cannot route (SRAM cells,
    CAM tag aliasing across chips); docs/ARCHITECTURE.md, "Multi-chip mapping".

Synapses
    Positive multiplicities use AMPA (fast excitatory), negative ones GABA_B (slow inhibitory,
    *subtractive*: a linear rate model needs subtraction, GABA_A is shunting).  Both synapse
    time constants are set to the same ``tau`` so excitation and inhibition share one filter.

Time mapping
    One RNN step is ``dt_step`` seconds of chip time, every input sample is held for
    ``steps_per_sample`` steps and the RNN retention ``a`` gives the synaptic time constant
    ``tau = -dt_step / ln(a)``.  Activation 1 is a rate of ``r_max`` Hz (default 900 Hz: many
    spikes per synaptic time constant keep the recurrent currents smooth; the refractory period
    bounds the rate, see below).  Sequences are separated by a silent gap of several ``tau``
    so the network returns to rest (the RNN starts every sequence from zero).  Rest is enforced:
    recurrent excitation can sustain activity after the input stops (measured on the emulator:
    without a reset, activity carried from one sample into the next and accuracy fell to chance),
    so a *reset channel* fires a burst at the start of every gap into one GABA_A (shunting) CAM
    entry of every unit.  Its own short time constant and high gain clamp the membranes while the
    AMPA/GABA_B currents decay, and it has vanished when the next sample starts.  It costs one
    CAM entry per unit (constrain with ``max_fan_in=63``) and no change to the RNN.

Neuron settings
    The membrane leak is weak (``tau_mem`` much longer than ``tau``): the soma then integrates
    its synaptic current and fires at a rate proportional to it (an integrate-and-fire neuron is
    a ΣΔ modulator of its input current), with only a small rheobase offset.  The refractory
    period is ``t_ref = 1 / (s r_max)`` for a model trained with the saturating activation
    ``phi(u) = u / (1 + u / s)``: an integrator whose input is lost while refractory fires at
    ``f0 / (1 + f0 t_ref)``, which is exactly ``r_max phi(u)`` for ``f0 = r_max u``.  (For a
    hard-clip model it is short, ``NeuronSettings.t_ref_s``.)
    Adaptation, NMDA, GABA_A and DC are off.  Bias currents follow the nominal circuit model that
    the emulator simulates with (``drivers.dynapse1.circuit``: ``tau = C U_T / (kappa I)``,
    ``t_ref = C_ref V / I`` and the per-bias scale); on silicon these are starting points that
    transfer-curve matching (:mod:`.transfer`) corrects by measurement.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np

from drivers.dynapse1.bias_table import CORE_BIASES, SILENT, closest_setting, nominal_current
from drivers.dynapse1.board_api import BiasValue
from drivers.dynapse1.circuit import (
    DEFAULT_BIAS_SCALE,
    NOMINAL_CIRCUIT,
    REFRACTORY_SCALE,
    SUBTHRESHOLD_SCALE,
    CircuitConstants,
)
from drivers.dynapse1.netlist import InputAddress, Netlist, NeuronAddress
from drivers.dynapse1.netlist_compiler import CompiledNetlist, compile_netlist
from drivers.dynapse1.topology import N_CHIPS, N_NEURONS_PER_CORE, SynapseType

from .constrain import ConstrainedNetwork
from .models import tau_from_retention

#: Cores that receive hidden-unit groups, in order of preference (core 0 last: input aliasing).
CORE_ORDER = (1, 2, 3, 0)
#: Lowest core-0 neuron id a unit may take.  FPGA sources reach the CAMs as core-0 neurons, so a
#: core-0 unit whose id equals a source id would also hear that source: the network's own sources
#: (inputs, bias, reset) and the calibration's probe sources (up to id 18 with the default
#: multiplicity, ``probing.taus.tau_probe_source_end``) all lie below this.
CORE0_FIRST_UNIT_ID = 32

#: Synapse type of each sign, and the weight / time-constant / gain biases that go with it.
EXCITATORY = SynapseType.AMPA
INHIBITORY = SynapseType.GABA_B
#: The reset channel silences units between samples by shunting (fast, strong, and gone quickly).
RESET_SYNAPSE = SynapseType.GABA_A
WEIGHT_BIAS = {SynapseType.AMPA: "PS_WEIGHT_EXC_F_N", SynapseType.GABA_B: "PS_WEIGHT_INH_S_N"}
TAU_BIAS = {SynapseType.AMPA: "NPDPIE_TAU_F_P", SynapseType.GABA_B: "NPDPII_TAU_S_P"}
GAIN_BIAS = {SynapseType.AMPA: "NPDPIE_THR_F_P", SynapseType.GABA_B: "NPDPII_THR_S_P"}


@dataclass
class TimeMapping:
    """How RNN time becomes chip time."""

    dt_step_s: float = 0.005
    steps_per_sample: int = 4
    retention: float = 0.85
    r_max_hz: float = 900.0
    gap_s: float = 0.15
    #: Reset burst at the start of every gap (0 Hz: no reset channel), see :mod:`.encoding`.
    reset_rate_hz: float = 1000.0
    reset_s: float = 0.1

    @property
    def tau_s(self) -> float:
        return tau_from_retention(self.dt_step_s, self.retention)

    def sample_duration_s(self, length: int) -> float:
        return length * self.steps_per_sample * self.dt_step_s


@dataclass
class CircuitModel:
    """Nominal bias-to-circuit model used to turn time constants into bias settings.

    Defaults are the nominal circuit model of :mod:`drivers.dynapse1.circuit`, which the emulator
    simulates with too; they are a model, not silicon facts.
    """

    ut: float = NOMINAL_CIRCUIT.ut
    kappa: float = NOMINAL_CIRCUIT.kappa
    c_mem: float = NOMINAL_CIRCUIT.c_mem
    c_syn: float = NOMINAL_CIRCUIT.c_syn[SynapseType.AMPA]
    c_ref: float = NOMINAL_CIRCUIT.c_ref
    c_pulse: float = NOMINAL_CIRCUIT.c_pulse
    v_switch: float = NOMINAL_CIRCUIT.v_switch
    subthreshold_scale: float = SUBTHRESHOLD_SCALE
    refractory_scale: float = REFRACTORY_SCALE
    i_spike_threshold: float = NOMINAL_CIRCUIT.i_spike_threshold

    @classmethod
    def from_circuit(cls, circuit: CircuitConstants, bias_scale: Mapping[str, float] = DEFAULT_BIAS_SCALE) -> CircuitModel:
        """The model of other circuit constants and bias scales (e.g. an emulator configured differently)."""
        return cls(
            circuit.ut, circuit.kappa, circuit.c_mem, float(circuit.c_syn[SynapseType.AMPA]), circuit.c_ref, circuit.c_pulse,
            circuit.v_switch, bias_scale.get("IF_TAU1_N", SUBTHRESHOLD_SCALE), bias_scale.get("IF_RFR_N", REFRACTORY_SCALE),
            circuit.i_spike_threshold,
        )

    def tau_current(self, tau_s: float, capacitance: float) -> float:
        """Nominal bias current for a DPI time constant ``tau = C U_T / (kappa I)``."""
        return capacitance * self.ut / (self.kappa * tau_s) / self.subthreshold_scale

    def refractory_current(self, t_ref_s: float) -> float:
        return self.c_ref * self.v_switch / t_ref_s / self.refractory_scale

    def pulse_current(self, t_pulse_s: float) -> float:
        return self.c_pulse * self.v_switch / t_pulse_s

    def copy_gain_per_weight_current(self, time: TimeMapping, settings: NeuronSettings) -> float:
        """Nominal rate gain of one CAM copy, in (Hz out) / (Hz in) per ampere of weight bias.

        Linear DPI synapse: each event adds ``g_syn I_w (1 - exp(-t_pulse / tau))`` (``g_syn`` =
        the synapse gain ratio), so the mean synaptic current at input rate ``r`` is ``r tau``
        times that.  A soma with a weak leak integrates its input, ``dI_mem/dt = I_gain kappa
        I_in / (C U_T)``, and fires at ``I_gain kappa I_in / (C U_T I_spk)``.
        """
        import math

        tau = time.tau_s
        i_gain = self.tau_current(settings.tau_mem_s, self.c_mem) * self.subthreshold_scale * settings.soma_gain_ratio
        jump_per_amp = settings.syn_gain_ratio * (1.0 - math.exp(-settings.t_pulse_s / tau))
        soma_hz_per_amp = i_gain * self.kappa / (self.c_mem * self.ut * self.i_spike_threshold)
        return jump_per_amp * tau * soma_hz_per_amp


@dataclass
class NeuronSettings:
    """Physical targets for the neurons and synapses in use (see the module docstring)."""

    tau_mem_s: float = 0.1  # long against tau_syn (near-integrator); the leak cannot go below I_0 (~0.2 s)
    t_ref_s: float = 0.2e-3  # replaced by 1 / (s r_max) for a saturating model
    t_pulse_s: float = 10e-6
    soma_gain_ratio: float = 4.0  # I_th / I_tau of the soma DPI
    syn_gain_ratio: float = 1.0  # I_g / I_tau of the synapse DPI (moderate: keeps the DPI near linear)
    #: Reset synapse (GABA_A, shunting): short time constant, high gain and a weight that makes
    #: the shunt current during a reset burst about ``reset_shunt_a`` (far above every leak).
    reset_tau_s: float = 0.005
    reset_gain_ratio: float = 100.0
    reset_shunt_a: float = 10e-9


@dataclass
class MappedNetwork:
    """A converted network in board terms, ready for a Board or the Brian2 model.

    Attributes
    ----------
    netlist : connections (inputs and recurrent) and monitored neurons
    unit_addresses : physical neuron of every hidden unit
    input_addresses : FPGA source of every input feature, then the bias channel, then the reset
        channel (when the time mapping has one), on the network's first chip; the same source id
        is played on every chip in ``core_masks`` (:meth:`generator_channels`)
    core_masks : ``[channels, 4]`` destination-core mask of every input channel on every chip
        (where its targets live; 0: the channel is not played on that chip)
    group_cores : ``(chip, core)`` of every core group
    biases : full per-core bias set for the cores in use
    time : the time mapping
    multiplicity : signed CAM copies ``[H, F + 1 + H]`` (for counting synaptic events)
    readout_weight, readout_bias : host-side linear readout
    readout : ``"mean"`` or ``"last"``
    unit_gain, unit_offset_hz : per-unit rate correction applied when decoding,
        ``activation = (rate - offset) / (gain * r_max)``; identity by default.  This is the
        hook for per-neuron calibration (mismatch compensation) on top of the nominal match.
    """

    netlist: Netlist
    unit_addresses: list[NeuronAddress]
    input_addresses: list[InputAddress]
    core_masks: np.ndarray
    group_cores: list[tuple[int, int]]
    biases: dict[tuple[int, int, str], BiasValue]
    time: TimeMapping
    multiplicity: np.ndarray
    readout_weight: np.ndarray
    readout_bias: np.ndarray
    readout: str = "mean"
    unit_gain: np.ndarray = field(default=None)  # type: ignore[assignment]
    unit_offset_hz: np.ndarray = field(default=None)  # type: ignore[assignment]
    settings: NeuronSettings = field(default_factory=NeuronSettings)
    #: Spikes added to every non-zero count when decoding mean rates (integrate-and-fire
    #: neurons start each sample from rest and so under-count by half a spike on average).
    count_correction: float = 0.5
    #: Spike-generator rate of an input channel at value 1, and of the bias channel, relative to
    #: ``time.r_max_hz`` (``ConstrainedNetwork.input_gain`` / ``bias_gain``).
    input_rate_gain: float = 1.0
    bias_rate_gain: float = 1.0

    def __post_init__(self) -> None:
        h = len(self.unit_addresses)
        if self.unit_gain is None:
            self.unit_gain = np.ones(h)
        if self.unit_offset_hz is None:
            self.unit_offset_hz = np.zeros(h)

    @property
    def n_hidden(self) -> int:
        return len(self.unit_addresses)

    @property
    def n_inputs(self) -> int:
        return self.multiplicity.shape[1] - self.n_hidden - 1

    @property
    def n_sources(self) -> int:
        """FPGA sources: inputs, bias channel and (if used) the reset channel."""
        return len(self.input_addresses)

    @property
    def chip(self) -> int:
        """The network's first chip (where its input sources are listed); see :attr:`chips`."""
        return self.unit_addresses[0].chip

    @property
    def chips(self) -> list[int]:
        """Every chip that holds units of the network, ascending."""
        return sorted({a.chip for a in self.unit_addresses})

    @property
    def input_copies(self) -> int:
        """Spike-generator events per input spike at most: the chips one channel is played on."""
        return max(1, int((self.core_masks != 0).sum(1).max(initial=1)))

    def generator_channels(self, times_us: np.ndarray, channels: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray, list[InputAddress], list[int]]:
        """Spikes of the input channels as spike-generator events on every chip that needs them.

        Returns ``(times_us, generator_channels, sources, core_masks)`` for
        :func:`~neurolab_gui.core.probing.program.spike_program`: a spike of channel ``j`` becomes
        one event per chip in ``core_masks[j]``, at the same time, from source id
        ``input_addresses[j].neuron`` on that chip.
        """
        masks = np.asarray(self.core_masks).reshape(len(self.input_addresses), -1)
        pairs = np.argwhere(masks != 0)  # (channel, chip), by channel then chip
        sources = [InputAddress(int(c), self.input_addresses[j].neuron) for j, c in pairs]
        per_channel = [np.flatnonzero(pairs[:, 0] == j) for j in range(len(masks))]
        times_us, channels = np.asarray(times_us), np.asarray(channels, np.int64)
        copies = [per_channel[j] for j in channels.tolist()]
        counts = np.array([len(c) for c in copies], np.int64)
        expanded = np.concatenate(copies) if copies else np.zeros(0, np.int64)
        return np.repeat(times_us, counts), expanded, sources, [int(masks[j, c]) for j, c in pairs]

    def set_unit_calibration(self, gain: np.ndarray, offset_hz: np.ndarray) -> None:
        """Install per-unit gain/offset (calibration hook); validated before anything changes."""
        gain, offset_hz = np.asarray(gain, float), np.asarray(offset_hz, float)
        if gain.shape != (self.n_hidden,) or offset_hz.shape != (self.n_hidden,):
            raise ValueError(f"unit calibration needs {self.n_hidden} gains and offsets, got {gain.shape} and {offset_hz.shape}")
        if not np.all(gain > 0):
            raise ValueError("unit gains must be positive")
        self.unit_gain, self.unit_offset_hz = gain, offset_hz

    def set_weight_bias(self, group: int, synapse: SynapseType, coarse: int, fine: int) -> None:
        chip, core = self.group_cores[group]
        self.biases[(chip, core, WEIGHT_BIAS[synapse])] = BiasValue(coarse, fine)

    def synaptic_fanout(self) -> np.ndarray:
        """CAM copies reached by one spike of every source: inputs, bias, [reset], then units."""
        fan = np.abs(self.multiplicity).sum(0)
        if self.has_reset:
            f1 = self.n_inputs + 1
            fan = np.concatenate([fan[:f1], [self.n_hidden], fan[f1:]])
        return fan

    @property
    def has_reset(self) -> bool:
        return len(self.input_addresses) == self.multiplicity.shape[1] - self.n_hidden + 1

    def summary(self) -> dict:
        return {
            "chip": self.chip,
            "chips": self.chips,
            "group_cores": [list(gc) for gc in self.group_cores],
            "n_connections": len(self.netlist.connections),
            "cam_entries": int(np.abs(self.multiplicity).sum()),
            "source_rate_gains": {"input": float(self.input_rate_gain), "bias": float(self.bias_rate_gain)},
            "time": {**asdict(self.time), "tau_s": self.time.tau_s},
            "settings": asdict(self.settings),
            "weight_biases": {f"{c}/{k}/{n}": [v.coarse, v.fine] for (c, k, n), v in self.biases.items() if n.startswith("PS_WEIGHT")},
        }


#: Input channels (rate channels: features after any ON/OFF split) a network can have: the FPGA
#: spike generator's source ids are 1..255 (id 0 is the cleared CAM entries' address), and the
#: bias and reset channels take two of them (:func:`map_network`).
MAX_INPUT_CHANNELS = N_NEURONS_PER_CORE - 3
#: Core groups a network gets at least (:class:`.constrain.ConstraintConfig` ``n_core_groups``).
DEFAULT_CORE_GROUPS = 3


def dense_mapping_problem(n_hidden: int, n_channels: int, n_core_groups: int = DEFAULT_CORE_GROUPS) -> str | None:
    """Why a *dense* network of ``n_hidden`` units on ``n_channels`` input channels cannot be mapped, or None.

    Dense: every unit and channel reaches every core holding units, as the CAM projection of a
    full recurrent matrix does (each unit keeps its 63 largest weights, and a core's 256 units
    between them listen to essentially every source).  Checked without building anything (a
    few milliseconds), with the placement :func:`allocate_units` gives the group sizes that
    :func:`.constrain.assign_core_groups` makes, so a conversion is refused before it spends
    minutes on fine-tuning and mapping (:func:`check_routes` then checks the real network).

    The limits: a unit's spikes reach at most 3 chips (SRAM cell 0 is the host route); and a CAM
    tag is (virtual core, neuron id), so a core tells at most 4 sources of one neuron id apart
    (3 for id 0, whose core-0 tag the cleared CAM entries listen to; 3 for the ids of the input
    channels on core 0).  Units on their own chip keep their address; a unit on another chip needs
    a tag no other source heard by that core uses, and on a network spanning chips every core
    hears every unit, so the units sharing a neuron id across all chips must fit those tags.
    """
    n_hidden, n_channels = int(n_hidden), int(n_channels)
    if n_channels > MAX_INPUT_CHANNELS:
        return (f"{n_channels} input channels do not fit the spike generator's {MAX_INPUT_CHANNELS} "
                "(source ids 1..255, less the bias and reset channels)")
    if n_hidden > N_CHIPS * 4 * N_NEURONS_PER_CORE:
        return f"{n_hidden} units do not fit the board's {N_CHIPS * 4 * N_NEURONS_PER_CORE} neurons"
    n_groups = min(max(n_core_groups, -(-n_hidden // N_NEURONS_PER_CORE)), n_hidden)
    sizes = [len(part) for part in np.array_split(np.arange(n_hidden), n_groups)]
    try:
        units, _ = allocate_units(np.repeat(np.arange(n_groups), sizes), n_channels + 2)  # + bias, reset
    except ValueError as exc:
        return str(exc)
    n_chips = len({u.chip for u in units})
    if n_chips == 1:
        return None  # every source on its own chip keeps its own address: no tags to share
    if n_chips > 3:
        return (f"{n_hidden} units take {n_chips} chips, and a unit's spikes can reach at most 3 chips "
                "(3 SRAM routes besides the host's)")
    per_id = np.bincount([u.neuron for u in units], minlength=N_NEURONS_PER_CORE)
    reserved = np.zeros(N_NEURONS_PER_CORE, np.int64)
    reserved[0] = 1  # tag (core 0, neuron 0): the cleared CAM entries'
    reserved[1 : n_channels + 3] = 1  # the input, bias and reset channels' (core 0, id) tags
    worst = int(np.argmax(per_id + reserved))
    if per_id[worst] + reserved[worst] <= 4:
        return None
    return (f"{n_hidden} units take {n_chips} chips, and {int(per_id[worst])} of them have neuron id {worst}; "
            f"a core hears every unit of a dense network, and its CAMs can tell only {4 - int(reserved[worst])} "
            "sources of one id apart (a tag is core and neuron id, not the chip)")


def largest_dense_network(n_channels: int, n_core_groups: int = DEFAULT_CORE_GROUPS) -> int:
    """The most hidden units a dense network on ``n_channels`` input channels can have and map
    (:func:`dense_mapping_problem`); 0 when the channels alone do not fit.

    A bisection: the limit is a threshold (every size above it fails; checked for every size and
    channel count the spin boxes and CLI allow when this was written).
    """
    if dense_mapping_problem(1, n_channels, n_core_groups) is not None:
        return 0
    lo, hi = 1, N_CHIPS * 4 * N_NEURONS_PER_CORE + 1  # lo maps, hi does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if dense_mapping_problem(mid, n_channels, n_core_groups) is None else (lo, mid)
    return lo


def network_size_problem(n_hidden: int, n_channels: int, n_core_groups: int = DEFAULT_CORE_GROUPS,
                         channels_known: bool = True) -> str | None:
    """:func:`dense_mapping_problem` as a user reads it: what is wrong, the largest size that maps
    on these channels, and what to do; None when the network fits the board.  ``channels_known``
    False: ``n_channels`` is only a lower bound (a check before the data are read)."""
    problem = dense_mapping_problem(n_hidden, n_channels, n_core_groups)
    if problem is None:
        return None
    if n_channels > MAX_INPUT_CHANNELS:
        return f"{problem}: use fewer features (a feature that goes negative takes 2 channels, ON and OFF)"
    largest = largest_dense_network(n_channels, n_core_groups)
    on = f"on {n_channels} input channel{'s' if n_channels != 1 else ''} " if channels_known else ""
    fewer = "" if channels_known else " (fewer with many input channels)"
    return (f"a network of {n_hidden} hidden units cannot be mapped onto a DYNAP-SE1 board: {problem}. "
            f"A dense network {on}maps at most {largest} hidden units{fewer}: use at most {largest}, "
            "or connections drawn from fewer cores")


def _core0_first_id(n_sources: int) -> int:
    return max(n_sources + 1, CORE0_FIRST_UNIT_ID)


def _core_capacity(core: int, n_sources: int) -> int:
    return N_NEURONS_PER_CORE - (_core0_first_id(n_sources) if core == 0 else 0)


def chips_from(chip: int) -> list[int]:
    """The board's chips in the order a network starting on ``chip`` takes them: its mesh
    neighbour in x, in y, then the diagonal one (one hop before two)."""
    return [chip ^ k for k in (0, 1, 2, 3)]


def group_reach(multiplicity: np.ndarray, unit_group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which core groups every source reaches: ``[H, G]`` for the units, ``[F + 1, G]`` for the inputs.

    ``multiplicity`` is the constrained network's ``[H, F + 1 + H]`` (inputs and bias channel,
    then the units as sources).
    """
    m = np.asarray(multiplicity) != 0
    h = len(unit_group)
    onehot = np.eye(int(unit_group.max()) + 1, dtype=np.int64)[unit_group]  # [H, G]
    reach = (m.T.astype(np.int64) @ onehot) > 0  # [F + 1 + H, G]
    return reach[-h:], reach[:-h]


def inter_chip_traffic(chip_of_group: np.ndarray, unit_group: np.ndarray, unit_reach: np.ndarray,
                       input_reach: np.ndarray) -> tuple[int, int]:
    """Events that cross chips per spike of every source, and the most chips one unit's spikes reach.

    A spike travels once to every chip that holds one of its targets (one SRAM cell each, the
    destination cores of a chip share it), so a unit costs one inter-chip event per *other*
    chip it reaches; an input costs one spike-generator event per chip it reaches beyond the
    first.  The total over all sources (every source weighted equally: rates are unknown at
    mapping time) is what the partition minimises.
    """
    n_chips = int(chip_of_group.max()) + 1
    onehot = np.eye(n_chips, dtype=np.int64)[chip_of_group]  # [G, chips]
    unit_chips = (unit_reach.astype(np.int64) @ onehot) > 0
    own = chip_of_group[unit_group]
    crossing = int(unit_chips.sum() - unit_chips[np.arange(len(own)), own].sum())
    input_chips = ((input_reach.astype(np.int64) @ onehot) > 0).sum(1)
    crossing += int(np.clip(input_chips - 1, 0, None).sum())
    return crossing, int(unit_chips.sum(1).max(initial=0))


def partition_groups(sizes: np.ndarray, n_chips: int, capacity0: int, unit_group: np.ndarray,
                     unit_reach: np.ndarray | None = None, input_reach: np.ndarray | None = None) -> np.ndarray:
    """Chip (0..n_chips-1) of every core group: at most 4 groups per chip, at most 3 of them too
    big for core 0, with the least inter-chip traffic (:func:`inter_chip_traffic`) that a local
    search finds.

    Two starts: the groups in order, chip by chip, and a greedy growth that fills each chip with
    the groups most connected to it.  From each, single groups move to chips with a free core and
    pairs swap across chips while that lowers the traffic; the better result is kept.  A unit's
    spikes may reach at most 3 chips (SRAM cell 0 is the host route), so assignments breaking that
    cost more than any traffic.
    """
    n_groups = len(sizes)
    big = sizes > capacity0

    chip_of = np.full(n_groups, -1, np.int64)
    load, big_load = np.zeros(n_chips, np.int64), np.zeros(n_chips, np.int64)
    for g in np.argsort(~big, kind="stable"):  # big groups first, so each chip keeps core 0 for a small one
        fits = [c for c in range(n_chips) if load[c] < 4 and (not big[g] or big_load[c] < 3)]
        if not fits:
            raise ValueError(f"{n_groups} core groups do not fit {n_chips} chips")
        chip_of[g], load[fits[0]], big_load[fits[0]] = fits[0], load[fits[0]] + 1, big_load[fits[0]] + big[g]
    if unit_reach is None or n_chips == 1:
        return chip_of
    onehot = np.eye(n_groups, dtype=np.int64)[unit_group]
    links = onehot.T @ unit_reach.astype(np.int64)  # [g, h]: units of g reaching group h
    affinity = links + links.T
    np.fill_diagonal(affinity, 0)
    starts = [chip_of, _grow(affinity, big, n_chips)]
    if input_reach is None:
        input_reach = np.zeros((0, n_groups), bool)
    sram_chips = 3  # destination chips a unit's SRAM can hold

    def cost(assign: np.ndarray) -> int:
        crossing, widest = inter_chip_traffic(assign, unit_group, unit_reach, input_reach)
        return crossing + (10**9 if widest > sram_chips else 0)

    def valid(assign: np.ndarray) -> bool:
        if assign.min() < 0:  # a start that left groups without a chip
            return False
        counts = np.bincount(assign, minlength=n_chips)
        return bool(counts.max() <= 4 and np.bincount(assign[big], minlength=n_chips).max(initial=0) <= 3)

    results = [_local_search(start, n_chips, cost, valid) for start in starts if valid(start)]
    return min(results, key=lambda r: r[1])[0]


def _grow(affinity: np.ndarray, big: np.ndarray, n_chips: int) -> np.ndarray:
    """Greedy start of :func:`partition_groups`: each chip in turn is seeded with the free group
    most connected to the chips already filled (the least connected one for chip 0) and grows by the free
    group most connected to it, while it has cores for it (4 groups, 3 of them big)."""
    n_groups = len(big)
    chip_of = np.full(n_groups, -1, np.int64)
    for chip in range(n_chips):
        free = np.flatnonzero(chip_of < 0)
        if not len(free):
            break
        placed = chip_of >= 0
        if placed.any():
            seed = free[np.argmax(affinity[np.ix_(free, np.flatnonzero(placed))].sum(1))]
        else:  # the loneliest group: the end of a chain rather than its middle
            seed = free[np.argmin(affinity[free].sum(1))]
        members = [int(seed)]
        chip_of[seed] = chip
        while len(members) < 4:
            free = [g for g in np.flatnonzero(chip_of < 0) if not big[g] or big[members].sum() < 3]
            if not free:
                break
            g = max(free, key=lambda g: (affinity[g, members].sum(), -g))
            chip_of[g] = chip
            members.append(int(g))
    return chip_of


def _local_search(chip_of: np.ndarray, n_chips: int, cost, valid) -> tuple[np.ndarray, int]:
    """Moves and swaps of single groups while the cost falls (see :func:`partition_groups`)."""
    n_groups = len(chip_of)
    best = cost(chip_of)
    improved = True
    while improved:
        improved = False
        candidates = [(g, c) for g in range(n_groups) for c in range(n_chips) if c != chip_of[g]]
        candidates += [(g, -1 - h) for g in range(n_groups) for h in range(g + 1, n_groups) if chip_of[g] != chip_of[h]]
        for g, target in candidates:
            trial = chip_of.copy()
            if target >= 0:
                trial[g] = target
            else:
                h = -1 - target
                trial[g], trial[h] = chip_of[h], chip_of[g]
            if not valid(trial):
                continue
            c = cost(trial)
            if c < best:
                chip_of, best, improved = trial, c, True
    return chip_of, best


def allocate_units(unit_group: np.ndarray, n_sources: int, chip: int = 0,
                   multiplicity: np.ndarray | None = None) -> tuple[list[NeuronAddress], list[tuple[int, int]]]:
    """Physical neuron of every hidden unit, and the (chip, core) of every group.

    ``n_sources`` FPGA sources use ids ``1..n_sources`` on every chip they reach; core-0 units
    start above them and at :data:`CORE0_FIRST_UNIT_ID` at the lowest.

    A network whose groups fit one chip (at most 4 groups, the one on core 0 small enough) stays
    on ``chip``, group ``g`` on core ``CORE_ORDER[g]``.  A larger one takes the fewest chips that
    hold its groups (:func:`chips_from` ``chip``), partitioned by :func:`partition_groups` to
    minimise the spikes that cross chips (``multiplicity``, the constrained network's
    ``[H, F + 1 + H]`` copies, says who reaches whom; without it the groups go in order).  On
    each chip the biggest groups take cores 1-3 and the smallest core 0.  Unit ids are staggered
    across the cores of a chip (core 0's block first, then cores 1, 2, 3, continuing round the
    256 ids), so that a neuron id recurs at most once per chip while a chip holds at most 256
    units: a spike arriving from another chip can then always get a CAM tag of its own (the
    netlist compiler picks its virtual core).
    """
    unit_group = np.asarray(unit_group, np.int64)
    n_groups = int(unit_group.max()) + 1
    sizes = np.bincount(unit_group, minlength=n_groups)
    cap0 = _core_capacity(0, n_sources)
    if sizes.max() > N_NEURONS_PER_CORE:
        g = int(sizes.argmax())
        raise ValueError(f"core group {g} has {sizes[g]} units; a core has {N_NEURONS_PER_CORE} neurons (use more core groups)")
    one_chip = n_groups <= len(CORE_ORDER) and all(sizes[g] <= _core_capacity(CORE_ORDER[g], n_sources) for g in range(n_groups))
    if one_chip:
        addresses: list[NeuronAddress | None] = [None] * len(unit_group)
        group_cores = []
        for g in range(n_groups):
            core = CORE_ORDER[g]
            first_id = _core0_first_id(n_sources) if core == 0 else 0  # core 0: above every source id
            for i, u in enumerate(np.flatnonzero(unit_group == g)):
                addresses[u] = NeuronAddress(chip, core, first_id + i)
            group_cores.append((chip, core))
        return addresses, group_cores  # type: ignore[return-value]

    n_big = int((sizes > cap0).sum())
    n_chips = max(-(-n_groups // len(CORE_ORDER)), -(-n_big // 3))
    if n_chips > N_CHIPS:
        raise ValueError(
            f"{n_groups} core groups ({n_big} with more than the {cap0} units core 0 can take) need {n_chips} chips; "
            f"the board has {N_CHIPS} (use fewer hidden units)"
        )
    unit_reach = input_reach = None
    if multiplicity is not None:
        unit_reach, input_reach = group_reach(multiplicity, unit_group)
    chip_of = partition_groups(sizes, n_chips, cap0, unit_group, unit_reach, input_reach)
    chips = chips_from(chip)[:n_chips]
    group_cores: list[tuple[int, int]] = [(0, 0)] * n_groups
    addresses = [None] * len(unit_group)
    for k, physical in enumerate(chips):
        groups = sorted(np.flatnonzero(chip_of == k).tolist(), key=lambda g: (-sizes[g], g))
        cores = dict(zip(groups, CORE_ORDER, strict=False))  # the smallest group of four on core 0
        next_id = _core0_first_id(n_sources)
        for g in sorted(groups, key=lambda g: (cores[g] != 0, cores[g])):  # core 0's ids first
            core = cores[g]
            group_cores[g] = (physical, core)
            for u in np.flatnonzero(unit_group == g):
                addresses[u] = NeuronAddress(physical, core, next_id % N_NEURONS_PER_CORE)
                next_id += 1
    return addresses, group_cores  # type: ignore[return-value]


def core_bias_set(time: TimeMapping, settings: NeuronSettings, circuit: CircuitModel) -> dict[str, BiasValue]:
    """The 25 biases of a core running converted units (weights at their initial setting)."""
    off = SILENT
    tau_syn_i = circuit.tau_current(time.tau_s, circuit.c_syn)
    tau_mem_i = circuit.tau_current(settings.tau_mem_s, circuit.c_mem)

    def setting(current: float) -> BiasValue:
        return BiasValue(*closest_setting(current))

    out = {name: off for name in CORE_BIASES}
    out.update(
        {
            "IF_TAU1_N": setting(tau_mem_i),
            "IF_TAU2_N": setting(tau_mem_i),
            "IF_THR_N": setting(tau_mem_i * settings.soma_gain_ratio),
            "IF_RFR_N": setting(circuit.refractory_current(settings.t_ref_s)),
            "PULSE_PWLK_P": setting(circuit.pulse_current(settings.t_pulse_s)),
            "IF_BUF_P": BiasValue(4, 80),
            "R2R_P": BiasValue(3, 85),
        }
    )
    for syn in (EXCITATORY, INHIBITORY):
        out[TAU_BIAS[syn]] = setting(tau_syn_i)
        out[GAIN_BIAS[syn]] = setting(tau_syn_i * settings.syn_gain_ratio)
        out[WEIGHT_BIAS[syn]] = off  # set per core group by map_network (nominal) and transfer matching
    if time.reset_rate_hz > 0:
        import math

        reset_tau_i = circuit.tau_current(settings.reset_tau_s, circuit.c_syn)
        out["NPDPII_TAU_F_P"] = setting(reset_tau_i)
        out["NPDPII_THR_F_P"] = setting(reset_tau_i * settings.reset_gain_ratio)
        per_event = settings.reset_gain_ratio * (1.0 - math.exp(-settings.t_pulse_s / settings.reset_tau_s))
        i_w = settings.reset_shunt_a / (time.reset_rate_hz * settings.reset_tau_s * per_event)
        out["PS_WEIGHT_INH_F_N"] = setting(i_w)
    return out


def map_network(
    net: ConstrainedNetwork,
    time: TimeMapping | None = None,
    settings: NeuronSettings | None = None,
    circuit: CircuitModel | None = None,
    chip: int = 0,
    placement: tuple[list[NeuronAddress], list[tuple[int, int]]] | None = None,
) -> MappedNetwork:
    """Place ``net`` from ``chip`` on: netlist, input sources, biases and the time mapping.

    ``placement`` (unit addresses, group cores) replaces :func:`allocate_units`: a network whose
    weights changed keeps the neurons it was calibrated on (the partition depends on the weights).
    """
    cfg = net.model.config
    if time is None:
        time = TimeMapping(retention=cfg.retention, steps_per_sample=cfg.steps_per_sample)
    if abs(time.retention - cfg.retention) > 1e-9 or time.steps_per_sample != cfg.steps_per_sample:
        raise ValueError(
            f"time mapping (retention {time.retention}, {time.steps_per_sample} steps/sample) does not match the "
            f"constrained model (retention {cfg.retention}, {cfg.steps_per_sample} steps/sample)"
        )
    settings = copy.copy(settings or NeuronSettings())
    if cfg.saturation is not None:  # the refractory period makes the rate curve the model's phi
        settings.t_ref_s = 1.0 / (cfg.saturation * time.r_max_hz)
    circuit = circuit or CircuitModel()
    f = net.n_inputs
    use_reset = time.reset_rate_hz > 0
    n_channels = f + 1 + int(use_reset)
    if n_channels > N_NEURONS_PER_CORE - 1:  # source ids 1..255 (MAX_INPUT_CHANNELS with the reset channel)
        raise ValueError(f"{f} input channels do not fit the spike generator's 255 usable source ids "
                         f"with the bias{' and reset' if use_reset else ''} channel")
    m = net.multiplicity
    if placement is None:
        units, group_cores = allocate_units(net.unit_group, f + 2, chip, m)  # inputs, bias and the reset channel's id
    else:
        units, group_cores = list(placement[0]), list(placement[1])
        if len(units) != net.n_hidden or len(group_cores) != len(net.scale):
            raise ValueError(f"a placement of {len(units)} units and {len(group_cores)} cores does not fit "
                             f"{net.n_hidden} units in {len(net.scale)} groups")
    # Every FPGA channel is played on each chip that holds one of its targets (an input reaches
    # only the chip it is injected on), with the same source id there; ``core_masks[j, chip]``.
    core_masks = np.zeros((n_channels, N_CHIPS), np.int64)
    for i, post in enumerate(units):
        for j in np.flatnonzero(m[i, : f + 1]):
            core_masks[j, post.chip] |= 1 << post.core
        if use_reset:
            core_masks[f + 1, post.chip] |= 1 << post.core
    home = units[0].chip if units else chip
    inputs = [InputAddress(home, 1 + k) for k in range(n_channels)]
    sources: list[NeuronAddress | InputAddress] = [*inputs[: f + 1], *units]
    netlist = Netlist(monitored=set(units))
    if use_reset and net.fan_in().max() + 1 > 64:
        raise ValueError(
            f"a unit uses {net.fan_in().max()} CAM entries and the reset channel needs one more; "
            "constrain with max_fan_in=63 (or disable the reset channel)"
        )
    for i, post in enumerate(units):
        for j in np.flatnonzero(m[i]):
            syn = EXCITATORY if m[i, j] > 0 else INHIBITORY
            pre = InputAddress(post.chip, 1 + j) if j <= f else sources[j]  # inputs: the copy on the unit's chip
            netlist.add(pre, post, syn, int(abs(m[i, j])))
        if use_reset:
            netlist.add(InputAddress(post.chip, f + 2), post, RESET_SYNAPSE, 1)
    check_routes(netlist)
    biases: dict[tuple[int, int, str], BiasValue] = {}
    per_core = core_bias_set(time, settings, circuit)
    per_amp = circuit.copy_gain_per_weight_current(time, settings)
    for g, (chip_, core) in enumerate(group_cores):
        for name, value in per_core.items():
            biases[(chip_, core, name)] = value
        weight = BiasValue(*closest_setting(float(net.scale[g]) / per_amp))
        for syn in (EXCITATORY, INHIBITORY):
            biases[(chip_, core, WEIGHT_BIAS[syn])] = weight
    w_out = net.model.readout.weight.detach().cpu().numpy().astype(np.float64)
    b_out = net.model.readout.bias.detach().cpu().numpy().astype(np.float64)
    return MappedNetwork(netlist, units, inputs, core_masks, group_cores, biases, time, m.copy(), w_out, b_out, cfg.readout, settings=settings,
                         input_rate_gain=float(net.input_gain), bias_rate_gain=float(net.bias_gain))


def check_routes(netlist: Netlist) -> CompiledNetlist:
    """Compile ``netlist`` as a board would and refuse what the chips cannot do.

    The compiler checks the CAM (64 entries) and SRAM (3 destination chips besides the host
    route) limits and gives every inter-chip route a CAM tag of its own where one is free; a
    collision that remains (more sources with one neuron id than a core can tell apart) would
    silently add the wrong synapses, so the mapping refuses it, naming the first collisions.
    """
    compiled = compile_netlist(netlist)  # NetlistError (a ValueError) names a broken limit
    if compiled.warnings:
        shown = "; ".join(compiled.warnings[:3])
        more = f" (and {len(compiled.warnings) - 3} more)" if len(compiled.warnings) > 3 else ""
        raise ValueError(f"the mapped network aliases on the board's CAMs: {shown}{more}")
    return compiled


def nominal_weight_current(value: BiasValue) -> float:
    return nominal_current(value.coarse, value.fine)


def relocate_units(mapped: MappedNetwork, addresses: list[NeuronAddress]) -> MappedNetwork:
    """A copy of ``mapped`` whose units sit on ``addresses`` (netlist rewritten, biases kept)."""
    if len(addresses) != mapped.n_hidden or len(set(addresses)) != len(addresses):
        raise ValueError(f"need {mapped.n_hidden} distinct neuron addresses, got {len(set(addresses))}")
    for old, new in zip(mapped.unit_addresses, addresses, strict=True):
        if (old.chip, old.core) != (new.chip, new.core):
            raise ValueError(f"a unit may only move within its core: {old} -> {new}")
    move = dict(zip(mapped.unit_addresses, addresses, strict=True))
    netlist = Netlist(monitored={move.get(a, a) for a in mapped.netlist.monitored})
    for c in mapped.netlist.connections:
        pre = move.get(c.pre, c.pre) if isinstance(c.pre, NeuronAddress) else c.pre
        netlist.add(pre, move[c.post], c.synapse, c.multiplicity)
    out = copy.deepcopy(mapped)
    out.netlist = netlist
    out.unit_addresses = list(addresses)
    return out

