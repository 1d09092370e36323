"""Inputs → spike-generator events: deterministic ΣΔ rate coding.

Every input channel ``k`` (and the constant bias channel) becomes a spike train whose rate is
``r_max * x_k(t)``.  We generate it with a first-order ΣΔ modulator (integrate-and-fire
encoder): an accumulator integrates ``r_max * x * dt`` and emits a spike, subtracting 1, each
time it crosses 1.

Why ΣΔ and not Poisson: the spike count of a ΣΔ train over *any* window is within ±1 of the
ideal ``∫ r_max x dt``, whereas a Poisson train's count has variance equal to its mean (at
100 Hz over 20 ms, ±45 %).  The conversion loss should come from the network, not from the
stimulus; ΣΔ coding removes the encoder's share at no cost in spikes, is what the FPGA spike
generator replays naturally (a fixed event list with ISIs), and is the coding of the
ΣΔ-lpRNN (Boeshertz et al. 2024).  The accumulators start at a random phase per channel and
sequence so that channels with equal rates do not fire in lock-step.

Events are built in microseconds on a regular grid of ``dt_step / substeps``; the stream is
one long program per chunk (see :func:`chunk_samples`) because the FPGA holds at most 32,767
events, as it would be on silicon (one upload, one stream).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Stimulus:
    """A spike stream for a sequence of samples, plus where each sample sits in time.

    Attributes
    ----------
    times_us : int64 ``[E]`` sorted spike times
    channels : int64 ``[E]`` input channel (``0..F-1`` features, ``F`` = bias channel)
    sample_start_us, sample_end_us : int64 ``[N]`` presentation window of each sample
        (the gap after a sample is not part of its window)
    duration_us : total length including the trailing gap
    """

    times_us: np.ndarray
    channels: np.ndarray
    sample_start_us: np.ndarray
    sample_end_us: np.ndarray
    duration_us: int

    def __len__(self) -> int:
        return len(self.times_us)


def sigma_delta_encode(
    x: np.ndarray,
    lengths: np.ndarray,
    r_max_hz: float,
    dt_step_s: float,
    steps_per_sample: int,
    gap_s: float,
    substeps: int = 10,
    seed: int = 0,
    bias_channel: bool = True,
    lead_s: float = 0.01,
    reset_rate_hz: float = 0.0,
    reset_s: float = 0.0,
    input_gain: float = 1.0,
    bias_gain: float = 1.0,
) -> Stimulus:
    """ΣΔ-encode sequences ``x [N, T, F]`` (values in [0, 1]) back to back, separated by ``gap_s``.

    Sample ``n`` is presented for ``lengths[n] * steps_per_sample * dt_step_s`` seconds; each
    input value is held for ``steps_per_sample`` RNN steps.  The bias channel fires at
    ``r_max_hz`` while a sample is presented and is silent in the gaps.  With ``reset_rate_hz``
    > 0 a reset channel (index ``F + 1``) fires a regular burst for the first ``reset_s`` of
    every gap; the mapping connects it to every unit through a strong shunting (GABA_A)
    synapse, so recurrent activity cannot outlast its sample and every sample starts from a
    network at rest, as the RNN does.  ``input_gain`` and ``bias_gain`` scale the input and bias
    channels' rates (the constrained network's source gains, ``MappedNetwork.input_rate_gain``).
    """
    x = np.asarray(x, dtype=np.float64)
    n, t_max, f = x.shape
    if x.min() < 0 or x.max() > 1:
        raise ValueError("inputs must lie in [0, 1] to be encoded as rates")
    rng = np.random.default_rng(seed)
    tick_s = dt_step_s / substeps
    tick_us = tick_s * 1e6
    times, chans = [], []
    starts = np.zeros(n, np.int64)
    ends = np.zeros(n, np.int64)
    t0_us = lead_s * 1e6
    n_ch = f + int(bias_channel)
    for i in range(n):
        steps = int(lengths[i]) * steps_per_sample * substeps
        rates = input_gain * np.repeat(x[i, : int(lengths[i])], steps_per_sample * substeps, axis=0)  # [steps, F]
        if bias_channel:
            rates = np.concatenate([rates, np.full((steps, 1), bias_gain)], axis=1)
        charge = np.cumsum(rates * (r_max_hz * tick_s), axis=0) + rng.random(n_ch)[None, :]
        counts = np.floor(charge).astype(np.int64)
        fired = np.diff(np.vstack([np.zeros((1, n_ch), np.int64), counts]), axis=0)  # spikes per tick, 0 or 1 at these rates
        tick_idx, ch = np.nonzero(fired)
        reps = fired[tick_idx, ch]
        tick_idx, ch = np.repeat(tick_idx, reps), np.repeat(ch, reps)
        times.append(np.rint(t0_us + (tick_idx + 0.5) * tick_us).astype(np.int64))
        chans.append(ch.astype(np.int64))
        starts[i] = round(t0_us)
        ends[i] = round(t0_us + steps * tick_us)
        if reset_rate_hz > 0 and reset_s > 0:
            burst = ends[i] + (np.arange(int(reset_s * reset_rate_hz)) + 0.5) / reset_rate_hz * 1e6
            times.append(np.rint(burst).astype(np.int64))
            chans.append(np.full(len(burst), n_ch, np.int64))
        t0_us = ends[i] + gap_s * 1e6
    all_t = np.concatenate(times) if times else np.zeros(0, np.int64)
    all_c = np.concatenate(chans) if chans else np.zeros(0, np.int64)
    order = np.argsort(all_t, kind="stable")
    return Stimulus(all_t[order], all_c[order], starts, ends, int(round(t0_us)))


def chunk_samples(stimulus: Stimulus, max_events: int) -> list[np.ndarray]:
    """Group consecutive samples into chunks of at most ``max_events`` input spikes each.

    Each chunk is re-encoded from time 0 and played as one spike-generator program.
    """
    n = len(stimulus.sample_start_us)
    next_start = np.append(stimulus.sample_start_us[1:], stimulus.duration_us + 1)
    lead = int(stimulus.sample_start_us[0]) if n else 0
    counts = np.searchsorted(stimulus.times_us, next_start - lead, side="left") - np.searchsorted(
        stimulus.times_us, stimulus.sample_start_us - lead, side="left"
    )  # everything from a sample's lead-in to the next one's: window, reset burst and gap
    counts = counts + max(4, n // 1000)  # margin for the dummy events that split long gaps
    if n and counts.max() > max_events:
        raise ValueError(f"one sample needs {counts.max()} input spikes, more than the generator holds ({max_events})")
    chunks: list[np.ndarray] = []
    first, used = 0, 0
    for i in range(n):
        if used + counts[i] > max_events and i > first:
            chunks.append(np.arange(first, i))
            first, used = i, 0
        used += counts[i]
    if n:
        chunks.append(np.arange(first, n))
    return chunks
