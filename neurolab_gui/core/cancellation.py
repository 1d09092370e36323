"""The one exception every long operation raises when it is cancelled.

Training, conversion, calibration and the GUI's background tasks all stop with a subclass of
:class:`Cancelled`, so whoever runs them tells "the user cancelled" from "it failed" with one
``except`` clause.
"""


class Cancelled(RuntimeError):
    """A long operation stopped because its cancel event was set."""
