"""``BoardSimulator``: one emulated DYNAP-SE1 board (4 chips x 4 cores x 256 neurons).

This is the facade the virtual USB device, calibration and conversion code talk to.  It holds
what the host can write (biases, CAM, SRAM, tau2 flags, monitor choice, FPGA generators), the
frozen mismatch of the board (from its serial) and the network state, and advances the board
clock with :meth:`BoardSimulator.run` as fast as the machine allows: groups of chips that no
SRAM route connects run in parallel threads (:mod:`emulator.partition`, up to
``EmulatorConfig.kernel_threads``), with exactly the result of one thread.  For wall-clock pacing
see :mod:`emulator.clock`.

Physics: :mod:`emulator.engine` (equations), :mod:`emulator.neuron_params` (bias → parameter),
:mod:`emulator.biasgen`, :mod:`emulator.mismatch`, routing semantics in :mod:`emulator.routing`,
inputs in :mod:`emulator.stimulus`.

Every configuration call validates all its arguments first and raises ``ValueError`` (bad value)
or ``KeyError`` (unknown bias name) naming the problem; the board state is then unchanged.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from drivers.dynapse1.spikes import SpikeEvents
from drivers.dynapse1.topology import (
    N_CHIPS,
    N_CORES_PER_CHIP,
    N_NEURONS,
    N_NEURONS_PER_CHIP,
    N_NEURONS_PER_CORE,
    check_chip,
    check_core,
    check_neuron,
)

from . import engine, kernel_library
from .biasgen import BiasBank
from .chip_state import ChipTables
from .config import EmulatorConfig
from .connectivity import Connectivity
from .mismatch import MismatchFactors, rng_for
from .neuron_params import NeuronParameters, derive_parameters
from .partition import assign_partitions, chip_groups
from .routing import RoutingTables
from .stimulus import HostSpikeQueue, PoissonGenerator, SpikeGenerator, chip_local_address

#: Steps simulated per kernel call; bounds the memory of input and monitor buffers.
_CHUNK_STEPS = 10_000
#: Below this many steps a chunk runs on the calling thread only: a parallel chunk starts with
#: cold caches on both cores (~1-2 ms on the full bench board), so on 2 cores two threads were
#: slower than one up to about 200 steps (docs/decisions.md).
_MIN_PARALLEL_STEPS = 250
#: Input keys per chip: key = chip * 4096 + core * 1024 + address (:mod:`emulator.routing`).
_KEYS_PER_CHIP = N_CORES_PER_CHIP * N_NEURONS_PER_CHIP
#: gid = chip << _CHIP_SHIFT | core << _CORE_SHIFT | neuron (the topology's sizes are powers of 2).
_CHIP_SHIFT = N_NEURONS_PER_CHIP.bit_length() - 1
_CORE_SHIFT = N_NEURONS_PER_CORE.bit_length() - 1
#: First neuron of each (chip, core) monitor slot.
_SLOT_BASE_GID = np.arange(N_CHIPS * N_CORES_PER_CHIP) * N_NEURONS_PER_CORE

#: Analog monitor output range [V] (the UG: 0-1.8 V on the SMA outputs).
MONITOR_RANGE_V = (0.0, 1.8)


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


_worker_pool: ThreadPoolExecutor | None = None


def _forget_workers() -> None:
    """After fork the child has none of the parent's threads: start a fresh pool when needed."""
    global _worker_pool
    _worker_pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers)


def _workers() -> ThreadPoolExecutor:
    """Threads shared by all simulators for partitions beyond the first (which runs on the caller)."""
    global _worker_pool
    if _worker_pool is None:
        # at most one partition per chip, the first on the caller; threads start only when used
        _worker_pool = ThreadPoolExecutor(max_workers=N_CHIPS - 1, thread_name_prefix="emulator-kernel")
    return _worker_pool


#: Bytes of a memory page: scratch that one thread writes sits on pages of its own.
_PAGE = 4096


def _own_pages(n_bytes: int) -> np.ndarray:
    """``n_bytes`` zeroed bytes starting on a page boundary, with a free page after them: memory no
    other array shares a cache line (or an adjacent one) with."""
    raw = np.zeros(n_bytes + 2 * _PAGE, np.uint8)
    offset = (-raw.ctypes.data) % _PAGE
    return raw[offset : offset + n_bytes]


class KernelScratch:
    """The arrays one thread's kernel call writes besides the state, kept between chunks.

    Two threads that write neighbouring cache lines slow each other down although they never
    touch the same bytes: the line moves between the cores on every write (false sharing), and
    the L2 prefetcher of one core pulls in the lines the other is writing.  The partitions of a
    chunk write disjoint neurons of one state array, so every row of it had such a boundary, and
    the spike flags of the two partitions shared a line (docs/decisions.md has the measurements).
    So each thread gets its flags and work rows on pages of their own and, when partitions run in
    parallel, a private copy of its chips' state (:meth:`add_private_state`).
    """

    _WORK_OFFSET = N_NEURONS  # bytes: the flags first, then the work rows, then the touch sink
    _SINK_OFFSET = _WORK_OFFSET + -(-engine.WORK_LEN * 4 // 64) * 64

    def __init__(self) -> None:
        block = _own_pages(self._SINK_OFFSET + 64)
        self.spiked = block[:N_NEURONS]  # spike flag of every neuron
        self.spiked_words = self.spiked.view(np.uint64)
        self.work = block[self._WORK_OFFSET : self._WORK_OFFSET + engine.WORK_LEN * 4].view(np.float32)
        self.touch_sink = block[self._SINK_OFFSET : self._SINK_OFFSET + 8].view(np.int64)
        self.state: np.ndarray | None = None

    def add_private_state(self) -> None:
        self.state = _own_pages(engine.N_STATE * engine.ROW * 4).view(np.float32)


def _chip_columns(chips: Sequence[int]) -> np.ndarray | slice:
    """The neurons (columns of ``engine.state_rows``) of ``chips``: a slice when they are consecutive."""
    chips = sorted(chips)
    if chips == list(range(chips[0], chips[-1] + 1)):
        return slice(chips[0] * N_NEURONS_PER_CHIP, (chips[-1] + 1) * N_NEURONS_PER_CHIP)
    return (np.asarray(chips)[:, None] * N_NEURONS_PER_CHIP + np.arange(N_NEURONS_PER_CHIP)).ravel()


def simulate_partition(state: np.ndarray, packed: engine.KernelParameters, delivery: engine.DeliveryTable,
                       chips: Sequence[int], n_steps: int, in_step: np.ndarray, in_key: np.ndarray,
                       monitor_gid: np.ndarray, monitor_out: np.ndarray, noise_decay: float,
                       noise_amplitude: float, noise_seed: int,
                       scratch: KernelScratch) -> tuple[np.ndarray, np.ndarray]:
    """Advance the neurons of ``chips`` in ``state`` by ``n_steps``: (steps, gids) of their spikes,
    steps counted from the call's start, in kernel order (by step, then neuron).

    The compiled library's quiet kernel without input noise, numba's ``engine.simulate`` with it
    (``noise_amplitude`` > 0; only one partition may use it).  The spike buffers start with room
    for a mean rate of 50 Hz at 0.1 ms; when they could overflow the kernel stops early and the
    call continues with twice the room and the noise seed advanced by one.  ``BoardSimulator`` and
    ``BatchedSimulator`` both run their kernels through here, which keeps them bit-identical.
    """
    quiet_kernel = None if noise_amplitude > 0 else kernel_library.quiet_kernel()  # (built on first use)
    block_start = np.asarray(chips, np.int64) * N_NEURONS_PER_CHIP
    n_neurons = N_NEURONS_PER_CHIP * len(block_start)
    capacity = max(4 * n_neurons, int(n_steps * n_neurons * 0.005))
    scalars = (packed.i0, packed.i_reset, packed.feedback_gain, packed.fb_offset, packed.dt_over_tau_per_amp)
    tables = (delivery.key_ptr, delivery.entry, delivery.weight_of_count, delivery.jump,
              delivery.spike_ptr, delivery.spike_entry)
    steps_out: list[np.ndarray] = []
    gids_out: list[np.ndarray] = []
    done = 0
    while done < n_steps:
        spike_step = np.empty(capacity, np.int64)
        spike_gid = np.empty(capacity, np.int32)
        first = np.searchsorted(in_step, done)
        io = (np.ascontiguousarray(in_step[first:] - done), np.ascontiguousarray(in_key[first:]), monitor_gid,
              monitor_out[done:], spike_step, spike_gid, scratch.spiked, scratch.spiked_words)
        if quiet_kernel is None:  # input noise: numba's generator, so the JIT-compiled kernel
            n_spikes, steps_done = engine.simulate(
                n_steps - done, block_start, N_NEURONS_PER_CHIP, *scalars, state, packed.rows,
                noise_decay, noise_amplitude, noise_seed, *tables, *io)
        else:
            n_spikes, steps_done = quiet_kernel(
                n_steps - done, block_start, N_NEURONS_PER_CHIP, *scalars, state, packed.rows,
                *tables, *io, scratch.work, scratch.touch_sink)
        steps_out.append(spike_step[:n_spikes] + done if done else spike_step[:n_spikes])
        gids_out.append(spike_gid[:n_spikes])
        done += steps_done
        capacity *= 2
        noise_seed += 1
    if len(steps_out) == 1:
        return steps_out[0], gids_out[0]
    return np.concatenate(steps_out), np.concatenate(gids_out)


class BoardClock:
    """The board clock of :class:`BoardSimulator` and ``BatchedSimulator``: steps since power-up,
    the board time run() was asked for, the timestamp origin, and the temperature drift that
    follows the clock.  A class using it sets ``config`` and calls :meth:`_init_clock`."""

    config: EmulatorConfig

    def _init_clock(self) -> None:
        self._step = 0  # steps simulated since power-up
        self._requested_s = 0.0  # board time requested by run() since power-up
        self._timestamp_origin_us = 0

    @property
    def dt(self) -> float:
        return self.config.dt

    @property
    def time_s(self) -> float:
        """Board time since power-up [s] (not affected by timestamp resets)."""
        return self._step * self.config.dt

    @property
    def now_us(self) -> int:
        return self._step_to_us(self._step)

    def _step_to_us(self, step: np.ndarray | int) -> np.ndarray | int:
        return np.rint(np.asarray(step) * (self.config.dt * 1e6)).astype(np.int64) - self._timestamp_origin_us

    def reset_timestamps(self) -> None:
        """Board clock back to 0 µs (the network and the generators carry on)."""
        self._timestamp_origin_us = int(round(self._step * self.config.dt * 1e6))

    def _end_step(self, duration_s: float) -> int:
        """Book ``duration_s`` more board time; the step run() must reach.  Remainders of ``dt``
        are carried over to the next call."""
        duration = float(duration_s)
        if not (math.isfinite(duration) and duration >= 0):
            raise ValueError(f"duration must be finite and >= 0 s, got {duration_s!r}")
        self._requested_s += duration
        return int(math.floor(self._requested_s / self.config.dt + 1e-6))

    def _drift_factor(self) -> float:
        m = self.config.mismatch
        if not m.enabled or m.temperature_drift_amplitude == 0.0:
            return 1.0
        return math.exp(m.temperature_drift_amplitude * math.sin(2 * math.pi * self.time_s / m.temperature_drift_period_s))


class BoardInputs:
    """What the host feeds a board besides its configuration: host-injected spikes, the FPGA
    spike generator and the Poisson generator (for a batch: the same for every board).  A class
    using it sets ``config`` and ``_step`` and calls :meth:`_init_inputs`."""

    config: EmulatorConfig
    _step: int

    def _init_inputs(self) -> None:
        self.spike_generator = SpikeGenerator()
        self.poisson = PoissonGenerator()
        self._host_spikes = HostSpikeQueue()

    def inject_spike(self, chip: int, source_core: int, source_neuron: int, core_mask: int) -> None:
        """A spike from the host arriving at ``chip``'s cores in ``core_mask`` as (source_core,
        source_neuron); delivered at the current board time (first step of the next run)."""
        chip, source_core, source_neuron = check_chip(chip), check_core(source_core), check_neuron(source_neuron)
        core_mask = _check_int("core mask", core_mask, 0, 15)
        self._host_spikes.push(chip, chip_local_address(source_core, source_neuron), core_mask)

    def load_spike_generator(self, events: Sequence[tuple[int, int, int, float]], repeat: bool = False) -> None:
        """Store FPGA spike-generator events (target_chip, neuron_id, core_mask, isi_us); stops playback."""
        self.spike_generator.load(events, repeat)

    def start_spike_generator(self) -> None:
        self.spike_generator.start(self._step * self.config.dt)

    def stop_spike_generator(self) -> None:
        self.spike_generator.stop()

    def set_poisson_rate(self, chip: int, source: int, rate_hz: float) -> None:
        """Rate of Poisson source ``source`` (= core*256 + neuron) on ``chip``, seen by all 4 cores."""
        self.poisson.set_rate(chip, source, rate_hz)

    def set_poisson_running(self, running: bool) -> None:
        self.poisson.running = bool(running)

    def pending_input_events(self, step0: int, n_steps: int, consume: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Deterministic input events (host spikes, spike generator) for steps [step0, step0+n).

        Returns absolute steps and input keys, sorted by step.  With ``consume=False`` the host
        spike queue is left as it is (used by the Brian2 reference to peek at the inputs).
        """
        parts_step, parts_key = [], []
        if consume:
            s, k = self._host_spikes.input_events(step0)
        else:
            saved = list(self._host_spikes._pending)
            s, k = self._host_spikes.input_events(step0)
            self._host_spikes._pending.extend(saved)
        parts_step.append(s)
        parts_key.append(k)
        s, k = self.spike_generator.input_events(step0, n_steps, self.config.dt)
        parts_step.append(s)
        parts_key.append(k)
        step = np.concatenate(parts_step)
        key = np.concatenate(parts_key)
        order = np.argsort(step, kind="stable")
        return step[order], key[order]


@dataclass(frozen=True)
class HostRoutes:
    """Where each neuron's spike reaches the host when no neuron has two host routes."""

    chip: np.ndarray  # (4096,) chip the host sees, -1 = no host route
    core: np.ndarray  # (4096,) core the host sees
    identity: bool  # every neuron reaches the host as itself (the power-up routes)


def single_host_routes(routing: RoutingTables) -> HostRoutes | None:
    """:class:`HostRoutes` of ``routing``, or None when some neuron has two host routes."""
    hit = routing.host_chip >= 0
    if hit.sum(axis=1).max() > 1:
        return None
    cell = np.argmax(hit, axis=1)
    rows = np.arange(N_NEURONS)
    chip, core = routing.host_chip[rows, cell], routing.host_core[rows, cell]
    identity = bool(np.array_equal(chip, rows // N_NEURONS_PER_CHIP)
                    and np.array_equal(core, (rows % N_NEURONS_PER_CHIP) // N_NEURONS_PER_CORE))
    return HostRoutes(chip, core, identity)


def physical_events(t_us: np.ndarray, gids: np.ndarray) -> SpikeEvents:
    """Every spike (board-wide neuron ids ``gids`` at ``t_us``) with its physical address."""
    # gid = chip * 1024 + core * 256 + neuron: shifts and masks (a sixth of divmod's time)
    return SpikeEvents(t_us, (gids >> _CHIP_SHIFT).astype(np.uint8),
                       ((gids >> _CORE_SHIFT) & (N_CORES_PER_CHIP - 1)).astype(np.uint8),
                       (gids & (N_NEURONS_PER_CORE - 1)).astype(np.uint16))


def host_events(t_us: np.ndarray, gids: np.ndarray, routing: RoutingTables,
                single: HostRoutes | None) -> SpikeEvents:
    """One host event per (spike, SRAM cell routing it to the FPGA), in time order; ``single`` is
    ``single_host_routes(routing)`` (a faster path when not None)."""
    if single is not None:  # at most one host cell per neuron (the usual case): 1-D lookups
        chip = single.chip[gids]
        hit = chip >= 0
        routed = gids[hit]
        return SpikeEvents(t_us[hit], chip[hit], single.core[routed], (routed % N_NEURONS_PER_CORE).astype(np.uint16))
    chip = routing.host_chip[gids]  # (n_spikes, 4 cells)
    core = routing.host_core[gids]
    hit = chip >= 0
    spike_index = np.nonzero(hit)[0]  # row-major: time order, then SRAM cell order
    return SpikeEvents(t_us[spike_index], chip[hit], core[hit], gids[spike_index] % N_NEURONS_PER_CORE)


@dataclass
class NetworkState:
    """Dynamic state of all 4096 neurons (float32, SI units).

    ``buffer`` is the kernel's flat structure-of-arrays (``engine.N_STATE`` rows of ``engine.ROW``
    floats, see :mod:`emulator.engine`).  :attr:`values` shows it as one row per neuron, columns
    ``engine.S_*``; it and the other properties are views, so writing to them changes the state.
    """

    buffer: np.ndarray  # (engine.N_STATE * engine.ROW,) float32

    @classmethod
    def at_rest(cls, i0: float) -> NetworkState:
        return cls(engine.empty_state(i0))

    @property
    def values(self) -> np.ndarray:
        """(4096, engine.N_STATE) view: one row per neuron, columns ``engine.S_*``."""
        return engine.state_rows(self.buffer).T

    @property
    def i_mem(self) -> np.ndarray:
        return self.values[:, engine.S_MEM]

    @property
    def i_syn(self) -> np.ndarray:
        """(4096, 4) synaptic currents in SynapseType order."""
        return self.values[:, engine.S_SYN : engine.S_SYN + 4]

    @property
    def i_ahp(self) -> np.ndarray:
        return self.values[:, engine.S_AHP]

    @property
    def refractory_steps_left(self) -> np.ndarray:
        return self.values[:, engine.S_REF]

    def copy(self) -> NetworkState:
        return NetworkState(self.buffer.copy())


def _check_int(name: str, value: int, low: int, high: int) -> int:
    if isinstance(value, bool) or int(value) != value or not low <= int(value) <= high:
        raise ValueError(f"{name} {value!r} out of range {low}..{high}")
    return int(value)


class BoardSimulator(Connectivity, BoardClock, BoardInputs):
    """An emulated DYNAP-SE1 board.

    CAM/SRAM writes and routing come from :class:`~emulator.connectivity.Connectivity`, the clock
    from :class:`BoardClock`, the host's spikes and generators from :class:`BoardInputs` (bases it
    shares with ``BatchedSimulator``).

    Parameters
    ----------
    serial : the board's serial string; with ``config.seed`` it fixes the board's mismatch
    config : emulator configuration (time step, mismatch, circuit constants); defaults if None

    Attributes
    ----------
    now_us : board clock, µs since the last timestamp reset
    last_spikes : every neuron spike of the last :meth:`run` (physical chip, core, neuron),
        whether or not an SRAM route sent it to the host
    """

    def __init__(self, serial: str = "EMU00000", config: EmulatorConfig | None = None) -> None:
        self.serial = str(serial)
        self.config = config if config is not None else EmulatorConfig()
        self.mismatch = MismatchFactors.draw(self.serial, self.config.seed, self.config.mismatch)
        self.biases = BiasBank(self.config, self.mismatch.biasgen)
        self.tables = ChipTables()
        self._init_inputs()
        self.state = NetworkState.at_rest(self.config.circuit.i0)
        self._init_clock()
        self._poisson_rng = rng_for(self.serial, self.config.seed, "poisson")
        self._noise_rng = rng_for(self.serial, self.config.seed, "noise")
        self._params: NeuronParameters | None = None
        self._params_key: tuple | None = None
        self._packed: engine.KernelParameters | None = None
        self._init_connectivity()
        self._delivery: engine.DeliveryTable | None = None
        self._delivery_for: tuple[NeuronParameters, RoutingTables] | None = None
        self._groups: list[list[int]] | None = None
        self._scratch: list[KernelScratch] = []  # per partition (thread) of a chunk
        self._host_routes: HostRoutes | None = None
        self._host_routes_of: RoutingTables | None = None
        self._monitor_t: list[list[np.ndarray]] = [[] for _ in range(N_CHIPS * N_CORES_PER_CHIP)]
        self._monitor_i: list[list[np.ndarray]] = [[] for _ in range(N_CHIPS * N_CORES_PER_CHIP)]
        self.last_spikes = SpikeEvents()
        #: CPU seconds each thread spent on its partition during the last :meth:`run` (the caller's
        #: thread first).  Measured under load the threads seldom overlap, so these do not show
        #: what running at the same time costs (bench/emulator_speed.py times that instead).
        self.last_kernel_cpu_s: list[float] = []

    # --- biases --------------------------------------------------------------------------------------
    def set_bias(self, chip: int, core: int, name: str, coarse: int, fine: int, high: bool = True,
                 normal: bool = True, enabled: bool = True) -> None:
        """Write a per-core bias (libcaer coarse numbering: 0 = largest current)."""
        self.biases.set(chip, core, name, coarse, fine, high, normal, enabled)

    def get_bias(self, chip: int, core: int, name: str) -> tuple[int, int, bool, bool, bool]:
        """(coarse, fine, high, normal, enabled) as last written."""
        return self.biases.get(chip, core, name)

    def set_global_bias(self, chip: int, name: str, coarse: int, fine: int) -> None:
        """Store a chip-global bias (U_/D_ BUFFER, SSP, SSN).  They do not change the physics:
        they bias the bias generator's buffers and shifted sources, whose effect is undocumented."""
        self.biases.set_global(chip, name, coarse, fine)

    def get_global_bias(self, chip: int, name: str) -> tuple[int, int]:
        return self.biases.get_global(chip, name)

    def bias_current(self, chip: int, core: int, name: str) -> float:
        """Current [A] the circuits of (chip, core) receive from bias ``name`` (mismatch included)."""
        return self.biases.current(chip, core, name)

    # --- connectivity --------------------------------------------------------------------------------
    # CAM/SRAM writes, tau selection and routing() come from emulator.connectivity.Connectivity.
    def select_monitor(self, chip: int, core: int, neuron: int) -> None:
        """Route ``neuron`` to (chip, core)'s analog monitor; that core's membrane buffer restarts."""
        self.tables.select_monitor(chip, core, neuron)
        slot = chip * N_CORES_PER_CHIP + core
        self._monitor_t[slot].clear()
        self._monitor_i[slot].clear()

    # --- network state -------------------------------------------------------------------------------
    def reset_network_state(self) -> None:
        """All neurons to rest (I_mem = I_0), synapses and adaptation empty, no refractoriness."""
        self.state = NetworkState.at_rest(self.config.circuit.i0)

    def parameters(self) -> NeuronParameters:
        """Equation parameters for the current biases, tau2 flags and temperature drift."""
        drift = self._drift_factor()
        key = (self.biases.version, self.tables.tau_version, drift)
        if self._params is None or key != self._params_key:
            self._params = derive_parameters(self.biases.currents(), self.tables.use_tau2, self.mismatch,
                                             self.config, drift)
            self._params_key = key
            self._packed = None
        return self._params

    def _packed_parameters(self) -> engine.KernelParameters:
        params = self.parameters()
        if self._packed is None:
            self._packed = engine.pack_parameters(params)
        return self._packed

    def _delivery_table(self) -> engine.DeliveryTable:
        """What each routing entry adds per event (rebuilt with routing or parameters)."""
        params, routing = self.parameters(), self.routing()
        built_for = self._delivery_for
        if self._delivery is None or built_for is None or built_for[0] is not params or built_for[1] is not routing:
            self._delivery = engine.delivery_table(routing, params)
            self._delivery_for = (params, routing)
        return self._delivery

    def _routing_rebuilt(self) -> None:
        self._groups = None  # the partition groups follow the routes

    def _partitions(self, n_steps: int, noise_on: bool) -> list[list[int]]:
        """Chips each thread simulates (one list per thread, the caller's first)."""
        routing = self.routing()
        if self._groups is None:
            self._groups = chip_groups(routing)
        threads = self.config.kernel_threads or _available_cores()
        if noise_on or n_steps < _MIN_PARALLEL_STEPS:
            threads = 1
        return assign_partitions(self._groups, threads)

    # --- running -------------------------------------------------------------------------------------
    def run(self, duration_s: float) -> SpikeEvents:
        """Advance the board clock by ``duration_s`` and return the spikes routed to the host.

        Durations that are not a multiple of ``dt`` are honoured on average: the clock keeps the
        remainder and the next call simulates it.  Timestamps are µs since the last reset.
        """
        end_step = self._end_step(duration_s)
        host_batches: list[SpikeEvents] = []
        all_batches: list[SpikeEvents] = []
        self.last_kernel_cpu_s = []
        while self._step < end_step:
            n_steps = min(_CHUNK_STEPS, end_step - self._step)
            host, every = self._run_chunk(n_steps)
            host_batches.append(host)
            all_batches.append(every)
        if len(all_batches) == 1:  # one chunk (up to 1 s at 0.1 ms): no copies
            self.last_spikes = all_batches[0]
            return host_batches[0]
        self.last_spikes = SpikeEvents.concatenate(all_batches)
        return SpikeEvents.concatenate(host_batches)

    def _run_chunk(self, n_steps: int) -> tuple[SpikeEvents, SpikeEvents]:
        routing = self.routing()
        step0 = self._step
        det_step, det_key = self.pending_input_events(step0, n_steps)
        poi_step, poi_key = self.poisson.input_events(step0, n_steps, self.config.dt, self._poisson_rng)
        in_step = np.concatenate([det_step, poi_step]) - step0
        in_key = np.concatenate([det_key, poi_key])
        order = np.argsort(in_step, kind="stable")
        in_step = np.ascontiguousarray(in_step[order], dtype=np.int64)
        in_key = np.ascontiguousarray(in_key[order], dtype=np.int32)

        monitor = self.tables.monitor.ravel()  # (what ChipTables.monitored_gids computes, without its meshgrid)
        monitor_gid = np.where(monitor >= 0, _SLOT_BASE_GID + monitor, -1).astype(np.int32)
        monitor_out = np.zeros((n_steps, len(monitor_gid)), np.float32)
        noise = self.config.mismatch
        noise_on = noise.enabled and noise.noise_std_a > 0
        noise_decay = math.exp(-self.config.dt / noise.noise_tau_s)
        noise_amplitude = noise.noise_std_a * math.sqrt(1 - noise_decay**2) if noise_on else 0.0
        noise_seed = int(self._noise_rng.integers(0, 2**31 - 1))
        partitions = self._partitions(n_steps, noise_on)
        shared = (routing, self._packed_parameters(), self._delivery_table(), noise_decay,
                  noise_amplitude, noise_seed, monitor_out, len(partitions) > 1)
        scratch = self._scratch_for(len(partitions))
        if len(partitions) == 1:
            jobs = [(scratch[0], partitions[0], n_steps, in_step, in_key, monitor_gid)]
        else:
            partition_of_chip = np.empty(N_CHIPS, np.int64)
            for index, chips in enumerate(partitions):
                partition_of_chip[chips] = index
            key_partition = partition_of_chip[in_key // _KEYS_PER_CHIP]
            slot_partition = np.repeat(partition_of_chip, N_CORES_PER_CHIP)
            jobs = []
            for index, chips in enumerate(partitions):
                mine = key_partition == index
                monitor_mine = np.where(slot_partition == index, monitor_gid, -1).astype(np.int32)
                jobs.append((scratch[index], chips, n_steps, in_step[mine], in_key[mine], monitor_mine))
        futures: list[Future] = [_workers().submit(self._run_partition, shared, *job) for job in jobs[1:]]
        results = [self._run_partition(shared, *jobs[0])]
        results += [f.result() for f in futures]
        self._step += n_steps
        for index, result in enumerate(results):
            if index == len(self.last_kernel_cpu_s):
                self.last_kernel_cpu_s.append(0.0)
            self.last_kernel_cpu_s[index] += result[2]
        spike_steps = np.concatenate([r[0] for r in results])
        spike_gids = np.concatenate([r[1] for r in results])  # int32
        if len(results) > 1:  # the one-thread order: by step, then by neuron
            # each partition's list is sorted already: timsort merges the runs in linear time
            order = np.argsort(spike_steps * N_NEURONS + spike_gids, kind="stable")
            spike_steps, spike_gids = spike_steps[order], spike_gids[order]
        spike_steps += step0
        if (monitor_gid >= 0).any():
            self._record_monitor(step0, monitor_gid, monitor_out.astype(np.float64))
        t_us = self._step_to_us(spike_steps)
        physical = physical_events(t_us, spike_gids)
        single = self._single_host_routes(routing)
        if single is not None and single.identity:
            # every neuron reaches the host as itself (the power-up routes): the same columns
            host = SpikeEvents(physical.timestamp_us, physical.chip, physical.core, physical.neuron)
        else:
            host = host_events(t_us, spike_gids, routing, single)
        return host, physical

    def _run_partition(self, shared: tuple, scratch: KernelScratch, chips: list[int], n_steps: int,
                       in_step: np.ndarray, in_key: np.ndarray,
                       monitor_gid: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """Run the chips of one partition for ``n_steps`` with this thread's ``scratch``; (steps,
        gids) of their spikes and the CPU time this thread spent on them.

        Safe to run concurrently with the other partitions of the same chunk: they touch
        disjoint neurons of the state and disjoint monitor columns.  With more than one partition
        it runs on a copy of its chips' columns in the scratch's private state and writes them
        back afterwards.
        """
        routing, packed, delivery, noise_decay, noise_amplitude, noise_seed, monitor_out, private = shared
        cpu_started = time.thread_time()
        state = self.state.buffer
        if private:
            columns = _chip_columns(chips)
            engine.state_rows(scratch.state)[:, columns] = engine.state_rows(state)[:, columns]
            state = scratch.state
        steps, gids = simulate_partition(state, packed, delivery, chips, n_steps, in_step, in_key, monitor_gid,
                                         monitor_out, noise_decay, noise_amplitude, noise_seed, scratch)
        if private:
            engine.state_rows(self.state.buffer)[:, columns] = engine.state_rows(scratch.state)[:, columns]
        return steps, gids, time.thread_time() - cpu_started

    def _scratch_for(self, n_partitions: int) -> list[KernelScratch]:
        """One scratch per partition (made on the calling thread, before any worker starts); with
        more than one partition each holds a private state."""
        while len(self._scratch) < n_partitions:
            self._scratch.append(KernelScratch())
        if n_partitions > 1:
            for scratch in self._scratch[:n_partitions]:
                if scratch.state is None:
                    scratch.add_private_state()
        return self._scratch[:n_partitions]

    def _physical_events(self, steps: np.ndarray, gids: np.ndarray) -> SpikeEvents:
        """Every spike (absolute steps, board-wide ids) with its physical address."""
        return physical_events(self._step_to_us(steps), gids)

    def _host_events(self, steps: np.ndarray, gids: np.ndarray, routing: RoutingTables) -> SpikeEvents:
        """One host event per (spike, SRAM cell routing it to the FPGA), in time order."""
        return host_events(self._step_to_us(steps), gids, routing, self._single_host_routes(routing))

    def _single_host_routes(self, routing: RoutingTables) -> HostRoutes | None:
        """:func:`single_host_routes` of ``routing``, cached."""
        if self._host_routes_of is not routing:
            self._host_routes_of = routing
            self._host_routes = single_host_routes(routing)
        return self._host_routes

    # --- analog monitor -----------------------------------------------------------------------------
    def _record_monitor(self, step0: int, monitor_gid: np.ndarray, monitor_out: np.ndarray) -> None:
        if not (monitor_gid >= 0).any():
            return
        t_us = self._step_to_us(np.arange(step0, step0 + len(monitor_out)))
        limit = self.config.membrane_buffer_samples
        for slot in np.nonzero(monitor_gid >= 0)[0]:
            self._monitor_t[slot].append(t_us)
            self._monitor_i[slot].append(monitor_out[:, slot].copy())
            total = sum(len(a) for a in self._monitor_t[slot])
            while total - len(self._monitor_t[slot][0]) >= limit:  # drop whole old chunks
                total -= len(self._monitor_t[slot].pop(0))
                self._monitor_i[slot].pop(0)

    def membrane_voltage(self, i_mem: np.ndarray) -> np.ndarray:
        """Membrane voltage [V] of a membrane current: (U_T / kappa) ln(I_mem / I_0), clipped to 0..1.8 V."""
        c = self.config.circuit
        volts = (c.ut / c.kappa) * np.log(np.maximum(i_mem, c.i0) / c.i0)
        return np.clip(volts, *MONITOR_RANGE_V)

    def read_membrane(self, chip: int, core: int) -> tuple[np.ndarray, np.ndarray]:
        """(t_us, volts) of (chip, core)'s monitored neuron since the last call.

        The buffer is bounded (``config.membrane_buffer_samples``; the oldest samples go first).
        Empty arrays when no neuron of that core is monitored.
        """
        chip, core = check_chip(chip), check_core(core)
        slot = chip * N_CORES_PER_CHIP + core
        if not self._monitor_t[slot]:
            return np.zeros(0, np.int64), np.zeros(0)
        t_us = np.concatenate(self._monitor_t[slot])
        i_mem = np.concatenate(self._monitor_i[slot])
        limit = self.config.membrane_buffer_samples
        t_us, i_mem = t_us[-limit:], i_mem[-limit:]
        self._monitor_t[slot].clear()
        self._monitor_i[slot].clear()
        return t_us, self.membrane_voltage(i_mem)

    # --- convenience ---------------------------------------------------------------------------------
    def neuron_rates(self, events: SpikeEvents, duration_s: float) -> np.ndarray:
        """Firing rate [Hz] of every board-wide neuron id in ``events`` over ``duration_s``."""
        return events.counts(N_NEURONS) / float(duration_s)

