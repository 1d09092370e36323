"""Offline tasks load with the right shapes; user .npz tasks are validated."""

import numpy as np
import pytest

from neurolab_gui.core.conversion import tasks


def test_seq_digits_row_and_pixel_shapes():
    row = tasks.seq_digits("row")
    assert row.x_train.shape[1:] == (8, 8) and row.n_classes == 10
    assert len(row.x_train) + len(row.x_test) == 1797
    assert 0.0 <= row.x_train.min() and row.x_train.max() <= 1.0
    pix = tasks.seq_digits("pixel")
    assert pix.x_test.shape[1:] == (64, 1)
    assert set(np.unique(row.y_test)) == set(range(10))


def test_mnist1d_generated_locally_as_on_off_channels():
    t = tasks.mnist1d(num_samples=400, extra_train=0, chunk=1)
    assert t.x_train.shape == (320, 40, 2) and t.x_test.shape == (80, 40, 2)
    assert np.all((t.x_train[..., 0] == 0) | (t.x_train[..., 1] == 0))  # ON and OFF never both active
    state = np.random.get_state()[1][:4].copy()
    tasks.mnist1d(num_samples=100, extra_train=0)
    assert np.array_equal(np.random.get_state()[1][:4], state), "global numpy RNG must be restored"


def test_ecg_task_is_balanced_and_bounded():
    t = tasks.ecg(n_train=200, n_test=100)
    assert t.x_train.shape == (200, 48, 1) and t.n_classes == 2
    assert 0.3 < t.y_train.mean() < 0.7


def test_npz_task_round_trip_and_split(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((50, 12, 3)).astype(np.float32)
    labels = np.arange(50) % 5
    lengths = rng.integers(4, 13, 50)
    path = tmp_path / "mine.npz"
    np.savez(path, x=x, labels=labels, lengths=lengths)
    t = tasks.load_task(str(path))
    assert t.name == "mine" and t.n_classes == 5 and t.n_features == 3
    assert len(t.x_train) + len(t.x_test) == 50
    assert t.lengths_test.max() <= 12


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((4, 3, 2))}, "labels"),
        ({"x": np.full((4, 3, 2), np.nan), "labels": np.zeros(4, int)}, "NaN"),
        ({"x": np.zeros((4, 3, 2)), "labels": np.zeros(3, int)}, "shape"),
        ({"x": np.zeros((4, 3, 2)), "labels": np.zeros(4, int), "mean": np.zeros(2)}, "'mean' but not 'std'"),
        ({"x": np.zeros((4, 3, 2)), "labels": np.zeros(4, int), "mean": np.zeros(3), "std": np.ones(3)}, r"shape \[2\]"),
        ({"x": np.zeros((4, 3, 2)), "labels": np.zeros(4, int), "mean": np.zeros(2), "std": np.array([1.0, 0.0])}, "positive"),
        ({"x": np.zeros((4, 3, 2)), "labels": np.zeros(4, int), "lengths": np.array([1, 2, 3, 4])}, "lengths"),
        # a hostile or careless user's file: each error names the array, the rule and the place
        ({"x": np.zeros((4, 3, 2)), "labels": np.zeros(4, int), "lengths": np.array([1, 0, 2, 3])}, r"no valid step .*sequences \[1\]"),
        ({"x": np.zeros((4, 3, 2)), "labels": np.zeros(4, int), "lengths": np.array([1.5, 2, 2, 3])}, r"whole numbers .*\[0\]"),
        ({"x": np.zeros((4, 3, 9)), "labels": np.zeros(4, int), "lengths": np.array([5, 2, 2, 3])}, r"\[N, F, T\]"),
        ({"x": np.zeros((4, 3, 2)), "labels": np.array(["a", "b", "a", "b"])}, "integer class labels.*dtype"),
        ({"x": np.zeros((4, 3, 2)), "labels": np.eye(2)[[0, 1, 0, 1]]}, "one-hot"),
        ({"x": np.where(np.arange(24).reshape(4, 3, 2) == 15, np.nan, 0.0), "labels": np.zeros(4, int)},
         "sequence 2, step 1, feature 1"),
        ({"x": np.zeros((4, 3, 2)), "labels": np.zeros(4, int), "x_test": np.zeros((0, 3, 2)), "labels_test": np.zeros(0, int)},
         "no empty axis"),
        ({"x": np.zeros((4, 3, 2)), "labels": np.zeros(4, int), "x_test": np.zeros((2, 3, 2)), "labels_test": np.array([0.0, 0.5])},
         "'labels_test' must hold whole-number"),
        ({"x": np.zeros((4, 3, 2)), "labels": np.array([0, 1, 2, 3]), "n_classes": 3}, "'n_classes' is 3 but the labels reach 3"),
        ({"x": np.where(np.arange(24).reshape(4, 3, 2) == 5, np.inf, 0.0), "labels": np.zeros(4, int), "lengths": np.array([2, 3, 3, 3])},
         "infinite values in its padding"),
        ({"x": np.full((4, 3, 2), 1e300), "labels": np.zeros(4, int)}, "float32"),
    ],
)
def test_npz_task_errors_name_the_problem(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=message):
        tasks.load_npz_task(path)


def test_npz_task_reads_nan_padding_as_zero_and_says_so(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 6, 2)).astype(np.float32)
    lengths = rng.integers(2, 7, 40)
    padded = np.arange(6)[None, :, None] >= lengths[:, None, None]
    labels = np.arange(40) % 2
    np.savez(tmp_path / "zeros.npz", x=np.where(padded, 0.0, x), labels=labels, lengths=lengths)
    np.savez(tmp_path / "nans.npz", x=np.where(padded, np.nan, x), labels=labels, lengths=lengths)
    zeros, nans = tasks.load_npz_task(tmp_path / "zeros.npz"), tasks.load_npz_task(tmp_path / "nans.npz")
    assert np.array_equal(zeros.x_train, nans.x_train) and np.array_equal(zeros.x_test, nans.x_test)
    n_padded = int((lengths < 6).sum())
    assert f"NaN padding read as 0 in {n_padded} sequences" in nans.description
    assert "NaN" not in zeros.description


def test_unknown_task_lists_the_built_in_ones():
    with pytest.raises(ValueError, match="seq_digits"):
        tasks.load_task("imagenet")


def test_config_for_task_layers_task_defaults_model_dynamics_and_overrides():
    from neurolab_gui.core.conversion.models import RNNConfig
    from neurolab_gui.core.conversion.pipeline import TASK_DEFAULTS, config_for_task

    cfg = config_for_task("mnist1d")
    assert (cfg.n_hidden, cfg.steps_per_sample) == (TASK_DEFAULTS["mnist1d"]["n_hidden"], TASK_DEFAULTS["mnist1d"]["steps_per_sample"])
    assert cfg.train.epochs == TASK_DEFAULTS["mnist1d"]["epochs"]
    # a trained model's dynamics win over the task's defaults (the time mapping must be the trained one)
    trained = RNNConfig(2, 32, 10, "leaky", 0.9, 3, "last", 1.0, "heun")
    cfg = config_for_task("mnist1d", trained)
    assert (cfg.n_hidden, cfg.retention, cfg.steps_per_sample, cfg.readout) == (32, 0.9, 3, "last")
    # explicit options win over both; None means "not given"
    cfg = config_for_task("mnist1d", trained, retention=0.8, epochs=None, qat_epochs=3, seed=5, noise_std=0.2)
    assert cfg.retention == 0.8 and cfg.constraint.qat.epochs == 3
    assert cfg.seed == cfg.train.seed == cfg.constraint.qat.seed == 5
    assert cfg.train.noise_std == cfg.constraint.qat.noise_std == 0.2
    # configurations are independent objects
    assert config_for_task("seq_digits").train is not config_for_task("seq_digits").train
    # the QAT learning rate is a task default (measured per task) and an option
    assert config_for_task("seq_digits").constraint.qat.lr == TASK_DEFAULTS["seq_digits"]["qat_lr"] == 5e-3
    assert config_for_task("mnist1d").constraint.qat.lr == TASK_DEFAULTS["mnist1d"]["qat_lr"]
    assert config_for_task("phototaxis").constraint.qat.lr == 2e-3  # no task default: the constraint's own
    assert config_for_task("mnist1d", qat_lr=1e-2).constraint.qat.lr == 1e-2
    assert config_for_task("seq_digits").train.lr != 5e-3  # the float training keeps its own rate
    # seq_digits' weight decay is a task default of the float training; QAT keeps none
    digits = config_for_task("seq_digits")
    assert digits.train.weight_decay == TASK_DEFAULTS["seq_digits"]["weight_decay"] > 0
    assert digits.constraint.qat.weight_decay == 0.0
    assert digits.steps_per_sample == TASK_DEFAULTS["seq_digits"]["steps_per_sample"]
    # gradual pruning in QAT is a task default (MNIST-1D) and an option; other tasks prune at once
    assert config_for_task("mnist1d").constraint.prune_epochs == TASK_DEFAULTS["mnist1d"]["prune_epochs"] > 0
    assert config_for_task("seq_digits").constraint.prune_epochs == 0
    assert config_for_task("mnist1d", prune_epochs=0).constraint.prune_epochs == 0
    with pytest.raises(ValueError, match="prune_epochs"):
        config_for_task("seq_digits", prune_epochs=-1)


def test_config_for_task_names_an_unknown_option():
    from neurolab_gui.core.conversion.pipeline import config_for_task

    with pytest.raises(ValueError, match="n_hiden"):
        config_for_task("seq_digits", n_hiden=12)


def _train_error(tmp_path, capsys, data: str) -> str:
    """The one ``error:`` line of ``neurolab train --task DATA`` (exit code 2, no traceback, no checkpoint)."""
    from neurolab_gui.cli import main

    assert main(["train", "--task", data, "--epochs", "1", "--out", str(tmp_path / "m.pt")]) == 2
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "Traceback" not in text and not (tmp_path / "m.pt").exists()
    lines = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, text
    return lines[0]


@pytest.mark.timeout(60)  # the old loop over range(n_classes) never ended
def test_a_huge_n_classes_or_label_is_refused_before_the_split(tmp_path, capsys):
    x, labels = np.zeros((15, 3, 2)), np.arange(15) % 3
    np.savez(tmp_path / "huge.npz", x=x, labels=labels, n_classes=10**9)
    line = _train_error(tmp_path, capsys, str(tmp_path / "huge.npz"))
    assert "huge.npz: 'n_classes' is 1000000000, more than the 4096 classes" in line and "3..4096" in line
    np.savez(tmp_path / "label.npz", x=x, labels=np.where(np.arange(15) == 14, 10**9, labels))
    assert "'labels' reach 1000000000, but a task may have at most 4096 classes" in _train_error(tmp_path, capsys, str(tmp_path / "label.npz"))
    np.savez(tmp_path / "most.npz", x=x, labels=labels, n_classes=tasks.MAX_CLASSES)  # the bound itself is accepted
    assert tasks.load_npz_task(tmp_path / "most.npz").n_classes == tasks.MAX_CLASSES


def test_files_that_are_not_npz_archives_are_named_as_such(tmp_path, capsys):
    np.save(tmp_path / "plain.npy", np.zeros((4, 3, 2)))  # np.save instead of np.savez: crashed with AttributeError
    line = _train_error(tmp_path, capsys, str(tmp_path / "plain.npy"))
    assert "plain.npy holds a single array saved with numpy.save (.npy)" in line and "'x' and 'labels'" in line
    (tmp_path / "notes.txt").write_text("hello")  # numpy called this pickled data and advised allow_pickle
    line = _train_error(tmp_path, capsys, str(tmp_path / "notes.txt"))
    assert "notes.txt is not an .npz archive (it starts with b'hello'" in line and "pickle" not in line
    (tmp_path / "zeros.npz").write_bytes(b"\0" * 100)
    assert "zeros.npz is not an .npz archive" in _train_error(tmp_path, capsys, str(tmp_path / "zeros.npz"))
    (tmp_path / "empty.npz").write_bytes(b"")
    assert "empty.npz is not an .npz archive (it is empty)" in _train_error(tmp_path, capsys, str(tmp_path / "empty.npz"))


def test_a_data_set_too_small_for_the_automatic_test_split_says_what_to_do(tmp_path, capsys):
    np.savez(tmp_path / "tiny.npz", x=np.zeros((3, 4, 2)), labels=np.array([0, 1, 2]))  # 20 % of 1 rounds to 0
    line = _train_error(tmp_path, capsys, str(tmp_path / "tiny.npz"))
    assert "tiny.npz: the automatic test split (20% of each class, rounded) is empty" in line
    assert "'x_test' and 'labels_test'" in line and "at least 3 sequences" in line
    np.savez(tmp_path / "split.npz", x=np.zeros((3, 4, 2)), labels=np.array([0, 1, 2]),
             x_test=np.zeros((1, 4, 2)), labels_test=np.array([1]))  # the fix the message names
    assert len(tasks.load_npz_task(tmp_path / "split.npz").x_test) == 1
