"""``neurolab doctor``: report what this machine offers NeuroLab and what is missing."""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("doctor", help="report versions, libusb, visible boards and display")
    p.set_defaults(func=run)


def _module_version(name: str) -> str:
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # a broken install is exactly what doctor must report
        return f"NOT AVAILABLE ({type(exc).__name__}: {exc})"
    return str(getattr(module, "__version__", "installed"))


def _qt_version() -> str:
    try:
        from neurolab_gui.qt import qt_versions

        return qt_versions()
    except Exception as exc:
        return f"NOT AVAILABLE ({type(exc).__name__}: {exc})"


def display_available() -> tuple[bool, str]:
    """Whether a GUI can open a window here, and why (used by doctor and the main job)."""
    platform_env = os.environ.get("QT_QPA_PLATFORM", "")
    if platform_env in ("offscreen", "minimal"):
        return False, f"QT_QPA_PLATFORM={platform_env} (windows are not shown)"
    if sys.platform in ("win32", "darwin"):
        return True, "desktop session"
    for var in ("WAYLAND_DISPLAY", "DISPLAY"):
        if os.environ.get(var):
            return True, f"{var}={os.environ[var]}"
    return False, "no DISPLAY or WAYLAND_DISPLAY: use `neurolab demo` or run under Xvfb"


def run(args: argparse.Namespace) -> int:
    from neurolab_gui import __version__

    lines = [
        f"NeuroLab       {__version__}",
        f"Python         {platform.python_version()} ({sys.executable})",
        f"Qt             {_qt_version()}",
        f"torch          {_module_version('torch')}",
        f"brian2         {_module_version('brian2')}",
        f"numpy          {_module_version('numpy')}",
        f"numba          {_module_version('numba')}",
        f"pyusb          {_module_version('usb')}",
    ]
    problems = 0
    try:
        from drivers.dynapse1.usb_discovery import find_boards, libusb_backend

        backend = libusb_backend()
    except Exception as exc:
        backend, find_boards = None, None
        lines.append(f"libusb         NOT AVAILABLE ({exc})")
    if backend is None:
        lines.append("libusb         NOT FOUND: pip install libusb-package, or apt install libusb-1.0-0")
        problems += 1
    else:
        lines.append(f"libusb         available ({type(backend).__module__})")
        boards = find_boards(backend)
        if not boards:
            lines.append("DYNAP-SE1      none visible (VID 0x152A, PID 0x841D); the emulator is always available")
        for b in boards:
            if b.accessible:
                lines.append(f"DYNAP-SE1      serial {b.serial} firmware {b.firmware_version} on bus {b.bus} address {b.address}: accessible")
            else:
                problems += 1
                lines.append(f"DYNAP-SE1      on bus {b.bus} address {b.address}: NOT ACCESSIBLE: {b.problem}")
    shown, why = display_available()
    lines.append(f"display        {'available' if shown else 'none'} ({why})")
    print("\n".join(lines))
    return 1 if problems else 0
