"""Bias model: ladder, undo/redo, change log, copy-core, bias files (no board: offline cache)."""

import numpy as np
import pytest

from drivers.dynapse1.bias_table import CORE_BIASES, nominal_current
from drivers.dynapse1.board_api import BiasValue
from neurolab_gui.core.bias_model import LADDER, BiasModel, diff_bias_sets, load_bias_file


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
    loaded = load_bias_file(path)
    assert len(loaded) == len(CORE_BIASES)
    fresh = BiasModel()
    assert {k for k, _, _ in fresh.diff(loaded)} == {(0, 0, "IF_DC_P"), (0, 0, "IF_TAU1_N")}
    fresh.load(path)
    assert fresh.diff(loaded) == []
    assert diff_bias_sets(fresh.snapshot(), m.snapshot())  # cores 0/1 and 3/3 still differ


def test_load_rejects_a_foreign_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a NeuroLab bias file"):
        load_bias_file(bad)
