"""Wire protocols and device objects for NeuroLab's hardware: DYNAP-SE1 over USB, the robot over serial.

No Qt here: everything is importable and testable headless.
"""
