"""Board → virtual USB → BoardSimulator → bulk-IN bytes → decoder, with the real emulator."""

from __future__ import annotations

import numpy as np

from drivers.dynapse1.bias_table import CORE_BIASES
from drivers.dynapse1.board import open_board
from drivers.dynapse1.board_api import BiasValue, SpikeGenEvent
from drivers.dynapse1.netlist import InputAddress, Netlist, NeuronAddress
from drivers.dynapse1.spikes import SpikeEvents
from drivers.dynapse1.topology import SynapseType
from emulator.simulator import BoardSimulator
from emulator.virtual_usb import VirtualDynapseBackend


def test_decoded_stream_equals_the_spikes_the_emulator_fired():
    simulator = BoardSimulator("EMUE2E01")
    fired: list[SpikeEvents] = []
    original_run = simulator.run

    def recording_run(duration_s: float) -> SpikeEvents:
        events = original_run(duration_s)
        fired.append(events)
        return events

    simulator.run = recording_run
    backend = VirtualDynapseBackend()
    backend.add_board("EMUE2E01", simulator)
    board = open_board("EMUE2E01", backend=backend, settle_s=0.0)
    try:
        # libcaer's low-power biases make neurons fire on their own (DC on); read 50 ms
        decoded = board.read_events(0.05)
        emitted = SpikeEvents.concatenate(fired)
        assert len(emitted) > 0
        for column in ("timestamp_us", "chip", "core", "neuron"):
            np.testing.assert_array_equal(getattr(decoded, column), getattr(emitted, column))

        # silence every core (no DC), then drive ten neurons of chip 1 core 2 from the FPGA generator
        silent = {(c, k, name): BiasValue(7, 0) for c in range(4) for k in range(4) for name in CORE_BIASES}
        board.apply_bias_set(silent)
        board.read_events(0.05)  # let activity die out
        assert len(board.read_events(0.05)) == 0
        drive = {
            "IF_TAU1_N": BiasValue(4, 40, high=False),
            "IF_THR_N": BiasValue(2, 180),
            "IF_RFR_N": BiasValue(2, 180),
            "PS_WEIGHT_EXC_F_N": BiasValue(0, 250),
            "NPDPIE_THR_F_P": BiasValue(0, 220),
            "NPDPIE_TAU_F_P": BiasValue(6, 150),
            "PULSE_PWLK_P": BiasValue(3, 50),
        }
        board.apply_bias_set({(1, 2, name): value for name, value in drive.items()})
        net = Netlist()
        for i in range(10):
            net.add(InputAddress(1, i + 1), NeuronAddress(1, 2, i), SynapseType.AMPA, multiplicity=16)  # id 0: the cleared CAM tag
        assert board.write_netlist(net) == []
        board.load_spike_generator([SpikeGenEvent(InputAddress(1, i % 10 + 1), 0b0100, 200.0) for i in range(500)])
        board.start_spike_generator()
        fired.clear()
        driven = board.read_events(0.1)
        np.testing.assert_array_equal(driven.timestamp_us, SpikeEvents.concatenate(fired).timestamp_us)
        assert len(driven) > 0
        assert set(zip(driven.chip.tolist(), driven.core.tolist(), strict=True)) == {(1, 2)}
        assert set(driven.neuron.tolist()) <= set(range(10))
    finally:
        board.close()
