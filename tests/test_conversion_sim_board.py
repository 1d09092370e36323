"""The Brian2 stage's SimulatorBoard holds exactly the connectivity a board receives over USB."""

from __future__ import annotations

import numpy as np

from drivers.dynapse1.netlist import InputAddress, Netlist, NeuronAddress
from drivers.dynapse1.topology import SynapseType
from emulator.sim_board import SimulatorBoard
from emulator.simulator import BoardSimulator
from emulator.virtual_board import open_emulated_board, virtual_fpga_of


def test_netlist_written_through_usb_and_through_the_simulator_board_is_identical():
    net = Netlist()
    for i in range(12):
        net.add(InputAddress(0, 200 + i), NeuronAddress(0, 1, i), SynapseType.AMPA, multiplicity=3)
        net.add(NeuronAddress(0, 1, i), NeuronAddress(0, 2, (5 * i) % 12), SynapseType.GABA_B, multiplicity=2)
        net.add(NeuronAddress(0, 2, i), NeuronAddress(1, 3, i), SynapseType.NMDA)
    usb_board = open_emulated_board("EMUSIMB1")
    try:
        assert usb_board.write_netlist(net) == []
        over_usb = virtual_fpga_of(usb_board).simulator.tables
        direct_sim = BoardSimulator("EMUSIMB1")
        assert SimulatorBoard(direct_sim).write_netlist(net) == []
        direct = direct_sim.tables
        for table in ("cam_core", "cam_neuron", "cam_type", "cam_written", "sram"):
            np.testing.assert_array_equal(getattr(direct, table), getattr(over_usb, table), err_msg=table)
        # the compiler rewrites all 64 CAM entries of every target neuron (36 of them)
        assert direct.cam_written.sum() == 36 * 64
        assert (direct.cam_type[direct.cam_written] == int(SynapseType.AMPA)).sum() == 12 * 3
    finally:
        usb_board.close()
