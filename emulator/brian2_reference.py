"""The Brian2 reference model: the emulator's equations written as a Brian2 network.

:func:`run_brian2` builds a Brian2 network from a :class:`~emulator.simulator.BoardSimulator`'s
current state - its bias-derived parameters *including the mismatch factors the simulator drew*,
its CAM/SRAM connectivity, DC, pending host spikes, FPGA spike-generator schedule and Poisson
rates - and runs it.  It is the "Brian2 SNN" stage of the conversion pipeline and the
independent check of the compiled kernel.

Equivalence.  The membrane equation is written as a Brian2 differential equation and integrated
with Brian2's ``exponential_euler`` method.  That method needs each equation to be linear in its
own variable, so the two voltage-dependent factors (positive feedback ``p`` and NMDA gate
``g_nmda``) are sampled at the start of each step by a ``run_regularly`` operation, exactly the
emulator's scheme (:mod:`emulator.engine`).  The equations and the step scheme are the same; the
arithmetic is not: Brian2 computes in float64 with libm's exp, the emulator's kernel in float32
with its own range-reduced exp (relative error ~1e-7) and with the step's coefficients multiplied
out so that they need no division (:mod:`emulator.engine`).  With mismatch off,
deterministic inputs and the same ``dt`` the two therefore agree to float32 rounding: a spike
moves by one step only where a threshold crossing falls within that rounding (on the reference
test network, ``tests/test_emulator_brian2.py``, every spike coincides).  Poisson inputs are drawn
by Brian2's own generator (``PoissonGroup``) and agree only statistically.  Trial-to-trial noise
and temperature drift are not modelled here (the drift factor at the current board time is
applied as a constant).

The simulator itself is not changed: neither its state nor its clock nor its host-spike queue.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import threading
import time
import warnings
from types import ModuleType

import numpy as np

from drivers.dynapse1.spikes import SpikeEvents
from drivers.dynapse1.topology import N_NEURONS, SynapseType

from . import engine
from .neuron_params import derive_parameters
from .routing import input_key
from .simulator import BoardSimulator

_SYNAPSE_NAMES = {SynapseType.GABA_B: "gabab", SynapseType.GABA_A: "gabaa", SynapseType.NMDA: "nmda",
                  SynapseType.AMPA: "ampa"}

EQUATIONS = """
dI_mem/dt = (-(I_mem - I0) * (1 + s_shunt) + gain_ratio * drive + p * (I_mem + I_gain)) / tau_mem : amp (unless refractory)
s_shunt = (I_gabaa + I_ahp) / I_tau : 1
drive = clip(I_ampa + g_nmda * I_nmda - I_gabab + I_dc - I_ahp - I_tau, 0*amp, inf*amp) : amp
dI_gabab/dt = -I_gabab / tau_gabab : amp
dI_gabaa/dt = -I_gabaa / tau_gabaa : amp
dI_nmda/dt = -I_nmda / tau_nmda : amp
dI_ampa/dt = -I_ampa / tau_ampa : amp
dI_ahp/dt = -I_ahp / tau_ahp : amp
p : 1
g_nmda : 1
I0 : amp (shared, constant)
I_tau : amp (constant)
gain_ratio : 1 (constant)
I_gain : amp (constant)
I_dc : amp (constant)
I_spk : amp (constant)
I_onset : amp (constant)
inv4w : 1/amp (constant)
I_nmda_gate : amp (constant)
tau_mem : second (constant)
t_ref : second (constant)
tau_gabab : second (constant)
tau_gabaa : second (constant)
tau_nmda : second (constant)
tau_ampa : second (constant)
tau_ahp : second (constant)
J_gabab : amp (constant)
J_gabaa : amp (constant)
J_nmda : amp (constant)
J_ampa : amp (constant)
J_ahp : amp (constant)
"""

#: Sampled at the start of every step (Brian2 slot 'start'), as the emulator does.
SAMPLE_CODE = """
u_fb = clip((I_mem - I_onset) * inv4w + 0.5, 0, 1)
p = feedback_gain * u_fb * u_fb * (3 - 2 * u_fb)
g_nmda = int(I_nmda != 0*amp) * I_mem / (I_mem + I_nmda_gate)
"""


_BRIAN2_IMPORT_LOCK = threading.Lock()


def import_brian2() -> ModuleType:
    """The ``brian2`` module, imported (the first time) without the SIGINT handler it installs.

    Every NeuroLab use of Brian2 imports it through this function, so it works from any thread.
    ``brian2/__init__`` calls ``signal.signal(SIGINT, ...)`` (a handler that turns Ctrl-C into
    "stop the running simulation"), and Python allows that only on the main thread: a first import
    on a worker thread - where every job runs (``neurolab_gui.core.jobs.Job``: ``neurolab
    convert --stages brian2``, the app's conversion, thread pools in scripts) - raised
    ``ValueError: signal only works in main thread``.  Skipping the handler here, at the one place
    Brian2 is imported, covers all of those at once, where importing Brian2 on the main thread
    before a job starts would have to be remembered by every caller that might reach the Brian2
    stage.  The handler is not wanted on the main thread either: NeuroLab cancels through its
    cancel tokens (Ctrl-C in the CLI cancels the job), while Brian2's handler would take the
    first Ctrl-C during a run on a worker thread away from the CLI and only end that simulation
    early (with a log warning), so :func:`run_brian2` would return the truncated run as if it
    were complete and the job would go on.  So the handler is skipped on every thread, and
    Ctrl-C behaves the same whichever thread imported Brian2 first.  An already imported
    ``brian2`` (e.g. by the user's own script) is returned as it is.
    """
    with _BRIAN2_IMPORT_LOCK:  # one import at a time, so signal.signal is patched and restored once
        if "brian2" in sys.modules:
            import brian2

            return brian2
        install = signal.signal
        importer = threading.get_ident()

        def install_except_brian2_sigint(signalnum, handler):
            # only the importing thread's SIGINT call (brian2's) is skipped; the main thread may
            # still set its own handlers while a worker thread imports
            if signalnum == signal.SIGINT and threading.get_ident() == importer:
                return signal.getsignal(signalnum)
            return install(signalnum, handler)

        signal.signal = install_except_brian2_sigint
        try:
            import brian2
        finally:
            signal.signal = install
        return brian2


def _key_entries(sim: BoardSimulator, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each input key in ``keys``: (which element of ``keys``, target, type, weight) per CAM group."""
    routing = sim.routing()
    starts, stops = routing.key_ptr[keys], routing.key_ptr[keys + 1]
    lengths = stops - starts
    owner = np.repeat(np.arange(len(keys)), lengths)
    entry = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths) + np.repeat(starts, lengths)
    return owner, routing.key_target[entry], routing.key_type[entry], routing.key_weight[entry]


def run_brian2(sim: BoardSimulator, duration_s: float, dt: float = 1e-4, target: str = "numpy",
               host_only: bool = True, timings: dict[str, float] | None = None) -> SpikeEvents:
    """Simulate the simulator's current network for ``duration_s`` with Brian2.

    Parameters
    ----------
    sim : the board to mirror (not modified)
    duration_s : simulated time [s]
    dt : Brian2 time step [s]; use the simulator's ``config.dt`` for step-exact agreement
    target : Brian2 code-generation target ('numpy' starts fastest; 'cython' runs faster)
    host_only : return only spikes an SRAM route sends to the host, like ``sim.run`` (True),
        or every neuron spike with its physical address (False)
    timings : if given, receives ``build_s`` (network construction) and ``run_s`` (``Network.run``,
        which includes Brian2's code generation) wall times

    Returns
    -------
    SpikeEvents with timestamps continuing the simulator's clock (``sim.now_us`` at t = 0).
    """
    b2 = import_brian2()

    if duration_s <= 0:
        raise ValueError(f"duration must be > 0 s, got {duration_s}")
    mm = sim.config.mismatch
    if mm.enabled and mm.noise_std_a > 0:
        warnings.warn("run_brian2 does not model trial-to-trial noise; it is left out", stacklevel=2)
    config = dataclasses.replace(sim.config, dt=dt)
    params = derive_parameters(sim.biases.currents(), sim.tables.use_tau2, sim.mismatch, config,
                               sim._drift_factor())
    routing = sim.routing()
    n_steps = int(np.floor(duration_s / dt + 1e-6))

    started = time.perf_counter()
    b2.start_scope()
    previous_target = b2.prefs.codegen.target
    b2.prefs.codegen.target = target
    try:
        group = b2.NeuronGroup(
            N_NEURONS, EQUATIONS, method="exponential_euler", threshold="I_mem > I_spk",
            reset="I_mem = I_reset\nI_ahp += J_ahp", refractory="t_ref", dt=dt * b2.second,
            namespace={"I_reset": params.i_reset * b2.amp, "feedback_gain": params.feedback_gain},
        )
        group.run_regularly(SAMPLE_CODE, when="start", dt=dt * b2.second)
        _set_parameters(b2, group, params, dt)
        _set_state(b2, group, sim, params)

        objects: list = [group]
        objects += _recurrent_synapses(b2, group, sim)
        objects += _deterministic_inputs(b2, group, sim, n_steps, dt)
        objects += _poisson_inputs(b2, group, sim, dt)
        monitor = b2.SpikeMonitor(group)
        objects.append(monitor)
        net = b2.Network(*objects)
        built = time.perf_counter()
        net.run(n_steps * dt * b2.second)
        if timings is not None:
            timings["build_s"] = built - started
            timings["run_s"] = time.perf_counter() - built
        steps = np.rint(np.asarray(monitor.t / b2.second) / dt).astype(np.int64) + sim._step
        gids = np.asarray(monitor.i, dtype=np.int64)
    finally:
        b2.prefs.codegen.target = previous_target
    order = np.lexsort((gids, steps))
    steps, gids = steps[order], gids[order]
    if host_only:
        return sim._host_events(steps, gids, routing)
    return sim._physical_events(steps, gids)


def _set_parameters(b2, group, params, dt: float) -> None:
    amp, second = b2.amp, b2.second
    group.I0 = params.i0 * amp
    group.I_tau = params.i_tau * amp
    group.gain_ratio = params.i_gain / params.i_tau
    group.I_gain = params.i_gain * amp
    group.I_dc = params.i_dc * amp
    group.I_spk = params.i_spk * amp
    group.I_onset = params.i_feedback_onset * amp
    group.inv4w = 1.0 / (4.0 * params.i_feedback_width) / amp
    group.I_nmda_gate = params.i_nmda_gate * amp
    group.tau_mem = params.tau_mem * second
    group.t_ref = params.n_ref * dt * second  # the emulator's step-quantised refractory period
    for syn_type, name in _SYNAPSE_NAMES.items():
        setattr(group, f"tau_{name}", params.tau_syn[syn_type] * second)
        setattr(group, f"J_{name}", params.syn_jump[syn_type] * amp)
    group.tau_ahp = params.tau_ahp * second
    group.J_ahp = params.ahp_jump * amp


def _set_state(b2, group, sim: BoardSimulator, params) -> None:
    amp = b2.amp
    values = sim.state.values
    group.I_mem = values[:, engine.S_MEM] * amp
    for syn_type, name in _SYNAPSE_NAMES.items():
        setattr(group, f"I_{name}", values[:, engine.S_SYN + syn_type] * amp)
    group.I_ahp = values[:, engine.S_AHP] * amp
    # A neuron with r refractory steps left becomes active at step r - 1 of this run.
    ref_left = values[:, engine.S_REF]
    refractory = ref_left > 0
    if refractory.any():
        lastspike = np.asarray(group.lastspike_[:]).copy()
        last = (ref_left - 1 - params.n_ref) * float(group.clock.dt_)
        lastspike[refractory] = last[refractory]
        group.lastspike_ = lastspike
        group.not_refractory_ = ~refractory


def _connect(b2, source, group, pre: np.ndarray, post: np.ndarray, syn_type: np.ndarray,
             weight: np.ndarray, label: str) -> list:
    """One Synapses object per synapse type from ``source`` to ``group``."""
    out = []
    for t, name in _SYNAPSE_NAMES.items():
        sel = syn_type == t
        if not sel.any():
            continue
        syn = b2.Synapses(source, group, "w : 1 (constant)", on_pre=f"I_{name}_post += w * J_{name}_post",
                          name=f"{label}_{name}")
        syn.connect(i=pre[sel], j=post[sel])
        syn.w = weight[sel]
        out.append(syn)
    return out


def _recurrent_synapses(b2, group, sim: BoardSimulator) -> list:
    routing = sim.routing()
    counts = np.diff(routing.neuron_key_ptr)
    sources = np.repeat(np.arange(N_NEURONS), counts)
    owner, target, syn_type, weight = _key_entries(sim, routing.neuron_keys.astype(np.int64))
    if not len(owner):
        return []
    return _connect(b2, group, group, sources[owner], target, syn_type, weight, "recurrent")


def _deterministic_inputs(b2, group, sim: BoardSimulator, n_steps: int, dt: float) -> list:
    """Host spikes and the FPGA spike generator, one generator index per input event."""
    step, key = sim.pending_input_events(sim._step, n_steps, consume=False)
    if not len(step):
        return []
    if dt != sim.config.dt:  # the schedule was quantised on the simulator's step
        step = np.floor((step - sim._step) * sim.config.dt / dt + 1e-3).astype(np.int64) + sim._step
    generator = b2.SpikeGeneratorGroup(len(step), np.arange(len(step)), (step - sim._step) * dt * b2.second,
                                       dt=dt * b2.second, name="fpga_inputs")
    owner, target, syn_type, weight = _key_entries(sim, key.astype(np.int64))
    return [generator] + _connect(b2, generator, group, owner, target, syn_type, weight, "fpga")


def _poisson_inputs(b2, group, sim: BoardSimulator, dt: float) -> list:
    """One PoissonGroup neuron per active Poisson source, reaching all four cores of its chip."""
    if not sim.poisson.running:
        return []
    chip, source = np.nonzero(sim.poisson.rates_hz > 0)
    if not len(chip):
        return []
    poisson = b2.PoissonGroup(len(chip), sim.poisson.rates_hz[chip, source] * b2.Hz, dt=dt * b2.second,
                              name="poisson_inputs")
    src_index = np.repeat(np.arange(len(chip)), 4)
    keys = input_key(np.repeat(chip, 4), np.tile(np.arange(4), len(chip)), np.repeat(source, 4))
    owner, target, syn_type, weight = _key_entries(sim, np.asarray(keys, dtype=np.int64))
    return [poisson] + _connect(b2, poisson, group, src_index[owner], target, syn_type, weight, "poisson")

