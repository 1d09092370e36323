"""From launch to events on screen: how long `neurolab gui` takes, and the event loop's worst stall.

Starts a fresh Python process that opens the app with ``neurolab_gui.qt.app.launch`` as
``neurolab gui`` does (emulator in its own process, real-time clock, the board opening on a worker
thread while the window is built), shows it (offscreen) and records:

* ``window_s``: launch → window shown (imports included);
* ``connected_s``: launch → board connected;
* ``events_s``: launch → first events drawn by the raster;
* ``worst_gap_ms`` / ``worst_gap_cpu_ms``: the longest gap of a 10 ms GUI-thread timer from the
  window being shown until one second after the first events, and the CPU this process used in it.

Last printed line: one JSON object.  Run it more than once (``--runs``): the first start on a
machine also compiles/caches.  Timings on a shared 2-core machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def child(launched: float) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import tempfile
    from pathlib import Path

    from PyQt6.QtCore import Qt, QTimer

    from neurolab_gui.qt.app import launch

    app, session, window = launch("emulator", 0, True, layout_path=Path(tempfile.mkdtemp()) / "layout.json", install_hooks=False)
    app.processEvents()
    result: dict = {"window_s": time.time() - launched}
    gaps: list[tuple[float, float]] = []
    last = [time.perf_counter(), time.process_time()]

    def tick() -> None:
        now = (time.perf_counter(), time.process_time())
        gaps.append((now[0] - last[0], now[1] - last[1]))
        last[:] = now
        if "connected_s" not in result and session.connection.status.state == "connected":
            result["connected_s"] = time.time() - launched
        frame = window.raster_panel.last_frame
        if "events_s" not in result and frame is not None and frame.n_events > 0:
            result["events_s"] = time.time() - launched
            QTimer.singleShot(1000, app.quit)

    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.timeout.connect(tick)
    timer.start(10)
    QTimer.singleShot(30_000, app.quit)
    app.exec()
    worst = max(gaps, default=(0.0, 0.0))
    result.update(worst_gap_ms=round(1e3 * worst[0], 1), worst_gap_cpu_ms=round(1e3 * worst[1], 1),
                  state=session.connection.status.state)
    session.close()
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--child", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        child(args.child)
        return
    runs = []
    for _ in range(args.runs):
        out = subprocess.run([sys.executable, __file__, "--child", repr(time.time())], capture_output=True, text=True, timeout=120)
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
        runs.append(json.loads(line[-1]) if line else {"error": out.stderr[-500:]})
        print(json.dumps(runs[-1]), flush=True)
    keys = ("window_s", "connected_s", "events_s", "worst_gap_ms")
    print(json.dumps({"runs": len(runs), **{f"median_{k}": sorted(r.get(k, float("nan")) for r in runs)[len(runs) // 2] for k in keys}}))


if __name__ == "__main__":
    main()
