"""The float32 kernel's numerics, its packed tables, and parallel chip groups (exactly one thread's result)."""

from __future__ import annotations

import dataclasses
import os
import shutil

import numpy as np
import pytest

from drivers.dynapse1.bias_sets import apply_bias_set
from drivers.dynapse1.topology import SynapseType
from emulator import engine
from emulator.config import EmulatorConfig, MismatchConfig
from emulator.partition import assign_partitions, chip_groups
from emulator.simulator import BoardSimulator, KernelScratch
from tests.small_networks import wire_recurrent_chips

AMPA = SynapseType.AMPA


def test_relaxation_factors_match_float64_over_the_whole_range():
    x = np.concatenate([-np.logspace(-8, np.log10(87), 4000), [0.0], np.logspace(-8, np.log10(80), 4000)])
    x = x.astype(np.float32)
    e, phi = np.array([engine.relax_factors(v) for v in x], dtype=np.float64).T
    x64 = x.astype(np.float64)
    exact_phi = np.where(x64 == 0, 1.0, np.expm1(x64) / np.where(x64 == 0, 1.0, x64))
    assert np.max(np.abs(e / np.exp(x64) - 1)) < 5e-7
    assert np.max(np.abs(phi / exact_phi - 1)) < 5e-7  # no cancellation near 0
    small = np.abs(x) < engine.SMALL_STEP
    e_small, phi_small = np.array([engine.small_relax_factors(v) for v in x[small]], dtype=np.float64).T
    assert np.max(np.abs(e_small / e[small] - 1)) < 2e-7 and np.max(np.abs(phi_small / phi[small] - 1)) < 2e-7
    # clipped beyond float32's range instead of overflowing
    assert np.isfinite(engine.relax_factors(np.float32(200.0))).all()
    assert engine.relax_factors(np.float32(-200.0))[0] < 1e-37


def test_state_view_is_the_kernel_buffer():
    sim = BoardSimulator("KERNEL01", EmulatorConfig.ideal())
    values = sim.state.values
    assert values.shape == (4096, engine.N_STATE) and values.dtype == np.float32
    sim.state.i_syn[7, AMPA] = 1e-12
    assert sim.state.buffer[(engine.S_SYN + AMPA) * engine.ROW + 7] == np.float32(1e-12)
    copy = sim.state.copy()
    sim.state.i_mem[:] = 2e-12
    assert copy.i_mem[0] == np.float32(sim.config.circuit.i0)


def test_pack_parameters_refuses_what_the_kernel_cannot_represent():
    sim = BoardSimulator("KERNEL02", EmulatorConfig())
    params = sim.parameters()
    packed = engine.pack_parameters(params)
    assert packed.rows.dtype == np.float32 and len(packed.rows) == engine.N_PARAM * engine.ROW
    onset = params.i_feedback_onset.copy()
    onset[5] *= 1.1
    with pytest.raises(ValueError, match="feedback offset"):
        engine.pack_parameters(dataclasses.replace(params, i_feedback_onset=onset))
    tau_mem = params.tau_mem.copy()
    tau_mem[9] *= 2
    with pytest.raises(ValueError, match="tau_mem"):
        engine.pack_parameters(dataclasses.replace(params, tau_mem=tau_mem))


def test_delivery_table_reproduces_weight_times_jump():
    sim = BoardSimulator("KERNEL03", EmulatorConfig())
    for k in range(12):  # 12 entries of one neuron on one source: a saturated CAM count
        sim.write_cam(1, 300, k, 2, 17, AMPA)
    sim.write_cam(1, 301, 0, 2, 17, SynapseType.GABA_A)
    sim.write_sram(1, 2 * 256 + 17, 1, 2, 0, 0, 0, 0, 15)  # chip 1 (core 2, neuron 17) -> its own chip, all cores
    sim.write_sram(0, 0, 1, 0, 0, 0, 0, 0, 15)  # (0, 0) on chip 0: every cleared CAM entry there listens
    routing, params = sim.routing(), sim.parameters()
    table = engine.delivery_table(routing, params)
    entry = table.entry.astype(np.int64)
    syn_type, count, local = entry >> 14, ((entry >> 8) & 63) + 1, entry & 255
    assert np.array_equal(syn_type, routing.key_type) and np.array_equal(count, routing.key_count)
    assert np.array_equal(local, routing.key_target % 256)
    jump = table.jump.reshape(4, engine.ROW)[syn_type, routing.key_target]
    amount = table.weight_of_count[count - 1] * jump
    expected = routing.key_weight * params.syn_jump[routing.key_type, routing.key_target]
    assert np.allclose(amount, expected, rtol=1e-6)
    assert 12 in set(count.tolist())
    # a spike's list is its keys' entries in walk order (key order, then entry order)
    for gid in (1024 + 2 * 256 + 17, 0, 300, 4095):
        keys = routing.neuron_keys[routing.neuron_key_ptr[gid]:routing.neuron_key_ptr[gid + 1]]
        walk = np.concatenate([np.arange(routing.key_ptr[k], routing.key_ptr[k + 1]) for k in keys] + [[]]).astype(int)
        mine = table.spike_entry[table.spike_ptr[gid]:table.spike_ptr[gid + 1]].astype(np.int64)
        assert np.array_equal(mine >> 18, routing.key_type[walk]) and np.array_equal(mine & 4095, routing.key_target[walk])
        assert np.array_equal(((mine >> 12) & 63) + 1, routing.key_count[walk])
    assert len(table.spike_entry) == table.spike_ptr[-1] > 1000 and table.spike_ptr[1] > 1000


def test_chip_groups_follow_the_routes_between_chips():
    sim = BoardSimulator("KERNEL04", EmulatorConfig.ideal())
    assert chip_groups(sim.routing()) == [[0], [1], [2], [3]]  # default SRAM: host routes only
    sim.write_sram(1, 10, 1, 0, 1, 1, 0, 0, 1)  # chip 1 -> one hop west = chip 0
    sim.write_sram(3, 10, 1, 0, 1, 1, 0, 0, 1)  # chip 3 -> chip 2
    assert chip_groups(sim.routing()) == [[0, 1], [2, 3]]
    sim.write_sram(0, 10, 1, 0, 0, 0, 1, 1, 1)  # chip 0 -> one hop south = chip 2: everything joins
    assert chip_groups(sim.routing()) == [[0, 1, 2, 3]]
    assert assign_partitions([[0], [1], [2], [3]], 2) == [[0, 2], [1, 3]]
    assert assign_partitions([[0, 1, 2], [3]], 2) == [[0, 1, 2], [3]]
    assert assign_partitions([[0], [1], [2], [3]], 8) == [[0], [1], [2], [3]]
    with pytest.raises(ValueError, match="n_threads"):
        assign_partitions([[0]], 0)


def _busy_board(threads: int, cross_route: bool = True) -> BoardSimulator:
    """Recurrent networks on every chip, one route from chip 1 into chip 0 (``cross_route``),
    Poisson and spike-generator input, monitors on two chips."""
    sim = BoardSimulator("KERNEL05", EmulatorConfig(kernel_threads=threads))
    wire_recurrent_chips(sim)
    if cross_route:
        sim.write_sram(1, 5, 2, 0, 1, 1, 0, 0, 15)  # chip 1 neuron 5 also reaches chip 0
    sim.set_poisson_rate(2, 7, 400.0)
    sim.set_poisson_running(True)
    sim.load_spike_generator([(3, 9, 15, 700.0)], repeat=True)
    sim.start_spike_generator()
    sim.select_monitor(0, 1, 3)
    sim.select_monitor(3, 2, 8)
    return sim


def test_parallel_chip_groups_give_exactly_the_one_thread_result():
    one, two = _busy_board(1), _busy_board(2)
    assert one._partitions(1000, noise_on=False) == [[0, 1, 2, 3]]
    assert two._partitions(1000, noise_on=False) == [[0, 1], [2, 3]]
    for duration in (0.1, 0.0015, 0.2):  # the short run takes the one-thread path
        a, b = one.run(duration), two.run(duration)
        assert np.array_equal(a.timestamp_us, b.timestamp_us) and np.array_equal(a.global_id, b.global_id)
        assert np.array_equal(one.last_spikes.global_id, two.last_spikes.global_id)
    assert len(one.last_spikes) > 1000
    assert np.array_equal(one.state.buffer, two.state.buffer)
    for chip, core in ((0, 1), (3, 2)):
        (t1, v1), (t2, v2) = one.read_membrane(chip, core), two.read_membrane(chip, core)
        assert len(t1) == 3015 and np.array_equal(t1, t2) and np.array_equal(v1, v2)


def test_partitions_of_chips_that_are_not_neighbours_give_the_one_thread_result():
    # every chip its own group: two threads get chips [0, 2] and [1, 3], whose private state
    # copies are written back column by column
    one, two = _busy_board(1, cross_route=False), _busy_board(2, cross_route=False)
    assert two._partitions(1000, noise_on=False) == [[0, 2], [1, 3]]
    a, b = one.run(0.1), two.run(0.1)
    assert len(a) > 1000
    assert np.array_equal(a.timestamp_us, b.timestamp_us) and np.array_equal(a.global_id, b.global_id)
    assert np.array_equal(one.state.buffer, two.state.buffer)


def test_each_threads_kernel_scratch_has_pages_of_its_own():
    # two threads writing neighbouring cache lines made each 3x slower (docs/decisions.md)
    first, second = KernelScratch(), KernelScratch()
    first.add_private_state()
    second.add_private_state()
    owned = [[first.spiked, first.work, first.touch_sink], [first.state],
             [second.spiked, second.work, second.touch_sink], [second.state]]
    spans = [(min(a.ctypes.data for a in group), max(a.ctypes.data + a.nbytes for a in group)) for group in owned]
    assert all(start % 4096 == 0 for start, _ in spans)
    for i, (start_i, end_i) in enumerate(spans):
        for start_j, end_j in spans[i + 1 :]:
            assert start_j >= end_i + 4096 or start_i >= end_j + 4096  # a free page between them
    assert first.spiked.nbytes == 4096 and first.work.shape == (engine.WORK_LEN,) and first.touch_sink.shape == (1,)
    assert first.state.shape == (engine.N_STATE * engine.ROW,)


def test_noise_runs_on_one_thread_and_kernel_threads_is_validated():
    sim = BoardSimulator("KERNEL06", EmulatorConfig(kernel_threads=4, mismatch=MismatchConfig(noise_std_a=1e-12)))
    assert sim._partitions(1000, noise_on=True) == [[0, 1, 2, 3]]
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="kernel_threads"):
            EmulatorConfig(kernel_threads=bad)


def test_spikes_routed_to_keys_nobody_listens_to():
    """SRAM routes into the grid but no CAM entry listening: the routing table has no entries."""
    sim = BoardSimulator("KERNEL07", EmulatorConfig(cleared_cam_listens_to_address_zero=False))
    apply_bias_set(sim, "samna_recommended", overrides={"IF_DC_P": (4, 100)})
    for chip in range(4):
        sim.write_sram(chip, 3, 1, 0, 0, 0, 0, 0, 15)
    assert len(sim.routing().key_target) == 0 and len(sim.routing().neuron_keys) == 16
    sim.run(0.05)
    assert len(sim.last_spikes) > 1000 and np.all(sim.state.i_syn == 0)


def _bench_like_run(kernel, sim: BoardSimulator, steps: int):
    """One partition of all four chips through ``kernel`` on a copy of the state."""
    from drivers.dynapse1.topology import N_NEURONS_PER_CHIP

    packed, delivery = sim._packed_parameters(), sim._delivery_table()
    state = sim.state.buffer.copy()
    spiked = np.zeros(4096, np.uint8)
    spike_step, spike_gid = np.zeros(steps * 200, np.int64), np.zeros(steps * 200, np.int32)
    monitor_out = np.zeros((steps, 2), np.float32)
    n, done = kernel(steps, np.arange(4, dtype=np.int64) * N_NEURONS_PER_CHIP, N_NEURONS_PER_CHIP, packed.i0,
                     packed.i_reset, packed.feedback_gain, packed.fb_offset, packed.dt_over_tau_per_amp, state,
                     packed.rows, delivery.key_ptr, delivery.entry, delivery.weight_of_count, delivery.jump,
                     delivery.spike_ptr, delivery.spike_entry, np.array([3, 3, 40], np.int64),
                     np.array([5, 70, 5], np.int32), np.array([10, 3000], np.int32), monitor_out,
                     spike_step, spike_gid, spiked, spiked.view(np.uint64), np.zeros(engine.WORK_LEN, np.float32),
                     np.zeros(1, np.int64))
    return n, done, state, spike_step[:n], spike_gid[:n], monitor_out


@pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None, reason="no C compiler to link the library")
def test_kernel_library_computes_what_the_jit_kernel_computes():
    """The shared library (no numba in the process) against numba's JIT, bit for bit."""
    from emulator import kernel, kernel_library

    library = kernel_library.quiet_kernel()
    assert library is not kernel.simulate_quiet, "the library could not be built or loaded here"
    sim = _busy_board(1)
    sim.run(0.02)
    a = _bench_like_run(library, sim, 400)
    b = _bench_like_run(kernel.simulate_quiet, sim, 400)
    assert a[0] > 50 and a[0] == b[0] and a[1] == b[1] == 400
    for x, y in zip(a[2:], b[2:], strict=True):
        assert np.array_equal(x, y)
    with pytest.raises(TypeError, match="st must be a writeable C-contiguous float32"):
        packed = sim._packed_parameters()
        library(1, np.zeros(1, np.int64), 1, 0.0, 0.0, 0.0, 0.0, 0.0, sim.state.buffer.astype(np.float64),
                packed.rows, *([np.zeros(1)] * 15), np.zeros(1, np.int64))


def test_emulator_process_runs_without_numba():
    """The board simulator loads the kernel library and never imports numba or llvmlite."""
    import subprocess
    import sys

    code = ("import sys\nfrom emulator.simulator import BoardSimulator\nfrom emulator.config import EmulatorConfig\n"
            "sim = BoardSimulator('NONUMBA1', EmulatorConfig(kernel_threads=2))\n"
            "from drivers.dynapse1.bias_sets import apply_bias_set\n"
            "apply_bias_set(sim, 'samna_recommended', overrides={'IF_DC_P': (4, 100)})\n"
            "sim.run(0.05)\nassert len(sim.last_spikes) > 1000, len(sim.last_spikes)\n"
            "print(sorted(m for m in ('numba', 'llvmlite') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_kernel_library_falls_back_to_the_jit_kernel_when_it_cannot_be_built(monkeypatch, tmp_path):
    from emulator import kernel, kernel_library

    def no_compiler(path, timeout_s=900.0):
        raise RuntimeError("building the kernel library failed (1): cc: not found")

    monkeypatch.setenv("NEUROLAB_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setattr(kernel_library, "build_library", no_compiler)
    monkeypatch.setattr(kernel_library, "_loaded", None)
    monkeypatch.setattr(kernel_library, "_warned", False)
    with pytest.warns(RuntimeWarning, match="cc: not found"):
        assert kernel_library.quiet_kernel() is kernel.simulate_quiet
    (tmp_path / "x.so").write_bytes(b"not an ELF file")
    with pytest.raises(OSError):
        kernel_library._load(tmp_path / "x.so")


def test_kernel_library_build_refuses_without_a_compiler_and_remembers_a_failure(monkeypatch, tmp_path):
    from emulator import kernel_library

    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(RuntimeError, match="no C compiler"):
        kernel_library.build_library(tmp_path / "kernel-x.so")
    monkeypatch.setenv("CC", "cc")
    (tmp_path / "kernel-y.failed").write_text("(1): linker error")
    if shutil.which("cc") is not None:
        with pytest.raises(RuntimeError, match="failed before .* linker error"):
            kernel_library.build_library(tmp_path / "kernel-y.so")
