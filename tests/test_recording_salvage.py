"""Salvage mode: a recording with a damaged or missing segment is refused by default (with a hint),
and ``--salvage`` / ``SessionFile(salvage=True)`` / the app's question read exactly the intact segments.

One tiny recording made here with the real Recorder: four segments of 100 spikes and one stimulus
event each (each batch is offered once the writer wrote the one before, so each has its own file).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from test_recording_damaged import copy_recording

from drivers.dynapse1.spikes import SpikeEvents
from neurolab_gui.cli import main
from neurolab_gui.core.recording import Recorder
from neurolab_gui.core.session_file import DamagedSegmentsError, SessionFile, SessionFileError, segments_dir

N_SEGMENTS = 4
PER_SEGMENT = 100
HINT = "(pass --salvage to read the intact segments)"


def _batch(i: int) -> SpikeEvents:
    t = i * 100_000 + np.arange(PER_SEGMENT, dtype=np.int64) * 1000
    return SpikeEvents(t, np.zeros(PER_SEGMENT, np.uint8), np.full(PER_SEGMENT, i % 4, np.uint8),
                       (np.arange(PER_SEGMENT) + 10 * i).astype(np.uint16))


def _record(path: Path, n_segments: int) -> None:
    rec = Recorder(path, software_version="t", board_serial="EMU00009", board_emulated=True, segment_s=1e-6, tick_s=0.005)
    rec.start()
    for i in range(n_segments):
        rec.record_spikes(_batch(i))
        rec.record_input(SpikeEvents([i * 100_000 + 7], [1], [2], [3]))
        deadline = time.monotonic() + 10
        # the writer closes its segment right after writing what it took (segment_s is tiny), so the
        # next batch, offered once this one is written, goes into a segment of its own
        while rec.status().written_events < (i + 1) * (PER_SEGMENT + 1):
            assert time.monotonic() < deadline, "the writer did not write the batch"
            time.sleep(0.001)
    rec.stop()


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("salvage") / "base.h5"
    _record(path, N_SEGMENTS)
    s = SessionFile(path)
    assert len(s.segments) == N_SEGMENTS and s.rows("events/spikes") == N_SEGMENTS * PER_SEGMENT
    assert list(s.index["events/spikes"]["segment"]) == list(range(N_SEGMENTS))  # one batch per segment
    return path


def _segment(path: Path, i: int) -> Path:
    return segments_dir(path) / SessionFile(path).segments[i]["file"].decode()


def _truncate(path: Path, i: int = 2) -> str:
    file = _segment(path, i)
    with open(file, "r+b") as f:
        f.truncate(file.stat().st_size // 2)  # a copy cut short
    return file.name


def _delete(path: Path, i: int = 2) -> str:
    file = _segment(path, i)
    file.unlink()
    return file.name


def _expected(skip: int) -> dict[str, np.ndarray]:
    batches = [_batch(i) for i in range(N_SEGMENTS) if i != skip]
    return {"t": np.concatenate([b.timestamp_us for b in batches]), "chip": np.concatenate([b.chip for b in batches]),
            "core": np.concatenate([b.core for b in batches]), "neuron": np.concatenate([b.neuron for b in batches])}


@pytest.mark.parametrize("damage", [_truncate, _delete])
def test_strict_open_refuses_and_salvage_reads_exactly_the_intact_segments(recording, tmp_path, damage):
    path = copy_recording(recording, tmp_path)
    name = damage(path)
    with pytest.raises(DamagedSegmentsError, match=name) as refused:
        SessionFile(path)
    assert isinstance(refused.value, SessionFileError) and refused.value.n_segments == N_SEGMENTS
    assert [p.name for p in refused.value.problems] == [name]

    s = SessionFile(path, salvage=True)
    assert [(x.name, x.rows) for x in s.salvaged] == [(name, PER_SEGMENT + 1)]  # its spikes and its stimulus event
    assert (s.salvaged[0].problem == "missing") == (damage is _delete)
    cols = s.read_stream("events/spikes")
    want = _expected(skip=2)
    for column, values in want.items():
        np.testing.assert_array_equal(cols[column], values)  # every intact event, exactly, and none of segment 2's
    t, ev = s.events_in(0.0, 1.0)
    np.testing.assert_array_equal(ev.timestamp_us, want["t"])
    np.testing.assert_array_equal(s.read_stream("events/input")["t"], [7, 100_007, 300_007])
    s.verify()

    summary = s.summary()
    assert summary["spikes"] == 3 * PER_SEGMENT and summary["segments"] == N_SEGMENTS
    assert summary["salvaged"]["segments_left_out"][0]["segment"] == name
    assert summary["salvaged"]["missing_s"] == pytest.approx(0.099)  # segment 2's spikes spanned 99 × 1 ms
    assert summary["salvaged"]["recorded_s"] == pytest.approx(0.399)
    kind = "missing" if damage is _delete else "damaged"
    assert summary["salvaged"]["text"].startswith(f"salvaged: 1 {kind} segment left out ({name}: ")
    assert summary["salvaged"]["text"].endswith("101 rows and 0.099 s of 0.399 s missing")


def test_a_virtual_merge_with_a_missing_source_is_left_out_whole(tmp_path, monkeypatch):
    """HDF5 reads a missing virtual source as zeros: the merge that maps it is left out, never read."""
    from neurolab_gui.core import recording as recording_module

    monkeypatch.setattr(recording_module, "MERGE_FANOUT", 2)
    monkeypatch.setattr(recording_module, "MERGE_MAX_ROWS", 0)  # merged virtually, the sources kept
    path = tmp_path / "merged.h5"
    _record(path, 3)
    s = SessionFile(path)
    assert len(s.segments) == 2 and s.rows("events/spikes") == 3 * PER_SEGMENT  # the merge of 0 and 1, and 2
    merge = s.segments[0]["file"].decode()
    (segments_dir(path) / "seg-000000.h5").unlink()
    with pytest.raises(DamagedSegmentsError, match="seg-000000.h5, merged into"):
        SessionFile(path)
    s = SessionFile(path, salvage=True)
    assert [(x.name, x.problem) for x in s.salvaged] == [(merge, "its merged source seg-000000.h5 is missing")]
    np.testing.assert_array_equal(s.read_stream("events/spikes")["t"], _batch(2).timestamp_us)


def test_an_intact_file_opened_in_salvage_mode_is_the_same_file(recording):
    strict, salvaged = SessionFile(recording), SessionFile(recording, salvage=True)
    assert salvaged.salvaged == [] and salvaged.salvage_text() is None and salvaged.summary()["salvaged"] is None
    np.testing.assert_array_equal(strict.read_stream("events/spikes")["t"], salvaged.read_stream("events/spikes")["t"])


def test_a_damaged_index_is_never_salvaged(recording, tmp_path):
    path = copy_recording(recording, tmp_path)
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    for salvage in (False, True):
        with pytest.raises(ValueError) as refused:
            SessionFile(path, salvage=salvage)
        assert not isinstance(refused.value, DamagedSegmentsError)


def test_reads_of_a_salvaged_file_still_check_every_row(recording, tmp_path):
    import h5py

    path = copy_recording(recording, tmp_path)
    intact = _segment(path, 3)
    _delete(path, 0)
    with h5py.File(intact, "r+") as f:  # opens and holds its rows, but one is no board's
        f["events/spikes/neuron"][5] = 999
    s = SessionFile(path, salvage=True)
    assert len(s.salvaged) == 1
    with pytest.raises(SessionFileError, match="neuron id 999"):
        s.read_stream("events/spikes")


# --- the CLI -------------------------------------------------------------------------------------
def _error_lines(err: str) -> list[str]:
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_info_refuses_with_the_hint_and_with_salvage_says_what_was_left_out(recording, tmp_path, capsys):
    path = copy_recording(recording, tmp_path)
    name = _truncate(path)
    assert main(["info", str(path)]) == 2
    out, err = capsys.readouterr()
    (line,) = _error_lines(err)
    assert name in line and line.endswith(HINT) and out == ""

    assert main(["info", str(path), "--salvage"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert f"  salvaged: 1 damaged segment left out ({name}: cannot be read (" in out
    assert "  300 spikes, 3 stimulus events" in out

    assert main(["info", str(path), "--salvage", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["spikes"] == 300 and got["salvaged"]["segments_left_out"][0]["segment"] == name


def test_a_damaged_index_gets_no_salvage_hint(recording, tmp_path, capsys):
    path = copy_recording(recording, tmp_path)
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    assert main(["info", str(path), "--salvage"]) == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert "--salvage" not in line


def test_export_salvage_writes_the_intact_events_and_warns(recording, tmp_path, capsys):
    path = copy_recording(recording, tmp_path)
    name = _delete(path, 1)
    out = tmp_path / "out.csv"
    assert main(["export", str(path), "--csv", str(out)]) == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert name in line and line.endswith(HINT)
    assert not out.exists() and list(tmp_path.glob("*.csv*")) == []  # nothing written, not even a partial file

    assert main(["export", str(path), "--csv", str(out), "--salvage"]) == 0
    stdout, err = capsys.readouterr()
    (warning,) = [line for line in err.splitlines() if line.startswith("warning:")]
    assert f"salvaged: 1 missing segment left out ({name}: missing)" in warning
    assert warning.endswith("the export holds only the intact segments") and _error_lines(err) == []
    rows = np.loadtxt(out, delimiter=",", skiprows=1, dtype=str)
    spikes = rows[rows[:, 3] == "spike"]
    want = _expected(skip=1)
    np.testing.assert_array_equal(spikes[:, 1].astype(np.int64), want["t"])
    np.testing.assert_array_equal(spikes[:, 6].astype(np.int64), want["neuron"])
    assert sorted(rows[rows[:, 3] == "input"][:, 1].astype(np.int64)) == [7, 200_007, 300_007]
    assert "wrote" in stdout


def test_export_salvage_of_every_format_succeeds(recording, tmp_path, capsys):
    path = copy_recording(recording, tmp_path)
    _truncate(path, 3)
    for option, suffix, wrote in (("--aedat", "aedat", "(300 spikes)"), ("--nwb", "nwb", "units)")):
        out = tmp_path / f"out.{suffix}"
        assert main(["export", str(path), option, str(out), "--salvage"]) == 0
        stdout, err = capsys.readouterr()
        assert out.stat().st_size > 0 and wrote in stdout
        assert "salvaged: 1 damaged segment left out" in err and _error_lines(err) == []


# --- the app: File → Open recording ----------------------------------------------------------------
def _open_in_app(window, monkeypatch, path: Path, answer=None) -> list[str]:
    """Trigger File → Open recording on ``path``; the question box answers ``answer`` (None: it must not be asked)."""
    from PyQt6.QtWidgets import QFileDialog, QMessageBox

    asked: list[str] = []

    def question(parent, title, text, *args, **kwargs):
        assert answer is not None, f"unexpected question: {text}"
        asked.append(text)
        return answer

    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))
    window.open_recording_action.trigger()
    return asked


@pytest.mark.parametrize("yes", [True, False])
def test_the_app_asks_before_opening_the_intact_part(window, qtbot, recording, tmp_path, monkeypatch, yes):
    from PyQt6.QtWidgets import QMessageBox

    panel = window.replay_panel
    _open_in_app(window, monkeypatch, recording)  # an intact recording is open first: a No must leave it
    first = window.session.replay
    assert first is not None and first.file.salvaged == []
    qtbot.waitUntil(lambda: panel.file_label.text().startswith("base.h5: board EMU00009, 400 spikes"))
    before = panel.file_label.text()

    path = copy_recording(recording, tmp_path)
    name = _truncate(path, 1)
    errors = len(window.reporter.errors)
    button = QMessageBox.StandardButton.Yes if yes else QMessageBox.StandardButton.No
    (asked,) = _open_in_app(window, monkeypatch, path, answer=button)
    assert asked.startswith("1 of 4 segments of base.h5 is damaged: open the intact part?") and name in asked
    assert len(window.reporter.errors) == errors  # asked, not reported as an error
    replay = window.session.replay
    if not yes:
        assert replay is first
        assert panel.file_label.text() == before
        return
    assert replay is not first and replay.path == path and [s.name for s in replay.file.salvaged] == [name]
    qtbot.waitUntil(lambda: "(salvaged: 1 segment left out)" in panel.file_label.text())
    assert panel.file_label.text().startswith("base.h5: board EMU00009, 300 spikes")
    assert panel.file_label.toolTip().startswith(f"salvaged: 1 damaged segment left out ({name}: ")


def test_the_app_refuses_a_damaged_index_without_asking(window, recording, tmp_path, monkeypatch):
    path = copy_recording(recording, tmp_path)
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    _open_in_app(window, monkeypatch, path, answer=None)
    assert window.session.replay is None
    assert str(path) in window.reporter.errors[-1][0] and "--salvage" not in window.reporter.errors[-1][0]
