"""``neurolab devices``: the DYNAP-SE1 boards this machine can use, real and emulated."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("devices", help="list DYNAP-SE1 boards (serial, firmware, logic version) and the emulator")
    p.add_argument("--no-open", action="store_true", help="do not open real boards to read their FPGA logic version")
    p.set_defaults(func=run)


def _logic_version(serial: str | None, backend: object) -> str:
    """Read SYSINFO/LOGIC_VERSION without the start-up sequence (nothing on the board changes)."""
    from drivers.dynapse1 import fpga_registers as fr
    from drivers.dynapse1.usb_discovery import find_device
    from drivers.dynapse1.usb_transport import UsbTransport

    transport = UsbTransport(find_device(serial, backend))
    try:
        transport.open()
        return str(transport.read_register(fr.Module.SYSINFO, fr.SysinfoParam.LOGIC_VERSION))
    except Exception as exc:  # report, never crash the listing
        return f"? ({exc})"
    finally:
        transport.close()


def list_lines(backend: object | None, open_boards: bool = True) -> tuple[list[str], int]:
    """Human-readable lines for every board on ``backend`` (libusb when None) plus the emulator; and
    the number of problems found."""
    from drivers.dynapse1 import fpga_registers as fr
    from drivers.dynapse1.usb_discovery import find_boards, libusb_backend

    lines: list[str] = []
    problems = 0
    backend = backend if backend is not None else libusb_backend()
    if backend is None:
        lines.append("real boards: libusb not available (pip install libusb-package, or apt install libusb-1.0-0)")
        problems += 1
        boards = []
    else:
        boards = find_boards(backend)
        if not boards:
            lines.append("real boards: none found (VID 0x152A, PID 0x841D)")
    for b in boards:
        where = f"bus {b.bus} address {b.address}"
        if not b.accessible:
            lines.append(f"DYNAP-SE1 {where}: NO PERMISSION - {b.problem}")
            problems += 1
            continue
        logic = _logic_version(b.serial, backend) if open_boards else "not read"
        note = "" if b.firmware_version == fr.REQUIRED_FIRMWARE_VERSION else f" (driver needs firmware {fr.REQUIRED_FIRMWARE_VERSION})"
        lines.append(f"DYNAP-SE1 serial {b.serial} firmware {b.firmware_version}{note} logic {logic} on {where}")
    lines.extend(_emulated_lines())
    return lines, problems


def _emulated_lines() -> list[str]:
    """The emulated board, discovered and queried through its virtual USB like a real one."""
    try:
        from drivers.dynapse1.usb_discovery import find_boards
        from emulator.simulator import BoardSimulator
        from emulator.virtual_usb import VirtualDynapseBackend

        backend = VirtualDynapseBackend()
        backend.add_board("EMU00000", BoardSimulator("EMU00000"))
        return [
            f"emulator  serial {b.serial} firmware {b.firmware_version} logic {_logic_version(b.serial, backend)} "
            "(--board EMU<SEED> or emulator:SEED for mismatch seed SEED, e.g. EMU00009; clock fast or realtime)"
            for b in find_boards(backend)
        ]
    except Exception as exc:
        return [f"emulator: NOT AVAILABLE ({type(exc).__name__}: {exc})"]


def run(args: argparse.Namespace) -> int:
    lines, problems = list_lines(None, open_boards=not args.no_open)
    print("\n".join(lines))
    return 1 if problems else 0
