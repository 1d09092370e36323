"""Pure fits of what the probes measured: numpy only, no board, no I/O.

:mod:`.transfer_curves` (the one transfer-curve type and rates from events), :mod:`.fi` (f-I
gains, their statistics and the refractory saturation) and :mod:`.tau` (time constants from
inter-spike intervals).  The probing package (:mod:`neurolab_gui.core.probing`) measures on a
board and hands its data here; the conversion and the calibration both use the two, so neither
needs the other's modules for measuring.
"""
