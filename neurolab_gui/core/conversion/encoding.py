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

from dataclasses import dataclass, field

import numpy as np

#: Where the data file's ``mean``/``std`` are applied: to the features before encoding (``encode``),
#: folded into the first layer's weights and biases (``fold``), or not at all (``none``).
NORMALIZATIONS = ("encode", "fold", "none")


@dataclass
class InputEncoding:
    """How a user's raw, real-valued features become spike-generator rates in ``[0, 1]``.

    A rate cannot be negative, so a feature that takes negative values gets two channels, ON =
    ``clip(v / s, 0, 1)`` and OFF = ``clip(-v / s, 0, 1)`` (how event sensors encode signed
    signals); a non-negative feature keeps one, ``clip(v / s, 0, 1)``.  ``v`` is the feature
    z-scored with the data file's ``mean``/``std`` when ``normalization == "encode"``, else the raw
    feature.  ``s`` is, per feature, a high percentile of ``|v|`` over the valid training steps
    (values beyond it are clipped).  The first layer stays linear: a model that computes ``W z + b``
    on its normalised input computes the same on the channels with :meth:`input_weights`.

    Attributes
    ----------
    n_raw : features in the user's file
    channels : ``[C, 2]`` rows ``(feature, sign)``: channel ``c`` carries ``max(sign * v, 0) / s``
    scale : ``[n_raw]`` the per-feature ``s``
    mean, std : ``[n_raw]`` the file's normalisation (None: the features are used as they are)
    normalization : one of :data:`NORMALIZATIONS`
    clip_percentile : the percentile that set ``scale``
    clipped_fraction : share of valid training values beyond ``s`` (clipped)
    """

    n_raw: int
    channels: np.ndarray
    scale: np.ndarray
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    normalization: str = "none"
    clip_percentile: float = 99.9
    clipped_fraction: float = 0.0
    notes: list[str] = field(default_factory=list)

    @classmethod
    def fit(cls, x: np.ndarray, lengths: np.ndarray, mean: np.ndarray | None = None, std: np.ndarray | None = None,
            normalization: str = "encode", clip_percentile: float = 99.9) -> InputEncoding:
        """The encoding of raw features ``x [N, T, F]`` (valid steps ``lengths``) of a training set."""
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}")
        if not 50.0 <= clip_percentile <= 100.0:
            raise ValueError(f"clip_percentile must lie in [50, 100], got {clip_percentile}")
        x = np.asarray(x, np.float64)
        n_raw = x.shape[2]
        if (mean is None) != (std is None):
            raise ValueError("a data file must give both 'mean' and 'std' or neither")
        if normalization == "none":
            mean = std = None
        enc = cls(n_raw, np.zeros((0, 2), np.int64), np.ones(n_raw), mean, std,
                  normalization if mean is not None else "none", clip_percentile)
        values = enc.normalised(x, lengths)[valid_mask(lengths, x.shape[1])]  # [valid steps, F]
        scale = np.percentile(np.abs(values), clip_percentile, axis=0)
        dead = ~(scale > 0)
        scale[dead] = 1.0  # a feature that is always 0 carries nothing; any scale encodes it
        enc.scale = scale
        enc.channels = np.array([(k, sign) for k in range(n_raw) for sign in (1, -1)
                                 if sign == 1 or values[:, k].min() < 0], np.int64).reshape(-1, 2)
        enc.clipped_fraction = float(np.mean(np.abs(values) > scale))
        if dead.any():
            enc.notes.append(f"features {np.flatnonzero(dead).tolist()} are 0 on every valid training step")
        if enc.normalization == "fold":
            enc._note_folded_range(values, dead)
        return enc

    def _note_folded_range(self, values: np.ndarray, dead: np.ndarray) -> None:
        """Note the features whose variation gets a small share of their channel's rate range when folded.

        Folded, a channel carries the raw feature, mean included: a feature with ``|mean| >> std``
        spends most of its spikes on the mean, which the bias then cancels, so its variation rides on
        a few per cent of the rate range and the spike noise of the mean (a hostile tester's file with
        features at 5 and 40 standard deviations from 0: the ideal board lost 40 +- 9 pp against the
        constrained network on 30 samples folded, none with encode).  ``encode`` z-scores first, so one
        standard deviation spans ``1 / percentile(|z|)`` of the range, about a third.
        """
        spread = values.std(axis=0) / self.scale  # one std, as a share of the channel's range
        z = (values - self.mean) / self.std
        spread_encoded = 1.0 / np.maximum(np.percentile(np.abs(z), self.clip_percentile, axis=0), 1e-12)
        poor = np.flatnonzero(~dead & (spread < 0.5 * spread_encoded))
        if len(poor):
            self.notes.append(
                f"normalisation fold: features {poor.tolist()} vary over only {spread[poor].min():.1%}-"
                f"{spread[poor].max():.1%} of their channels' rate range per standard deviation ({spread_encoded[poor].min():.0%} "
                "with --normalize encode): their mean takes most of the spikes and the bias cancels it, which adds "
                "spike noise; --normalize encode (the default) keeps the range for the variation")

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def is_identity(self) -> bool:
        """True when the channels are the raw features unchanged (non-negative, within [0, 1], no normalisation)."""
        return (self.mean is None and self.n_channels == self.n_raw and bool(np.all(self.channels[:, 1] == 1))
                and bool(np.all(self.scale == 1.0)))

    def normalised(self, x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """``v``: the features z-scored at encoding on the valid steps (padding stays 0), or as they are."""
        x = np.asarray(x, np.float64)
        if self.normalization != "encode" or self.mean is None:
            return x
        valid = valid_mask(lengths, x.shape[1])[:, :, None]
        return np.where(valid, (x - self.mean) / self.std, 0.0)

    def rates(self, x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Channel rates ``[N, T, C]`` in ``[0, 1]`` of raw features ``x [N, T, F]``."""
        v = self.normalised(x, lengths)
        k, sign = self.channels[:, 0], self.channels[:, 1]
        return np.clip(sign * v[:, :, k] / self.scale[k], 0.0, 1.0).astype(np.float32)

    def input_weights(self, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First-layer weights ``[H, C]`` and bias ``[H]`` on the channels for a model trained with ``W v' + b``.

        ``v'`` is what the model was trained on: the z-scored features when the file gives a
        mean/std (applied at encoding, or folded here: ``W z = (W / std) x - W mean / std``), else
        the raw features.  Exact wherever no value is clipped.
        """
        w = np.asarray(w, np.float64)
        b = np.asarray(b, np.float64).copy()
        if w.shape[1] != self.n_raw:
            raise ValueError(f"the model takes {w.shape[1]} inputs but the data has {self.n_raw} features")
        if self.normalization == "fold" and self.mean is not None:
            b = b - w @ (self.mean / self.std)
            w = w / self.std[None, :]
        k, sign = self.channels[:, 0], self.channels[:, 1]
        return w[:, k] * (sign * self.scale[k])[None, :], b

    def summary(self) -> dict:
        names = [f"{k}{'+' if s > 0 else '-'}" for k, s in self.channels]
        return {"raw_features": self.n_raw, "channels": self.n_channels, "channel_names": names,
                "normalization": self.normalization, "clip_percentile": self.clip_percentile,
                "clipped_fraction": self.clipped_fraction, "scale": [float(v) for v in self.scale]}


def valid_mask(lengths: np.ndarray, n_steps: int) -> np.ndarray:
    """``[N, T]`` True on each sequence's valid steps."""
    return np.arange(n_steps)[None, :] < np.asarray(lengths)[:, None]


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
