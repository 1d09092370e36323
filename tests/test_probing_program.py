"""The one spike-generator program builder, its capacity, and the one home of the circuit constants."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.dynapse1 import spikegen_words as sg
from drivers.dynapse1.board_api import SpikeGenEvent
from drivers.dynapse1.circuit import NOMINAL_CIRCUIT
from drivers.dynapse1.netlist import InputAddress
from drivers.dynapse1.spikes import SpikeEvents
from emulator.config import EmulatorConfig
from emulator.stimulus import SpikeGenerator
from neurolab_gui.core.conversion.mapping import CircuitModel
from neurolab_gui.core.probing.program import GENERATOR_CAPACITY, run_program, spike_program, trains_program
from neurolab_gui.core.session_stimulus import StimulusController


class RecordingBoard:
    """Records the generator calls a probe makes; ``read_events`` may fail on purpose."""

    def __init__(self, fail_read: bool = False) -> None:
        self.calls: list[str] = []
        self.programs: list[list[SpikeGenEvent]] = []
        self.fail_read = fail_read

    def stop_spike_generator(self) -> None:
        self.calls.append("stop")

    def reset_timestamps(self) -> None:
        self.calls.append("reset")

    def load_spike_generator(self, events, repeat=False) -> None:
        self.calls.append("load")
        self.programs.append(list(events))

    def start_spike_generator(self) -> None:
        self.calls.append("start")

    def read_events(self, duration_s: float) -> SpikeEvents:
        self.calls.append("read")
        if self.fail_read:
            raise OSError("unplugged")
        return SpikeEvents()


def test_capacity_is_the_drivers_one():
    assert GENERATOR_CAPACITY == sg.MAX_EVENTS == 0x7FFF  # the cAER generator script's 2^15 - 1


def test_program_sorts_rounds_absolute_times_and_keeps_order_of_ties():
    a, b = InputAddress(0, 1), InputAddress(0, 2)
    program = spike_program([30.4, 10.0, 10.0, 0.6], [1, 0, 1, 0], [a, b], [2, 4])
    assert [(e.source, e.core_mask, e.isi_us) for e in program] == [(a, 2, 1.0), (a, 2, 9.0), (b, 4, 0.0), (b, 4, 20.0)]


def test_a_long_regular_train_does_not_drift():
    step = 1e6 / 900.0  # 1111.1 µs: the delays alternate so that the absolute times stay on the grid
    program = spike_program(np.arange(2000) * step, np.zeros(2000, int), [InputAddress(0, 1)], [1])
    t = np.cumsum([e.isi_us for e in program])
    assert np.array_equal(t, np.rint(np.arange(2000) * step))


@pytest.mark.parametrize("bad", [[-1.0], [np.nan], [np.inf]])
def test_program_refuses_bad_times(bad):
    with pytest.raises(ValueError, match="finite and not negative"):
        spike_program(bad, [0], [InputAddress(0, 1)], [1])


def test_program_refuses_more_than_the_generator_holds():
    n = GENERATOR_CAPACITY + 1
    with pytest.raises(ValueError, match=f"{n} spike-generator events; the FPGA holds {GENERATOR_CAPACITY}"):
        spike_program(np.arange(n, dtype=float), np.zeros(n, int), [InputAddress(0, 1)], [1])
    assert len(spike_program(np.arange(n - 1, dtype=float), np.zeros(n - 1, int), [InputAddress(0, 1)], [1])) == n - 1


def test_trains_program_of_no_spikes_is_empty():
    assert trains_program([], [InputAddress(0, 1)], [1]) == []


def test_run_program_stops_the_generator_also_when_reading_fails():
    board = RecordingBoard(fail_read=True)
    with pytest.raises(OSError):
        run_program(board, spike_program([0.0], [0], [InputAddress(0, 1)], [1]), 0.1)
    assert board.calls == ["stop", "reset", "load", "start", "read", "stop"]


def test_session_stimulus_builds_with_the_one_builder_and_refuses_long_trains_before_sending():
    board = RecordingBoard()
    logged: list[SpikeEvents] = []
    stim = StimulusController(lambda: board, lambda: 5_000, logged.append)
    n = stim.load_regular_train(0, [1, 2, 3], core_mask=2, rate_hz=300.0, duration_s=1.0)
    assert n == 900 and len(board.programs[0]) == 900
    sent_us = np.cumsum([e.isi_us for e in board.programs[0]])
    stim.start_spike_generator()
    assert np.array_equal(logged[0].timestamp_us - 5_000, sent_us)  # the log says what the program plays
    with pytest.raises(ValueError, match="the FPGA holds 32767"):
        stim.load_regular_train(0, [1, 2, 3, 4], core_mask=2, rate_hz=1000.0, duration_s=9.0)
    assert len(board.programs) == 1  # nothing was sent


def test_emulator_generator_refuses_what_the_driver_never_sends():
    with pytest.raises(ValueError, match=f"at most {sg.MAX_EVENTS} events"):
        SpikeGenerator().load([(0, 1, 1, 1.0)] * (sg.MAX_EVENTS + 1))


def test_conversion_and_emulator_read_the_same_circuit_constants():
    emulator = EmulatorConfig()
    assert emulator.circuit == NOMINAL_CIRCUIT
    assert CircuitModel() == CircuitModel.from_circuit(emulator.circuit, emulator.bias_scale)
    # the spike threshold the conversion computes the copy gain with is the emulator's
    assert CircuitModel().i_spike_threshold == emulator.circuit.i_spike_threshold == 0.6e-9


def test_a_huge_regular_train_is_refused_before_any_spike_time_is_built():
    """The panel's maxima (100 kHz, 600 s, 256 sources) ask for 15.36e9 events: the count is checked
    first, so the refusal costs no memory (it used to build GBs of times, or raise MemoryError)."""
    import tracemalloc

    board = RecordingBoard()
    stim = StimulusController(lambda: board, lambda: 0, lambda events: None)
    tracemalloc.start()
    try:
        for sources in ([0], list(range(256))):
            n = 60_000_000 * len(sources)
            with pytest.raises(ValueError, match=f"the program needs {n} spike-generator events; the FPGA holds 32767"):
                stim.load_regular_train(0, sources, core_mask=1, rate_hz=100_000.0, duration_s=600.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000  # bytes: no array of the train's length was built
    assert board.programs == []  # nothing was sent


def _played(program: list[SpikeGenEvent], repeat: bool) -> SpikeGenerator:
    """The emulator's own generator loaded with ``program`` (as the emulated board loads it) and started at 0."""
    generator = SpikeGenerator()
    generator.load([(e.source.chip, e.source.neuron, e.core_mask, e.isi_us) for e in program], repeat)
    generator.start(0.0)
    return generator


@pytest.mark.parametrize(("sources", "rate_hz", "duration_s"), [([0, 1, 2, 3], 100.0, 0.01), ([0], 100.0, 1.0),
                                                                ([0, 1], 50.0, 2.0), ([0], 100.0, 0.01), ([5, 6, 7], 900.0, 0.05)])
def test_a_repeating_train_keeps_its_rate_across_the_wrap(sources, rate_hz, duration_s):
    """The generator counts the first event's ISI from the last event at every wrap: the loop must last
    the train (4 sources at 100 Hz played 133 Hz; 1 source a double spike), and the first spike fires
    at Start (it fired one step late)."""
    board = RecordingBoard()
    stim = StimulusController(lambda: board, lambda: 0, lambda events: None)
    stim.load_regular_train(0, sources, core_mask=1, rate_hz=rate_hz, duration_s=duration_s, repeat=True)
    generator = _played(board.programs[0], repeat=True)
    span_s = 5 * max(duration_s, 0.1)  # several wraps
    t, index = generator.event_times(0.0, span_s)
    spikes = generator.core_mask[index] != 0  # the loop's closing dummy event reaches no core
    t, index = t[spikes], index[spikes]
    assert t[0] == 0.0 and len(np.unique(generator.neuron)) == len(sources)
    for neuron in sources:
        own = t[generator.neuron[index] == neuron]
        isi = np.diff(own)
        assert np.allclose(isi, 1.0 / rate_hz, rtol=0.01), (neuron, isi.min(), isi.max())  # no zero ISI at the wrap
        assert abs(len(own) / span_s - rate_hz) <= 0.01 * rate_hz + 1 / span_s


def test_a_repeating_train_without_a_loop_is_refused_at_load():
    """A train whose loop rounds to 0 µs would replay infinitely often: refused before anything is sent."""
    board = RecordingBoard()
    stim = StimulusController(lambda: board, lambda: 0, lambda events: None)
    with pytest.raises(ValueError, match="a repeating train needs a loop of at least 1 µs"):
        stim.load_regular_train(0, [0], core_mask=1, rate_hz=1e7, duration_s=1e-7, repeat=True)
    assert board.programs == []
    # the same train once is fine: one event at the start
    assert stim.load_regular_train(0, [0], core_mask=1, rate_hz=1e7, duration_s=1e-7) == 1


def test_a_train_played_once_starts_at_once_and_the_log_matches_both_modes():
    board = RecordingBoard()
    logged: list[SpikeEvents] = []
    stim = StimulusController(lambda: board, lambda: 1_000, logged.append)
    for repeat in (False, True):
        stim.load_regular_train(0, [1, 2], core_mask=1, rate_hz=100.0, duration_s=0.02, repeat=repeat)
        stim.start_spike_generator()
        program = board.programs[-1]
        played = np.cumsum([e.isi_us for e in program])[[e.core_mask != 0 for e in program]]
        assert np.array_equal(logged[-1].timestamp_us - 1_000, played)
        assert played[0] == 0  # both start at Start


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_regular_train_refuses_a_rate_that_is_not_finite(bad):
    stim = StimulusController(lambda: RecordingBoard(), lambda: 0, lambda events: None)
    with pytest.raises(ValueError, match="rate and duration must be positive"):
        stim.load_regular_train(0, [0], core_mask=1, rate_hz=bad, duration_s=1.0)
