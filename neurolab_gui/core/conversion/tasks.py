"""Sequence-classification tasks that work fully offline, and the interface for bringing your own.

A :class:`Task` holds train and test sequences as float32 arrays ``[N, T, F]`` with values in
``[0, 1]`` (they become spike rates, which cannot be negative), integer labels and, for
variable-length data, the number of valid steps per sequence.

Built-in tasks (nothing is downloaded at run time):

``seq_digits``
    scikit-learn's bundled 8x8 digits, fed row by row (``T=8, F=8``) or pixel by pixel
    (``T=64, F=1``), pixel values / 16.
``mnist1d``
    MNIST-1D generated locally with ``mnist1d.data.make_dataset`` (never its download path).
    Its samples are signed, so each value becomes two non-negative channels: ON = max(x, 0)/s
    and OFF = max(-x, 0)/s with ``s`` a high percentile of |x| on the training set (values above
    are clipped).  ON/OFF splitting is how event sensors encode signed signals and keeps the
    first layer linear: ``W x = W x_on - W x_off``.
``ecg``
    A synthetic ECG anomaly task: single-lead beats built from a sum of Gaussian P, Q, R, S, T
    waves (the ECGSYN morphology) with random heart rate, amplitude jitter, baseline wander and
    noise.  Class 1 (anomalous) beats have one of: a wide QRS (bundle-branch-like), an inverted
    T wave, ST elevation or a missing P wave.  Balanced classes.

User data: :func:`load_npz_task` reads a ``.npz`` file (:data:`DATA_FILE_FORMAT` describes it,
``neurolab convert --help`` and the README show it): raw real-valued features of any sign, an
optional per-feature ``mean``/``std``, variable lengths; the features become spike-generator
rates through an :class:`~.encoding.InputEncoding` (ON/OFF channels for signed features) that
the task keeps, so an imported model's input weights can be split to match.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from drivers.user_files import open_regular

from .encoding import InputEncoding

#: The most classes a task may have (a data file's ``n_classes``, or its largest label + 1): one
#: readout row per class, and what a calibration profile stores at most (one per neuron of a board).
#: Checked before the stratified split loops over the classes.
MAX_CLASSES = 4096


@dataclass
class Task:
    """A sequence-classification data set ready for the RNN and for spike encoding.

    Attributes
    ----------
    name : short identifier used in reports
    x_train, x_test : float32 ``[N, T, F]``, values in ``[0, 1]``
    y_train, y_test : int64 ``[N]``, labels ``0..n_classes-1``
    lengths_train, lengths_test : int64 ``[N]``, valid steps per sequence (``T`` when all full)
    n_classes : number of classes
    description : one line for reports
    encoding : how a user file's raw features became these rates (None: the data were rates already)
    warnings : what a user file holds that is usable but likely a mistake (test classes that training
        never saw), one sentence each naming the file; a command line prints them as ``warning:`` lines
    source : the data file it was read from, as an absolute path (empty for a built-in task): what
        tells a user file apart from a built-in task of the same name
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    lengths_train: np.ndarray = field(default=None)  # type: ignore[assignment]
    lengths_test: np.ndarray = field(default=None)  # type: ignore[assignment]
    description: str = ""
    encoding: InputEncoding | None = None
    warnings: tuple[str, ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        self.x_train = _check_x(self.x_train, "x_train")
        self.x_test = _check_x(self.x_test, "x_test")
        if self.x_train.shape[2] != self.x_test.shape[2]:
            raise ValueError(
                f"train and test sequences have different feature counts ({self.x_train.shape[2]} vs {self.x_test.shape[2]})"
            )
        self.y_train = _check_labels(self.y_train, len(self.x_train), self.n_classes, "y_train")
        self.y_test = _check_labels(self.y_test, len(self.x_test), self.n_classes, "y_test")
        self.lengths_train = _valid_lengths(self.lengths_train, self.x_train, "lengths_train")
        self.lengths_test = _valid_lengths(self.lengths_test, self.x_test, "lengths_test")

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[2])

    @property
    def n_steps(self) -> int:
        return int(self.x_train.shape[1])

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> Task:
        """A copy holding only the first ``n_train`` / ``n_test`` sequences (for quick runs)."""
        tr = slice(None, n_train)
        te = slice(None, n_test)
        return Task(
            self.name,
            self.x_train[tr],
            self.y_train[tr],
            self.x_test[te],
            self.y_test[te],
            self.n_classes,
            self.lengths_train[tr],
            self.lengths_test[te],
            self.description,
            self.encoding,
            self.warnings,
            self.source,
        )

    def with_full_lengths(self) -> Task:
        """A copy whose sequences all run to the padded length (the readout rule ``last_step``)."""
        return replace(self, lengths_train=np.full(len(self.x_train), self.n_steps, np.int64),
                       lengths_test=np.full(len(self.x_test), self.n_steps, np.int64))


def _check_x(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:  # [N, T] → one feature
        x = x[:, :, None]
    if x.ndim != 3:
        raise ValueError(f"{what} must have shape [N, T, F] (or [N, T]); got {x.shape}")
    if len(x) == 0 or x.shape[1] == 0 or x.shape[2] == 0:
        raise ValueError(f"{what} is empty (shape {x.shape})")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} contains NaN or infinite values")
    if x.min() < 0.0 or x.max() > 1.0:
        raise ValueError(
            f"{what} values must lie in [0, 1] because they become spike rates; got range "
            f"[{x.min():.3g}, {x.max():.3g}] (rescale, or split signed data into ON/OFF channels)"
        )
    return x


def _check_labels(y: np.ndarray, n: int, n_classes: int, what: str) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (n,):
        raise ValueError(f"{what} must have shape [{n}] to match the sequences; got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError(f"{what} must hold integer class labels")
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"{what} labels must lie in 0..{n_classes - 1}; got {y.min()}..{y.max()}")
    return y


def _stratified_split(n_classes: int, y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in range(n_classes):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = int(round(len(idx) * test_fraction))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def seq_digits(mode: str = "row", seed: int = 0, test_fraction: float = 0.2) -> Task:
    """scikit-learn's bundled 8x8 digits as sequences (offline; 1,797 images, 10 classes).

    Parameters
    ----------
    mode : ``"row"`` (8 steps of 8 pixels) or ``"pixel"`` (64 steps of 1 pixel)
    seed : seed of the stratified train/test split
    test_fraction : share of each class held out for testing
    """
    from sklearn.datasets import load_digits

    if mode not in ("row", "pixel"):
        raise ValueError(f"seq_digits mode must be 'row' or 'pixel', got {mode!r}")
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)  # [N, 8, 8], pixel values 0..16
    x = images if mode == "row" else images.reshape(len(images), 64, 1)
    y = digits.target.astype(np.int64)
    tr, te = _stratified_split(10, y, test_fraction, seed)
    return Task(
        f"seq_digits_{mode}" if mode != "row" else "seq_digits",
        x[tr],
        y[tr],
        x[te],
        y[te],
        10,
        description=f"sklearn 8x8 digits, {mode} by {mode} ({x.shape[1]} steps x {x.shape[2]} features)",
    )


#: The built-in MNIST-1D task's presentation: 4 samples per input step and 4,000 more generated
#: training samples (docs/decisions.md, "MNIST-1D: chunks of 4 samples, 8,000 training samples").
MNIST1D_CHUNK = 4
MNIST1D_EXTRA_TRAIN = 4000


def mnist1d(num_samples: int = 5000, seed: int = 42, clip_percentile: float = 99.5,
            extra_train: int = MNIST1D_EXTRA_TRAIN, chunk: int = MNIST1D_CHUNK) -> Task:
    """MNIST-1D generated locally (``make_dataset``; 40 samples, ON/OFF channels, 10 classes).

    ``num_samples`` and ``seed`` give the standard data set (5,000 samples at seed 42: 4,000 train,
    1,000 test).  ``extra_train`` more training samples come from the same generator with seed
    ``seed + 1`` (the same templates and transformations, other random draws), so the test set
    stays the standard one.  ``chunk`` consecutive signal samples are presented together as one
    input step (``40 / chunk`` steps of ``2 * chunk`` channels: the ON and OFF channel of each sample
    in order), so the RNN sees a short stretch of the signal's shape at once, as the rows of
    :func:`seq_digits` show a digit; it must divide 40.  ``make_dataset`` reseeds Python's and numpy's global generators;
    their states are restored afterwards so that calling this does not change other code's
    random streams.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    def generate(n: int, data_seed: int, train_split: float) -> dict:
        args = get_dataset_args()
        args.num_samples, args.seed, args.train_split = int(n), int(data_seed), train_split
        np_state, py_state = np.random.get_state(), random.getstate()
        try:
            return make_dataset(args)
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)

    if extra_train < 0:
        raise ValueError(f"extra_train must be >= 0, got {extra_train}")
    n_samples = int(get_dataset_args().final_seq_length)
    if chunk < 1 or n_samples % chunk:
        raise ValueError(f"chunk must divide the {n_samples} samples of a sequence, got {chunk}")
    data = generate(num_samples, seed, get_dataset_args().train_split)
    x_train, y_train = np.asarray(data["x"], np.float32), np.asarray(data["y"])
    x_test = np.asarray(data["x_test"], np.float32)
    scale = float(np.percentile(np.abs(x_train), clip_percentile))
    if extra_train > 0:
        extra = generate(extra_train, seed + 1, 1.0)
        x_train = np.concatenate([x_train, np.asarray(extra["x"], np.float32)])
        y_train = np.concatenate([y_train, np.asarray(extra["y"])])

    def on_off(x: np.ndarray) -> np.ndarray:
        x = np.clip(x / scale, -1.0, 1.0)
        pairs = np.stack([np.maximum(x, 0.0), np.maximum(-x, 0.0)], axis=2)  # [N, 40, 2]
        return pairs.reshape(len(x), x.shape[1] // chunk, 2 * chunk)

    return Task(
        "mnist1d",
        on_off(x_train),
        y_train,
        on_off(x_test),
        np.asarray(data["y_test"]),
        10,
        description=f"MNIST-1D generated locally ({len(x_train)} train / {len(x_test)} test, "
                    f"{n_samples // chunk} steps of {chunk} sample(s), ON/OFF channels)",
    )


def _gauss(t: np.ndarray, centre: float, width: float, amp: float) -> np.ndarray:
    return amp * np.exp(-0.5 * ((t - centre) / width) ** 2)


def ecg(n_train: int = 1200, n_test: int = 400, n_steps: int = 48, seed: int = 0) -> Task:
    """Synthetic single-lead ECG beats, normal (0) vs anomalous (1); see the module docstring.

    Each sequence is one beat window of ``n_steps`` samples (about 0.8 s), min-max scaled to
    ``[0, 1]`` with a fixed range so that amplitude differences survive.
    """
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    t = np.linspace(-0.35, 0.45, n_steps)  # seconds around the R peak
    x = np.zeros((n, n_steps), np.float32)
    y = np.arange(n) % 2
    rng.shuffle(y)
    for i in range(n):
        hr_scale = rng.uniform(0.85, 1.15)  # heart-rate dependent stretching of the QT interval
        jit = lambda s: s * rng.uniform(0.85, 1.15)  # noqa: E731 - amplitude jitter per wave
        p = _gauss(t, -0.2 * hr_scale, 0.025, jit(0.15))
        q = _gauss(t, -0.03, 0.01, jit(-0.12))
        r = _gauss(t, 0.0, 0.012, jit(1.0))
        s = _gauss(t, 0.03, 0.01, jit(-0.2))
        tw = _gauss(t, 0.28 * hr_scale, 0.05, jit(0.3))
        st = np.zeros_like(t)
        if y[i] == 1:
            kind = rng.integers(4)
            if kind == 0:  # wide QRS: bundle-branch-block-like
                r = _gauss(t, 0.01, 0.035, jit(0.8))
                s = _gauss(t, 0.07, 0.03, jit(-0.3))
            elif kind == 1:  # inverted T wave
                tw = -tw
            elif kind == 2:  # ST elevation between S and T
                st = 0.2 * ((t > 0.05) & (t < 0.22 * hr_scale)).astype(float)
            else:  # missing P wave (atrial fibrillation-like)
                p = np.zeros_like(t)
        wander = rng.uniform(-0.08, 0.08) * np.sin(2 * np.pi * rng.uniform(0.2, 0.5) * t + rng.uniform(0, 2 * np.pi))
        noise = rng.normal(0.0, 0.03, n_steps)
        x[i] = p + q + r + s + tw + st + wander + noise
    x = np.clip((x + 0.5) / 1.8, 0.0, 1.0)  # fixed range -0.5..1.3 → 0..1
    return Task(
        "ecg",
        x[:n_train, :, None],
        y[:n_train],
        x[n_train:, :, None],
        y[n_train:],
        2,
        description=f"synthetic ECG beats, normal vs anomalous ({n_steps} steps x 1 feature)",
    )


#: The ``.npz`` data file format (``--task FILE.npz``), shown by ``neurolab convert --help``.
DATA_FILE_FORMAT = """\
data file (--task FILE.npz), written with numpy.savez:
  x             float [N, T, F] (or [N, T]): raw features of any sign, padded after
                each sequence's valid steps to a common T (NaN/inf refused in valid
                steps; NaN padding is read as 0)
  labels        int [N], classes 0..C-1 ('y' is accepted too)
  lengths       int [N], valid steps per sequence, 1..T (optional; default T for all)
  x_test, labels_test, lengths_test
                an explicit test split (optional; default: 20 % of each class, seeded)
  mean, std     float [F]: the per-feature normalisation the model was trained with
                (optional); applied to the raw features: --normalize encode (default:
                z = (x - mean) / std before spike encoding) or fold (into W_ih and b_ih)
  n_classes     int (optional), when some classes are absent from the file (at most 4096)
Features in [0, 1] without mean/std are spike rates as they are; otherwise each feature
becomes an ON channel max(v, 0) / s and, if it takes negative values, an OFF channel
max(-v, 0) / s (s: its 99.9th percentile of |v| on the valid training steps). An imported
nn.RNN's input weights are split to match ([s W, -s W]).
example:
  np.savez("mydata.npz", x=x, labels=y, lengths=lengths, x_test=xt, labels_test=yt,
           lengths_test=lt, mean=x_mean, std=x_std)"""


def load_npz_task(path: str | Path, name: str | None = None, test_fraction: float = 0.2, seed: int = 0,
                  normalization: str = "encode", clip_percentile: float = 99.9) -> Task:
    """Load a user task from a ``.npz`` file; :data:`DATA_FILE_FORMAT` lists the keys.

    Raw features of any sign are accepted; unless they are rates already (all in ``[0, 1]``, no
    ``mean``/``std``), they are encoded into rate channels by an :class:`~.encoding.InputEncoding`
    fitted on the training split (``normalization``: where ``mean``/``std`` are applied).
    """
    path = Path(path)
    try:
        data = _open_npz(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"task file {path} does not exist") from None
    _check_fits_in_memory(data, path)
    keys = set(data.files)

    def read(n: str) -> np.ndarray:
        try:
            value = data[n]
        except ValueError as exc:  # an object array (pickled): refused, nothing executed
            raise ValueError(f"{path}: array {n!r} cannot be read without pickle ({exc})") from None
        if isinstance(value, bytes):  # numpy hands back the raw bytes of a member that is no .npy array
            raise ValueError(f"{path}: {n!r} ({n}.npy in the archive) is not a numpy array but {len(value)} bytes of "
                             "something else; write the file with numpy.savez")
        return value

    def get(*names: str) -> np.ndarray | None:
        """The array of the first of ``names`` (aliases) in the file; aliases that are both there must agree."""
        found = [n for n in names if n in keys]
        if not found:
            return None
        value = read(found[0])
        for other in found[1:]:
            if not np.array_equal(np.asarray(value), np.asarray(read(other))):
                raise ValueError(f"{path} has both {found[0]!r} and {other!r} (two names of one array) and they differ; "
                                 "keep the one that is right and remove the other")
        return value

    x = get("x", "sequences")
    y = get("labels", "y")
    if x is None or y is None:
        raise ValueError(f"{path} must contain arrays 'x' and 'labels'; found {sorted(keys)}.\n{DATA_FILE_FORMAT}")
    x = _raw_features(x, f"{path}: 'x'")
    y = _raw_labels(y, len(x), f"{path}: 'labels'")
    lengths = _valid_lengths(get("lengths"), x, f"{path}: 'lengths'")
    x, nan_padded = _valid_steps_finite(x, lengths, f"{path}: 'x'")  # before a split, so a message's place is the file's
    x_test, y_test, lengths_test = get("x_test"), get("labels_test", "y_test"), get("lengths_test")
    if x_test is None:
        n_classes = _n_classes(get("n_classes"), [y], path)
        tr, te = _stratified_split(n_classes, y, test_fraction, seed)
        if not len(te):
            counts = np.bincount(y)
            raise ValueError(f"{path}: the automatic test split ({test_fraction:.0%} of each class, rounded) is empty: "
                             f"{len(y)} sequences, at most {counts.max()} per class, are too few. Store a test split in "
                             "the file as 'x_test' and 'labels_test' (and 'lengths_test'), or give a class at least "
                             f"{_min_for_one_test_sample(test_fraction)} sequences")
        x, x_test, y, y_test, lengths, lengths_test = x[tr], x[te], y[tr], y[te], lengths[tr], lengths[te]
    elif y_test is None:
        raise ValueError(f"{path} has 'x_test' but no 'labels_test'")
    else:
        x_test = _raw_features(x_test, f"{path}: 'x_test'")
        y_test = _raw_labels(y_test, len(x_test), f"{path}: 'labels_test'")
        lengths_test = _valid_lengths(lengths_test, x_test, f"{path}: 'lengths_test'")
        n_classes = _n_classes(get("n_classes"), [y, y_test], path)
        x_test, nan_test = _valid_steps_finite(x_test, lengths_test, f"{path}: 'x_test'")
        nan_padded += nan_test
    if x.shape[2] != x_test.shape[2]:
        raise ValueError(f"{path}: train and test sequences have different feature counts ({x.shape[2]} vs {x_test.shape[2]})")
    mean, std = _normalisation(get("mean"), get("std"), x.shape[2], path)
    encoding = None
    in_unit_range = x.min() >= 0.0 and x.max() <= 1.0 and x_test.min() >= 0.0 and x_test.max() <= 1.0
    if mean is not None or not in_unit_range:
        encoding = InputEncoding.fit(x, lengths, mean, std, normalization, clip_percentile)
        x, x_test = encoding.rates(x, lengths), encoding.rates(x_test, lengths_test)
    # last, so that a file's other faults are named first
    if len(np.unique(y)) < 2:
        raise ValueError(f"{path}: every training sequence has the label {int(y[0])}; a classifier needs at least "
                         "two classes in 'labels'")
    warnings = []
    unseen = np.setdiff1d(y_test, y)
    if len(unseen):
        warnings.append(f"{path}: the test labels hold classes the training labels never do "
                        f"({_class_list(unseen)}); the model cannot learn them, so their test sequences count as errors")
    return Task(
        name or path.stem,
        x,
        y,
        x_test,
        y_test,
        n_classes,
        lengths,
        lengths_test,
        description=f"user task from {path.name}" + (f" ({encoding.n_raw} features -> {encoding.n_channels} rate channels, "
                                                     f"normalisation {encoding.normalization})" if encoding else "")
                    + (f"; NaN padding read as 0 in {nan_padded} sequences" if nan_padded else ""),
        encoding=encoding,
        warnings=tuple(warnings),
        source=str(path.resolve()),
    )


def _class_list(classes: np.ndarray, most: int = 10) -> str:
    """``"classes 5, 6, 7"`` (at most ``most`` of them, then how many more)."""
    shown = ", ".join(str(int(c)) for c in classes[:most])
    more = f" and {len(classes) - most} more" if len(classes) > most else ""
    return f"class{'es' if len(classes) > 1 else ''} {shown}{more}"


def _raw_features(x: np.ndarray, what: str) -> np.ndarray:
    """Real-valued ``[N, T, F]`` (or ``[N, T]``) features, non-empty (finiteness: :func:`_valid_steps_finite`)."""
    x = np.asarray(x)
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"{what} must hold numbers, got dtype {x.dtype}")
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3 or 0 in x.shape:
        raise ValueError(f"{what} must have shape [N, T, F] (or [N, T]) with no empty axis; got {x.shape}")
    with np.errstate(over="ignore"):
        x32 = x.astype(np.float32)
    if np.any(np.isfinite(x) & ~np.isfinite(x32)):
        raise ValueError(f"{what} holds values beyond float32's range (|v| up to {np.nanmax(np.abs(x[np.isfinite(x)])):.3g})")
    return x32


def _raw_labels(y: np.ndarray, n: int, what: str) -> np.ndarray:
    """Integer class labels ``[n]`` (whole-valued floats accepted), none negative."""
    y = np.asarray(y)
    if y.shape != (n,):
        raise ValueError(f"{what} must have shape [{n}] (one class per sequence); got {list(y.shape)}"
                         + (" -- one-hot labels? store the class indices (argmax)" if y.ndim == 2 and y.shape[0] == n else ""))
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or not np.all(np.mod(y, 1) == 0):
            raise ValueError(f"{what} must hold whole-number class labels; got values such as {y[np.flatnonzero(~(np.mod(y, 1) == 0))[:3]].tolist()}")
    elif not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{what} must hold integer class labels 0..C-1, got dtype {y.dtype}")
    if n and y.max() > MAX_CLASSES - 1:  # before int64, which would turn labels of 2**63 and more negative
        raise ValueError(f"{what} reach {int(y.max())}, but a task may have at most {MAX_CLASSES} classes "
                         f"(labels 0..{MAX_CLASSES - 1}); number the classes 0..C-1")
    y = y.astype(np.int64)
    if n and y.min() < 0:
        raise ValueError(f"{what} must lie in 0..C-1; sequences {np.flatnonzero(y < 0)[:5].tolist()} have negative labels")
    return y


def _open_npz(path: Path) -> np.lib.npyio.NpzFile:
    """``np.load`` of a data file that must be a regular file holding an ``.npz`` archive; a message that says
    what it is otherwise (``FileNotFoundError`` when it is missing)."""
    with open_regular(path, "a data file (--task)") as f:
        head = f.read(6)
    if head.startswith(b"\x93NUMPY"):  # np.save of one array, not np.savez of named arrays
        raise ValueError(f"{path} holds a single array saved with numpy.save (.npy); the data must be an .npz archive "
                         f"of named arrays, at least 'x' and 'labels' (numpy.savez).\n{DATA_FILE_FORMAT}")
    if not head.startswith(b"PK"):  # numpy would try it as a pickle and advise allow_pickle: wrong here
        what = "it is empty" if not head else f"it starts with {head!r}; an .npz archive is a zip file and starts with b'PK'"
        raise ValueError(f"{path} is not an .npz archive ({what}); write the data with numpy.savez (the format: neurolab convert --help)")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable .npz file ({exc})") from exc


def _npz_array_bytes(data: np.lib.npyio.NpzFile) -> dict[str, int]:
    """The bytes each array of an open ``.npz`` takes once read, from the members' ``.npy`` headers
    (nothing is decompressed beyond a header).  A member that is no readable ``.npy`` array counts
    0 here; reading it says what it is."""
    sizes = {}
    for name in data.files:
        try:
            with data.zip.open(f"{name}.npy") as member:
                version = np.lib.format.read_magic(member)
                shape, _, dtype = (np.lib.format.read_array_header_1_0(member) if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0(member))
        except Exception:  # noqa: BLE001 - not an .npy member (or a damaged one): the read names it
            sizes[name] = 0
            continue
        sizes[name] = int(np.prod(shape, dtype=object)) * dtype.itemsize
    return sizes


def available_memory_bytes() -> int | None:
    """Memory the kernel says is available without swapping (``MemAvailable``; None where unknown)."""
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/meminfo") as f:  # not Linux, or unreadable
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def _check_fits_in_memory(data: np.lib.npyio.NpzFile, path: Path) -> None:
    """Refuse a data file whose arrays alone would not fit in the memory available now, naming the
    largest ones: reading it would end in the out-of-memory killer (a 3 MB compressed file can hold
    gigabytes, and training needs about 2.5 times the data)."""
    sizes = _npz_array_bytes(data)
    total, available = sum(sizes.values()), available_memory_bytes()
    if available is None or total <= available:
        return
    largest = ", ".join(f"{name!r} {size / 1e9:.1f} GB" for name, size in sorted(sizes.items(), key=lambda kv: -kv[1])[:3])
    raise ValueError(f"{path}: its arrays take {total / 1e9:.1f} GB once read ({largest}), more than the "
                     f"{available / 1e9:.1f} GB of memory available; use a subset of the data, or a machine with more memory")


def _min_for_one_test_sample(test_fraction: float) -> int:
    """Fewest sequences a class needs for the stratified split to hold one of them out."""
    return next(n for n in range(1, 10_000) if int(round(n * test_fraction)) >= 1)


def _n_classes(declared: np.ndarray | None, labels: list[np.ndarray], path: Path) -> int:
    """Classes of the task: the file's ``n_classes`` if it gives one, else the largest label + 1.

    Either way at most :data:`MAX_CLASSES`, checked before anything loops over the classes.
    """
    largest = max(int(v.max()) for v in labels)
    if declared is None:
        if largest >= MAX_CLASSES:
            raise ValueError(f"{path}: 'labels' reach {largest}, but a task may have at most {MAX_CLASSES} classes "
                             f"(labels 0..{MAX_CLASSES - 1}); number the classes 0..C-1")
        return largest + 1
    if np.asarray(declared).size != 1 or not np.issubdtype(np.asarray(declared).dtype, np.integer):
        raise ValueError(f"{path}: 'n_classes' must be one integer; got {np.asarray(declared)!r}")
    n = int(declared)
    if n <= largest:
        raise ValueError(f"{path}: 'n_classes' is {n} but the labels reach {largest}")
    if n > MAX_CLASSES:
        raise ValueError(f"{path}: 'n_classes' is {n}, more than the {MAX_CLASSES} classes a task may have "
                         f"(the labels reach {largest}, so {largest + 1}..{MAX_CLASSES} is accepted)")
    return n


def _valid_lengths(lengths: np.ndarray | None, x: np.ndarray, what: str) -> np.ndarray:
    """Valid steps per sequence: whole numbers in ``1..T``; the message names the sequences that are not."""
    n, t = x.shape[:2]
    if lengths is None:
        return np.full(n, t, dtype=np.int64)
    lengths = np.asarray(lengths)
    if lengths.shape != (n,):
        raise ValueError(f"{what} must have shape [{n}] (one length per sequence); got {list(lengths.shape)}")
    if not (np.issubdtype(lengths.dtype, np.integer) or np.issubdtype(lengths.dtype, np.floating)):
        raise ValueError(f"{what} must hold whole numbers of steps, got dtype {lengths.dtype}")
    if np.issubdtype(lengths.dtype, np.floating) and not np.all(np.isfinite(lengths) & (np.mod(lengths, 1) == 0)):
        bad = np.flatnonzero(~(np.isfinite(lengths) & (np.mod(lengths, 1) == 0)))
        raise ValueError(f"{what} must hold whole numbers of steps; sequences {bad[:5].tolist()} have {lengths[bad[:5]].tolist()}")
    lengths = lengths.astype(np.int64)
    empty = np.flatnonzero(lengths < 1)
    if len(empty):
        raise ValueError(f"{what}: {len(empty)} sequences have no valid step (length {lengths[empty[0]]}; sequences "
                         f"{empty[:5].tolist()}{' ...' if len(empty) > 5 else ''}); every sequence needs 1..{t} steps -- "
                         "drop empty recordings from the file")
    long = np.flatnonzero(lengths > t)
    if len(long):
        hint = " -- is x stored as [N, F, T]? it must be [N, T, F]" if int(lengths.max()) <= x.shape[2] else ""
        raise ValueError(f"{what}: {len(long)} sequences are longer than the padded length T = {t} (up to {lengths.max()}; "
                         f"sequences {long[:5].tolist()}{' ...' if len(long) > 5 else ''}){hint}")
    return lengths


def _valid_steps_finite(x: np.ndarray, lengths: np.ndarray, what: str) -> tuple[np.ndarray, int]:
    """``x`` with NaN padding read as 0, and how many sequences had it; NaN/inf in a valid step is refused by place."""
    valid = np.arange(x.shape[1])[None, :] < lengths[:, None]
    bad = ~np.isfinite(x)
    if not bad.any():
        return x, 0
    in_valid = bad & valid[:, :, None]
    if in_valid.any():
        seq, step, feat = (int(v) for v in np.argwhere(in_valid)[0])
        raise ValueError(f"{what} contains {int(in_valid.sum())} NaN or infinite values in valid steps "
                         f"(the first: sequence {seq}, step {step}, feature {feat}, value {x[seq, step, feat]})")
    if np.isinf(x).any():
        seq, step, feat = (int(v) for v in np.argwhere(np.isinf(x))[0])
        raise ValueError(f"{what} contains infinite values in its padding (the first: sequence {seq}, step {step}, "
                         f"feature {feat}); pad with 0 or NaN")
    return np.where(bad, np.float32(0.0), x), int(bad.any(axis=(1, 2)).sum())


def _normalisation(mean: np.ndarray | None, std: np.ndarray | None, n_features: int, path: Path) -> tuple[np.ndarray | None, np.ndarray | None]:
    if mean is None and std is None:
        return None, None
    if mean is None or std is None:
        raise ValueError(f"{path} has '{'mean' if std is None else 'std'}' but not '{'std' if std is None else 'mean'}'; give both or neither")
    mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    for what, a in (("mean", mean), ("std", std)):
        if a.shape != (n_features,):
            raise ValueError(f"{path}: '{what}' must have shape [{n_features}] (one per feature); got {list(a.shape)}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{path}: '{what}' contains NaN or infinite values")
    if not np.all(std > 0):
        raise ValueError(f"{path}: 'std' must be positive for every feature; features {np.flatnonzero(~(std > 0)).tolist()} are not")
    return mean, std


def _phototaxis(**kwargs: object) -> Task:
    """The robot's steering task (:mod:`.robot_task`: DVS strips -> turn left / ahead / right)."""
    from .robot_task import phototaxis_task

    return phototaxis_task(**kwargs)  # type: ignore[arg-type]


#: Built-in tasks by name (``neurolab train --task NAME``).
BUILTIN_TASKS: dict[str, Callable[..., Task]] = {
    "seq_digits": lambda **kw: seq_digits("row", **kw),
    "seq_digits_pixel": lambda **kw: seq_digits("pixel", **kw),
    "mnist1d": mnist1d,
    "ecg": ecg,
    "phototaxis": lambda **kw: _phototaxis(**kw),
}


def load_task(name_or_path: str, normalization: str = "encode", **kwargs: object) -> Task:
    """A built-in task by name, or a user ``.npz`` file by path (``normalization``: see :func:`load_npz_task`)."""
    if name_or_path in BUILTIN_TASKS:
        return BUILTIN_TASKS[name_or_path](**kwargs)
    if name_or_path.endswith(".npz") or Path(name_or_path).exists():
        return load_npz_task(name_or_path, normalization=normalization)
    raise ValueError(f"unknown task {name_or_path!r}; built-in tasks: {', '.join(BUILTIN_TASKS)}, or a path to a .npz file")


def task_reference(text: str) -> str:
    """What a checkpoint stores to name the data it was made on: a built-in task's name, or a data
    file's absolute path (a file name alone could be a built-in task's, or another directory's file).

    Raises ``ValueError`` for a name that is neither a built-in task nor an existing file.
    """
    if text in BUILTIN_TASKS:
        return text
    path = Path(text)
    if not path.is_file():
        raise ValueError(f"task {text!r} is neither a built-in task ({', '.join(BUILTIN_TASKS)}) nor an existing data file")
    return str(path.resolve())


def stored_task(metadata: dict, checkpoint: str | Path, remedy: str = "pass --task (a built-in task or the FILE.npz it was made on)") -> str:
    """The task a checkpoint's metadata names (:func:`task_reference`), checked usable: what
    ``neurolab convert`` (without ``--task``) and the app's Model panel evaluate a loaded model on.

    Raises ``ValueError`` naming the checkpoint, the stored task and ``remedy`` (what the user
    does instead: ``--task`` on the command line, the data-file chooser in the app) when it does
    not name one, or names a data file that is gone, or only a file's stem (what ``neurolab
    train`` stored before it stored the path).
    """
    task = metadata.get("task")
    if not task:
        raise ValueError(f"the checkpoint {checkpoint} does not name its task; {remedy}")
    task = str(task)
    if task in BUILTIN_TASKS or Path(task).is_file():
        return task
    if Path(task).suffix == ".npz" or os.sep in task:
        raise ValueError(f"the checkpoint {checkpoint} was made on the data file {task}, which does not exist "
                         f"(moved or deleted?); {remedy}")
    raise ValueError(f"the checkpoint {checkpoint} names the task {task!r}, which is neither a built-in task "
                     f"({', '.join(BUILTIN_TASKS)}) nor a data file; {remedy}")
