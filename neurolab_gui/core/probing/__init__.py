"""Probing: board I/O that measures how the neurons respond (silicon or emulator, Board API only).

:mod:`.program` builds every FPGA spike-generator program from spike times and plays it;
:mod:`.curves` measures DC and synaptic transfer curves; :mod:`.taus` measures time constants;
:mod:`.bias_tuning` moves per-core biases in a closed loop until such a measurement meets its
target.  The numbers are fitted by the pure modules of :mod:`neurolab_gui.core.fitting`.  The
conversion (transfer matching) and the calibration both build on this package; it imports
neither of them.
"""
