"""Kill -9 a real recording process at several moments; the file must open and hold the past.

The child records a deterministic stream (batch ``i`` holds timestamps ``i*1000 .. i*1000+999``)
and reports on stdout when it offered each batch.  After ``SIGKILL`` the session file must open
with the project's reader and with plain h5py, hold an exact prefix of the stream, and that
prefix must include every batch offered more than 1 s before the kill.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np

from neurolab_gui.core.session_file import SessionFile

CHILD = r"""
import sys, time
import numpy as np
from drivers.dynapse1.spikes import SpikeEvents
from neurolab_gui.core.recording import Recorder

rec = Recorder(sys.argv[1], software_version="test", board_serial="EMU", board_emulated=True)
rec.start()
print("started", flush=True)
n = 1000
i = 0
while True:
    t = np.arange(i * n, (i + 1) * n, dtype=np.int64)
    rec.record_spikes(SpikeEvents(t, np.zeros(n, np.uint8), np.ones(n, np.uint8), (t % 256).astype(np.uint16)))
    print(i, time.time(), flush=True)
    i += 1
    time.sleep(0.01)
"""

ROOT = Path(__file__).resolve().parents[1]


def test_sigkill_at_any_moment_leaves_a_readable_file_with_everything_up_to_one_second_before(tmp_path):
    delays = [0.35, 1.2, 2.3]  # before the first segment closed, after one, after several
    children = []
    for k, delay in enumerate(delays):
        path = tmp_path / f"killed{k}.h5"
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
        children.append((proc, path, delay))
    for proc, _path, _delay in children:
        assert proc.stdout.readline().strip() == "started"
    t0 = time.monotonic()
    killed_at = {}
    for proc, path, delay in sorted(children, key=lambda c: c[2]):
        time.sleep(max(0.0, t0 + delay - time.monotonic()))
        killed_at[path] = time.time()
        os.kill(proc.pid, signal.SIGKILL)
    for proc, path, _delay in children:
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        offered = [tuple(map(float, line.split())) for line in out.splitlines() if line.strip()]
        must_have = [int(i) for i, wall in offered if wall < killed_at[path] - 1.0]

        session = SessionFile(path)  # the project's reader
        assert not session.complete
        t = session.events().timestamp_us
        assert np.array_equal(t, np.arange(len(t)))  # an exact prefix: nothing torn, nothing reordered
        if must_have:
            assert len(t) >= (max(must_have) + 1) * 1000, (path.name, len(t), max(must_have))

        with h5py.File(path) as f:  # plain h5py, default options
            assert np.array_equal(f["events/spikes/t"][:], t)
            assert np.array_equal(f["events/spikes/neuron"][:], (t % 256).astype(np.uint16))
