"""Speed and memory of the DYNAP-SE1 emulator on a full board, against its peers at their best.

The network: all 4096 neurons, all 64 CAM entries of every neuron used (random sources on the
same chip, all four synapse types), SRAM cell 0 to the host and cell 1 back to the own chip's four
cores, mismatch on, dt = 0.1 ms.  The DC bias is adjusted in a few short runs until the mean rate
is about 20 Hz.  Then 1 s of board time is timed ``--repeats`` times (min and median), with the
kernel library loaded and the tables built; peak RSS is the process's before any peer is loaded.
The same runs are timed again at real-time priority where the OS allows it (``--fifo``, on by
default; root or CAP_SYS_NICE): on the shared development machine that is what idle cores give,
since the run then preempts everybody else's work for its few hundredths of a second.  No
idle-core figure is *estimated* from CPU times: measured under load, where the threads seldom
run at the same time, those missed what running at the same time costs (false sharing between
the threads once made each 3x slower; docs/decisions.md).

Peers, in the same run, on the identical network from rest, each at its fastest:

* Brian2, cython target (``emulator.brian2_reference.run_brian2``): compiled kernels, the step
  loop in Python.  Code generation and compilation are cached by a first short run; two
  durations (each the faster of two runs) give the cost per simulated second by difference.
* Brian2, C++ standalone device: the whole run in one binary; ``make`` (code generation and
  compilation) is reported apart from the binary's own simulation loop (Brian2's
  ``_last_run_time``), which is what is compared.  One thread (OpenMP is slower on 2 vCPUs).
* rockpool's DynapSim (``pip install -e .[bench]``), jax-jitted, compile apart: the same neurons
  with the emulator's mismatch-bearing currents, the same connectivity as a dense matrix, one
  lumped synapse matched to the mean AMPA jump (see :func:`dynapsim_network`).

The emulator is timed again after the peers and the faster of the two counts.  JSON keys
``vs_brian2_best`` (the faster Brian2 mode's time per board second over the emulator's wall time)
and ``vs_rockpool``, with the peers' own times under ``peers``.

Usage: ``nice -n 10 .venv/bin/python bench/emulator_speed.py [--skip-peers]`` (with peers about
10 minutes on 2 shared cores; Brian2's standalone compile alone ~1.5 min).
The last printed line is one JSON object.  Timings on a shared 2-core machine are noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import resource
import time

import numpy as np

from drivers.dynapse1.bias_sets import apply_bias_set
from drivers.dynapse1.topology import N_CHIPS, N_NEURONS, N_NEURONS_PER_CHIP, SynapseType
from emulator import engine, kernel_library
from emulator.config import EmulatorConfig
from emulator.simulator import BoardSimulator

SYNAPSE_BIASES = {
    "NPDPIE_THR_F_P": (2, 80), "PS_WEIGHT_EXC_F_N": (5, 60),
    "NPDPIE_THR_S_P": (2, 80), "PS_WEIGHT_EXC_S_N": (5, 60),
    "NPDPII_THR_F_P": (2, 80), "PS_WEIGHT_INH_F_N": (5, 60),
    "NPDPII_THR_S_P": (2, 80), "PS_WEIGHT_INH_S_N": (5, 60),
}
TYPE_SHARES = {SynapseType.AMPA: 0.5, SynapseType.NMDA: 0.15, SynapseType.GABA_A: 0.2, SynapseType.GABA_B: 0.15}


def configure_full_board(sim, dc_fine: int = 40, seed: int = 1) -> None:
    """The bench network on a BoardSimulator or a BatchedSimulator (both share this facade):
    every neuron's 64 CAM entries from random sources on its own chip, all four synapse types,
    SRAM cell 1 back to the own chip's four cores (cell 0: the power-up route to the host)."""
    apply_bias_set(sim, "samna_recommended", overrides={**SYNAPSE_BIASES, "IF_DC_P": (5, dc_fine)})
    rng = np.random.default_rng(seed)
    types = rng.choice(list(TYPE_SHARES), p=list(TYPE_SHARES.values()), size=(N_NEURONS, 64))
    sources = rng.integers(0, N_NEURONS_PER_CHIP, size=(N_NEURONS, 64))
    t = sim.tables
    t.cam_core[:] = sources // 256  # bulk write of validated values (same effect as 262144 write_cam calls)
    t.cam_neuron[:] = sources % 256
    t.cam_type[:] = types
    t.cam_written[:] = True
    t.sram[:, 1] = 0
    t.sram[:, 1, 0] = (np.arange(N_NEURONS) % N_NEURONS_PER_CHIP) // 256  # virtual core = own core
    t.sram[:, 1, 5] = 15  # dx = dy = 0: own chip, all four cores
    t.connectivity_version += 1


def build_board(seed: int = 1, threads: int = 0) -> BoardSimulator:
    sim = BoardSimulator("BENCH001", EmulatorConfig(kernel_threads=threads))
    configure_full_board(sim, seed=seed)
    return sim


def tune_rate(sim: BoardSimulator, target_hz: float = 20.0) -> float:
    """Adjust IF_DC_P's fine value on every core until the mean rate is near ``target_hz``."""
    fine = 40
    rate = 0.0
    for _ in range(8):
        for chip in range(4):
            for core in range(4):
                sim.set_bias(chip, core, "IF_DC_P", 5, fine)
        sim.reset_network_state()
        sim.run(0.2)
        rate = len(sim.last_spikes) / N_NEURONS / 0.2
        if abs(rate - target_hz) < 0.15 * target_hz:
            break
        fine = int(np.clip(round(fine * (target_hz / max(rate, 1.0)) ** 0.5), 1, 255))
    return rate


@contextlib.contextmanager
def fifo_priority():
    """Every thread of this process at real-time priority (``SCHED_FIFO`` 1) inside the block,
    back to normal after it; yields whether the OS allowed it (root or CAP_SYS_NICE on Linux).

    On the shared development machine this is the only way to time what idle cores give: the
    run preempts other users' processes for its ~0.03 s per board second (and Linux keeps 5 % of
    every second for them), so the emulator's threads really run at the same time, each on its
    own core.  :func:`time_emulator` holds it for one run at a time.
    """
    def threads() -> list[int]:
        try:
            return [int(t) for t in os.listdir("/proc/self/task")]
        except OSError:
            return []

    def set_all(policy: int, priority: int) -> bool:
        try:
            for tid in threads():
                os.sched_setscheduler(tid, policy, os.sched_param(priority))
        except (OSError, AttributeError):
            return False
        return True

    allowed = hasattr(os, "SCHED_FIFO") and bool(threads()) and set_all(os.SCHED_FIFO, 1)
    try:
        yield allowed
    finally:
        if hasattr(os, "SCHED_OTHER"):
            set_all(os.SCHED_OTHER, 0)


def time_emulator(sim: BoardSimulator, seconds: float = 1.0, repeats: int = 5, fifo: bool = False) -> dict | None:
    """Wall and CPU time of ``sim.run(seconds)`` over ``repeats`` runs (min and median).

    With ``fifo`` the runs are timed at real-time priority (:func:`fifo_priority`), which measures
    idle cores on a loaded machine; None when the OS does not allow it.  ``kernel_s``: the CPU
    time each thread spent in the kernel in the fastest run (``BoardSimulator.last_kernel_cpu_s``).

    There is deliberately no estimate of idle-core wall time from CPU times measured under load:
    under load the threads rarely run at the same time, and running at the same time is exactly
    what can make them slower (false sharing cost 3x per thread before it was removed, invisible
    in CPU times taken under load; docs/decisions.md).
    """
    sim.run(0.05)  # load the kernel, build routing and delivery tables, start the worker threads
    walls, cpus, kernels, rate = [], [], [], 0.0
    for _ in range(repeats):
        # real-time priority for one run at a time, with pauses: others' processes (a GUI test's
        # event loop) never wait longer than one run
        with fifo_priority() if fifo else contextlib.nullcontext(True) as allowed:
            if not allowed:
                return None
            wall0, cpu0 = time.perf_counter(), time.process_time()
            sim.run(seconds)
            walls.append(time.perf_counter() - wall0)
            cpus.append(time.process_time() - cpu0)
        kernels.append(list(sim.last_kernel_cpu_s))
        rate = len(sim.last_spikes) / N_NEURONS / seconds
        if fifo:
            time.sleep(0.2)
    fastest = int(np.argmin(walls))
    return {"wall_s": walls[fastest], "wall_median_s": float(np.median(walls)), "cpu_s": min(cpus),
            "kernel_s": kernels[fastest], "rate_hz": rate,
            "threads": len(sim._partitions(int(seconds / sim.dt), noise_on=False))}


def time_kernel(sim: BoardSimulator, steps: int = 10_000, repeats: int = 5) -> tuple[float, int]:
    """Fastest CPU time of the kernel alone (the library the simulator uses) for ``steps`` steps of
    the whole board on one thread.

    Runs on a copy of the state, without external inputs or monitors.  Returns (seconds, spikes).
    """
    kernel = kernel_library.quiet_kernel()
    packed, delivery = sim._packed_parameters(), sim._delivery_table()
    block_start = np.arange(N_CHIPS, dtype=np.int64) * N_NEURONS_PER_CHIP
    spiked = np.zeros(N_NEURONS, np.uint8)
    capacity = steps * N_NEURONS // 100  # a mean rate of 100 Hz
    best, n_spikes = float("inf"), 0
    for _ in range(repeats):
        state = sim.state.buffer.copy()
        cpu0 = time.process_time()
        n_spikes, _ = kernel(
            steps, block_start, N_NEURONS_PER_CHIP, packed.i0, packed.i_reset, packed.feedback_gain,
            packed.fb_offset, packed.dt_over_tau_per_amp, state, packed.rows,
            delivery.key_ptr, delivery.entry, delivery.weight_of_count, delivery.jump,
            delivery.spike_ptr, delivery.spike_entry, np.zeros(0, np.int64), np.zeros(0, np.int32),
            np.full(1, -1, np.int32), np.zeros((steps, 1), np.float32),
            np.empty(capacity, np.int64), np.empty(capacity, np.int32), spiked, spiked.view(np.uint64),
            np.empty(engine.WORK_LEN, np.float32), np.zeros(1, np.int64))
        best = min(best, time.process_time() - cpu0)
    return best, n_spikes


def _brian2_network_ready(sim: BoardSimulator) -> None:
    """Peers start from rest: Brian2's standalone device cannot read a refractory state back."""
    sim.reset_network_state()


def time_brian2_cython(sim: BoardSimulator, durations: tuple[float, float]) -> dict[str, float]:
    """Brian2's cython target (runtime mode): compiled kernels, the step loop in Python.

    A first short run compiles (cached on disk).  Then each of two durations runs twice (the
    faster counts: a second code generation or a burst of other users' load is not the
    simulator's cost), and their difference is the cost per simulated second without network
    construction or code generation.
    """
    from emulator.brian2_reference import run_brian2

    first: dict[str, float] = {}
    run_brian2(sim, 0.01, target="cython", timings=first)
    runs = []
    for duration in durations:
        tries = []
        for _ in range(2):
            timings: dict[str, float] = {}
            run_brian2(sim, duration, target="cython", timings=timings)
            tries.append(timings)
        best = min(tries, key=lambda t: t["run_s"])
        runs.append(best)
        both = ", ".join(f"{t['run_s']:.2f}" for t in tries)
        print(f"brian2 cython, {duration} s: build {best['build_s']:.2f} s, run {best['run_s']:.2f} s (runs {both} s)")
    per_second = (runs[1]["run_s"] - runs[0]["run_s"]) / (durations[1] - durations[0])
    if per_second <= 0:  # noise swamped the difference: the longer run's own rate bounds it from above
        per_second = runs[1]["run_s"] / durations[1]
        print("brian2 cython: run-time difference not positive; using the longer run's time per second")
    print(f"brian2 cython: {per_second:.3f} s per simulated second (first run incl. compile "
          f"{first['run_s']:.1f} s, network construction {runs[1]['build_s']:.2f} s)")
    return {"run_s_per_board_s": per_second, "first_run_s": first["run_s"], "build_s": runs[1]["build_s"]}


def time_brian2_standalone(sim: BoardSimulator, seconds: float) -> dict[str, float]:
    """Brian2's C++ standalone device: the whole run in one compiled binary (one thread).

    Reports code generation + compilation (``make``) apart from the binary's simulation loop
    (``device._last_run_time``, what Brian2 itself reports as the run time).
    """
    import shutil
    import tempfile

    import brian2 as b2

    from emulator.brian2_reference import run_brian2

    directory = tempfile.mkdtemp(prefix="neurolab_brian2_standalone_")
    b2.set_device("cpp_standalone", directory=directory, build_on_run=True)
    try:
        timings: dict[str, float] = {}
        started = time.perf_counter()
        run_brian2(sim, seconds, timings=timings)
        total = time.perf_counter() - started
        device = b2.get_device()
        loop_s = float(device._last_run_time)
        result = {"run_s_per_board_s": loop_s / seconds, "make_s": float(device.timers["compile"]["make"]),
                  "binary_s": float(device.timers["run_binary"]), "total_s": total, "build_s": timings["build_s"]}
    finally:
        b2.device.reinit()
        b2.set_device("runtime")
        shutil.rmtree(directory, ignore_errors=True)
    print(f"brian2 cpp_standalone, {seconds} s: loop {loop_s:.3f} s, make {result['make_s']:.1f} s, "
          f"binary {result['binary_s']:.2f} s, everything {total:.1f} s")
    return result


def dynapsim_network(sim: BoardSimulator):
    """rockpool's DynapSim on the bench network: (module, mean synaptic jump it was matched to).

    Same neurons with the emulator's mismatch-bearing circuit currents (leak, gain, DC, spike
    threshold; refractory period through Iref = C_ref V_th / t_ref), the same connectivity as a
    dense recurrent matrix, the same dt.  DynapSim has one lumped synapse: it gets the AMPA
    synapse's time constant, and every CAM group becomes a signed weight in units of the mean
    AMPA jump (w = +-n_eff * J[type, target] / mean J_AMPA; GABA types negative), with Iscale set
    so that a weight of 1 charges the lumped synapse by that mean jump.  Inhibition therefore
    subtracts from the same current instead of shunting; the dynamics differ, the work does not:
    DynapSim's cost is a dense N x N product and the neuron update every step, whatever the rates.
    """
    from rockpool.devices.dynapse import DynapSim
    from rockpool.devices.dynapse.simulation.dynapsim import default_layout

    params = sim.parameters()
    routing = sim.routing()
    jump = params.syn_jump  # (4, N)
    j_ampa = float(jump[SynapseType.AMPA].mean())
    sign = np.array([-1.0, -1.0, 1.0, 1.0])  # GABA_B, GABA_A, NMDA, AMPA
    w = np.zeros((N_NEURONS, N_NEURONS), np.float32)
    counts = np.diff(routing.neuron_key_ptr)
    src = np.repeat(np.arange(N_NEURONS), counts)
    for s, key in zip(src, routing.neuron_keys, strict=True):
        lo, hi = routing.key_ptr[key], routing.key_ptr[key + 1]
        target, kind = routing.key_target[lo:hi], routing.key_type[lo:hi]
        np.add.at(w[s], target, sign[kind] * routing.key_weight[lo:hi] * jump[kind, target] / j_ampa)
    kappa = (default_layout["kappa_n"] + default_layout["kappa_p"]) / 2
    itau_syn = default_layout["C_syn"] * default_layout["Ut"] / (kappa * params.tau_syn[SynapseType.AMPA])
    common = dict(Idc=params.i_dc, Itau_mem=params.i_tau, Igain_mem=params.i_gain, Ispkthr=params.i_spk,
                  Iref=default_layout["C_ref"] * default_layout["Vth"] / (params.n_ref * sim.dt),
                  Itau_syn=itau_syn, dt=sim.dt)
    # charge per unit weight with Iscale = 1 A: one event on neuron 0, read the synapse one step on
    probe = DynapSim((N_NEURONS, N_NEURONS), has_rec=True, w_rec=np.zeros_like(w), Iscale=1.0, **common)
    x = np.zeros((1, 2, N_NEURONS), np.float32)
    x[0, 0, 0] = 1.0
    _, _, record = probe(x, record=True)
    charge_per_amp = float(np.asarray(record["isyn"])[0, 0, 0]) - float(probe.Io[0])
    module = DynapSim((N_NEURONS, N_NEURONS), has_rec=True, w_rec=w, Iscale=j_ampa / charge_per_amp, **common)
    return module, j_ampa


def time_rockpool(sim: BoardSimulator, seconds: float) -> dict[str, float]:
    """rockpool DynapSim (installed by the ``bench`` extra), jax-jitted, on the bench network."""
    import jax

    module, _ = dynapsim_network(sim)
    evolve = jax.jit(lambda data: module(data, record=False))
    n_steps = int(round(seconds / sim.dt))
    x = np.zeros((1, n_steps, N_NEURONS), np.float32)
    started = time.perf_counter()
    jax.block_until_ready(evolve(x)[0])  # compile (for this input length) and a first run
    first = time.perf_counter() - started
    best = float("inf")
    for _ in range(2):
        started = time.perf_counter()
        out = evolve(x)[0]
        jax.block_until_ready(out)
        best = min(best, time.perf_counter() - started)
    rate = float(np.asarray(out).sum()) / N_NEURONS / seconds
    print(f"rockpool {_rockpool_version()} DynapSim (jax {jax.__version__}, jit, dt {sim.dt}): {best:.2f} s for "
          f"{seconds} s (first call incl. compile {first:.1f} s), mean rate {rate:.1f} Hz")
    return {"run_s_per_board_s": best / seconds, "first_call_s": first, "mean_rate_hz": rate}


def _rockpool_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("rockpool")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.0, help="board time timed for the emulator")
    parser.add_argument("--repeats", type=int, default=5, help="emulator timings; the fastest counts")
    parser.add_argument("--brian2-seconds", type=float, nargs=2, default=(0.1, 0.5),
                        help="two durations for Brian2's cython target (their difference is timed)")
    parser.add_argument("--standalone-seconds", type=float, default=1.0, help="board time for C++ standalone")
    parser.add_argument("--rockpool-seconds", type=float, default=0.2)
    parser.add_argument("--skip-peers", action="store_true", help="time the emulator only")
    parser.add_argument("--no-fifo", dest="fifo", action="store_false",
                        help="do not time the emulator again at real-time priority (skipped anyway "
                             "for --seconds over 2)")
    parser.add_argument("--threads", type=int, default=0, help="EmulatorConfig.kernel_threads (0 = one per core)")
    args = parser.parse_args()
    if not args.skip_peers:
        missing = [name for name in ("rockpool", "jax") if importlib.util.find_spec(name) is None]
        if missing:  # say so before minutes of Brian2 builds, not as a traceback after them
            parser.error(f"the rockpool peer needs {', '.join(missing)}: pip install -e '.[bench]' "
                         "(or --skip-peers to time the emulator alone)")

    t0 = time.perf_counter()
    sim = build_board(threads=args.threads)
    routing = sim.routing()
    print(f"board built in {time.perf_counter() - t0:.2f} s: {N_NEURONS} neurons, "
          f"{int((sim.tables.cam_written).sum())} CAM entries, {routing.n_synapses} CAM groups")
    tuned = tune_rate(sim)
    print(f"tuned mean rate {tuned:.1f} Hz")
    load_before = os.getloadavg()[0]
    emu = time_emulator(sim, args.seconds, args.repeats)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # the emulator's, before the peers
    args.fifo = args.fifo and args.seconds <= 2.0  # longer runs would hold both cores too long
    fifo = time_emulator(sim, args.seconds, args.repeats, fifo=True) if args.fifo else None
    kernel_cpu_s, kernel_spikes = time_kernel(sim, int(round(args.seconds / sim.dt)), args.repeats)
    load_after = os.getloadavg()[0]
    wall = emu["wall_s"]
    emulator_per_second = wall / args.seconds
    kernel_ns = kernel_cpu_s / (args.seconds / sim.dt) / N_NEURONS * 1e9
    print(f"emulator: {wall:.3f} s wall (fastest of {args.repeats}, median {emu['wall_median_s']:.3f} s), "
          f"{emu['cpu_s']:.3f} s CPU, for {args.seconds} s board time ({args.seconds / wall:.1f}x real time) on "
          f"{emu['threads']} thread(s), mean rate {emu['rate_hz']:.1f} Hz, peak RSS {peak_mb:.0f} MB")
    if fifo is not None:
        kernels = ", ".join(f"{k:.4f}" for k in fifo["kernel_s"])
        print(f"at real-time priority (idle cores): {fifo['wall_s']:.4f} s wall (median {fifo['wall_median_s']:.4f} s)"
              f" = {args.seconds / fifo['wall_s']:.1f}x real time, {fifo['cpu_s']:.4f} s CPU, kernel CPU per "
              f"thread {kernels} s")
    elif args.fifo:
        print("real-time priority not allowed here (needs root or CAP_SYS_NICE): no idle-core timing")
    print(f"kernel alone, one thread: {kernel_cpu_s:.3f} s CPU for {args.seconds} s board time "
          f"({kernel_ns:.2f} ns per neuron and step, {kernel_spikes} spikes)")
    print(f"load average {load_before:.1f} before, {load_after:.1f} after, on {os.cpu_count()} CPUs "
          "(other users' work slows the wall times)")

    peers: dict[str, dict] = {}
    if not args.skip_peers:
        _brian2_network_ready(sim)
        peers["brian2_cython"] = time_brian2_cython(sim, tuple(args.brian2_seconds))
        peers["brian2_cpp_standalone"] = time_brian2_standalone(sim, args.standalone_seconds)
        peers["rockpool_dynapsim"] = time_rockpool(sim, args.rockpool_seconds)
        # the emulator again, right after the peers, so the ratio compares like with like
        again = time_emulator(sim, args.seconds, args.repeats)
        emulator_per_second = min(wall, again["wall_s"]) / args.seconds
    best_brian2 = min((peers[k]["run_s_per_board_s"] for k in ("brian2_cython", "brian2_cpp_standalone")
                       if k in peers), default=None)

    def ratio(peer_per_second: float | None) -> float | None:
        return None if peer_per_second is None else round(peer_per_second / emulator_per_second, 1)

    print(json.dumps({
        "realtime_factor": round(args.seconds / wall, 2),
        "realtime_factor_median": round(args.seconds / emu["wall_median_s"], 2),
        "realtime_factor_fifo": round(args.seconds / fifo["wall_s"], 2) if fifo else None,
        "realtime_factor_fifo_median": round(args.seconds / fifo["wall_median_s"], 2) if fifo else None,
        "cpu_s_per_board_s_fifo": round(fifo["cpu_s"] / args.seconds, 4) if fifo else None,
        "wall_s_per_board_s": round(emulator_per_second, 4),
        "cpu_s_per_board_s": round(emu["cpu_s"] / args.seconds, 4),
        "kernel_cpu_s_per_board_s": round(kernel_cpu_s / args.seconds, 4),
        "kernel_ns_per_neuron_step": round(kernel_ns, 3),
        "threads": emu["threads"],
        "vs_brian2_best": ratio(best_brian2),
        "vs_rockpool": ratio(peers["rockpool_dynapsim"]["run_s_per_board_s"]) if peers else None,
        "peers": {name: {k: round(v, 4) for k, v in numbers.items()} for name, numbers in peers.items()},
        "neurons": N_NEURONS,
        "synapses": int(sim.tables.cam_written.sum()),
        "mean_rate_hz": round(emu["rate_hz"], 1),
        "peak_mb": round(peak_mb, 1),
        "dt_s": sim.dt,
        "load_average": round(max(load_before, load_after), 2),
    }))


if __name__ == "__main__":
    main()
