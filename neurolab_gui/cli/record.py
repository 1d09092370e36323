"""``neurolab record``: record a board (or the emulator) to a session file for a given time."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .board_option import add_board_and_seed_options, board_and_seed, handing_over, open_board


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("record", help="record spikes, stimulus and bias changes of a board to a session file")
    p.add_argument("file", help="new session file (.h5); a .segments folder is created next to it")
    add_board_and_seed_options(p, what="record")
    p.add_argument("--seconds", type=float, required=True, help="how long to record (wall-clock seconds; inf: until Ctrl-C, which finishes the file)")
    p.add_argument("--clock", choices=("realtime", "fast"), default="realtime",
                   help="emulator: real-time clock (default) or as fast as the machine simulates")
    p.add_argument("--preset", help="apply a shipped bias set to every core before recording (e.g. libcaer_low_power)")
    p.add_argument("--bias-file", help="apply a bias file (JSON/YAML, validated first) before recording")
    p.add_argument("--set", nargs=5, action="append", default=[], metavar=("CHIP", "CORE", "BIAS", "COARSE", "FINE"),
                   help="set one bias before recording (repeatable), e.g. --set 0 1 IF_DC_P 5 60")
    p.add_argument("--notes", default="", help="free text stored in the file")
    p.set_defaults(func=run)


def _error(text: object) -> int:
    print(f"error: {text}", file=sys.stderr)
    return 2


def _bias_settings(values: list[list[str]]) -> list[tuple[int, int, str, int, int]]:
    """The ``--set CHIP CORE BIAS COARSE FINE`` values as numbers; ``ValueError`` naming the option."""
    out = []
    for chip, core, name, coarse, fine in values:
        try:
            out.append((int(chip), int(core), name, int(coarse), int(fine)))
        except ValueError:
            raise ValueError(f"--set {chip} {core} {name} {coarse} {fine}: CHIP, CORE, COARSE and FINE must be integers "
                             "(e.g. --set 0 1 IF_DC_P 5 60)") from None
    return out


#: Signals that end a recording the way Ctrl-C does: ``timeout``, ``kill`` and ``systemctl stop`` send
#: SIGTERM, a closed terminal SIGHUP.  Their default action would kill the process with the
#: open segment unnamed (the file left INCOMPLETE, the last half second lost).
FINISHING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """While recording, SIGINT, SIGTERM and SIGHUP set ``stop`` (the loop then finishes the file);
    the previous handlers come back afterwards.  A handler that only sets a flag cannot interrupt the
    writer's finishing half-way, so a second signal while the file is finished is harmless."""

    def handler(signum: int, _frame: object) -> None:
        if not stop.is_set():
            stop.set()
            with contextlib.suppress(OSError):  # SIGHUP from a closed terminal: stderr may be gone, the file is what matters
                print(f"neurolab record: {signal.Signals(signum).name}, finishing the file", file=sys.stderr)

    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = {s: signal.signal(s, handler) for s in FINISHING_SIGNALS}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def _write_failure(path: Path, error: BaseException) -> str:
    """One line for a recording whose writer failed: the file, the cause in plain words, what the file holds."""
    from neurolab_gui.core.recording import failure_cause
    from neurolab_gui.core.session_file import SessionFile

    cause = failure_cause(error)
    try:
        s = SessionFile(path).summary()
        held = f"the file holds the first {s['duration_s']:.3f} s ({s['spikes']:,} spikes)"
    except (ValueError, OSError):
        held = "nothing readable was written"
    return f"writing {path} failed: {cause}; recording stopped, {held}"


def run(args: argparse.Namespace) -> int:
    from neurolab_gui.core.bias_model import read_bias_file
    from neurolab_gui.core.boards import BoardSpec
    from neurolab_gui.core.connection import EMULATOR
    from neurolab_gui.core.session import Session
    from neurolab_gui.core.session_file import SessionFile, recording_path_problem

    if not args.seconds > 0:
        return _error(f"--seconds must be positive, got {args.seconds}")
    path = Path(args.file)
    problem = recording_path_problem(path)  # before the board is opened
    if problem:
        return _error(problem)
    try:  # every input is read and checked before the board is opened
        board, seed = board_and_seed(args)
        settings = _bias_settings(args.set)
        bias_file = read_bias_file(args.bias_file) if args.bias_file else None
    except (ValueError, OSError) as exc:
        return _error(exc)
    # opened as every command opens its board: a board that cannot be opened is one `error: cannot open
    # the board ...` line and exit 1 (it was a logged warning, then the message again with exit 2)
    opened = open_board(BoardSpec(None, seed) if board == EMULATOR else args.board, clock=args.clock)
    if isinstance(opened, int):
        return opened
    session = Session(opener=handing_over(opened))
    if not session.connect(board, seed=seed, clock=args.clock):
        session.close()
        print(f"error: {session.connection.status.message}", file=sys.stderr)
        return 1
    stop = threading.Event()
    try:
        with _stop_on_signals(stop):  # from before the file appears: a signal at any moment then finishes it
            try:
                if args.preset:
                    session.biases.apply_preset(args.preset, origin="cli")
                if bias_file is not None:
                    session.biases.apply(bias_file, origin="file")
                for chip, core, name, coarse, fine in settings:
                    session.biases.set(chip, core, name, coarse, fine, origin="cli")
                session.start_recording(path, notes=args.notes)
            except (KeyError, ValueError, OSError) as exc:  # OSError: a second `record` won the path, the disk refused
                return _error(exc)
            recorder = session.recorder
            assert recorder is not None
            deadline = time.monotonic() + args.seconds
            while time.monotonic() < deadline and not stop.is_set():
                # the writer's own end (a failed write) ends the wait at once, not at the next poll
                if recorder.finished.wait(min(0.2, max(0.0, deadline - time.monotonic()))):
                    break
                status = session.connection.poll_status()
                if status.state != "connected":
                    print(f"neurolab record: board {status.state}: {status.message}", file=sys.stderr)
                    break
            session.stop_recording(missing_ok=True)  # a failed writer has ended the recording itself
            recorder.finished.wait(10.0)
    finally:
        session.close()
    if recorder.error is not None:
        # exit 1, not 2: the command line was fine; the disk failed while it ran (README: a fault met
        # while working, like a board that cannot be opened, is 1; bad input is 2)
        print(f"error: {_write_failure(path, recorder.error)}", file=sys.stderr)
        return 1
    if not recorder.finished.is_set():
        print(f"error: the recorder did not finish writing {path} within 10 s; the file holds what it had saved", file=sys.stderr)
        return 1
    s = SessionFile(path).summary()
    print(f"recorded {s['spikes']:,} spikes, {s['input_events']:,} stimulus events, {s['bias_changes']} bias changes "
          f"in {s['duration_s']:.3f} s to {path} (dropped {s['dropped_events']:,})")
    return 0
