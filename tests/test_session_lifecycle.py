"""How a scripted :class:`Session` ends: interpreter exit with a recording or a board still open,
``with Session() as s:``, Ctrl-C during a connect, and a child-process emulator started from a
script without a ``__main__`` guard.

Exit behaviour is only visible from outside, so those tests run small scripts as subprocesses
and check their exit code and the file they leave.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from neurolab_gui.core.connection import ConnectionManager, ConnectionTarget, open_board
from neurolab_gui.core.session import Session
from neurolab_gui.core.session_file import SessionFile

REPO = Path(__file__).resolve().parents[1]

#: Connects the in-process emulator, records, and ends (``end``) or raises (``raise``) with the
#: recording and the board still open: the writer threads are busy when the interpreter exits.
RECORDING_LEFT_OPEN = """
import sys, time
from neurolab_gui.core.session import Session
s = Session()
assert s.connect("emulator", seed=3, clock="fast")
s.start_recording(sys.argv[2])
time.sleep(0.3)
if sys.argv[1] == "raise":
    raise RuntimeError("script bug while recording")
"""

#: A script without the ``if __name__ == "__main__":`` guard that opens the emulator in a child
#: process: the spawned child runs it again, fails to start its own child and exits with 3.
NO_MAIN_GUARD = """
from neurolab_gui.core.session import Session
s = Session()
s.emulator_in_separate_process = True
ok = s.connect("emulator", seed=1, clock="fast")
print("STATUS", s.connection.status.state, s.connection.status.message.replace("\\n", " "), flush=True)
s.close()
raise SystemExit(0 if ok else 3)
"""


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1",
                PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))


def _script(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_script_that_ends_or_raises_while_recording_exits_with_its_own_code_and_a_finished_file(tmp_path):
    """Before the fix most such runs died with SIGSEGV (-11) or hung at exit: the recorder's daemon
    threads were inside h5py while the interpreter finalised it.  Five runs at once (the failure
    was frequent, not certain), each bounded by a timeout."""
    script = _script(tmp_path, "record_and_end.py", RECORDING_LEFT_OPEN)
    runs = [("end", 0), ("raise", 1), ("end", 0), ("raise", 1), ("end", 0)]
    procs = []
    for i, (mode, _) in enumerate(runs):
        out = tmp_path / f"rec{i}.h5"
        procs.append((subprocess.Popen([sys.executable, str(script), mode, str(out)], cwd=tmp_path, env=_env(),
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), out))
    results = []
    try:
        for proc, out in procs:
            try:
                _, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                err = "TIMEOUT: hung at exit"
            results.append((proc.returncode, err, out))
    finally:
        for proc, _ in procs:
            proc.kill()
    for (mode, code), (rc, err, out) in zip(runs, results, strict=True):
        assert rc == code, f"{mode}: exit code {rc}, expected {code}\n{err[-2000:]}"
        # the script's own traceback (raise) and nothing else: no failing recorder at exit
        assert err.count("Traceback") == (mode == "raise"), err[-2000:]
        assert err.strip().endswith("RuntimeError: script bug while recording") == (mode == "raise"), err[-2000:]
        recording = SessionFile(out)
        assert recording.complete, recording.incomplete_reason
        assert recording.summary()["spikes"] > 0


#: As RECORDING_LEFT_OPEN, then every write of the recording hangs (a disk that stopped answering):
#: its writer holds h5py's lock for good.  The exit hooks' bound is cut to 1 s here.
RECORDING_ON_A_HUNG_DISK = """
import os, sys, threading, time
from neurolab_gui.core import recording, session_file
from neurolab_gui.core.session import Session
recording.EXIT_WAIT_S = 1.0
s = Session()
assert s.connect("emulator", seed=3, clock="fast")
s.connection.disconnected.connect(lambda reason: print("CLOSED", reason, flush=True))
s.start_recording(sys.argv[2])
hung = threading.Event()
session_file.os.pwrite = lambda fd, data, offset: hung.wait()  # never returns
time.sleep(0.5)
if sys.argv[1] == "raise":
    raise RuntimeError("script bug while recording")
"""


@pytest.mark.parametrize(("mode", "code"), [("end", 0), ("raise", 1)])
def test_a_script_whose_recording_disk_hangs_still_exits_after_the_bound_with_the_board_closed(tmp_path, mode, code):
    """Hostile check of round 8: the session's exit hook raised on the recorder's timeout and never
    closed the board, and the interpreter then waited for ever on h5py's lock, which the hung writer held."""
    script = _script(tmp_path, "hung_disk.py", RECORDING_ON_A_HUNG_DISK)
    out = tmp_path / f"{mode}.h5"
    done = subprocess.run([sys.executable, str(script), mode, str(out)], cwd=tmp_path, env=_env(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == code, done.stderr[-2000:]
    assert "CLOSED session closed" in done.stdout  # the board was closed before the process ended
    assert "the file stays INCOMPLETE" in done.stderr


def test_a_session_left_open_at_exit_is_closed_child_process_emulator_included(tmp_path):
    """The exit hook closes the board itself (its ``disconnected`` arrives, the child process gets
    its "close" rather than multiprocessing's terminate), for both kinds of emulator."""
    script = _script(tmp_path, "left_open.py", """
import sys
from neurolab_gui.core.session import Session
def main():
    s = Session()
    s.emulator_in_separate_process = sys.argv[1] == "child"
    assert s.connect("emulator", seed=2, clock="fast")
    s.connection.disconnected.connect(lambda reason: print("DISCONNECTED", reason, flush=True))
if __name__ == "__main__":
    main()
""")
    for mode in ("inproc", "child"):
        done = subprocess.run([sys.executable, str(script), mode], cwd=tmp_path, env=_env(), capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "DISCONNECTED session closed" in done.stdout, (mode, done.stdout, done.stderr[-2000:])
        assert "Traceback" not in done.stderr


def test_a_script_without_a_main_guard_is_told_why_the_emulator_process_failed(tmp_path):
    """It used to read "could not open emulator (...): " with nothing after the colon."""
    script = _script(tmp_path, "no_guard.py", NO_MAIN_GUARD)
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 3, done.stderr[-2000:]
    status = [line for line in done.stdout.splitlines() if line.startswith("STATUS error")]
    # the last one is the parent's (the child printed its own, failing, before it exited)
    assert status, done.stdout
    message = status[-1]
    assert "emulator process for 'EMU00001' exited with code 3 before the board was ready" in message
    assert 'if __name__ == "__main__":' in message and "spawn" in message


def test_with_session_closes_the_board_and_the_recording_also_when_the_block_raises(tmp_path):
    disconnects: list[str] = []
    with pytest.raises(RuntimeError, match="inside the block"), Session(spike_capacity=10_000) as s:
        assert s.connect("emulator", seed=5, clock="fast", acquire=False)
        s.connection.disconnected.connect(disconnects.append)
        s.start_recording(tmp_path / "with.h5")
        raise RuntimeError("inside the block")
    assert s.board is None and s.recorder is None
    assert disconnects == ["session closed"]
    assert SessionFile(tmp_path / "with.h5").complete


def test_ctrl_c_during_connect_does_not_leave_the_status_connecting():
    opens: list[ConnectionTarget] = []

    def interrupted_first(target: ConnectionTarget):
        opens.append(target)
        if len(opens) == 1:
            raise KeyboardInterrupt  # what Ctrl-C raises in a script's main thread while the board opens
        return open_board(target)

    connection = ConnectionManager(interrupted_first)
    target = ConnectionTarget("emulator", 1, True, "fast")
    with pytest.raises(KeyboardInterrupt):
        connection.connect(target)
    assert connection.status.state == "disconnected" and connection.board is None
    assert connection.status.message == "connecting to emulator (seed 1, mismatch on, fast clock) was interrupted (KeyboardInterrupt)"
    assert connection.connect(target, acquire=False)  # and the next connect works
    connection.disconnect()
