"""Speed and memory of the DYNAP-SE1 emulator on a full board, against Brian2 (and rockpool if installed).

The network: all 4096 neurons, all 64 CAM entries of every neuron used (random sources on the
same chip, all four synapse types), SRAM cell 0 to the host and cell 1 back to the own chip's four
cores, mismatch on, dt = 0.1 ms.  The DC bias is adjusted in a few short runs until the mean rate
is about 20 Hz.  Then 1 s of board time is timed (after the kernel is compiled/loaded).

Brian2 runs the identical network (``emulator.brian2_reference.run_brian2``, numpy target) for two
durations; the difference of the two ``Network.run`` times gives its cost per simulated second
without network construction and code generation.  rockpool's DynapSim is timed only when the ``bench``
extra is installed; it has one lumped synapse, so the comparison uses a dense recurrent weight
matrix of the same fan-in.

Usage: ``.venv/bin/python bench/emulator_speed.py [--brian2-seconds 0.1 0.3]``.
The last printed line is one JSON object.  Timings on a shared 2-core machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import numpy as np

from drivers.dynapse1.bias_sets import apply_bias_set
from drivers.dynapse1.topology import N_CHIPS, N_NEURONS, N_NEURONS_PER_CHIP, SynapseType
from emulator import engine
from emulator.config import EmulatorConfig
from emulator.simulator import BoardSimulator

SYNAPSE_BIASES = {
    "NPDPIE_THR_F_P": (2, 80), "PS_WEIGHT_EXC_F_N": (5, 60),
    "NPDPIE_THR_S_P": (2, 80), "PS_WEIGHT_EXC_S_N": (5, 60),
    "NPDPII_THR_F_P": (2, 80), "PS_WEIGHT_INH_F_N": (5, 60),
    "NPDPII_THR_S_P": (2, 80), "PS_WEIGHT_INH_S_N": (5, 60),
}
TYPE_SHARES = {SynapseType.AMPA: 0.5, SynapseType.NMDA: 0.15, SynapseType.GABA_A: 0.2, SynapseType.GABA_B: 0.15}


def build_board(seed: int = 1, threads: int = 0) -> BoardSimulator:
    sim = BoardSimulator("BENCH001", EmulatorConfig(kernel_threads=threads))
    apply_bias_set(sim, "samna_recommended", overrides={**SYNAPSE_BIASES, "IF_DC_P": (5, 40)})
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


def time_emulator(sim: BoardSimulator, seconds: float = 1.0, repeats: int = 5) -> dict[str, float]:
    """Fastest wall time (and its CPU time) of ``sim.run(seconds)`` over ``repeats`` runs."""
    sim.run(0.05)  # compile / load the cached kernel, build routing and delivery tables
    best: dict[str, float] = {}
    for _ in range(repeats):
        wall0, cpu0 = time.perf_counter(), time.process_time()
        sim.run(seconds)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        if not best or wall < best["wall_s"]:
            best = {"wall_s": wall, "cpu_s": cpu, "rate_hz": len(sim.last_spikes) / N_NEURONS / seconds}
    best["threads"] = len(sim._partitions(int(seconds / sim.dt), noise_on=False))
    return best


def time_kernel(sim: BoardSimulator, steps: int = 10_000, repeats: int = 5) -> tuple[float, int]:
    """Fastest CPU time of ``engine.simulate`` alone for ``steps`` steps of the whole board, one thread.

    Runs on a copy of the state, without external inputs or monitors.  Returns (seconds, spikes).
    """
    packed, delivery, routing = sim._packed_parameters(), sim._delivery_table(), sim.routing()
    block_start = np.arange(N_CHIPS, dtype=np.int64) * N_NEURONS_PER_CHIP
    spiked = np.zeros(N_NEURONS, np.uint8)
    capacity = steps * N_NEURONS // 100  # a mean rate of 100 Hz
    best, n_spikes = float("inf"), 0
    for _ in range(repeats):
        state = sim.state.buffer.copy()
        cpu0 = time.process_time()
        n_spikes, _ = engine.simulate(
            steps, block_start, N_NEURONS_PER_CHIP, packed.i0, packed.i_reset, packed.feedback_gain,
            packed.fb_offset, packed.dt_over_tau_per_amp, state, packed.rows, 0.0, 0.0, 0,
            routing.key_ptr, delivery.entry, delivery.weight_of_count, delivery.jump,
            routing.neuron_key_ptr, routing.neuron_keys, np.zeros(0, np.int64), np.zeros(0, np.int32),
            np.full(1, -1, np.int32), np.zeros((steps, 1), np.float32),
            np.empty(capacity, np.int64), np.empty(capacity, np.int32), spiked, spiked.view(np.uint64))
        best = min(best, time.process_time() - cpu0)
    return best, n_spikes


def time_brian2(sim: BoardSimulator, durations: tuple[float, float]) -> float | None:
    from emulator.brian2_reference import run_brian2

    runs = []
    for duration in durations:
        timings: dict[str, float] = {}
        run_brian2(sim, duration, timings=timings)
        runs.append(timings["run_s"])
        print(f"brian2 (numpy target), {duration} s: build {timings['build_s']:.2f} s, run {timings['run_s']:.2f} s")
    # The difference removes the fixed code-generation cost inside Network.run.
    per_second = max(runs[1] - runs[0], 1e-9) / (durations[1] - durations[0])
    print(f"brian2: {per_second:.2f} s per simulated second (run time, construction excluded)")
    return per_second


def time_rockpool(sim: BoardSimulator, seconds: float) -> float | None:
    try:
        import jax
        from rockpool.devices.dynapse import DynapSim
    except Exception as exc:  # the optional `bench` extra is not installed
        print(f"rockpool not available ({type(exc).__name__}: {exc}); vs_rockpool = null")
        return None
    dt = sim.dt
    n_steps = int(seconds / dt)
    routing = sim.routing()
    w = np.zeros((N_NEURONS, N_NEURONS), np.float32)  # same fan-in as the CAMs, one lumped synapse
    counts = np.diff(routing.neuron_key_ptr)
    src = np.repeat(np.arange(N_NEURONS), counts)
    for s, key in zip(src, routing.neuron_keys, strict=True):
        lo, hi = routing.key_ptr[key], routing.key_ptr[key + 1]
        w[s, routing.key_target[lo:hi]] += routing.key_weight[lo:hi]
    mod = DynapSim((N_NEURONS, N_NEURONS), has_rec=True, dt=dt, percent_mismatch=0.3, w_rec=w * 1e-3)
    evolve = jax.jit(mod)
    x = np.zeros((1, n_steps, N_NEURONS), np.float32)
    evolve(x[:, :10])  # compile
    start = time.perf_counter()
    out = evolve(x)
    jax.block_until_ready(out[0])
    wall = time.perf_counter() - start
    print(f"rockpool DynapSim (jit, dt {dt}): {wall:.2f} s for {seconds} s")
    return wall / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.0, help="board time timed for the emulator")
    parser.add_argument("--repeats", type=int, default=5, help="emulator timings; the fastest counts")
    parser.add_argument("--brian2-seconds", type=float, nargs=2, default=(0.1, 0.3))
    parser.add_argument("--rockpool-seconds", type=float, default=0.2)
    parser.add_argument("--skip-peers", action="store_true", help="time the emulator only")
    parser.add_argument("--threads", type=int, default=0, help="EmulatorConfig.kernel_threads (0 = one per core)")
    args = parser.parse_args()

    t0 = time.perf_counter()
    sim = build_board(threads=args.threads)
    routing = sim.routing()
    print(f"board built in {time.perf_counter() - t0:.2f} s: {N_NEURONS} neurons, "
          f"{int((sim.tables.cam_written).sum())} CAM entries, {routing.n_synapses} CAM groups")
    tuned = tune_rate(sim)
    print(f"tuned mean rate {tuned:.1f} Hz")
    load_before = os.getloadavg()[0]
    emu = time_emulator(sim, args.seconds, args.repeats)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # the emulator's, before Brian2
    kernel_cpu_s, kernel_spikes = time_kernel(sim, int(round(args.seconds / sim.dt)), args.repeats)
    load_after = os.getloadavg()[0]
    wall = emu["wall_s"]
    emulator_per_second = wall / args.seconds
    kernel_ns = kernel_cpu_s / (args.seconds / sim.dt) / N_NEURONS * 1e9
    print(f"emulator: {wall:.3f} s wall (fastest of {args.repeats}), {emu['cpu_s']:.3f} s CPU, for {args.seconds} s "
          f"board time ({args.seconds / wall:.1f}x real time) on {emu['threads']} thread(s), mean rate "
          f"{emu['rate_hz']:.1f} Hz, peak RSS {peak_mb:.0f} MB")
    print(f"kernel alone, one thread: {kernel_cpu_s:.3f} s CPU for {args.seconds} s board time "
          f"({kernel_ns:.2f} ns per neuron and step, {kernel_spikes} spikes)")
    print(f"load average {load_before:.1f} before, {load_after:.1f} after, on {os.cpu_count()} CPUs "
          "(other users' work slows the wall times)")

    vs_brian2 = vs_rockpool = None
    if not args.skip_peers:
        brian2_per_second = time_brian2(sim, tuple(args.brian2_seconds))
        if brian2_per_second is not None:
            vs_brian2 = brian2_per_second / emulator_per_second
        rockpool_per_second = time_rockpool(sim, args.rockpool_seconds)
        if rockpool_per_second is not None:
            vs_rockpool = rockpool_per_second / emulator_per_second
    print(json.dumps({
        "realtime_factor": round(args.seconds / wall, 2),
        "wall_s_per_board_s": round(emulator_per_second, 4),
        "cpu_s_per_board_s": round(emu["cpu_s"] / args.seconds, 4),
        "kernel_cpu_s_per_board_s": round(kernel_cpu_s / args.seconds, 4),
        "kernel_ns_per_neuron_step": round(kernel_ns, 3),
        "threads": emu["threads"],
        "vs_brian2": None if vs_brian2 is None else round(vs_brian2, 1),
        "vs_rockpool": None if vs_rockpool is None else round(vs_rockpool, 1),
        "neurons": N_NEURONS,
        "synapses": int(sim.tables.cam_written.sum()),
        "mean_rate_hz": round(emu["rate_hz"], 1),
        "peak_mb": round(peak_mb, 1),
        "dt_s": sim.dt,
        "load_average": round(max(load_before, load_after), 2),
    }))


if __name__ == "__main__":
    main()
