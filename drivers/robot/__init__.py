"""PushBot / eDVS4337 robot driver: the ASCII command protocol and a device over pyserial.

``pushbot_protocol`` holds the pure codecs (command encoders, DVS event encoder and the
stateful parser of the mixed event/ASCII stream); ``pushbot`` holds :class:`PushBot`, the
device object with its reader thread.  Neither imports Qt, and neither knows about the
simulator in ``robot_sim``: the simulator is just another serial URL.
"""

from .pushbot import PushBot, PushBotConfig, PushBotDisconnectedError, PushBotError, PushBotState
from .pushbot_protocol import (
    DvsEvents,
    EventFormat,
    ParseResult,
    PushBotStreamParser,
    SensorReading,
)

__all__ = [
    "DvsEvents",
    "EventFormat",
    "ParseResult",
    "PushBot",
    "PushBotConfig",
    "PushBotDisconnectedError",
    "PushBotError",
    "PushBotState",
    "PushBotStreamParser",
    "SensorReading",
]
