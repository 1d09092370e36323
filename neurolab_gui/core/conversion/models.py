"""Rate RNNs that a spiking network on DYNAP-SE1 can reproduce: Elman ReLU and leaky (low-pass) ReLU.

Both use a *bounded* non-negative activation: a silicon neuron's rate is non-negative and
saturates at 1/t_refractory.  Two forms: the hard ``clip(u, 0, 1)`` (``saturation=None``), or the
curve an integrate-and-fire neuron with refractory period ``t_ref`` actually has,
``phi(u) = relu(u) / (1 + relu(u) / s)`` with ``s = 1 / (r_max t_ref)`` (``saturation=s``).  The
second is what the conversion pipeline trains with: with a hard clip, the spiking network has no
bound where the RNN has one and recurrent excitation can run away (measured: a network that
was 90 % accurate as an RNN fired at > 1 kHz on the emulator).  Activation 1 is the rate
``r_max`` on the chip (see :mod:`.mapping`).

``kind="elman"``::

    r_t = clip(W_in x_t + b + W_rec r_{t-1}, 0, 1)

``kind="leaky"`` (the low-pass RNN of Boeshertz et al. 2024, in the form a spiking network
computes)::

    x~_t = a x~_{t-1} + (1 - a) x_t            (input spike trains filtered by the synapse)
    c~_t = a c~_{t-1} + (1 - a) * 1            (the constant "bias" input channel, same filter)
    r_t  = clip(W_in x~_t + b c~_t + W_rec h_{t-1}, 0, 1)
    h_t  = a h_{t-1} + (1 - a) r_t             (a neuron's spikes filtered by the synapse)

Why this form: on the chip a neuron's rate is a (fast) function of its total synaptic current,
and the synaptic current is a low-pass of the presynaptic spike trains times the weights.  With
``a = exp(-dt/tau_syn)`` the recursion above is the exact step-``dt`` discretisation of
``tau dh/dt = -h + f(W_in x~ + b c~ + W_rec h)`` when the rate is held over a step, so the
spiking network and the RNN describe the same system.  Every input sample is held for
``steps_per_sample`` RNN steps (sub-windows), which keeps ``dt/tau`` small.  The per-unit bias
is an input channel (a constant-rate source with learned weights) because DYNAP-SE1 biases are
shared by the 256 neurons of a core.

Readout (on the host, in float): ``readout="mean"`` uses the mean rate over the valid part of
the sequence, which on the board is the spike count divided by the presentation time;
``readout="last"`` uses the state ``h`` at the last valid step (filtered rates).

Whole spikes (:attr:`RateRNN.spikes_per_step`, off unless set; the calibration's hardware model
sets it): a board's unit does not hand its rate on, it emits whole spikes.  With
``spikes_per_step = r_max dt_step`` set, the leaky model's rate ``r_t`` becomes the spikes of an
integrate-and-fire neuron that starts every sequence at rest (charge 0, as the reset between
samples leaves it): ``c += r_t * spikes_per_step``, ``n_t = floor(c)``, ``c -= n_t``, and ``n_t /
spikes_per_step`` reaches the synaptic filter and the readout (straight-through: the gradient is
the rate's).  The mean readout then counts like the board's decoding, with ``count_correction``
spikes added to every non-zero count.  Where units fire a few spikes per sample (MNIST-1D: 3.3
on average, none in 57 % of the unit-samples) the first-spike latency and the counts' rounding
are much of what a board does differently from the rate model (docs/decisions.md, "Hardware model
in whole spikes").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class RNNConfig:
    """Everything needed to rebuild a :class:`RateRNN` (stored as checkpoint metadata)."""

    n_inputs: int
    n_hidden: int
    n_outputs: int
    kind: str = "leaky"  # "elman" or "leaky"
    retention: float = 0.8  # a, leaky only
    steps_per_sample: int = 1  # RNN steps per input sample
    readout: str = "mean"  # "mean" or "last"
    #: None: hard bounded ReLU clip(u, 0, 1).  A number s: the refractory-saturating rate curve
    #: of an integrate-and-fire neuron, relu(u) / (1 + relu(u) / s) (bounded by s).
    saturation: float | None = None
    #: "euler": r_t from the state at the start of the step (the classic RNN recursion);
    #: "heun": second-order — the rate over a step is the mean of the rates at its start and at a
    #: predicted end.  Heun tracks the continuous-time system the spiking network *is* much more
    #: closely at the same step (leaky only; see the module docstring).
    integrator: str = "euler"

    def __post_init__(self) -> None:
        if self.kind not in ("elman", "leaky"):
            raise ValueError(f"RNN kind must be 'elman' or 'leaky', got {self.kind!r}")
        if self.integrator not in ("euler", "heun"):
            raise ValueError(f"integrator must be 'euler' or 'heun', got {self.integrator!r}")
        if self.readout not in ("mean", "last"):
            raise ValueError(f"readout must be 'mean' or 'last', got {self.readout!r}")
        if not 0.0 <= self.retention < 1.0:
            raise ValueError(f"retention must lie in [0, 1), got {self.retention}")
        if self.saturation is not None and not self.saturation > 0:
            raise ValueError(f"saturation must be positive or None, got {self.saturation}")
        for name in ("n_inputs", "n_hidden", "n_outputs", "steps_per_sample"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)


#: A function that maps (w_in, w_bias, w_rec) to the weights actually used (quantisation, masks).
WeightTransform = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


class RateRNN(nn.Module):
    """Elman or leaky bounded-ReLU RNN with a linear readout; see the module docstring.

    Parameters live in ``w_in [H, F]``, ``w_bias [H]``, ``w_rec [H, H]`` and ``readout`` (an
    ``nn.Linear(H, C)``).  :attr:`weight_transform`, when set, is applied to the three recurrent
    layer tensors on every forward pass (used by quantisation-aware training).
    """

    def __init__(self, config: RNNConfig) -> None:
        super().__init__()
        self.config = config
        h, f = config.n_hidden, config.n_inputs
        self.w_in = nn.Parameter(torch.empty(h, f))
        self.w_bias = nn.Parameter(torch.zeros(h))
        self.w_rec = nn.Parameter(torch.empty(h, h))
        self.readout = nn.Linear(h, config.n_outputs)
        self.weight_transform: WeightTransform | None = None
        #: whole spikes (module docstring): spikes of one step at activation 1, None for rates;
        #: set on a copy (the calibration's hardware model), not part of the config or a checkpoint
        self.spikes_per_step: float | None = None
        #: spikes the board's decoding adds to every non-zero count (``MappedNetwork.count_correction``)
        self.count_correction: float = 0.5
        self.reset_parameters()

    def reset_parameters(self) -> None:
        h, f = self.config.n_hidden, self.config.n_inputs
        nn.init.uniform_(self.w_in, -1.0 / math.sqrt(f), 1.0 / math.sqrt(f))
        nn.init.normal_(self.w_rec, 0.0, 0.5 / math.sqrt(h))  # contracting at start: stable rates
        nn.init.uniform_(self.w_bias, 0.0, 0.1)

    def effective_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(w_in, w_bias, w_rec)`` after :attr:`weight_transform`."""
        if self.weight_transform is None:
            return self.w_in, self.w_bias, self.w_rec
        return self.weight_transform(self.w_in, self.w_bias, self.w_rec)

    def forward(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor | None = None,
        noise_std: float = 0.0,
        count_noise: float = 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the RNN.

        Parameters
        ----------
        x : ``[N, T, F]`` input sequences (values in [0, 1])
        lengths : ``[N]`` valid samples per sequence (default: all ``T``)
        noise_std : std of Gaussian noise added to the pre-activation during training
            (makes the network robust to spike-count noise and mismatch)
        count_noise : spike-count noise of the spiking network, leaky model only: the rate that
            enters the synaptic filter ``h`` becomes ``r + sqrt(count_noise * r) * xi``, the
            Gaussian limit of a spike count with Fano factor ``F`` when ``count_noise = F /
            (r_max dt_step)`` (spikes per step at activation 1).  Unlike pre-activation noise it
            grows with the rate and is filtered like the spikes are, so the network learns margins
            against the error the spiking network actually makes.

        Returns
        -------
        logits : ``[N, C]``
        rates : ``[N, T * steps_per_sample, H]`` activations ``r_t`` in [0, 1]
        """
        cfg = self.config
        n, t_in, _ = x.shape
        k = cfg.steps_per_sample
        if lengths is None:
            lengths = torch.full((n,), t_in, dtype=torch.long, device=x.device)
        w_in, w_bias, w_rec = self.effective_weights()
        x_steps = x.repeat_interleave(k, dim=1) if k > 1 else x
        drive = x_steps @ w_in.T  # [N, T*k, H]; the input filter is linear so it can follow the weights
        a = cfg.retention if cfg.kind == "leaky" else 0.0
        h = x.new_zeros(n, cfg.n_hidden)
        drive_f = x.new_zeros(n, cfg.n_hidden)
        bias_f = 0.0
        rates = []
        heun = cfg.kind == "leaky" and cfg.integrator == "heun"
        sps = self.spikes_per_step if cfg.kind == "leaky" else None
        charge = x.new_zeros(n, cfg.n_hidden)
        for t in range(t_in * k):
            noise = noise_std * torch.randn_like(h) if noise_std > 0.0 else 0.0
            if cfg.kind == "leaky":
                drive_start, bias_start = drive_f, bias_f
                drive_f = a * drive_f + (1.0 - a) * drive[:, t]
                bias_f = a * bias_f + (1.0 - a)
                if heun:
                    r0 = self.activation(drive_start + bias_start * w_bias + h @ w_rec.T + noise)
                    h_pred = a * h + (1.0 - a) * r0
                    r1 = self.activation(drive_f + bias_f * w_bias + h_pred @ w_rec.T + noise)
                    r = 0.5 * (r0 + r1)
                else:
                    r = self.activation(drive_f + bias_f * w_bias + h @ w_rec.T + noise)
                if count_noise > 0.0:  # the spikes, not the rate, reach the synapses and the readout
                    r = r + torch.sqrt(count_noise * r + 1e-12) * torch.randn_like(r)
                if sps is not None:  # whole spikes of an integrator from rest; the gradient is the rate's
                    charge = torch.clamp(charge + r.detach() * sps, min=0.0)
                    spikes = torch.floor(charge)
                    charge = charge - spikes
                    r = r + (spikes / sps - r).detach()
                h = a * h + (1.0 - a) * r
            else:
                r = self.activation(drive[:, t] + w_bias + h @ w_rec.T + noise)
                h = r
            rates.append(r)
        rates_t = torch.stack(rates, dim=1)
        features = self.readout_features(rates_t, lengths)
        return self.readout(features), rates_t

    def activation(self, u: torch.Tensor) -> torch.Tensor:
        """Bounded, non-negative rate of a unit (activation 1 = ``r_max`` on the chip)."""
        s = self.config.saturation
        if s is None:
            return torch.clamp(u, 0.0, 1.0)
        r = torch.relu(u)
        return r / (1.0 + r / s)

    def readout_features(self, rates: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """What the linear readout sees: mean rate over valid steps, or the filtered state at the end."""
        cfg = self.config
        k = cfg.steps_per_sample
        n_steps = rates.shape[1]
        steps = torch.arange(n_steps, device=rates.device)
        valid = (steps[None, :] < (lengths[:, None] * k)).to(rates.dtype)  # [N, T*k]
        if cfg.readout == "mean":
            mean = (rates * valid[:, :, None]).sum(1) / valid.sum(1, keepdim=True)
            if self.spikes_per_step is not None and cfg.kind == "leaky":  # counted like the board's decoding
                per_spike = 1.0 / (valid.sum(1, keepdim=True) * self.spikes_per_step)
                mean = mean + torch.where(mean > 0.5 * per_spike, self.count_correction * per_spike, torch.zeros_like(mean))
            return mean
        a = cfg.retention if cfg.kind == "leaky" else 0.0
        return filtered_state_at_end(rates, lengths * k, a)


def filtered_state_at_end(rates: torch.Tensor, end_steps: torch.Tensor, retention: float) -> torch.Tensor:
    """``h`` at step ``end_steps - 1`` of ``h_t = a h_{t-1} + (1 - a) r_t`` for every sequence."""
    n, t, _ = rates.shape
    steps = torch.arange(t, device=rates.device)
    age = (end_steps[:, None] - 1 - steps[None, :]).to(rates.dtype)  # steps before the end
    weights = torch.where(age >= 0, (1.0 - retention) * retention ** age.clamp(min=0), torch.zeros_like(age))
    if retention == 0.0:
        weights = (age == 0).to(rates.dtype)
    return (rates * weights[:, :, None]).sum(1)


def retention_from_tau(dt_s: float, tau_s: float) -> float:
    """``a = exp(-dt / tau)``: the retention of a first-order low-pass sampled every ``dt``."""
    return math.exp(-dt_s / tau_s)


def tau_from_retention(dt_s: float, retention: float) -> float:
    """``tau = -dt / ln(a)`` (Boeshertz et al. 2024): the inverse of :func:`retention_from_tau`."""
    if not 0.0 < retention < 1.0:
        raise ValueError(f"retention must lie in (0, 1) to define a time constant, got {retention}")
    return -dt_s / math.log(retention)
