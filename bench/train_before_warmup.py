"""Train pressed before the warm-up is done: the event loop's worst stall meanwhile.

Each run is a fresh Python process (nothing of torch imported yet): it builds the main window
offscreen, loads a tiny data file with the Data file… button (file dialog patched), starts the
warm-up as ``neurolab gui`` does once the first events are drawn (``core.warmup.warm_up``),
presses Train at once (QTest) for a 6-unit, 1-epoch training, and records the gaps of a 10 ms
GUI-thread timer until the training job ends.

Before the training job built its pipeline configuration on its worker, the click built it on
the GUI thread, which imported torch there while the warm-up thread was importing it: 1.4-1.9 s
stalls on a 2-core machine at load ~1; after, 57-71 ms.

A/B against another tree: run this file with ``PYTHONPATH=<that tree>``.  Last printed line: one
JSON object (``worst_gap_ms`` per run, ``stalls_over_100ms`` per run, ``warm_s`` per run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def child() -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import numpy as np
    from PyQt6.QtCore import Qt, QTimer
    from PyQt6.QtTest import QTest
    from PyQt6.QtWidgets import QApplication, QFileDialog

    app = QApplication([])
    from neurolab_gui.core.session import Session
    from neurolab_gui.core.warmup import warm_up
    from neurolab_gui.qt.main_window import MainWindow

    folder = tempfile.mkdtemp(prefix="neurolab-bench-")
    data = os.path.join(folder, "tiny.npz")
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.normal(0, 2, (60, 4, 5)).astype(np.float32), labels=np.arange(60) % 3)
    window = MainWindow(Session(), layout_path=os.path.join(folder, "layout.json"))
    window.reporter.show_messages = False
    window.show()
    panel = window.model_panel
    QFileDialog.getOpenFileName = staticmethod(lambda *a, **k: (data, ""))

    def run_until(done, limit_s: float) -> None:
        deadline = time.perf_counter() + limit_s
        while not done() and time.perf_counter() < deadline:
            app.processEvents()
            time.sleep(0.002)

    QTest.mouseClick(panel.data_button, Qt.MouseButton.LeftButton)
    run_until(lambda: panel.status.text() == "data file loading finished", 30)
    panel.hidden_spin.setValue(6)
    panel.epochs_spin.setValue(1)
    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(10)
    warming = warm_up()
    QTest.mouseClick(panel.train_button, Qt.MouseButton.LeftButton)
    run_until(lambda: panel.job is not None and panel.job.name == "training" and panel.job.done, 300)
    timer.stop()
    result = {"worst_gap_ms": round(max(gaps) * 1000, 1), "stalls_over_100ms": sum(g > 0.1 for g in gaps),
              "warm_s": round(warming.result(), 2), "job": str(panel.job.state)}
    window.session.close()
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child()
        return
    runs = []
    for _ in range(args.runs):
        done = subprocess.run([sys.executable, __file__, "--child"], capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            sys.exit(f"child failed:\n{done.stderr[-3000:]}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(runs[-1], flush=True)
    print(json.dumps({key: [run[key] for run in runs] for key in runs[0]}))


if __name__ == "__main__":
    main()
