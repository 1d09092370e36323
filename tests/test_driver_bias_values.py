"""The one bias value type and the one ladder (drivers.dynapse1.bias_table), and the flags on the wire."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.dynapse1.bias_table import (
    COARSE_MAX_CURRENT_A,
    LADDER,
    SILENT,
    BiasValue,
    closest_setting,
    nominal_current,
)
from emulator.virtual_board import open_emulated_board, virtual_fpga_of


@pytest.mark.parametrize(("fields", "message"), [
    ((3.9, 1), "coarse value must be an integer 0..7, got 3.9"),
    ((True, 1), "coarse value must be an integer 0..7, got the boolean True"),
    (("3", 1), "coarse value must be an integer"),
    ((8, 1), "coarse value 8 out of range 0..7"),
    ((1, 256), "fine value 256 out of range 0..255"),
    ((1, np.float64(2.0)), "fine value must be an integer"),
    ((1, 2, "false"), "bias flag 'high' must be True or False"),
    ((1, 2, True, 1), "bias flag 'normal' must be True or False"),
])
def test_a_bias_value_validates_itself_when_made(fields, message):
    with pytest.raises(ValueError, match=message):
        BiasValue(*fields)


def test_a_bias_value_is_frozen_normalised_and_keeps_flags_when_the_setting_changes():
    value = BiasValue(np.int64(3), np.uint8(200), np.bool_(False), False, False)
    assert type(value.coarse) is int and type(value.high) is bool
    with pytest.raises(AttributeError):
        value.coarse = 2  # type: ignore[misc]
    moved = value.with_setting(1, 30)
    assert moved == BiasValue(1, 30, high=False, normal=False, enabled=False)
    assert moved.flags_text() == "low cascode disabled" and SILENT.flags_text() == ""
    with pytest.raises(ValueError):
        value.with_setting(9, 0)


def test_the_ladder_is_the_finest_range_spelling_of_each_current():
    assert len(LADDER) == 1812 and LADDER.setting(0) == (SILENT.coarse, SILENT.fine)
    assert np.all(np.diff(LADDER.currents) > 0)
    # every range but the smallest contributes only its upper part: fine >= 32, steps <= 3.2 %
    assert LADDER.fine[LADDER.coarse < 7].min() >= 32
    steps = LADDER.currents[2:] / LADDER.currents[1:-1] - 1
    assert steps[LADDER.coarse[1:-1] < 7].max() < 0.032
    # each rung maps to itself, and an off-ladder spelling to the rung of the same current
    assert all(LADDER.index_of(*LADDER.setting(i)) == i for i in range(len(LADDER)))
    assert LADDER.setting(LADDER.index_of(1, 30)) == (2, 240)  # 376 nA: range 2 resolves it 8x finer
    assert closest_setting(0.0) == (7, 0) and closest_setting(-1.0) == (7, 0)
    assert closest_setting(1.0) == (0, 255)


@settings(max_examples=300, deadline=None)
@given(current=st.floats(min_value=COARSE_MAX_CURRENT_A[7] / 255, max_value=COARSE_MAX_CURRENT_A[0]))
def test_snapping_picks_the_nearest_rung_in_log_current(current):
    index = LADDER.index_of_current(current)
    error = abs(math.log(LADDER.currents[index] / current))
    for neighbour in (index - 1, index + 1):
        if 1 <= neighbour < len(LADDER):
            assert error <= abs(math.log(LADDER.currents[neighbour] / current)) + 1e-12
    assert nominal_current(*closest_setting(current)) == LADDER.currents[index]


def test_flags_reach_the_wire_in_the_bias_word():
    """The word the virtual FPGA received, checked bit by bit against the reference layout (§4.3)."""
    board = open_emulated_board("EMUWORDS", clock="fast", prefetch=False)
    try:
        fpga = virtual_fpga_of(board)
        received: list[int] = []
        apply = fpga.apply_chip_word
        fpga.apply_chip_word = lambda chip, word: (received.append(word), apply(chip, word))[1]
        board.set_bias(2, 1, "IF_DC_P", BiasValue(6, 100, high=False, normal=False, enabled=False))
        board.set_bias(2, 1, "IF_THR_N", BiasValue(6, 100))
        address_dc, address_thr = 36 + 1, 24 + 1  # core-0 offsets + 1 for core 1
        common = (1 << 16) | (0b011 << 12) | (100 << 4)  # coarse 6 = 0b110, bit-reversed on the wire
        assert received == [(address_dc << 18) | common | 0b0000,  # low, cascode, P-type, disabled
                            (address_thr << 18) | common | 0b1111]  # high, normal, N-type, enabled
    finally:
        board.close()


_keys = st.tuples(st.integers(-1, 4), st.integers(-1, 4), st.sampled_from(["IF_DC_P", "IF_THR_N", "IF_NOPE", "R2R_P"]))
_values = st.one_of(st.builds(BiasValue, st.integers(0, 7), st.integers(0, 255), st.booleans(), st.booleans(), st.booleans()),
                    st.tuples(st.integers(0, 7), st.integers(0, 255)), st.none())


@pytest.fixture(scope="module")
def recorded_board():
    board = open_emulated_board("EMUHOSTILE", clock="fast", prefetch=False)
    fpga = virtual_fpga_of(board)
    received: list[int] = []
    apply = fpga.apply_chip_word
    fpga.apply_chip_word = lambda chip, word: (received.append(word), apply(chip, word))[1]
    yield board, received
    board.close()


@settings(max_examples=80, deadline=None)
@given(entries=st.dictionaries(_keys, _values, max_size=6))
def test_a_bias_set_with_any_bad_entry_sends_nothing(recorded_board, entries):
    board, received = recorded_board
    received.clear()
    valid = all(0 <= c < 4 and 0 <= k < 4 and n != "IF_NOPE" and isinstance(v, BiasValue) for (c, k, n), v in entries.items())
    if valid:
        board.apply_bias_set(entries)
        assert len(received) == len(entries)
        assert all(board.get_bias(*key) == value for key, value in entries.items())
    else:
        with pytest.raises(ValueError, match="rejected, nothing written"):
            board.apply_bias_set(entries)
        assert received == []
