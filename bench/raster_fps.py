"""Raster monitor throughput: feed synthetic events at a target rate while the raster panel redraws.

A producer thread pushes 1 ms batches (uniform over 1024 neurons of chip 0) through the
session's event path (``ConnectionManager.feed`` → event ring + per-bin counts) at ``--rate``
events/s; the raster panel redraws from its own timer (offscreen Qt).  Above the tick cap a frame
only slices the pre-binned counts (``monitors.BinnedCounts``, filled as events arrive) and
uploads them as an ARGB image, so its cost does not grow with the event rate.  Reported:

* ``events_per_s``: events actually delivered per wall-clock second;
* ``fps``: raster frames drawn per second;
* ``dropped``: events that never appeared in any drawn window (a frame came more than one
  window span after the previous one), counted from the frames' time coverage.

Last printed line: one JSON object.  Timings on a shared 2-core machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
from PyQt6.QtWidgets import QApplication  # noqa: E402

from drivers.dynapse1.spikes import SpikeEvents  # noqa: E402
from neurolab_gui.core.session import Session  # noqa: E402
from neurolab_gui.qt.panels.raster_panel import RasterPanel  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rate", type=float, default=1e6, help="target events per second")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--window", type=float, default=1.0, help="raster window span, s")
    args = ap.parse_args()

    app = QApplication.instance() or QApplication([])
    session = Session(spike_capacity=4_000_000)
    panel = RasterPanel(session, fps=60)
    panel.all_cores_check.setChecked(True)  # 1024 rows: chip 0, all cores
    panel.span_spin.setValue(args.window)
    panel.resize(1400, 900)
    panel.show()

    stop = threading.Event()
    sent = [0]
    rng = np.random.default_rng(0)
    batch_s = 1e-3
    n = int(args.rate * batch_s)
    neurons = rng.integers(0, 1024, size=(64, n))
    offsets = np.sort(rng.integers(0, int(batch_s * 1e6), size=(64, n)), axis=1)

    def produce() -> None:
        t0 = time.perf_counter()
        k = 0
        while not stop.is_set():
            due = t0 + k * batch_s
            now = time.perf_counter()
            if due > now:
                time.sleep(due - now)
            gid = neurons[k % 64]
            ts = k * int(batch_s * 1e6) + offsets[k % 64]
            session.connection.feed(SpikeEvents(ts, gid // 1024, (gid // 256) % 4, gid % 256))
            sent[0] += n
            k += 1

    ends: list[int] = []
    original_render = panel.render

    def render() -> None:
        original_render()
        if panel.last_frame is not None:
            ends.append(int(round(panel.last_frame.t1_s * 1e6)))

    panel.timer.timeout.disconnect()
    panel.timer.timeout.connect(render)
    producer = threading.Thread(target=produce, daemon=True)
    start = time.perf_counter()
    producer.start()
    while time.perf_counter() - start < args.seconds:
        app.processEvents()
        time.sleep(0.001)
    stop.set()
    producer.join()
    elapsed = time.perf_counter() - start
    frames = panel.frames_rendered

    # coverage: events whose timestamps fell in a gap between consecutive drawn windows
    span_us = int(args.window * 1e6)
    dropped = 0
    per_us = args.rate / 1e6
    for a, b in zip(ends[:-1], ends[1:], strict=True):
        gap = (b - span_us) - a
        if gap > 0:
            dropped += int(gap * per_us)
    result = {
        "events_per_s": round(sent[0] / elapsed),
        "fps": round(frames / elapsed, 1),
        "dropped": dropped,
        "target_events_per_s": args.rate,
        "seconds": round(elapsed, 2),
        "median_frame_ms": round(1e3 * float(np.median(panel.frame_times_s)), 2) if panel.frame_times_s else None,
        "last_mode": panel.last_frame.mode if panel.last_frame else None,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
