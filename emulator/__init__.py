"""The DYNAP-SE1 emulator: chip physics with device mismatch, and a virtual board on the USB wire.

No Qt here.  The virtual board answers the same control and bulk transfers as silicon, so
``drivers.dynapse1`` runs one code path against either.
"""

# drivers pins numba's CPU target when it is imported; the kernels here must be compiled after that.
import drivers  # noqa: E402,F401
