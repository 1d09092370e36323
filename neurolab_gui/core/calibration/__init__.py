"""Closed-loop calibration of DYNAP-SE1 boards (silicon or emulator alike, through the Board API).

Modules, each with one job:

- :mod:`.compensation` - neuron selection, CAM-multiplicity compensation, chip-in-the-loop
  fine-tuning of the constrained RNN with the measured per-neuron transfer functions.
- :mod:`.engine` - :func:`~.engine.calibrate_network`, the whole loop for a converted network.
- :mod:`.board_calibration` - :func:`~.board_calibration.calibrate_board`, per-core tuning and
  per-neuron f-I curves without a network (``neurolab calibrate`` without a model).
- :mod:`.profile` - JSON profiles per board serial, validated on load.
- :mod:`.progress` - progress events with ETA, cancellation, chip-time metering, a worker job
  with an async iterator for the GUI.
- :mod:`.figures` - before/after figures (matplotlib, headless).

The measurements it runs are in :mod:`neurolab_gui.core.probing` (transfer curves, time
constants, the per-core coarse/fine search on the bias ladder) and their fits in
:mod:`neurolab_gui.core.fitting`; the conversion's transfer matching uses the same packages.
The engine never reads the emulator's hidden mismatch: it measures, as it would on silicon.
Heavy modules (torch) are imported by the caller, not here.
"""
