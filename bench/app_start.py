"""From launch to events on screen: how long `neurolab gui` takes, and the event loop's worst stall.

Starts a fresh Python process that opens the app with ``neurolab_gui.qt.app.launch`` as
``neurolab gui`` does (the emulator's child process started before Qt is imported, real-time
clock, the board opening on a worker thread while the window is built), shows it (offscreen) and
records:

* ``imports_s``: launch → Qt and the app's modules imported;
* ``window_s``: launch → window shown (imports included);
* ``connected_s``: launch → board connected;
* ``events_s``: launch → first events drawn by the raster;
* ``worst_gap_ms`` / ``worst_gap_cpu_ms``: the longest gap of a 10 ms GUI-thread timer from the
  window being shown until the first events are drawn, and the CPU this process used in it;
* ``cpu_to_events_s``: CPU time this process used from its start to the first events drawn (on a
  machine shared beyond its cores the wall-clock times above measure the scheduler; this does not);
* ``warm_s``, ``worst_gap_warm_ms`` / ``worst_gap_warm_cpu_ms``: launch → the heavy stacks loaded
  (``core.warmup``, started once the first events are drawn), and the worst gap meanwhile
  (not with ``--stop-at-events``).

A/B against another tree: run this file with ``PYTHONPATH=<that tree>`` (a tree without
``connection.start_early`` runs without the early start, as it would have).  On a machine shared
beyond its cores, ``chrt -f 10 ... --stop-at-events`` gives each short run the cores.

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


def child(launched: float, stop_at_events: bool = False) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import tempfile
    from pathlib import Path

    try:
        from neurolab_gui.core.connection import app_target, start_early
    except ImportError:  # an older tree (A/B runs against it): it had no early start
        pass
    else:
        start_early(app_target("emulator", 0, True))  # as `neurolab gui` does (neurolab_gui/cli/gui.py)
    from PyQt6.QtCore import Qt, QTimer

    from neurolab_gui.qt.app import launch

    result: dict = {"imports_s": time.time() - launched}
    app, session, window = launch("emulator", 0, True, layout_path=Path(tempfile.mkdtemp()) / "layout.json", install_hooks=False)
    app.processEvents()
    result["window_s"] = time.time() - launched
    from neurolab_gui.core.warmup import warm_up

    gaps: list[tuple[float, float, str]] = []
    last = [time.perf_counter(), time.process_time()]
    phase = ["to_events"]

    def tick() -> None:
        now = (time.perf_counter(), time.process_time())
        gaps.append((now[0] - last[0], now[1] - last[1], phase[0]))
        last[:] = now
        if "connected_s" not in result and session.connection.status.state == "connected":
            result["connected_s"] = time.time() - launched
        frame = window.raster_panel.last_frame
        if "events_s" not in result and frame is not None and frame.n_events > 0:
            result["events_s"] = time.time() - launched
            result["cpu_to_events_s"] = time.process_time()
            phase[0] = "warm"
            if stop_at_events:
                phase[0] = "done"
                QTimer.singleShot(0, app.quit)
        if phase[0] == "warm" and warm_up().done():
            result["warm_s"] = time.time() - launched
            phase[0] = "done"
            QTimer.singleShot(200, app.quit)

    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.timeout.connect(tick)
    timer.start(10)
    QTimer.singleShot(60_000, app.quit)
    app.exec()
    for name, key in (("to_events", "worst_gap"), *(() if stop_at_events else (("warm", "worst_gap_warm"),))):
        worst = max(((w, c) for w, c, p in gaps if p == name), default=(0.0, 0.0))
        result[f"{key}_ms"], result[f"{key}_cpu_ms"] = round(1e3 * worst[0], 1), round(1e3 * worst[1], 1)
    result["state"] = session.connection.status.state
    session.close()
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}), flush=True)
    if stop_at_events:  # the warm-up may be importing torch on its thread: do not tear the interpreter down under it
        os._exit(0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--stop-at-events", action="store_true",
                    help="end each run once the first events are drawn (no warm-up figures): short runs, e.g. under chrt")
    ap.add_argument("--child", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        child(args.child, args.stop_at_events)
        return
    runs = []
    for _ in range(args.runs):
        command = [sys.executable, __file__, "--child", repr(time.time()), *(["--stop-at-events"] if args.stop_at_events else [])]
        out = subprocess.run(command, capture_output=True, text=True, timeout=120)
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
        runs.append(json.loads(line[-1]) if line else {"error": out.stderr[-500:]})
        print(json.dumps(runs[-1]), flush=True)
    keys = ("imports_s", "window_s", "connected_s", "events_s", "cpu_to_events_s", "worst_gap_ms",
            *(() if args.stop_at_events else ("warm_s", "worst_gap_warm_ms")))
    medians = {f"median_{k}": sorted(r.get(k, float("nan")) for r in runs)[len(runs) // 2] for k in keys}
    print(json.dumps({"runs": len(runs), **medians, "load_average": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
