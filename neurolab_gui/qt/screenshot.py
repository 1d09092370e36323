"""Screenshot of the running app for the README: ``python -m neurolab_gui.qt.screenshot docs/screenshot.png``.

Run it under a display (``xvfb-run -a -s "-screen 0 1920x1200x24" python -m ...``).  It opens
the real main window connected to the emulator on the real-time clock, writes the published
samna start biases with four DC levels on chip 0's cores so spikes flow, routes one neuron to
the analog monitor, runs a DC sweep on core 1 (the transfer panel fills live), and after
``--seconds`` grabs the window.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("output", type=Path)
    ap.add_argument("--seconds", type=float, default=16.0, help="wall time before the grab")
    ap.add_argument("--size", default="1800x1100", help="window size WIDTHxHEIGHT (1366x740: a laptop screen less its task bar)")
    args = ap.parse_args(argv)

    from PyQt6.QtCore import Qt, QTimer
    from PyQt6.QtWidgets import QApplication

    from neurolab_gui.core.session import Session

    from .app import create_main_window

    app = QApplication(sys.argv[:1])
    session = Session()
    window = create_main_window(session, layout_path=Path(tempfile.mkdtemp()) / "layout.json")
    width, height = (int(v) for v in args.size.lower().split("x"))
    window.resize(width, height)
    window.show()
    if not session.connect("emulator", seed=0, mismatch=True, clock="realtime"):
        print(session.connection.status.message, file=sys.stderr)
        return 1
    biases = session.biases
    biases.apply_preset("samna_recommended")
    for core, fine in enumerate((20, 45, 80, 140)):
        biases.set(0, core, "IF_DC_P", 5, fine, origin="gui")
    window.bias_panel.show_core(0, 2)
    raster = window.raster_panel
    raster.chip_spin.setValue(0)
    raster.all_cores_check.setChecked(True)
    window.membrane_panel.show_neuron(2 * 256 + 7)  # chip 0 core 2 neuron 7, as a click on its raster row does
    window.resizeDocks([window.docks["bias"], window.docks["raster"]], [int(width * 0.34), int(width * 0.66)], Qt.Orientation.Horizontal)
    transfer = window.transfer_panel
    transfer.chip_spin.setValue(0)
    transfer.core_spin.setValue(1)
    transfer.low_spin.setValue(0.03)
    transfer.high_spin.setValue(0.4)
    transfer.steps_spin.setValue(8)

    def grab() -> None:
        window.grab().save(str(args.output))
        print(f"saved {args.output}: {session.connection.poll_status()}")
        session.close()
        app.quit()

    QTimer.singleShot(4000, lambda: transfer.start_sweep(duration_s=0.15))
    QTimer.singleShot(int(args.seconds * 1000), grab)
    app.exec()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
