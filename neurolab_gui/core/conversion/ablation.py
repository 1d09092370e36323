"""Constraint ablation: what each chip constraint costs, added one at a time in the pipeline's order.

:func:`constraint_ablation` rebuilds the constrain step (:func:`.constrain.constrain`) cumulatively
and evaluates every variant on the task's test set with :func:`.training.evaluate` (or its noisy
twin for the last two conditions):

``float``
    the trained model as the report's ``float`` stage measures it.
``leaky dynamics / time mapping``
    the leaky low-pass RNN with the spiking time mapping's retention and sub-steps
    (:func:`.constrain.to_hardware_dynamics`), keeping the model's own activation.
``saturation (refractory)``
    plus the refractory-saturating activation ``phi(u) = u / (1 + u / s)`` of the mapping.
``fan-in limit (incl. reset entry)``
    plus at most ``max_fan_in`` connections per unit (63: the 64th CAM entry is the reset
    channel's), keeping each row's largest float weights.
``weight quantisation``
    plus the DYNAP-SE1 weight scheme: integer CAM copies on the precision's grid, one shared
    weight of one copy per core group (times the input / bias source gains when per-group
    scales are on), the sign carried by the synapse type, and the CAM budget counted in copies
    (:func:`.constrain.quantise` with the groups, column energies and gain range the constrain
    step used) — exactly the network the QAT fine-tune starts from.  Its ``changed`` also gives
    the accuracy with one copy weight per core for all columns and plain rounding
    (``one_scale_per_core_accuracy``): what per-group precision and error-aware rounding buy.
``input encoding``
    plus ΣΔ rate coding of the input channels: per RNN step every input delivers a whole number
    of spikes of ``spikes_per_step * input_gain`` at value 1, as :mod:`.encoding` makes the FPGA
    send them.
``spike-count noise``
    plus the spike-count noise of the hidden units (``count_noise``, see ``RateRNN.forward``),
    with a fixed seed.
``QAT``
    the constrained network the pipeline actually produced, evaluated exactly like the report's
    ``constrained`` stage (deterministic rates, plain inputs) so that this row *is* that stage's
    accuracy; its ``changed`` also gives its accuracy under the encoding and count noise above,
    which compares like with like against the row before.

Every row's ``changed`` says what the step did; the weight steps give the fraction of weights
that are zero, per group (``input``, ``bias``, ``recurrent``), and the fraction that the step
itself set to zero.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .constrain import (
    ConstrainedNetwork,
    ConstraintConfig,
    column_energy,
    quantise,
    source_gains_of,
    stacked_weights,
    to_hardware_dynamics,
)
from .models import RateRNN, RNNConfig
from .tasks import Task
from .training import evaluate

#: Row names, in the pipeline's order.
ABLATION_STEPS = (
    "float",
    "leaky dynamics / time mapping",
    "saturation (refractory)",
    "fan-in limit (incl. reset entry)",
    "weight quantisation",
    "input encoding",
    "spike-count noise",
    "QAT",
)


@dataclass
class AblationRow:
    """Test accuracy after one more constraint, and what that constraint changed."""

    constraint: str
    accuracy: float
    changed: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def zero_fractions(stacked: np.ndarray, n_inputs: int) -> dict[str, float]:
    """Fraction of zero entries of ``[w_in | w_bias | w_rec]`` (weights or multiplicities) per group."""
    stacked = np.asarray(stacked)
    groups = {"input": stacked[:, :n_inputs], "bias": stacked[:, n_inputs], "recurrent": stacked[:, n_inputs + 1:]}
    return {name: float(np.mean(part == 0)) for name, part in groups.items()}


def _zeroed_fractions(before: np.ndarray, after: np.ndarray, n_inputs: int) -> dict[str, float]:
    """Per group, the fraction of entries non-zero in ``before`` that are zero in ``after``."""
    lost = (np.asarray(before) != 0) & (np.asarray(after) == 0)
    return zero_fractions(~lost, n_inputs)


def limit_fan_in(w: np.ndarray, max_fan_in: int) -> np.ndarray:
    """``w`` with only each row's ``max_fan_in`` largest-magnitude entries kept (float weights)."""
    out = np.array(w, dtype=np.float64, copy=True)
    if out.shape[1] <= max_fan_in:
        return out
    drop = np.argsort(-np.abs(out), axis=1, kind="stable")[:, max_fan_in:]
    np.put_along_axis(out, drop, 0.0, axis=1)
    return out


def _with_weights(model: RateRNN, stacked: np.ndarray) -> RateRNN:
    """A copy of ``model`` whose recurrent layer is ``stacked`` = ``[w_in | w_bias | w_rec]``."""
    out = copy.deepcopy(model)
    f = model.config.n_inputs
    with torch.no_grad():
        out.w_in.copy_(torch.as_tensor(stacked[:, :f]))
        out.w_bias.copy_(torch.as_tensor(stacked[:, f]))
        out.w_rec.copy_(torch.as_tensor(stacked[:, f + 1:]))
    return out


def sigma_delta_inputs(x: np.ndarray, steps_per_sample: int, spikes_per_step: float, seed: int) -> np.ndarray:
    """Inputs ``[N, T, F]`` as the RNN-step rates a ΣΔ encoder delivers, ``[N, T * k, F]``.

    Per step the accumulator gains ``x * spikes_per_step``; the whole spikes it emits, divided
    by ``spikes_per_step``, are the rate the network sees.  Accumulators start at a random phase
    per channel and sequence, as in :func:`.encoding.sigma_delta_encode`.
    """
    rng = np.random.default_rng(seed)
    x_steps = np.repeat(np.asarray(x, dtype=np.float64), steps_per_sample, axis=1)
    acc = rng.random((x_steps.shape[0], x_steps.shape[2]))
    out = np.empty_like(x_steps)
    for t in range(x_steps.shape[1]):
        acc += x_steps[:, t] * spikes_per_step
        spikes = np.floor(acc)
        acc -= spikes
        out[:, t] = spikes / spikes_per_step
    return out.astype(np.float32)


def _per_step_model(model: RateRNN) -> RateRNN:
    """``model`` taking inputs already expanded to one value per RNN step (``steps_per_sample=1``)."""
    cfg = model.config
    out = RateRNN(RNNConfig(cfg.n_inputs, cfg.n_hidden, cfg.n_outputs, cfg.kind, cfg.retention, 1, cfg.readout,
                            cfg.saturation, cfg.integrator))
    out.load_state_dict(model.state_dict())
    return out


def evaluate_spiking_conditions(model: RateRNN, task: Task, spikes_per_step: float | None, count_noise: float,
                                seed: int, batch_size: int = 512) -> float:
    """Test accuracy of a leaky ``model`` with ΣΔ-coded inputs (unless ``spikes_per_step`` is None)
    and hidden spike-count noise ``count_noise``; repeatable for a given ``seed``."""
    k = model.config.steps_per_sample
    if spikes_per_step is None:
        x, lengths, net = task.x_test, task.lengths_test, model
    else:
        x, lengths, net = sigma_delta_inputs(task.x_test, k, spikes_per_step, seed), task.lengths_test * k, _per_step_model(model)
    net.eval()
    pred = []
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for i in range(0, len(x), batch_size):
            logits, _ = net(torch.as_tensor(x[i:i + batch_size]), torch.as_tensor(lengths[i:i + batch_size]),
                            count_noise=count_noise)
            pred.append(logits.argmax(1).numpy())
    return float(np.mean(np.concatenate(pred) == task.y_test))


def _dynamics_note(before: RNNConfig, after: RNNConfig) -> dict:
    keys = ("kind", "retention", "steps_per_sample", "saturation", "integrator")
    diff = {k: [getattr(before, k), getattr(after, k)] for k in keys if getattr(before, k) != getattr(after, k)}
    return {"what": ", ".join(f"{k} {a} -> {b}" for k, (a, b) in diff.items()) or "nothing: the model already had it"}


def constraint_ablation(
    model: RateRNN,
    constrained: ConstrainedNetwork,
    task: Task,
    constraint: ConstraintConfig,
    retention: float,
    steps_per_sample: int,
    saturation: float | None,
    spikes_per_step: float,
    count_noise: float,
    seed: int = 0,
) -> list[AblationRow]:
    """Accuracy after each constraint, cumulatively, in the order of :data:`ABLATION_STEPS`.

    Parameters
    ----------
    model : the float model the constrain step started from (left unchanged)
    constrained : what the constrain step made of it (its groups are reused; the last row is its accuracy)
    constraint, retention, steps_per_sample, saturation : the constrain step's settings
    spikes_per_step : input spikes per RNN step at value 1 (``r_max * dt_step``)
    count_noise : the hidden spike-count noise trained for (``PipelineConfig.count_noise()``)
    """
    src = copy.deepcopy(model).cpu()
    f = src.config.n_inputs
    rows = [AblationRow("float", evaluate(src, task.x_test, task.y_test, task.lengths_test)[0],
                        {"what": "the trained model"})]

    def add(name: str, net: RateRNN, changed: dict) -> None:
        rows.append(AblationRow(name, evaluate(net, task.x_test, task.y_test, task.lengths_test)[0], changed))

    leaky = to_hardware_dynamics(src, retention, steps_per_sample, src.config.saturation)
    add(ABLATION_STEPS[1], leaky, _dynamics_note(src.config, leaky.config))
    hardware = to_hardware_dynamics(src, retention, steps_per_sample, saturation)
    add(ABLATION_STEPS[2], hardware, _dynamics_note(leaky.config, hardware.config))

    w_float = stacked_weights(hardware)
    w_fan = limit_fan_in(w_float, constraint.max_fan_in)
    add(ABLATION_STEPS[3], _with_weights(hardware, w_fan),
        {"max_fan_in": constraint.max_fan_in, "pruned": _zeroed_fractions(w_float, w_fan, f),
         "zero": zero_fractions(w_fan, f)})

    groups = constrained.unit_group
    energy = column_energy(hardware, task.x_train, task.lengths_train) if constrained.error_aware else None
    q = quantise(w_float, groups, constraint.precision, constraint.max_fan_in, energy, source_gains_of(constraint))
    m = q.multiplicity
    quantised = _with_weights(hardware, q.weights(groups))
    plain = quantise(w_float, groups, constraint.precision, constraint.max_fan_in, None, None)
    one_scale_acc = evaluate(_with_weights(hardware, plain.weights(groups)), task.x_test, task.y_test, task.lengths_test)[0]
    add(ABLATION_STEPS[4], quantised,
        {"n_levels": constraint.precision.n_levels, "core_group_scales": [float(s) for s in q.scale],
         "source_gains": {"input": q.input_gain, "bias": q.bias_gain},
         "max_copies_used": int(np.abs(m).sum(1).max()), "quantised_to_zero": _zeroed_fractions(w_fan, m, f),
         "zero": zero_fractions(m, f), "one_scale_per_core_accuracy": one_scale_acc,
         "one_scale_per_core_zero": zero_fractions(plain.multiplicity, f)})

    in_spikes = spikes_per_step * q.input_gain
    rows.append(AblationRow(ABLATION_STEPS[5], evaluate_spiking_conditions(quantised, task, in_spikes, 0.0, seed),
                            {"what": f"sigma-delta coded inputs, {in_spikes:g} spikes per step at value 1"}))
    rows.append(AblationRow(ABLATION_STEPS[6], evaluate_spiking_conditions(quantised, task, in_spikes, count_noise, seed),
                            {"what": f"hidden spike-count noise {count_noise:g} (variance per unit rate)"}))

    final = constrained.multiplicity
    add(ABLATION_STEPS[7], constrained.model,
        {"what": "the pipeline's constrained network (deterministic rates, plain inputs)",
         "accuracy_with_encoding_and_noise": evaluate_spiking_conditions(
             constrained.model, task, spikes_per_step * constrained.input_gain, count_noise, seed),
         "multiplicities_changed": float(np.mean(final != m)), "zero": zero_fractions(final, f)})
    return rows


def ablation_table(rows: list[AblationRow]) -> str:
    """The rows as a fixed-width table: accuracy, step-to-step change and a short note."""
    head = f"{'constraint (cumulative)':<34}{'accuracy':>10}{'step':>10}  changed"
    lines = [head, "-" * len(head)]
    prev = None
    for row in rows:
        step = "" if prev is None else f"{100 * (row.accuracy - prev):+.1f} pp"
        lines.append(f"{row.constraint:<34}{row.accuracy:>10.4f}{step:>10}  {ablation_note(row.changed)}")
        prev = row.accuracy
    return "\n".join(lines)


def ablation_note(changed: dict) -> str:
    """A row's ``changed`` in one line (fractions per group as ``inp/bia/rec``)."""
    parts = []
    for key, value in changed.items():
        if isinstance(value, dict):
            parts.append(f"{key} " + "/".join(f"{k[:3]} {v:.2f}" for k, v in value.items()))
        elif isinstance(value, float):
            parts.append(f"{key} {value:.3g}")
        elif key == "what" or not isinstance(value, list):
            parts.append(str(value) if key == "what" else f"{key} {value}")
    return "; ".join(parts)
