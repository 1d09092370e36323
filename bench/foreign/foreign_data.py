"""Two data sets with signed, real-valued features and variable lengths, as a user would bring them.

Written with numpy only (nothing from NeuroLab), so that the foreign cases in this folder are
models and data the tool did not make.

``japanese_vowels``
    The UCI Japanese Vowels set (9 speakers, 12 LPC cepstrum coefficients per frame, 7-29
    frames, 270 train / 370 test), read from the ``.ts`` files inside the ``aeon`` wheel; the
    wheel is fetched once with ``pip download --no-deps aeon==1.6.0`` (the package registry) and
    the two files are cached beside the trained models.
``imu_gestures``
    Synthetic 6-axis IMU gestures (accelerometer with gravity on z + gyroscope), 6 classes,
    12-30 steps, 1200 train / 600 test, seeded: circle, left-right shake, up-down shake, tap,
    wrist twist, figure eight, with random tempo, amplitude, orientation tilt and sensor noise.

Both return raw features zero-padded to a common length (padding after the valid steps).
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

AEON_WHEEL = "aeon==1.6.0"
_JV_FILES = ("JapaneseVowels_TRAIN.ts", "JapaneseVowels_TEST.ts")


def _parse_ts(text: str) -> tuple[list[np.ndarray], list[str]]:
    """Sequences ``[T_i, F]`` and labels of a multivariate ``.ts`` file (sktime/aeon format)."""
    seqs, labels = [], []
    in_data = False
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            in_data = line.lower() == "@data"
            continue
        *dims, label = line.split(":")
        seqs.append(np.array([[float(v) for v in d.split(",")] for d in dims], np.float32).T)
        labels.append(label)
    return seqs, labels


def _pad(seqs: list[np.ndarray], t_max: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.zeros((len(seqs), t_max, seqs[0].shape[1]), np.float32)
    for i, s in enumerate(seqs):
        x[i, : len(s)] = s
    return x, np.array([len(s) for s in seqs], np.int64)


def japanese_vowels(cache: Path) -> dict[str, np.ndarray]:
    """The Japanese Vowels set (see the module docstring); raw LPC features, zero-padded."""
    folder = Path(cache) / "japanese_vowels"
    if not all((folder / f).exists() for f in _JV_FILES):
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", AEON_WHEEL, "-d", str(folder)], check=True)
        wheel = next(folder.glob("aeon-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            for f in _JV_FILES:
                (folder / f).write_bytes(z.read(f"aeon/datasets/data/JapaneseVowels/{f}"))
        wheel.unlink()
    (tr, ytr), (te, yte) = (_parse_ts((folder / f).read_text()) for f in _JV_FILES)
    t_max = max(len(s) for s in tr + te)
    classes = sorted(set(ytr), key=int)
    x, lengths = _pad(tr, t_max)
    x_test, lengths_test = _pad(te, t_max)
    return {"x": x, "lengths": lengths, "labels": np.array([classes.index(v) for v in ytr]),
            "x_test": x_test, "lengths_test": lengths_test, "labels_test": np.array([classes.index(v) for v in yte])}


def _gesture(kind: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """One gesture of ``n`` steps: ``[n, 6]`` = accelerometer (x, y, z with gravity) + gyroscope."""
    t = np.linspace(0.0, 1.0, n)
    cycles = rng.uniform(1.0, 1.6)
    w = 2 * np.pi * cycles * t
    amp = rng.uniform(0.6, 1.4)
    acc, gyr = np.zeros((n, 3)), np.zeros((n, 3))
    if kind == 0:  # circle in the x-y plane
        acc[:, 0], acc[:, 1] = np.cos(w), np.sin(w)
        gyr[:, 2] = 0.5
    elif kind == 1:  # left-right shake
        acc[:, 0] = np.sin(2 * w)
        gyr[:, 2] = 0.6 * np.cos(2 * w)
    elif kind == 2:  # up-down shake
        acc[:, 2] = np.sin(2 * w)
        gyr[:, 0] = 0.6 * np.cos(2 * w)
    elif kind == 3:  # taps: short spikes on z
        phase = (t * cycles * 3) % 1.0
        acc[:, 2] = np.where(phase < 0.15, 2.0, -0.2)
    elif kind == 4:  # wrist twist: rotation about x
        gyr[:, 0] = 1.5 * np.sin(w)
        acc[:, 1] = 0.3 * np.sin(w)
    else:  # figure eight
        acc[:, 0], acc[:, 1] = np.sin(w), np.sin(2 * w) / 2
        gyr[:, 2] = 0.4 * np.cos(w)
    acc *= amp
    gyr *= amp
    tilt = rng.normal(0.0, 0.25, 3)  # the sensor is held a little askew
    c, s = np.cos(tilt), np.sin(tilt)
    rot = (np.array([[1, 0, 0], [0, c[0], -s[0]], [0, s[0], c[0]]]) @ np.array([[c[1], 0, s[1]], [0, 1, 0], [-s[1], 0, c[1]]])
           @ np.array([[c[2], -s[2], 0], [s[2], c[2], 0], [0, 0, 1]]))
    acc = (acc + np.array([0.0, 0.0, 9.81])) @ rot.T  # gravity, seen through the tilt
    gyr = gyr @ rot.T
    x = np.concatenate([acc, 2.0 * gyr], axis=1)
    return x + rng.normal(0.0, 0.35, x.shape) + rng.normal(0.0, 0.15, (1, 6))  # white noise + sensor offset


def imu_gestures(n_train: int = 1200, n_test: int = 600, seed: int = 0) -> dict[str, np.ndarray]:
    """Synthetic IMU gestures (see the module docstring); raw features, zero-padded to 30 steps."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for part, n in (("", n_train), ("_test", n_test)):
        labels = np.arange(n) % 6
        rng.shuffle(labels)
        seqs = [_gesture(int(k), int(rng.integers(12, 31)), rng).astype(np.float32) for k in labels]
        out["x" + part], out["lengths" + part] = _pad(seqs, 30)
        out["labels" + part] = labels.astype(np.int64)
    return out
