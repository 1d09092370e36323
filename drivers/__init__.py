"""Wire protocols and device objects for NeuroLab's hardware: DYNAP-SE1 over USB, the robot over serial.

No Qt here: everything is importable and testable headless.
"""

from .numba_target import pin_numba_target

# Before any module of ours imports numba: one CPU target for every compiled kernel (see numba_target).
pin_numba_target()
