"""`neurolab demo`, the headless main job: every stage on a reduced size, the shipped float model, bad options.

The demo's time budget is measured by running it (docs/decisions.md, "Demo budget"), never here.
"""

from __future__ import annotations

import json

import pytest

from neurolab_gui.cli import main
from neurolab_gui.cli.demo import DEMO_TASK, Timeline, shipped_checkpoint
from neurolab_gui.core.calibration import demo_step
from neurolab_gui.core.calibration.engine import CalibrationConfig


def test_the_shipped_float_model_is_what_its_metadata_says():
    """The demo says it loaded the shipped checkpoint and prints its stored accuracy: that accuracy is the model's."""
    from neurolab_gui.core.conversion.checkpoint import load_checkpoint
    from neurolab_gui.core.conversion.tasks import load_task
    from neurolab_gui.core.conversion.training import evaluate

    path = shipped_checkpoint()
    assert path.stat().st_size < 1_000_000
    loaded = load_checkpoint(path)
    assert loaded.metadata["task"] == DEMO_TASK
    task = load_task(DEMO_TASK)
    accuracy, _ = evaluate(loaded.model, task.x_test, task.y_test, task.lengths_test)
    assert accuracy == pytest.approx(loaded.metadata["test_accuracy"], abs=1e-6)
    assert accuracy > 0.85


@pytest.mark.slow  # ~24 s of CPU: three emulated boards' transfer matching and a calibration of 3 cores' 768 neurons
@pytest.mark.timeout(900)  # 300 s ran out on the shared 2-core machine at load ~27 (CPU is what it needs: ~24 s)
def test_demo_runs_every_stage_and_the_calibration_on_a_reduced_size(tmp_path, monkeypatch, capsys):
    """A 12-unit checkpoint -> constrain -> board ideal / mismatch -> calibration (short probes) -> after, on 4 samples.

    The same code path as the demo's default run (the shipped 128-unit model, 120 samples), on
    a size that keeps the test to seconds of CPU.
    """
    import torch

    from neurolab_gui.core.conversion.checkpoint import save_checkpoint
    from neurolab_gui.core.conversion.models import RateRNN, RNNConfig

    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / "tiny.pt", RateRNN(RNNConfig(8, 12, 10, "leaky", 0.85, 4, "mean", 1.0)),
                                 {"task": DEMO_TASK, "test_accuracy": 0.1})
    budgets = []

    def fast_config(chip_budget_s=None):
        budgets.append(chip_budget_s)
        return CalibrationConfig(fine_tune_in_loop=False, chip_budget_s=chip_budget_s, exc_levels_hz=(30.0, 75.0, 120.0),
                                 inh_levels_hz=(20.0, 60.0, 100.0), level_s=0.2, settle_s=0.05, weight_rounds=2,
                                 weight_tolerance=0.03, tune_tau=False, tune_refractory=False, n_gain_match=0, n_readout_fit=12)

    monkeypatch.setattr(demo_step, "demo_calibration_config", fast_config)
    report = tmp_path / "report.json"
    rc = main(["demo", "--checkpoint", str(checkpoint), "--n-test", "4", "--qat-epochs", "0", "--chip-budget", "30",
               "--figures", str(tmp_path / "figures"), "--json", str(report)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert budgets == [30.0]
    assert f"float model loaded from {checkpoint} (12 leaky ReLU units, test accuracy 0.100 when trained" in out
    assert "QAT 0 epochs" in out
    stages = {s["name"]: s for s in json.loads(report.read_text())["stages"]}
    assert set(stages) == {"float", "constrained", "board_ideal", "board_mismatch"}
    assert stages["board_ideal"]["n_samples"] == stages["board_mismatch"]["n_samples"] == 4
    assert "test accuracy on 4 samples: constrained" in out and "board after" in out
    # the calibration's "before" is the board_mismatch stage's accuracy, as the demo reports it
    before = float(out.split("board before ")[1].split()[0])
    assert before == pytest.approx(stages["board_mismatch"]["accuracy"], abs=5e-4)
    assert "readout re-fitted on 12 board samples" in out  # the loop ran on the board within the budget
    assert len(list((tmp_path / "figures").glob("*.png"))) == 3
    timeline = out.split("time line")[1]
    for phase in ("start-up", "data", "float model: load", "constrain (QAT)", "spiking stages: board_ideal, board_mismatch",
                  "calibration", "board after calibration: run", "figures", "total"):
        assert phase in timeline


def test_timeline_switches_phases_and_sums_to_the_total():
    clock = Timeline()
    with clock.phase("a"):
        clock.switch("b")
        assert clock.running() == "b"
    with clock.phase("c"):
        pass
    assert [name for name, _, _ in clock.phases] == ["a", "b", "c"]
    assert all(wall >= 0 and cpu >= 0 for _, wall, cpu in clock.phases)
    assert clock.running() is None
    assert clock.table().splitlines()[-1].split()[0] == "total"


@pytest.mark.parametrize("argv, message", [
    (["--checkpoint", "missing.pt"], "missing.pt"),
    (["--chip-budget", "0", "--n-test", "1", "--qat-epochs", "0"], "chip budget"),
    (["--task", "no_such_task"], "no_such_task"),
])
def test_demo_refuses_bad_options_naming_them(tmp_path, capsys, argv, message):
    rc = main(["demo", "--figures", str(tmp_path / "f"), *argv])
    assert rc == 2
    assert message in capsys.readouterr().err


def test_demo_refuses_train_with_a_checkpoint(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--train", "--checkpoint", "model.pt"])
    assert exc.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
