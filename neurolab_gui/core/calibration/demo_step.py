"""The calibration step of the headless demo (``neurolab demo``): calibrate, compare, draw.

Kept here so the demo (the conversion developer's module) needs one call at its end.  On a fresh
emulated board with the default mismatch it runs :func:`~.engine.calibrate_network` (one
compensation iteration: neuron selection, bias tuning, CAM compensation and a readout re-fitted
on board features, no fine-tuning, to keep the demo within its time budget), evaluates the
uncompensated and the calibrated network on the same test samples, prints the before/after
summary and writes the figures.
"""

from __future__ import annotations

from pathlib import Path

from ..jobs import ProgressSink
from .engine import CalibrationConfig, calibrate_network


def run_calibration_step(
    conversion,  # neurolab_gui.core.conversion.pipeline.ConversionResult
    task,
    pipeline_config,
    out_dir: str | Path,
    n_test: int = 120,
    emulator_seed: int = 0,
    config: CalibrationConfig | None = None,
    progress: ProgressSink | None = None,
) -> dict:
    """Calibrate ``conversion`` on an emulated board; returns the summary (accuracies, CVs, chip time, figures)."""
    from ..boards import open_emulator
    from ..conversion.mapping import map_network
    from ..conversion.spiking_run import run_on_board
    from ..conversion.training import evaluate
    from .figures import network_figures

    # the demo's five minutes leave no room for the fine-tuning or the network-level gain matching
    # (4 rounds of 60 samples, ~150 s of chip time on sequential digits); `neurolab calibrate` runs both
    cfg = config or CalibrationConfig(loop_iterations=0, n_validation=60, n_readout_fit=120, n_gain_match=0)
    net = conversion.constrained
    mapped = map_network(net, pipeline_config.time_mapping(), pipeline_config.settings)
    n = min(n_test, len(task.x_test))
    x, y, lengths = task.x_test[:n], task.y_test[:n], task.lengths_test[:n]
    board = open_emulator("NLEMU-MISMATCH", seed=emulator_seed)
    try:
        result = calibrate_network(board, mapped, net, task, cfg, progress=progress)
        acc = {
            "constrained": evaluate(net.model, x, y, lengths)[0],
            "board_before": run_on_board(board, result.mapped_before, x, lengths).accuracy(y),
            "board_after": run_on_board(board, result.mapped, x, lengths).accuracy(y),
        }
    finally:
        board.close()
    figures = network_figures(result, out_dir, acc)
    return {**result.summary(), "accuracy": acc, "n_test": n, "figures": [str(p) for p in figures]}
