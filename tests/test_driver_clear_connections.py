"""Clearing a chip's connections writes only the cells the driver's netlists set (same end state, far fewer words)."""

from __future__ import annotations

import numpy as np

from drivers.dynapse1.netlist import InputAddress, Netlist, NeuronAddress
from drivers.dynapse1.topology import SynapseType
from emulator.config import EmulatorConfig
from emulator.virtual_board import open_emulated_board, virtual_fpga_of


def _tables(board):
    t = virtual_fpga_of(board).simulator.tables
    return t.cam_core.copy(), t.cam_neuron.copy(), t.cam_type.copy(), t.sram.copy()


def _netlist() -> Netlist:
    units = [NeuronAddress(0, 1, n) for n in range(0, 40, 3)] + [NeuronAddress(0, 2, 200)]
    net = Netlist(monitored=set(units))
    for i, post in enumerate(units):
        net.add(InputAddress(0, 1 + i % 5), post, SynapseType.AMPA, 1 + i % 4)
        net.add(units[(i + 1) % len(units)], post, SynapseType.GABA_B, 2)
    net.add(units[0], NeuronAddress(1, 3, 7), SynapseType.AMPA, 3)  # a route to another chip
    return net


def _count_words(board):
    counts = []
    inner = board.transport.write_chip_words

    def counting(words):
        counts.append(len(words))
        return inner(words)

    board.transport.write_chip_words = counting
    return counts


def test_a_clear_after_a_full_clear_writes_only_the_cells_in_use_and_ends_in_the_cleared_state():
    board = open_emulated_board("NLTEST-CLEAR", EmulatorConfig(seed=1))
    reference = open_emulated_board("NLTEST-CLEAR2", EmulatorConfig(seed=1))
    try:
        counts = _count_words(board)
        board.clear_connections([0, 1])
        full = sum(counts)
        assert full > 2 * 70_000  # the first clear knows nothing: every cell of both chips
        board.write_netlist(_netlist())
        assert not all(np.array_equal(a, b) for a, b in zip(_tables(board), _tables(reference), strict=True))
        counts.clear()
        board.clear_connections([0, 1])
        assert 0 < sum(counts) < 1000  # only what the netlist set
        reference.clear_connections([0, 1])
        for a, b in zip(_tables(board), _tables(reference), strict=True):
            assert np.array_equal(a, b)
        # clearing one core writes only its cells in use and leaves the other cores' connections
        board.write_netlist(_netlist())
        counts.clear()
        board.clear_connections([0], cores=[1])
        assert 0 < sum(counts) < 1000
        cam = virtual_fpga_of(board).simulator.tables.cam_neuron
        assert not cam[256:512].any() and cam[512 + 200].any()  # core 1 cleared, core 2's unit still wired
        board.clear_connections([0, 1])
        for a, b in zip(_tables(board), _tables(reference), strict=True):
            assert np.array_equal(a, b)
        # after a reattach (power lost) nothing is known again: the next clear writes every cell
        board._cam_in_use.clear()
        board._sram_in_use.clear()
        counts.clear()
        board.clear_connections([0])
        assert sum(counts) > 70_000
    finally:
        board.close()
        reference.close()


def test_a_netlist_on_a_chip_not_yet_cleared_leaves_its_state_unknown():
    board = open_emulated_board("NLTEST-CLEAR", EmulatorConfig(seed=1))
    try:
        board.write_netlist(_netlist())  # chip 0 never cleared: its other cells are not known
        counts = _count_words(board)
        board.clear_connections([0])
        assert sum(counts) > 70_000
    finally:
        board.close()
