"""Closed-loop calibration of DYNAP-SE1 boards (silicon or emulator alike, through the Board API).

Modules, each with one job:

- :mod:`.measure` - per-neuron transfer curves (DC sweeps through ``IF_DC_P``, input-rate sweeps
  through any synapse type), synaptic and membrane time constants, refractory period; every
  result carries its uncertainty and the chip time it cost.
- :mod:`.bias_tuning` - per-core coarse/fine search on the discrete bias ladder towards target
  quantities (saturation rate, rheobase, f-I gain, synaptic gain).
- :mod:`.compensation` - neuron selection, CAM-multiplicity compensation, chip-in-the-loop
  fine-tuning of the constrained RNN with the measured per-neuron transfer functions.
- :mod:`.engine` - :func:`~.engine.calibrate_network`, the whole loop for a converted network.
- :mod:`.board_calibration` - :func:`~.board_calibration.calibrate_board`, per-core tuning and
  per-neuron f-I curves without a network (``neurolab calibrate`` without a model).
- :mod:`.profile` - JSON profiles per board serial, validated on load.
- :mod:`.progress` - progress events with ETA, cancellation, chip-time metering, a worker job
  with an async iterator for the GUI.
- :mod:`.figures` - before/after figures (matplotlib, headless).

The engine never reads the emulator's hidden mismatch: it measures, as it would on silicon.
Heavy modules (torch) are imported by the caller, not here.
"""
