"""GUI-thread CPU per update of what changes while the app runs: readout labels, panels' frames.

Builds the main window offscreen (no board: what is measured is the drawing, not the data), then,
per scenario, changes what a running action changes and lets Qt repaint (``processEvents``), and
reports the GUI thread's own CPU time per update (``time.thread_time``), median and worst of
``--repeats`` blocks.  CPU time, not wall time: on a shared machine the wall clock measures the
scheduler, the thread's CPU does not (much).

Scenarios:

* ``robot_readouts``: the robot panel's rate, LED, loop, command and sensor lines, as a running
  loop changes them (in the robot dock's scroll area);
* ``model_status``: the model panel's status line, as a conversion's progress reports change it;
* ``raster_info``: the raster's "spikes shown" line, which changes every frame;
* ``dvs_image``: the robot panel's DVS picture (128 x 128, scaled), which changes at 25 Hz;
* ``raster_frame``: a raster frame (one core, rates drifting between frames, 1 s window);
* ``bias_burst`` (always): a bias set applied to the shown core, as a calibration's start or a
  preset click does; reported as the longest single event-loop pass and the total CPU.

Wall time per update is printed beside: it also counts waits (for the CPU, or for Qt's paint
thread pool), so it means something only on an otherwise idle machine.

Last printed line: one JSON object (ms per update).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path


def _build():
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PyQt6.QtWidgets import QApplication

    from neurolab_gui.core.session import Session
    from neurolab_gui.qt.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    window = MainWindow(Session(), layout_path=Path(tempfile.mkdtemp()) / "layout.json")
    window.reporter.show_messages = False
    window.show()
    window.docks["robot"].raise_()
    for _ in range(20):
        app.processEvents()
    return app, window


def _robot(window, i: int) -> None:
    panel = window.robot_panel
    panel.rate_label.setText(f"{1000 + 37 * (i % 50):,.0f} ev/s")
    panel.led_label.setText("LED column: –" if i % 7 == 0 else f"LED column: {40 + (i % 30) * 0.7:.1f} (centre 64.0)")
    panel.loop_label.setText(f"t = {i * 0.02:.1f} s   motor neurons {i % 90:.0f} / {(3 * i) % 90:.0f} Hz   command {i % 60} / {(2 * i) % 60}")
    panel.command_label.setText(f"command {i % 60} / {(2 * i) % 60} (loop)")
    panel.light_label.setText(f"{i % 1000} / {(7 * i) % 1000}")


def _model(window, i: int) -> None:
    window.model_panel.status.setText(f"conversion: board_ideal: sample {i % 200} of 200{' (fit)' if i % 3 else ''}")


def _raster(window, i: int) -> None:
    window.raster_panel.info_label.setText(f"{(i * 7919) % 200_000:,} spikes shown (ticks)")


def _dvs(window, i: int) -> None:
    import numpy as np

    rgb = np.random.default_rng(i).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    window.robot_panel.dvs_image.setImage(rgb, autoLevels=False, levels=(0, 255))


def _raster_frame(window, i: int) -> None:
    """One raster frame of a core firing at a rate that drifts (the board's time moves on 33 ms)."""
    import numpy as np

    from drivers.dynapse1.spikes import SpikeEvents

    rng = np.random.default_rng(i)
    n = 200 + 150 * (i % 7)  # events in 33 ms of board time over 256 neurons: ~25-150 Hz each
    t0 = i * 33_000
    ts = np.sort(rng.integers(t0, t0 + 33_000, n))
    neurons = rng.integers(0, 256, n)
    window.session.connection.feed(SpikeEvents(ts, np.zeros(n, int), np.zeros(n, int), neurons))
    window.raster_panel.render()


SCENARIOS = {"robot_readouts": _robot, "model_status": _model, "raster_info": _raster, "dvs_image": _dvs,
             "raster_frame": _raster_frame}


def measure(app, window, change, updates: int, repeats: int) -> tuple[float, float, float]:
    """Median and worst over ``repeats`` blocks of the GUI-thread CPU per update, and the median
    wall time per update (ms)."""
    window.raster_panel.timer.stop()  # only the change under test is drawn
    per_update, wall = [], []
    i = 0
    for _ in range(repeats):
        started, wall_started = time.thread_time(), time.perf_counter()
        for _ in range(updates):
            change(window, i)
            app.processEvents()
            i += 1
        per_update.append((time.thread_time() - started) * 1e3 / updates)
        wall.append((time.perf_counter() - wall_started) * 1e3 / updates)
    return statistics.median(per_update), max(per_update), statistics.median(wall)


def bias_burst(app, window, repeats: int) -> tuple[float, float]:
    """A bias set applied to the core the bias panel shows (what a calibration's start or a preset
    click does): the longest single pass of the event loop while the panel draws it, and the total
    GUI-thread CPU it took (ms, worst over ``repeats`` applications)."""
    from neurolab_gui.core.bias_model import BiasModel

    panel, model = window.bias_panel, window.session.biases
    names = BiasModel.preset_names()
    longest, total = 0.0, 0.0
    for i in range(repeats):
        model.apply_preset(names[i % len(names)], cores=[(panel.chip, panel.core)])
        started = time.thread_time()
        while True:  # the burst's passes, until nothing is left to draw
            before = time.thread_time()
            app.processEvents()
            longest = max(longest, (time.thread_time() - before) * 1e3)
            if not panel._pending_changes and not panel._to_show:
                break
        total = max(total, (time.thread_time() - started) * 1e3)
    return longest, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scenario", choices=list(SCENARIOS), action="append")
    args = parser.parse_args()
    app, window = _build()
    results = {}
    for name in args.scenario or list(SCENARIOS):
        median, worst, wall = measure(app, window, SCENARIOS[name], args.updates, args.repeats)
        results[name] = {"cpu_ms_per_update_median": round(median, 3), "cpu_ms_per_update_worst": round(worst, 3),
                         "wall_ms_per_update_median": round(wall, 3)}
        print(f"{name}: {median:.3f} ms GUI-thread CPU per update (worst block {worst:.3f}), wall {wall:.3f} ms", flush=True)
    longest, total = bias_burst(app, window, args.repeats)
    results["bias_burst"] = {"longest_pass_cpu_ms": round(longest, 2), "total_cpu_ms": round(total, 2)}
    print(f"bias_burst: longest event-loop pass {longest:.1f} ms GUI-thread CPU, {total:.1f} ms in all", flush=True)
    window.session.close()
    window.close()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
