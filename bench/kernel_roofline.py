"""The emulator kernel's physical limit on this CPU: the memory pattern of its neuron update.

Every neuron-step the update must read 21 float32 rows (8 of state, 13 of parameters) and write 7
state rows, ``engine.ROW`` floats apart, for all 4096 neurons; 344 KB of state and parameters do
not fit a 32 KB L1, so they stream from L2 every step.  This probe runs exactly that pattern
(4 blocks of 1024 neurons, the kernel's layout) with trivial arithmetic: its time per neuron is the
floor of any update with this layout, whatever the equations.  The bench then times the real
update passes (:mod:`emulator.kernel`) on the network of ``bench/emulator_speed.py`` for the ratio.

Usage: ``nice -n 10 .venv/bin/python bench/kernel_roofline.py``.  Ends with one JSON line.
Timings are CPU times (min of 7); other users' load still costs cache.
"""

from __future__ import annotations

import json
import time

import numba
import numpy as np

from emulator import kernel
from emulator.engine import N_PARAM, N_STATE, ROW, WORK_LEN

BLOCK = 1024
N_BLOCKS = 4
BYTES_PER_NEURON = (8 + 13) * 4 + 7 * 4


@numba.njit(fastmath=True)
def _stream(n_steps, st, pr):
    """21 row loads and 7 row stores per neuron, as the update's minimum traffic."""
    for _ in range(n_steps):
        for b in range(N_BLOCKS):
            s = st[b * BLOCK:]
            p = pr[b * BLOCK:]
            for j in range(BLOCK):
                a = (s[j] + s[ROW + j] + s[2 * ROW + j] + s[3 * ROW + j] + s[4 * ROW + j] + s[5 * ROW + j]
                     + s[6 * ROW + j] + s[7 * ROW + j])
                c = (p[j] + p[ROW + j] + p[2 * ROW + j] + p[3 * ROW + j] + p[4 * ROW + j] + p[5 * ROW + j]
                     + p[6 * ROW + j] + p[7 * ROW + j] + p[8 * ROW + j] + p[9 * ROW + j] + p[10 * ROW + j]
                     + p[11 * ROW + j] + p[12 * ROW + j])
                s[j] = a * np.float32(0.5)
                s[ROW + j] = c
                s[2 * ROW + j] = a + c
                s[3 * ROW + j] = a - c
                s[4 * ROW + j] = a * c
                s[5 * ROW + j] = c * np.float32(0.25)
                s[6 * ROW + j] = a * np.float32(0.125)


@numba.njit(fastmath=True)
def _update(n_steps, st, pr, work, spiked, i0, gain, offset, dt_over_tau, i_reset):
    """The kernel's two update passes over the board (no delivery)."""
    for _ in range(n_steps):
        for b in range(N_BLOCKS):
            lo = b * BLOCK
            n_large = kernel._coefficients_pass(st[lo:], pr[lo:], work, BLOCK, i0, gain, offset, dt_over_tau)
            kernel._membrane_pass(st[lo:], pr[lo:], work, spiked[lo:], BLOCK, i_reset, n_large)


def _ns_per_neuron(run, n_steps: int = 3000, repeats: int = 7) -> tuple[float, float]:
    run(2)
    times = []
    for _ in range(repeats):
        started = time.process_time()
        run(n_steps)
        times.append((time.process_time() - started) / n_steps / (N_BLOCKS * BLOCK) * 1e9)
    return min(times), float(np.median(times))


def main() -> None:
    from emulator_speed import build_board  # the bench network: its parameters and a running state

    sim = build_board(threads=1)
    sim.run(0.1)
    packed = sim._packed_parameters()
    st, pr = sim.state.buffer.copy(), packed.rows.copy()
    work, spiked = np.zeros(WORK_LEN, np.float32), np.zeros(N_BLOCKS * BLOCK, np.uint8)
    scalars = tuple(np.float32(x) for x in (packed.i0, packed.feedback_gain, packed.fb_offset,
                                            packed.dt_over_tau_per_amp, packed.i_reset))
    update, update_median = _ns_per_neuron(lambda n: _update(n, st, pr, work, spiked, *scalars))
    floor, floor_median = _ns_per_neuron(lambda n: _stream(n, np.full(N_STATE * ROW, 1e-12, np.float32),
                                                           np.full(N_PARAM * ROW, 1e-3, np.float32)))
    print(f"memory pattern (21 row loads + 7 row stores per neuron): {floor:.3f} ns per neuron "
          f"(median {floor_median:.3f}), {BYTES_PER_NEURON / floor:.0f} B/ns")
    print(f"the kernel's update passes: {update:.3f} ns per neuron (median {update_median:.3f}), "
          f"{floor / update:.0%} of the memory limit")
    print(json.dumps({"floor_ns_per_neuron_step": round(floor, 3), "update_ns_per_neuron_step": round(update, 3),
                      "fraction_of_limit": round(floor / update, 3), "bytes_per_neuron_step": BYTES_PER_NEURON}))


if __name__ == "__main__":
    main()
