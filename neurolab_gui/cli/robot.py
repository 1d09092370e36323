"""``neurolab robot``: the PushBot robot on the serial port.

``neurolab robot demo`` runs the closed-loop phototaxis demo (turn toward a blinking LED)
through the DYNAP-SE1 board: by default the simulated PushBot and the emulated board;
``--port`` names a real robot (``/dev/ttyUSB0``, ``socket://192.168.1.10:56000``) and
``--board`` the board (``emulator[:SEED]`` or a serial).  ``--network`` picks what drives the
motors: ``phototaxis`` (the hand-wired Braitenberg network, default), ``steering`` (the shipped
converted steering RNN) or a checkpoint trained with ``neurolab train --task phototaxis``; a
converted network is constrained, mapped and deployed on the board first (with the board's
calibration profile unless ``--no-profile``).  ``neurolab robot ports`` lists the serial ports
of this machine.
"""

from __future__ import annotations

import argparse
import signal
import sys

from .arguments import non_empty, output_file, positive_float
from .board_option import add_board_option, open_board

#: Motor update rate of the hand-wired network when --rate is not given, Hz.
DEFAULT_RATE_HZ = 40.0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("robot", help="PushBot robot: closed-loop demo, serial ports")
    sub = p.add_subparsers(dest="robot_command", metavar="ACTION")
    sub.required = True
    demo = sub.add_parser("demo", help="phototaxis through the board: turn toward a blinking LED")
    demo.add_argument("--port", metavar="URL", type=non_empty, help="robot serial URL (default: a simulated PushBot)")
    demo.add_argument(
        "--baud", type=int, default=4_000_000, help="baud rate of a real robot (4M for 613xx, 12M for 126xx)"
    )
    add_board_option(demo, what="drive the robot with")
    demo.add_argument("--duration", type=positive_float, default=10.0, metavar="S",
                      help="seconds of closed loop, finite (default 10; Ctrl-C stops earlier)")
    demo.add_argument(
        "--rate", type=positive_float, default=None, metavar="HZ",
        help=f"motor update rate of the hand-wired network, 20..100 Hz (default {DEFAULT_RATE_HZ:g}); a converted network "
             "updates the motors once per input sample (20 ms: 50 Hz)",
    )
    demo.add_argument(
        "--network", default="phototaxis", metavar="NET",
        help="what drives the motors: 'phototaxis' (hand-wired, default), 'steering' (the shipped converted RNN) "
             "or a checkpoint trained with `neurolab train --task phototaxis`",
    )
    demo.add_argument("--no-profile", action="store_true", help="deploy a converted network without the board's calibration profile")
    demo.add_argument("--record", metavar="FILE", type=output_file,
                      help="write the session report (trajectory, rates, log) as JSON")
    demo.set_defaults(func=run_demo)
    ports = sub.add_parser("ports", help="list serial ports (USB-serial adapters, ptys are not listed)")
    ports.set_defaults(func=run_ports)


def run_ports(args: argparse.Namespace) -> int:
    from serial.tools import list_ports

    found = sorted(list_ports.comports(), key=lambda p: p.device)
    if not found:
        print("no serial ports found (a PushBot over WLAN is reached as socket://<ip>:56000)")
        return 0
    for port in found:
        ids = f"{port.vid:04X}:{port.pid:04X}" if port.vid is not None else "-"
        print(f"{port.device:20s} {ids:10s} {port.serial_number or '-':12s} {port.description}")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from drivers.robot import PushBotConfig, PushBotError
    from neurolab_gui.core.robot_demo import PhototaxisConfig, PhototaxisSession, run_simulated_phototaxis

    rate = DEFAULT_RATE_HZ if args.rate is None else args.rate
    if not 20.0 <= rate <= 100.0:
        print(f"error: --rate must be 20..100 Hz, got {rate}", file=sys.stderr)
        return 2
    config = PhototaxisConfig(duration_s=args.duration, control_period_s=1.0 / rate)
    try:
        config.validate()
        checkpoint = _network_checkpoint(args.network)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if checkpoint is not None and args.rate is not None:
        # a converted network steps once per input sample (its time mapping); a different rate would
        # present the DVS strips at another time scale than it was trained on
        print(f"error: --rate applies to the hand-wired network only; --network {args.network} updates the motors "
              "once per input sample (20 ms, 50 Hz)", file=sys.stderr)
        return 2

    last_print = [-1.0]

    def progress(report) -> None:
        t = report.t_s[-1]
        if t - last_print[0] >= 0.5:
            last_print[0] = t
            column = report.led_column[-1]
            seen = f"{column:5.1f}" if column == column else "  -  "
            print(
                f"t={t:5.2f} s  LED column {seen}  motors {report.motor_left_hz[-1]:5.0f}/{report.motor_right_hz[-1]:5.0f} Hz"
                f"  !MVD {report.command_left[-1]:4d}/{report.command_right[-1]:4d}",
                flush=True,
            )

    holder: list[PhototaxisSession] = []

    def on_interrupt(signum, frame) -> None:
        # Ctrl-C during the loop cancels the session: the robot is stopped and the report kept.
        if not holder:
            raise KeyboardInterrupt
        holder[0].cancel()

    previous_handler = signal.signal(signal.SIGINT, on_interrupt)
    board = None
    try:
        # the same 0.5 ms emulator time step the demo uses when it opens its own board
        opened = open_board(args.board, dt=5e-4)
        if isinstance(opened, int):
            return opened
        board = opened
        controller = None
        if checkpoint is not None:
            controller = _deploy_network(board, checkpoint, args.no_profile)
        if args.port is not None:
            # A real robot: same session, our PushBot settings.
            report = _run_real_robot(args.port, PushBotConfig(baudrate=args.baud), board, config, progress, holder,
                                     controller)
        else:
            report = run_simulated_phototaxis(config, board=board, progress=progress, session_ready=holder.append,
                                              controller_for=None if controller is None else (lambda _board: controller))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ValueError as exc:  # a checkpoint that cannot drive the robot, an unusable profile
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except PushBotError as exc:
        print(f"error: {exc}", file=sys.stderr)  # the message names the port and what failed
        return 1
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        if board is not None:
            board.close()
    print(report.summary())
    if args.record:
        try:
            report.save(args.record)
        except OSError as exc:  # checked before the run; the file system can still change or fill
            print(f"error: could not write the report {args.record}: {exc}", file=sys.stderr)
            return 1
        print(f"report written to {args.record}")
    return 0 if report.status in ("completed", "cancelled") else 1


def _network_checkpoint(name: str):
    """None for the wired network, else the checkpoint path of ``--network`` (``FileNotFoundError`` if missing,
    ``ValueError`` naming it if its model cannot drive the robot)."""
    from pathlib import Path

    from neurolab_gui.core.robot_network import (
        BUILTIN_STEERING,
        WIRED_NETWORK,
        builtin_steering_checkpoint,
        load_robot_checkpoint,
    )

    if name == WIRED_NETWORK:
        return None
    if name == BUILTIN_STEERING:
        return builtin_steering_checkpoint()
    path = Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"--network {name!r} is neither '{WIRED_NETWORK}', '{BUILTIN_STEERING}' nor a checkpoint file")
    load_robot_checkpoint(path)  # a model that cannot drive the robot is refused before any progress line or board work
    return path


def _deploy_network(board, checkpoint, no_profile: bool):
    """Convert and deploy ``checkpoint`` on ``board``; its controller (progress printed)."""
    from neurolab_gui.core.calibration.profile import find_profile
    from neurolab_gui.core.robot_network import deploy_robot_network

    profile = None if no_profile else find_profile(board.serial)
    print(f"converting {checkpoint} and deploying it on {board.serial} "
          + ("with its calibration profile" if profile else "(no calibration profile: matching on the board)"), flush=True)
    network = deploy_robot_network(board, checkpoint, profile=profile,
                                   progress=lambda p: print(f"{p.fraction:6.1%}  {p.text()}", flush=True))
    for note in network.notes:
        print(f"note: {note}")
    return network.controller()


def _run_real_robot(url, robot_config, board, config, progress, holder, controller=None):
    from drivers.robot import PushBot
    from neurolab_gui.core.robot_demo import PhototaxisSession

    with PushBot(url, robot_config) as robot:
        session = PhototaxisSession(board, robot, config, controller=controller)
        session.report.note(f"robot: {url} (real); board: {board.serial}")
        holder.append(session)
        return session.run(progress)
