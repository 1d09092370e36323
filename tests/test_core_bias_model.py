"""Bias model: ladder, undo/redo, change log, copy-core, bias files (no board: offline cache)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.dynapse1.bias_files import BiasFileError, BiasSet
from drivers.dynapse1.bias_table import CORE_BIASES, nominal_current
from drivers.dynapse1.board_api import BiasValue
from drivers.resources import resource_path
from neurolab_gui.core.bias_model import LADDER, BiasModel, diff_bias_sets, read_bias_file


def test_ladder_is_strictly_increasing_and_spans_the_generator():
    assert np.all(np.diff(LADDER.currents) > 0)
    assert LADDER.currents[0] == 0.0
    assert LADDER.currents[-1] == pytest.approx(24e-6)
    for i in (1, 300, 900, len(LADDER) - 1):
        c, f = LADDER.setting(i)
        assert nominal_current(c, f) == LADDER.currents[i]
        assert LADDER.index_of(c, f) == i


def test_set_logs_and_undo_redo_restore():
    m = BiasModel()
    m.set(1, 2, "IF_DC_P", 3, 100, origin="gui")
    assert m.value(1, 2, "IF_DC_P") == BiasValue(3, 100)
    assert m.log[-1].origin == "gui" and m.log[-1].old == BiasValue(7, 0)
    assert m.undo()
    assert m.value(1, 2, "IF_DC_P") == BiasValue(7, 0)
    assert m.log[-1].origin == "undo"
    assert m.redo()
    assert m.value(1, 2, "IF_DC_P") == BiasValue(3, 100)
    assert not m.redo()


def test_coalesced_slider_drag_is_one_undo_step():
    m = BiasModel()
    for fine in (10, 20, 30):
        m.set(0, 0, "IF_THR_N", 4, fine, origin="gui", coalesce=True)
    assert m.undo()
    assert m.value(0, 0, "IF_THR_N") == BiasValue(7, 0)
    assert not m.can_undo


def test_bad_input_changes_nothing():
    m = BiasModel()
    with pytest.raises(ValueError, match="fine value 300"):
        m.set(0, 0, "IF_DC_P", 1, 300)
    with pytest.raises(KeyError, match="unknown bias name"):
        m.apply({(0, 0, "IF_DC_P"): BiasValue(1, 1), (0, 0, "NOPE"): BiasValue(1, 1)})
    assert m.value(0, 0, "IF_DC_P") == BiasValue(7, 0)
    assert m.log == []


def test_copy_core_and_file_round_trip_and_diff(tmp_path):
    m = BiasModel()
    m.set(0, 0, "IF_DC_P", 2, 50)
    m.set(0, 0, "IF_TAU1_N", 5, 80)
    changed = m.copy_core((0, 0), [(0, 1), (3, 3)])
    assert changed == 4
    assert m.value(3, 3, "IF_TAU1_N") == BiasValue(5, 80)
    path = m.save(tmp_path / "set.json", cores=[(0, 0)])
    assert BiasSet.load(path).cores[(0, 0)]["IF_DC_P"] == BiasValue(2, 50)  # the driver's format
    loaded = read_bias_file(path)
    assert len(loaded) == len(CORE_BIASES)
    fresh = BiasModel()
    assert {k for k, _, _ in fresh.diff(loaded)} == {(0, 0, "IF_DC_P"), (0, 0, "IF_TAU1_N")}
    fresh.load(path)
    assert fresh.diff(loaded) == []
    assert diff_bias_sets(fresh.snapshot(), m.snapshot())  # cores 0/1 and 3/3 still differ


def test_load_rejects_a_foreign_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "other"}')
    with pytest.raises(BiasFileError, match="not a bias file NeuroLab reads"):  # neither NeuroLab nor samna
        read_bias_file(bad)
    m = BiasModel()
    m.set(0, 0, "IF_DC_P", 2, 50)
    with pytest.raises(ValueError):
        m.load(bad)
    assert m.value(0, 0, "IF_DC_P") == BiasValue(2, 50) and len(m.log) == 1  # nothing changed


def test_yaml_files_and_cortexcontrol_imports_load_through_the_driver(tmp_path):
    m = BiasModel()
    m.set(1, 2, "IF_THR_N", 3, 99)
    m.save(tmp_path / "set.yaml", cores=[(1, 2)])
    fresh = BiasModel()
    fresh.load(tmp_path / "set.yaml")
    assert fresh.value(1, 2, "IF_THR_N") == BiasValue(3, 99)
    script = tmp_path / "ctx.py"
    script.write_text("model.get_bias_groups()[6].set_bias('IF_DC_P', 30, 2)\n")  # group 6 = chip 1 core 2
    fresh.load(script)
    assert fresh.value(1, 2, "IF_DC_P") == BiasValue(5, 30)  # ctxctl coarse 2 = libcaer 5


def test_presets_come_from_the_shipped_bias_files():
    m = BiasModel()
    assert {"samna_recommended", "libcaer_low_power", "silent"} <= set(m.preset_names())
    m.apply_preset("samna_recommended", cores=[(2, 1)], overrides={"IF_DC_P": (5, 60)})
    shipped = BiasSet.load(resource_path("biases", "samna_recommended.json"))
    assert m.value(2, 1, "IF_THR_N") == shipped.value(2, 1, "IF_THR_N")
    assert m.value(2, 1, "IF_DC_P") == BiasValue(5, 60) and m.value(2, 0, "IF_DC_P") == BiasValue(7, 0)
    assert m.undo() and m.value(2, 1, "IF_THR_N") == BiasValue(7, 0)  # one undo step
    with pytest.raises(KeyError, match="unknown bias set 'no_such_set'; known: .*samna_recommended"):
        m.apply_preset("no_such_set")


# --- undo history as a property: any sequence of edits unwinds to the start and replays to the end ---

_KEYS = [(0, 0, "IF_DC_P"), (0, 0, "IF_THR_N"), (1, 3, "IF_DC_P")]
_edit = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(_KEYS), st.integers(0, 7), st.integers(0, 255), st.booleans()),
    st.tuples(st.just("flags"), st.sampled_from(_KEYS), st.booleans(), st.booleans(), st.booleans()),
    st.tuples(st.just("group"), st.lists(st.tuples(st.sampled_from(_KEYS), st.integers(0, 7), st.integers(0, 255)), max_size=4)),
)


@settings(max_examples=60, deadline=None)
@given(edits=st.lists(_edit, max_size=12))
def test_any_edit_sequence_unwinds_to_the_start_and_replays_to_the_end(edits):
    model = BiasModel()
    start = model.snapshot()
    for edit in edits:
        if edit[0] == "set":
            _, key, coarse, fine, drag = edit
            model.set(*key, coarse, fine, coalesce=drag)
        elif edit[0] == "flags":
            _, key, high, normal, enabled = edit
            model.set_flags(*key, high=high, normal=normal, enabled=enabled)
        else:
            with model.undo_group():
                for key, coarse, fine in edit[1]:
                    model.set_value(*key, BiasValue(coarse, fine))
    end = model.snapshot()
    while model.undo():
        pass
    assert model.snapshot() == start
    while model.redo():
        pass
    assert model.snapshot() == end


def test_an_undo_group_that_ends_where_it_started_leaves_no_step():
    """A finished or cancelled sweep restores its bias: an undo that changes nothing would hide the step before."""
    m = BiasModel()
    m.set(0, 0, "IF_THR_N", 3, 40)
    with m.undo_group():
        for fine in (10, 20, 30):
            m.set(0, 0, "IF_DC_P", 5, fine)
        m.set_value(0, 0, "IF_DC_P", BiasValue(7, 0))  # the restore
    assert len(m._undo) == 1
    assert m.undo() and m.value(0, 0, "IF_THR_N") == BiasValue(7, 0)  # the first undo undoes the step before
    with m.undo_group():  # partly restored: only the bias that stayed changed is in the step
        m.set(0, 0, "IF_DC_P", 5, 10)
        m.set(0, 0, "IF_TAU1_N", 2, 2)
        m.set_value(0, 0, "IF_DC_P", BiasValue(7, 0))
    assert [k for k, _, _ in m._undo[-1]] == [(0, 0, "IF_TAU1_N")]


def test_attaching_a_board_clears_the_undo_history_so_no_offline_value_reaches_it(session):
    m = session.biases
    m.set(0, 0, "IF_DC_P", 3, 10)  # offline edits: an undo step and a redo step
    m.set(0, 0, "IF_THR_N", 2, 20)
    assert m.undo() and m.can_undo and m.can_redo
    notes = []
    m.history_cleared.connect(notes.append)
    assert session.connect("emulator", seed=5, mismatch=False, clock="fast", acquire=False), session.connection.status.message
    board = session.board
    on_board = board.get_bias(0, 0, "IF_DC_P")
    assert m.value(0, 0, "IF_DC_P") == on_board != BiasValue(3, 10)  # the board's value wins
    assert not m.can_undo and not m.can_redo and not m.undo() and not m.redo()
    assert board.get_bias(0, 0, "IF_DC_P") == on_board  # nothing stale was written
    assert len(notes) == 1 and "undo history cleared (2 steps)" in notes[0]
    m.set(0, 0, "IF_DC_P", 4, 4)  # edits on this board are undoable as before
    assert m.undo() and board.get_bias(0, 0, "IF_DC_P") == on_board


def test_a_hold_refuses_other_threads_writes_to_its_biases_whole_and_says_who_holds_them():
    """While a job holds a bias (the sweep's IF_DC_P) only the job's thread writes it: a write, a
    preset, a copy or an Undo from another thread that touches it is refused whole, naming bias,
    core and job; the same bias of another core stays writable; the hold ends with the block."""
    import threading

    from neurolab_gui.core.bias_model import BiasHeldError

    m = BiasModel()
    m.set(2, 3, "IF_DC_P", 6, 10, origin="gui")  # the user's step before the job
    events: list[str] = []
    m.holds_changed.connect(lambda: events.append("holds"))
    key = (2, 3, "IF_DC_P")
    held, release, done = threading.Event(), threading.Event(), threading.Event()
    job_errors: list[BaseException] = []

    def job() -> None:  # writes its levels and restores, as the sweep does
        try:
            with m.undo_group(), m.hold([key], "being swept", "the sweep"):
                m.set(2, 3, "IF_DC_P", 5, 35, origin="sweep")
                held.set()
                release.wait(10)
                m.set_value(2, 3, "IF_DC_P", BiasValue(6, 10), origin="sweep")
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread below
            job_errors.append(exc)
        finally:
            done.set()

    worker = threading.Thread(target=job)
    worker.start()
    assert held.wait(10)
    message = "IF_DC_P of chip 2 core 3 is being swept; cancel the sweep to change it"
    assert m.hold_reason(*key) == message and m.hold_reason(2, 2, "IF_DC_P") is None
    log_length = len(m.log)
    for write in (lambda: m.set_flags(*key, enabled=False, origin="gui"),
                  lambda: m.set(*key, 1, 1, origin="gui"),
                  lambda: m.apply_preset("samna_recommended", cores=[(2, 2), (2, 3)]),
                  lambda: m.copy_core((0, 0), [(2, 3)]),
                  m.undo):
        with pytest.raises(BiasHeldError, match=message):
            write()
    assert len(m.log) == log_length  # nothing written, not even the preset's other core
    with pytest.raises(BiasHeldError, match=message):  # a second job cannot take it either
        with m.hold([key], "being calibrated", "the calibration"):
            pass
    m.set_flags(2, 2, "IF_DC_P", enabled=False, origin="gui")  # another core: free
    release.set()
    worker.join(10)
    assert done.is_set() and not job_errors
    assert events == ["holds", "holds"] and m.hold_reason(*key) is None
    assert m.value(*key) == BiasValue(6, 10)
    # Undo writes only values the user set: the other core's flag, then the step before the job
    assert m.undo() and m.value(2, 2, "IF_DC_P").enabled
    assert m.undo() and m.value(*key) == BiasValue(7, 0)
    assert 35 not in {c.new.fine for c in m.log if c.origin == "undo"}


def test_core_calibration_holds_the_biases_of_its_cores_until_it_ends(session, monkeypatch):
    """The core calibration job holds all biases of the cores it tunes (another core stays free),
    also when it fails; what it measures is not the point here, so the measurement is a stub."""
    import threading

    from neurolab_gui.core import workflows
    from neurolab_gui.core.bias_model import BiasHeldError
    from neurolab_gui.core.calibration import board_calibration

    assert session.connect("emulator", seed=3, mismatch=False, clock="fast", acquire=False)
    seen: list[str | None] = []

    def stub(board, chip, cores, progress=None, cancel=None):
        seen.append(session.biases.hold_reason(chip, cores[0], "IF_THR_N"))
        refused: list[BaseException] = []

        def users_edit(core: int) -> None:
            try:
                session.biases.set(chip, core, "IF_THR_N", 3, 3, origin="gui")
            except BiasHeldError as exc:
                refused.append(exc)

        for core in (cores[0], 3):  # the GUI thread's edits: the calibrated core, then another
            edit = threading.Thread(target=users_edit, args=(core,))
            edit.start()
            edit.join(10)
        seen.extend(str(e) for e in refused)
        raise RuntimeError("measurement broke")

    monkeypatch.setattr(workflows, "heavy_stack_loaded", lambda progress=None, cancel=None: None)
    monkeypatch.setattr(board_calibration, "calibrate_board", stub)
    with pytest.raises(RuntimeError, match="measurement broke"):
        workflows.calibrate_cores(session, [(0, 1)])
    message = "IF_THR_N of chip 0 core 1 is being calibrated; cancel the calibration to change it"
    assert seen == [message, message]  # held, the edit refused; core 3's edit went through
    assert session.biases.value(0, 3, "IF_THR_N") == BiasValue(3, 3)
    assert session.biases.hold_reason(0, 1, "IF_THR_N") is None  # released although it failed
