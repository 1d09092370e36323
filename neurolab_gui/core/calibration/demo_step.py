"""The calibration step of the headless demo (``neurolab demo``): calibrate, compare, draw.

Kept here so the demo (the conversion developer's module) needs one call at its end.  On a fresh
emulated board with the default mismatch it runs :func:`~.engine.calibrate_network` (one
compensation iteration: neuron selection, bias tuning, CAM compensation, network gain matching and
a readout re-fitted on board features, no fine-tuning, to keep the demo within its time budget),
evaluates the calibrated network on the test samples the conversion's ``board_mismatch`` stage ran
(the same emulated board: serial and mismatch seed) and reports that stage as "before" (transfer
matching alone), prints the before/after summary and writes the figures.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from ..jobs import ProgressSink
from .engine import CalibrationConfig, calibrate_network

#: A phase timer: ``phase(name)`` is a context manager around one phase (``cli.demo.Timeline.phase``).
PhaseTimer = Callable[[str], AbstractContextManager]


def demo_calibration_config(chip_budget_s: float | None = None) -> CalibrationConfig:
    """The demo's calibration: no fine-tuning (host time the demo's two minutes leave no room for;
    ``neurolab calibrate`` runs it), ``chip_budget_s`` of chip time (None: the engine's default)."""
    cfg = CalibrationConfig(fine_tune_in_loop=False)
    if chip_budget_s is not None:
        if not chip_budget_s > 0:
            raise ValueError(f"the calibration's chip budget must be a positive number of seconds, got {chip_budget_s}")
        cfg.chip_budget_s = float(chip_budget_s)
    return cfg


def run_calibration_step(
    conversion,  # neurolab_gui.core.conversion.pipeline.ConversionResult
    task,
    pipeline_config,
    out_dir: str | Path,
    n_test: int = 120,
    emulator_seed: int = 0,
    config: CalibrationConfig | None = None,
    progress: ProgressSink | None = None,
    phase: PhaseTimer | None = None,
) -> dict:
    """Calibrate ``conversion`` on an emulated board; returns the summary (accuracies, CVs, chip time, figures).

    "before" is the conversion's ``board_mismatch`` stage when it ran on the same first ``n_test``
    samples (that stage's board is this one: ``NLEMU-MISMATCH`` with ``emulator_seed``), else the
    uncompensated network is run here.  ``phase`` times the calibration, the runs and the figures.
    """
    from ..boards import open_emulator
    from ..conversion.deployment import deploy_network, run_deployment
    from ..conversion.mapping import map_network
    from ..conversion.training import evaluate
    from .figures import network_figures

    cfg = config or demo_calibration_config()
    timed = phase or (lambda _name: nullcontext())
    net = conversion.constrained
    mapped = map_network(net, pipeline_config.time_mapping(), pipeline_config.settings)
    n = min(n_test, len(task.x_test))
    x, y, lengths = task.x_test[:n], task.y_test[:n], task.lengths_test[:n]
    board = open_emulator("NLEMU-MISMATCH", seed=emulator_seed)
    try:
        with timed("calibration"):
            result = calibrate_network(board, mapped, net, task, cfg, progress=progress)
        # written and run the way every front end deploys a network (conversion.deployment)
        stage = next((st for st in conversion.report.stages if st.name == "board_mismatch" and st.n_samples == n), None)
        if stage is not None:
            before = stage.accuracy
        else:
            with timed("board before calibration: run"):
                before = run_deployment(deploy_network(board, result.mapped_before), x, y, lengths, seed=pipeline_config.seed).accuracy
        with timed("board after calibration: run"):
            after = run_deployment(deploy_network(board, result.mapped), x, y, lengths, seed=pipeline_config.seed).accuracy
        acc = {"constrained": evaluate(net.model, x, y, lengths)[0], "board_before": before, "board_after": after}
    finally:
        board.close()
    with timed("figures"):
        figures = network_figures(result, out_dir, acc)
    return {**result.summary(), "accuracy": acc, "n_test": n, "figures": [str(p) for p in figures]}
