"""Run a mapped network on a Board (silicon or emulator) and decode the spikes into a readout.

One code path for silicon and the emulator: everything goes through
:class:`drivers.dynapse1.board_api.Board` — biases with ``apply_bias_set``, connectivity with
``write_netlist``, the stimulus as FPGA spike-generator programs, the response with
``read_events``.  The test set is streamed as a few long programs (each at most the
generator's 32,767 events), which is also how it would run on silicon: one upload, one stream.

Decoding (host side): for every sample the spikes of each hidden unit inside the sample's
presentation window are counted.  ``readout="mean"`` turns counts into mean rates
``count / duration``; ``readout="last"`` low-pass filters the spikes with the synaptic ``tau``
and samples the result at the end of the window (the RNN's state ``h``).  Either becomes an
activation ``(rate - offset) / (gain * r_max)`` (the per-unit calibration hook, identity by
default) and goes through the float readout of the RNN.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from drivers.dynapse1.board_api import Board, SpikeGenEvent
from drivers.dynapse1.spikes import SpikeEvents

from ..jobs import Progress, ProgressSink, check_cancel
from ..probing.program import GENERATOR_CAPACITY, run_program, spike_program
from .encoding import Stimulus, chunk_samples, sigma_delta_encode
from .mapping import MappedNetwork

#: Extra board time read after a chunk's last sample, so late spikes are not lost.
TAIL_S = 0.02


@dataclass
class SpikingResult:
    """What a spiking run measured on a set of samples."""

    predictions: np.ndarray
    features: np.ndarray  # [N, H] decoded activations fed to the readout
    spike_counts: np.ndarray  # [N, H] hidden spikes per sample (window + its gap)
    input_spikes: np.ndarray  # [N, sources] input spikes per sample (inputs, bias, reset)
    wall_s: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def accuracy(self, labels: np.ndarray) -> float:
        return float(np.mean(self.predictions == np.asarray(labels)))

    def spikes_per_inference(self) -> float:
        return float(self.spike_counts.sum(1).mean())

    def synaptic_events_per_inference(self, mapped: MappedNetwork) -> float:
        fan = mapped.synaptic_fanout()
        f1 = mapped.n_sources
        per_sample = self.input_spikes @ fan[:f1] + self.spike_counts @ fan[f1:]
        return float(per_sample.mean())


def encode_for(mapped: MappedNetwork, x: np.ndarray, lengths: np.ndarray, seed: int) -> Stimulus:
    t = mapped.time
    return sigma_delta_encode(
        x, lengths, t.r_max_hz, t.dt_step_s, t.steps_per_sample, t.gap_s, seed=seed,
        reset_rate_hz=t.reset_rate_hz if mapped.has_reset else 0.0, reset_s=t.reset_s,
        input_gain=mapped.input_rate_gain, bias_gain=mapped.bias_rate_gain,
    )


def generator_program(mapped: MappedNetwork, stim: Stimulus) -> list[SpikeGenEvent]:
    """Spike-generator program of a stimulus: each channel's source address and destination cores,
    on every chip the channel reaches (:meth:`MappedNetwork.generator_channels`)."""
    return spike_program(*mapped.generator_channels(stim.times_us, stim.channels))


def decode(mapped: MappedNetwork, events: SpikeEvents, stim: Stimulus) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features ``[N, H]``, predictions ``[N]`` and spike counts ``[N, H]`` from hidden-unit spikes."""
    n, h = len(stim.sample_start_us), mapped.n_hidden
    gid_to_unit = np.full(4096, -1, np.int64)
    for u, a in enumerate(mapped.unit_addresses):
        gid_to_unit[a.chip * 1024 + a.core * 256 + a.neuron] = u
    unit = gid_to_unit[events.global_id] if len(events) else np.zeros(0, np.int64)
    keep = unit >= 0
    t_us, unit = events.timestamp_us[keep], unit[keep]
    bounds = np.append(stim.sample_start_us[1:], stim.duration_us + int(TAIL_S * 1e6))
    sample = np.searchsorted(stim.sample_start_us, t_us, side="right") - 1
    valid = sample >= 0
    in_window = valid & (t_us < stim.sample_end_us[np.clip(sample, 0, None)])
    counts_window = np.zeros((n, h))
    np.add.at(counts_window, (sample[in_window], unit[in_window]), 1.0)
    counts_all = np.zeros((n, h))
    in_all = valid & (t_us < bounds[np.clip(sample, 0, None)])
    np.add.at(counts_all, (sample[in_all], unit[in_all]), 1.0)
    dur_s = (stim.sample_end_us - stim.sample_start_us) / 1e6
    t = mapped.time
    if mapped.readout == "mean":
        # An integrate-and-fire neuron starting from rest emits floor(integral) spikes: on average
        # half a spike fewer than its rate integral once it fires at all.  Add it back.
        corrected = counts_window + np.where(counts_window > 0, mapped.count_correction, 0.0)
        rates = corrected / dur_s[:, None]
    else:  # filtered rate at the end of the window: (1/tau) sum exp(-(t_end - t_s)/tau)
        rates = np.zeros((n, h))
        age_s = (stim.sample_end_us[sample[in_window]] - t_us[in_window]) / 1e6
        np.add.at(rates, (sample[in_window], unit[in_window]), np.exp(-age_s / t.tau_s) / t.tau_s)
    features = (rates - mapped.unit_offset_hz[None, :]) / (mapped.unit_gain[None, :] * t.r_max_hz)
    logits = features @ mapped.readout_weight.T + mapped.readout_bias
    return features, logits.argmax(1), counts_all


def configure_board(board: Board, mapped: MappedNetwork) -> list[str]:
    """Write biases and connectivity of ``mapped``; returns the netlist warnings (e.g. aliasing)."""
    board.stop_spike_generator()
    board.clear_connections(mapped.chips)
    board.apply_bias_set(mapped.biases)
    return list(board.write_netlist(mapped.netlist))


def stream_samples(
    board: Board,
    mapped: MappedNetwork,
    x: np.ndarray,
    lengths: np.ndarray,
    seed: int = 0,
    progress: ProgressSink | None = None,
    cancel: threading.Event | None = None,
    on_events: Callable[[SpikeEvents], None] | None = None,
    on_inputs: Callable[[np.ndarray, np.ndarray], None] | None = None,
) -> SpikingResult:
    """Play ``x`` through a board that already holds ``mapped`` and decode every sample.

    ``on_events`` receives every batch of events the board returned (e.g. the session's monitors),
    then ``on_inputs`` the input spikes that batch played, as (board time µs, channel).
    """
    t0 = time.perf_counter()
    x = np.asarray(x, np.float32)
    lengths = np.asarray(lengths, np.int64)
    plan = chunk_samples(encode_for(mapped, x, lengths, seed), GENERATOR_CAPACITY // mapped.input_copies)
    n, h = len(x), mapped.n_hidden
    features, preds = np.zeros((n, h)), np.zeros(n, np.int64)
    counts, in_counts = np.zeros((n, h)), np.zeros((n, mapped.n_sources))
    done = 0
    for c, idx in enumerate(plan):
        check_cancel(cancel)
        stim = encode_for(mapped, x[idx], lengths[idx], seed + 7919 * (c + 1))
        events = run_program(board, generator_program(mapped, stim), stim.duration_us / 1e6 + TAIL_S)
        if on_events is not None:
            on_events(events)
        if on_inputs is not None:
            on_inputs(stim.times_us, stim.channels)
        f_c, p_c, k_c = decode(mapped, events, stim)
        features[idx], preds[idx], counts[idx] = f_c, p_c, k_c
        sample_of_spike = np.searchsorted(stim.sample_start_us, stim.times_us, side="right") - 1
        np.add.at(in_counts, (idx[sample_of_spike], stim.channels), 1.0)
        done += len(idx)
        if progress:
            progress(Progress(done / n, f"board: {done}/{n} samples streamed"))
    return SpikingResult(preds, features, counts, in_counts, time.perf_counter() - t0)


def run_on_board(
    board: Board,
    mapped: MappedNetwork,
    x: np.ndarray,
    lengths: np.ndarray,
    seed: int = 0,
    progress: ProgressSink | None = None,
    cancel: threading.Event | None = None,
) -> SpikingResult:
    """Configure ``board`` with ``mapped``, stream ``x`` and decode (see the module docstring)."""
    warnings = configure_board(board, mapped)
    result = stream_samples(board, mapped, x, lengths, seed, progress, cancel)
    result.warnings = warnings
    return result


def run_on_brian2(
    mapped: MappedNetwork,
    x: np.ndarray,
    lengths: np.ndarray,
    seed: int = 0,
    progress: ProgressSink | None = None,
    cancel: threading.Event | None = None,
    target: str = "cython",
    emulator_config=None,
) -> SpikingResult:
    """Run ``mapped`` on the project's Brian2 model (mismatch off unless ``emulator_config`` says otherwise).

    A fresh simulator receives exactly the tables and biases a board would
    (:func:`~neurolab_gui.core.boards.open_brian2_board`); ``emulator.brian2_reference.run_brian2``
    then simulates each stimulus chunk from that configuration.  ``target`` is Brian2's
    code-generation target.
    """
    from ..boards import open_brian2_board

    board = open_brian2_board(emulator_config, target)
    return run_on_board(board, mapped, x, lengths, seed, progress, cancel)
