"""The simulated PushBot: a mock robot beside the real robot driver.

Like ACQ4's mock devices, the simulator sits beside the device it imitates, not inside
the chip emulator: it answers the eDVS4337 text protocol on a pty or a TCP port, so the
one driver (:class:`drivers.robot.PushBot`) talks to it exactly as to a robot on
``/dev/ttyUSB0``.  It imports only ``drivers.robot`` (the protocol's codecs and constants);
an import-linter contract in ``pyproject.toml`` keeps it that way.

``python -m robot_sim [--tcp PORT | --pty]`` serves one from the command line.
"""

from .pushbot import Pose, PushBotSimConfig, SimulatedPushBot

__all__ = ["Pose", "PushBotSimConfig", "SimulatedPushBot"]
