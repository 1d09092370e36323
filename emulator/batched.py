"""``BatchedSimulator``: N emulated DYNAP-SE1 boards with different serials, run together.

Monte-Carlo studies of device mismatch (``neurolab robustness``, mismatch-aware training) need the
same network, biases and stimulus on many chips that differ only in their frozen mismatch, i.e.
their serial.  This class holds what the host writes once for all of them and what differs per
board apart:

=======================================  =====================================================
shared by every board                    per board (instance ``b``, serial ``serials[b]``)
=======================================  =====================================================
CAM, SRAM, tau2 flags (``ChipTables``),  mismatch factors (``MismatchFactors.draw(serial)``),
routing and the delivery entries         bias currents (``BiasBank`` with that mismatch),
FPGA spike generator, host spikes,       kernel parameters and synaptic jumps,
Poisson rates, board clock               network state, Poisson and noise generators
=======================================  =====================================================

Biases are written to every board (:meth:`BatchedSimulator.set_bias`) or to one
(``instance=b``: a per-chip calibration).

Physics and bit-compatibility
-----------------------------
Each board is advanced by the single-board kernel itself (the compiled library's quiet kernel,
:func:`emulator.kernel_library.quiet_kernel`, or :func:`emulator.engine.simulate` with noise), with
exactly the inputs :class:`emulator.simulator.BoardSimulator` gives it: parameters from
:func:`~emulator.neuron_params.derive_parameters` and :func:`~emulator.engine.pack_parameters`,
the same input events in the same order (spike generator and host spikes, then that board's own
Poisson events, stable-sorted by step), the same noise seed per chunk, the same chunking, and all
four chips as one partition (chips sorted, which is the order in which the single board delivers
spikes within every connected group of chips, whatever its thread count).  So board ``b`` of a
batch produces the same spikes and the same state, bit for bit, as ``BoardSimulator(serials[b])``
with the same configuration — for any N, not only N = 1 — and
``tests/test_emulator_batched.py`` checks it.  A batch may simulate only some chips (``chips=``,
extended to whole groups of routed chips): those chips are still bit-identical, the others stay
at rest (a network on one chip runs 4x faster).  Whatever the single-board kernel gains in speed,
the batch gains too.

Why not a second kernel with the board axis innermost (or torch tensors of shape (N, 4096))?
The single-board kernel is already 8-wide SIMD over neurons and limited by memory bandwidth; a
board axis adds work, not width.  A torch or GPU version could not be bit-compatible either:
the numba kernel is compiled with ``fastmath`` (fused multiply-adds, reassociated polynomials),
which torch's elementwise operators do not reproduce.  What batching buys on a CPU is sharing
(one routing table, one delivery table, one input schedule for all boards: the memory of a board
is its state and parameters, ~0.9 MB) and parallelism without synchronisation: boards never
exchange spikes, so they run on ``threads`` worker threads (the kernel releases the GIL), each
board's result independent of the thread that ran it.  No CUDA path exists.

Memory per board: state 8 rows and parameters 13 rows of 4176 float32 plus 4 jump rows (~0.4 MB),
the mismatch factors in float64 (~0.5 MB, kept so that a bias change re-derives the parameters
exactly as the single board does) and the spike outputs of the last run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np

from drivers.dynapse1.spikes import SpikeEvents
from drivers.dynapse1.topology import (
    N_CHIPS,
    N_CORES_PER_CHIP,
    N_NEURONS,
    N_NEURONS_PER_CHIP,
    check_chip,
    check_core,
    check_neuron,
)

from . import engine
from .biasgen import BiasBank
from .chip_state import ChipTables
from .config import EmulatorConfig
from .connectivity import Connectivity
from .mismatch import MismatchFactors, rng_for
from .neuron_params import derive_parameters
from .partition import chip_groups
from .routing import RoutingTables
from .simulator import (
    BoardClock,
    BoardInputs,
    HostRoutes,
    KernelScratch,
    host_events,
    physical_events,
    simulate_partition,
    single_host_routes,
)

#: Input keys per chip: key = chip * 4096 + core * 1024 + address (:mod:`emulator.routing`).
_KEYS_PER_CHIP = 4 * N_NEURONS_PER_CHIP
#: Steps per kernel call, as in :mod:`emulator.simulator` (the chunking is part of what makes the
#: noise sequence identical: every chunk draws one noise seed).
CHUNK_STEPS = 10_000


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass
class _Board:
    """What one board of the batch holds apart from the others."""

    serial: str
    mismatch: MismatchFactors
    biases: BiasBank
    state: np.ndarray  # flat float32 kernel state (engine.N_STATE * engine.ROW)
    poisson_rng: np.random.Generator
    noise_rng: np.random.Generator
    scratch: KernelScratch = field(default_factory=KernelScratch)  # the kernel's flags and work rows
    packed: engine.KernelParameters | None = None
    jump: np.ndarray | None = None
    packed_key: tuple | None = None


class BatchedSimulator(Connectivity, BoardClock, BoardInputs):
    """N emulated boards sharing their host configuration (see the module docstring).

    Connectivity, the board clock (one for every board) and the host's inputs (spikes,
    generators) come from the bases it shares with ``BoardSimulator``.

    Parameters
    ----------
    serials : one serial per board; each fixes that board's mismatch (with ``config.seed``)
    config : emulator configuration shared by all boards; defaults if None
    threads : worker threads over boards (0 = one per available CPU core); results do not
        depend on it
    chips : simulate only these chips, extended to every chip that SRAM routes connect them to
        (``emulator.partition.chip_groups``); None = all four.  The chips simulated are then
        bit-identical to a whole board's, the others stay at rest and emit nothing: for a
        network on one chip a 4x saving.  Not with trial-to-trial noise (its random sequence
        runs over all neurons)
    record_all_spikes : keep every spike of the last run in :attr:`last_spikes` (False: only the
        host events are built; a long study need not hold every spike of every board twice)

    Attributes
    ----------
    last_spikes : per board, every neuron spike of the last :meth:`run` (as
        ``BoardSimulator.last_spikes``)
    """

    def __init__(self, serials: Sequence[str], config: EmulatorConfig | None = None, threads: int = 0,
                 chips: Sequence[int] | None = None, record_all_spikes: bool = True) -> None:
        serials = [str(s) for s in serials]
        if not serials:
            raise ValueError("a batch needs at least one serial")
        if len(set(serials)) != len(serials):
            raise ValueError("serials must be distinct (the same serial is the same chip)")
        if isinstance(threads, bool) or int(threads) != threads or threads < 0:
            raise ValueError(f"threads must be an integer >= 0, got {threads!r}")
        self.serials = tuple(serials)
        self.config = config if config is not None else EmulatorConfig()
        self.threads = int(threads) or _available_cores()
        self.chips = tuple(sorted({check_chip(c) for c in chips})) if chips is not None else tuple(range(N_CHIPS))
        if not self.chips:
            raise ValueError("chips must name at least one chip (or be None for all)")
        self.record_all_spikes = bool(record_all_spikes)
        self._host_filter: np.ndarray | None = None
        self.tables = ChipTables()
        self._init_inputs()
        self._boards = [self._new_board(serial) for serial in self.serials]
        self._init_clock()
        self._init_connectivity()
        self._delivery: tuple[RoutingTables, engine.DeliveryTable] | None = None
        self._host_routes: tuple[RoutingTables, HostRoutes | None] | None = None
        self.last_spikes: list[SpikeEvents] = [SpikeEvents() for _ in self._boards]

    def _new_board(self, serial: str) -> _Board:
        seed = self.config.seed
        mismatch = MismatchFactors.draw(serial, seed, self.config.mismatch)
        return _Board(serial, mismatch, BiasBank(self.config, mismatch.biasgen),
                      engine.empty_state(self.config.circuit.i0), rng_for(serial, seed, "poisson"),
                      rng_for(serial, seed, "noise"))

    def __len__(self) -> int:
        return len(self._boards)

    # --- biases --------------------------------------------------------------------------------------
    def _boards_of(self, instance: int | None) -> list[_Board]:
        if instance is None:
            return self._boards
        if isinstance(instance, bool) or int(instance) != instance or not 0 <= int(instance) < len(self._boards):
            raise ValueError(f"instance {instance!r} out of range 0..{len(self._boards) - 1}")
        return [self._boards[int(instance)]]

    def set_bias(self, chip: int, core: int, name: str, coarse: int, fine: int, high: bool = True,
                 normal: bool = True, enabled: bool = True, instance: int | None = None) -> None:
        """Write a per-core bias on every board, or on board ``instance`` only.

        Validated once before any board changes (the banks validate identically)."""
        boards = self._boards_of(instance)
        boards[0].biases.set(chip, core, name, coarse, fine, high, normal, enabled)
        for board in boards[1:]:
            board.biases.set(chip, core, name, coarse, fine, high, normal, enabled)

    def get_bias(self, chip: int, core: int, name: str, instance: int = 0) -> tuple[int, int, bool, bool, bool]:
        """(coarse, fine, high, normal, enabled) as last written on board ``instance``."""
        return self._boards_of(instance)[0].biases.get(chip, core, name)

    def set_global_bias(self, chip: int, name: str, coarse: int, fine: int) -> None:
        """Store a chip-global bias on every board (no effect on the physics, as on one board)."""
        self._boards[0].biases.set_global(chip, name, coarse, fine)
        for board in self._boards[1:]:
            board.biases.set_global(chip, name, coarse, fine)

    def bias_current(self, chip: int, core: int, name: str, instance: int = 0) -> float:
        """Current [A] the circuits of (chip, core) of board ``instance`` receive from bias ``name``."""
        return self._boards_of(instance)[0].biases.current(chip, core, name)

    # --- connectivity (shared) -----------------------------------------------------------------------
    # CAM/SRAM writes, tau selection and routing() come from emulator.connectivity.Connectivity.
    def select_monitor(self, chip: int, core: int, neuron: int) -> None:
        """Accepted and ignored: a batch keeps no analog monitor traces (they do not affect spikes)."""
        check_chip(chip), check_core(core), check_neuron(neuron)

    # --- host event filter ---------------------------------------------------------------------------
    def keep_host_events_of(self, neurons: Sequence[int] | None) -> None:
        """Return host events of these board-wide neuron ids only (None: all), as a host that
        listens to some neurons would filter the stream; applied per chunk, so a long run holds
        only those.  The dynamics are unchanged."""
        if neurons is None:
            self._host_filter = None
            return
        ids = np.asarray(list(neurons), np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= N_NEURONS):
            raise ValueError(f"neuron ids must lie in 0..{N_NEURONS - 1}")
        mask = np.zeros(N_NEURONS, bool)
        mask[ids] = True
        self._host_filter = mask

    # --- state ---------------------------------------------------------------------------------------
    def reset_network_state(self) -> None:
        """Every neuron of every board to rest."""
        for board in self._boards:
            board.state = engine.empty_state(self.config.circuit.i0)

    def state_rows(self, instance: int) -> np.ndarray:
        """(engine.N_STATE, 4096) view of board ``instance``'s state (rows ``engine.S_*``)."""
        return engine.state_rows(self._boards_of(instance)[0].state)

    def parameters(self, instance: int):
        """:class:`~emulator.neuron_params.NeuronParameters` of board ``instance`` now."""
        board = self._boards_of(instance)[0]
        return derive_parameters(board.biases.currents(), self.tables.use_tau2, board.mismatch, self.config,
                                 self._drift_factor())

    def _kernel_parameters(self, index: int, routing: RoutingTables) -> tuple[engine.KernelParameters, np.ndarray]:
        """Packed parameters and synaptic jumps of board ``index`` (re-derived after a change)."""
        board = self._boards[index]
        drift = self._drift_factor()
        key = (board.biases.version, self.tables.tau_version, drift)
        if board.packed is None or board.packed_key != key:
            params = self.parameters(index)
            board.packed = engine.pack_parameters(params)
            board.jump = engine.delivery_table(routing, params).jump
            board.packed_key = key
        return board.packed, board.jump

    def _shared_delivery(self, routing: RoutingTables) -> engine.DeliveryTable:
        """The delivery table of board 0; every field but ``jump`` (the synaptic jumps, which carry
        the mismatch) is the same for every board, so board ``b`` uses it with its own ``jump``."""
        if self._delivery is None or self._delivery[0] is not routing:
            self._delivery = (routing, engine.delivery_table(routing, self.parameters(0)))
        return self._delivery[1]

    # --- running -------------------------------------------------------------------------------------
    def run(self, duration_s: float) -> list[SpikeEvents]:
        """Advance every board by ``duration_s``; per board, the spikes routed to the host.

        Same clock semantics as ``BoardSimulator.run`` (remainders of ``dt`` carried over)."""
        end_step = self._end_step(duration_s)
        host: list[list[SpikeEvents]] = [[] for _ in self._boards]
        every: list[list[SpikeEvents]] = [[] for _ in self._boards]
        while self._step < end_step:
            n_steps = min(CHUNK_STEPS, end_step - self._step)
            for b, (h, e) in enumerate(self._run_chunk(n_steps)):
                host[b].append(h)
                every[b].append(e)
        self.last_spikes = [SpikeEvents.concatenate(e) for e in every]
        return [SpikeEvents.concatenate(h) for h in host]

    def simulated_chips(self) -> list[int]:
        """The chips a run simulates: :attr:`chips` and every chip routed to or from them."""
        if len(self.chips) == N_CHIPS:
            return list(self.chips)
        return sorted(c for group in chip_groups(self.routing()) if set(group) & set(self.chips) for c in group)

    def _run_chunk(self, n_steps: int) -> list[tuple[SpikeEvents, SpikeEvents]]:
        routing = self.routing()
        step0 = self._step
        chips = self.simulated_chips()
        noise = self.config.mismatch
        noise_on = noise.enabled and noise.noise_std_a > 0
        if noise_on and len(chips) < N_CHIPS:
            raise ValueError("trial-to-trial noise needs all chips simulated (its random sequence runs over all "
                             "neurons); create the batch with chips=None")
        det_step, det_key = self.pending_input_events(step0, n_steps)
        noise_decay = math.exp(-self.config.dt / noise.noise_tau_s)
        noise_amplitude = noise.noise_std_a * math.sqrt(1 - noise_decay**2) if noise_on else 0.0
        delivery = self._shared_delivery(routing)
        jobs = []
        for index, board in enumerate(self._boards):
            # drawn on this thread, in board order, as the single board draws them per chunk
            poi_step, poi_key = self.poisson.input_events(step0, n_steps, self.config.dt, board.poisson_rng)
            in_step = np.concatenate([det_step, poi_step]) - step0
            in_key = np.concatenate([det_key, poi_key])
            if len(chips) < N_CHIPS:  # events for chips not simulated would land on frozen synapses
                mine = np.isin(in_key // _KEYS_PER_CHIP, chips)
                in_step, in_key = in_step[mine], in_key[mine]
            order = np.argsort(in_step, kind="stable")
            noise_seed = int(board.noise_rng.integers(0, 2**31 - 1))
            packed, jump = self._kernel_parameters(index, routing)
            jobs.append((board, packed, jump, np.ascontiguousarray(in_step[order], dtype=np.int64),
                         np.ascontiguousarray(in_key[order], dtype=np.int32), noise_seed))

        single = self._single_host_routes(routing)  # derived here, before the worker threads read it
        host_filter = self._host_filter

        def run_board(job) -> tuple[SpikeEvents, SpikeEvents]:
            # the kernel's step/neuron arrays become events on the worker, so only events are kept
            board, packed, jump, in_step, in_key, noise_seed = job
            steps, gids = _simulate_board(board, packed, replace(delivery, jump=jump), chips, n_steps,
                                          in_step, in_key, noise_decay, noise_amplitude, noise_seed)
            steps += step0
            t_us = self._step_to_us(steps)
            every = physical_events(t_us, gids) if self.record_all_spikes else SpikeEvents()
            if host_filter is not None:
                keep = host_filter[gids]
                t_us, gids = t_us[keep], gids[keep]
            return host_events(t_us, gids, routing, single), every

        threads = min(self.threads, len(jobs))
        if threads <= 1:
            out = [run_board(job) for job in jobs]
        else:
            with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="batched-emulator") as pool:
                out = list(pool.map(run_board, jobs))
        self._step += n_steps
        return out

    def _single_host_routes(self, routing: RoutingTables) -> HostRoutes | None:
        if self._host_routes is None or self._host_routes[0] is not routing:
            self._host_routes = (routing, single_host_routes(routing))
        return self._host_routes[1]


def _simulate_board(board: _Board, packed: engine.KernelParameters, delivery: engine.DeliveryTable,
                    chips: list[int], n_steps: int, in_step: np.ndarray, in_key: np.ndarray,
                    noise_decay: float, noise_amplitude: float, noise_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One board, ``chips`` as one partition, through
    :func:`emulator.simulator.simulate_partition` (the single board's kernel call)."""
    no_monitor = np.full(N_CHIPS * N_CORES_PER_CHIP, -1, np.int32)  # monitors do not touch the dynamics
    monitor_out = np.zeros((n_steps, len(no_monitor)), np.float32)
    steps, gids = simulate_partition(board.state, packed, delivery, chips, n_steps, in_step, in_key, no_monitor,
                                     monitor_out, noise_decay, noise_amplitude, noise_seed, board.scratch)
    return steps, gids.astype(np.int64)
