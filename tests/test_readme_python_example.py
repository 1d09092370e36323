"""The README's "Scripting NeuroLab from Python" example runs as written (so the docs cannot rot)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from neurolab_gui.core.session_file import SessionFile

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Scripting NeuroLab from Python"


def readme_example() -> str:
    """The first ```python block of the README's scripting section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert SECTION in text, f"the README lost its section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    block = re.search(r"^```python\n(.*?)^```$", section, re.S | re.M)
    assert block, "the scripting section has no ```python block"
    return block.group(1)


def test_the_readme_python_example_runs_as_written(tmp_path):
    script = tmp_path / "readme_example.py"
    script.write_text(readme_example())
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    # what it prints is what it says it does: a sweep whose rate grows with the current, a full recording
    rates = re.search(r"mean rate per step \(Hz\): \[([^\]]*)\]", done.stdout)
    assert rates, done.stdout
    values = [float(v) for v in rates.group(1).split()]
    assert len(values) == 3 and values[0] < values[1] < values[2], done.stdout
    assert re.search(r"^[1-9]\d* spikes in .* complete: True$", done.stdout, re.M), done.stdout
    recording = SessionFile(tmp_path / "session.h5")
    assert recording.complete and len(recording.events()) > 0
