"""The conversion report: accuracy, spikes and synaptic events per inference at every stage.

Stages, in order: ``float`` (the trained RNN), ``constrained`` (pruned, quantised, leaky-dynamics
RNN in float arithmetic), ``brian2`` (the spiking network on the project's Brian2 model),
``board_ideal`` / ``board_mismatch`` (the spiking network on a Board — the emulator with mismatch
off / on, or silicon as ``board``).

For the rate stages, spikes per inference are what the rates imply (``sum r_max * r_t * dt``
over hidden units and the presentation time) and synaptic events are those spikes, plus the
input spikes, times the CAM copies they hit; for spiking stages both are counted.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from drivers.user_files import write_replacing

from .ablation import AblationRow, ablation_table


@dataclass
class StageResult:
    """One stage's measurements on the test set (or the part of it that was run)."""

    name: str
    accuracy: float
    n_samples: int
    spikes_per_inference: float | None = None
    synaptic_events_per_inference: float | None = None
    wall_s: float = 0.0
    note: str = ""
    extra: dict = field(default_factory=dict)
    #: Accuracy of the constrained float RNN on the same samples (spiking stages may run a subset).
    reference_accuracy: float | None = None
    #: Fraction of samples where this stage predicts what the constrained float RNN predicts.
    agreement: float | None = None
    #: Standard error of :meth:`loss_pp` from the paired per-sample differences (the test set is
    #: finite: with a few percent of disagreeing samples it is about 1 point on 360 samples).
    loss_se_pp: float | None = None

    def loss_pp(self) -> float | None:
        """Accuracy lost against the constrained float RNN on the same samples, percentage points."""
        return None if self.reference_accuracy is None else 100.0 * (self.reference_accuracy - self.accuracy)


def paired_comparison(predictions: np.ndarray, reference_predictions: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Agreement with a reference model and the standard error (points) of the accuracy difference.

    The difference is the mean of ``d_i = correct_ref_i - correct_i`` over the same samples; its
    standard error is ``std(d) / sqrt(n)``.
    """
    predictions, reference_predictions, labels = (np.asarray(a) for a in (predictions, reference_predictions, labels))
    if not len(labels) == len(predictions) == len(reference_predictions) or len(labels) == 0:
        raise ValueError("predictions, reference predictions and labels must be non-empty and of one length")
    d = (reference_predictions == labels).astype(float) - (predictions == labels).astype(float)
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    return float(np.mean(predictions == reference_predictions)), 100.0 * se


@dataclass
class ConversionReport:
    """Everything a conversion measured, JSON-able, with a readable table."""

    task: str
    stages: list[StageResult] = field(default_factory=list)
    model: dict = field(default_factory=dict)
    constraints: dict = field(default_factory=dict)
    mapping: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: Accuracy after each constraint, cumulatively (:mod:`.ablation`); empty unless asked for.
    ablation: list[AblationRow] = field(default_factory=list)

    def add(self, stage: StageResult) -> None:
        self.stages = [s for s in self.stages if s.name != stage.name] + [stage]

    def stage(self, name: str) -> StageResult | None:
        return next((s for s in self.stages if s.name == name), None)

    def constraint_cost_pp(self) -> float | None:
        """Float accuracy minus constrained accuracy, percentage points (None until both ran)."""
        f, c = self.stage("float"), self.stage("constrained")
        return None if f is None or c is None else 100.0 * (f.accuracy - c.accuracy)

    def accuracies(self) -> dict[str, float]:
        return {s.name: s.accuracy for s in self.stages}

    def to_dict(self) -> dict:
        return {
            "task": self.task,
            "stages": [asdict(s) for s in self.stages],
            "model": self.model,
            "constraints": self.constraints,
            "mapping": self.mapping,
            "notes": self.notes,
            "constraint_cost_pp": self.constraint_cost_pp(),
            "ablation": [row.to_dict() for row in self.ablation],
        }

    def write_json(self, path: str | Path) -> Path:
        return write_replacing(path, json.dumps(self.to_dict(), indent=2, default=float))

    def table(self) -> str:
        """A fixed-width table; the loss column is against the constrained float RNN on the same samples."""
        ref = self.stage("constrained")
        head = f"{'stage':<16}{'accuracy':>10}{'loss vs constr.':>17}{'spikes/inf':>12}{'syn.ev./inf':>13}{'samples':>9}{'wall s':>8}"
        lines = [f"task: {self.task}", head, "-" * len(head)]
        for s in self.stages:
            if s.loss_pp() is not None and s.loss_se_pp is not None:
                loss = f"{s.loss_pp():+.1f}±{s.loss_se_pp:.1f} pp"
            elif s.loss_pp() is not None:
                loss = f"{s.loss_pp():+.1f} pp"
            elif ref is not None and s.name != "float":
                loss = f"{100 * (ref.accuracy - s.accuracy):+.1f} pp"
            else:
                loss = ""
            spikes = f"{s.spikes_per_inference:.0f}" if s.spikes_per_inference is not None else "-"
            syn = f"{s.synaptic_events_per_inference:.0f}" if s.synaptic_events_per_inference is not None else "-"
            lines.append(f"{s.name:<16}{s.accuracy:>10.4f}{loss:>17}{spikes:>12}{syn:>13}{s.n_samples:>9}{s.wall_s:>8.1f}")
            if s.note:
                lines.append(f"{'':<16}  {s.note}")
        lines.extend(f"note: {n}" for n in self.notes)
        if self.ablation:
            lines += ["", "constraint ablation (test set, each row adds one constraint to the one above):",
                      ablation_table(self.ablation)]
        return "\n".join(lines)
