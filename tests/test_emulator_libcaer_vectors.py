"""The virtual FPGA fed with libcaer's own transfers (recorded, ``tests/data/libcaer``), not only
with the driver's: it must reach the chip state libcaer meant and the same state the driver's
bytes reach, and it must flag transfers libcaer never sends, so that an order that works only on
the emulator is caught."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.dynapse1.board import DynapseBoard
from drivers.dynapse1.usb_transport import UsbTransport
from emulator import fpga_decoding as fd
from emulator.simulator import BoardSimulator
from emulator.virtual_fpga import VirtualFpga
from emulator.virtual_usb import VirtualDynapseBackend
from tests.libcaer_vectors import sequence, vectors

CORE_BIASES = sorted(fd.CORE_BIAS_OFFSETS.values())
GLOBAL_BIASES = sorted(fd.GLOBAL_BIAS_ADDRESSES.values())


def replay(fpga: VirtualFpga, transfers: list[tuple]) -> None:
    """Apply recorded transfers; IN replies must be what libcaer was given (acknowledgements)."""
    for direction, request, value, index, data in transfers:
        if direction == "out":
            fpga.control_out(request, value, index, bytes.fromhex(data))
        else:
            reply = fpga.control_in(request, value, index, len(data) // 2)
            if request == fd.REQUEST_CHIP_MULTIPLE:
                assert reply.hex() == data


def fresh_fpga(serial: str = "LIBCAER1") -> VirtualFpga:
    return VirtualFpga(serial, BoardSimulator(serial))


def chip_state(sim: BoardSimulator) -> dict:
    t = sim.tables
    return {
        "biases": {(c, k, n): sim.get_bias(c, k, n) for c in range(4) for k in range(4) for n in CORE_BIASES},
        "globals": {(c, n): sim.get_global_bias(c, n) for c in range(4) for n in GLOBAL_BIASES},
        "sram": t.sram.copy(),
        "cam": (t.cam_core.copy(), t.cam_neuron.copy(), t.cam_type.copy()),
        "tau2": t.use_tau2.copy(),
    }


def assert_same_state(a: dict, b: dict) -> None:
    assert a["biases"] == b["biases"]
    assert a["globals"] == b["globals"]
    np.testing.assert_array_equal(a["sram"], b["sram"])
    for x, y in zip(a["cam"], b["cam"], strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a["tau2"], b["tau2"])


def test_libcaer_default_configuration_reaches_the_state_libcaer_meant_and_the_drivers():
    from_libcaer = fresh_fpga()
    replay(from_libcaer, sequence("default_config"))
    assert from_libcaer.unexpected_count == 0, list(from_libcaer.unexpected_transfers)
    sim = from_libcaer.simulator
    # libcaer's low-power set, decoded by the FPGA's own code
    assert sim.get_bias(2, 1, "IF_TAU1_N")[:3] == (7, 5, False)
    assert sim.get_bias(3, 3, "IF_DC_P")[:2] == (1, 30) and sim.get_bias(0, 0, "R2R_P")[:2] == (4, 85)
    assert sim.get_global_bias(1, "D_SSN") == (0, 15) and sim.get_global_bias(1, "U_BUFFER") == (1, 2)
    # SRAM cell 0 of every neuron routes to the FPGA with the destination-core field = chip + 1
    for chip in range(4):
        cells = sim.tables.sram[chip * 1024 : (chip + 1) * 1024, 0]
        assert set(cells[:, -1].tolist()) == {chip + 1}, chip

    backend = VirtualDynapseBackend()
    from_driver = backend.plug(fresh_fpga())
    board = _open(backend)
    try:
        assert_same_state(chip_state(from_libcaer.simulator), chip_state(from_driver.simulator))
    finally:
        board.close()


def _open(backend: VirtualDynapseBackend) -> DynapseBoard:
    import usb.core

    device = usb.core.find(idVendor=fd.VENDOR_ID, idProduct=fd.PRODUCT_ID, backend=backend)
    board = DynapseBoard(UsbTransport(device), prefetch=False, settle_s=0, is_emulated=True)
    return board.open()


@pytest.mark.parametrize("n", [1, 2, 7, 171, 400])
def test_libcaer_sram_upload_lands_in_fpga_memory(n):
    fpga = fresh_fpga()
    data, base = vectors()["sequences"][f"sram_write_words_{n}_data"], vectors()["sequences"][f"sram_write_words_{n}_base"]
    replay(fpga, sequence(f"sram_write_words_{n}"))
    assert fpga.sram_words(base, n).tolist() == data
    assert fpga.unexpected_count == 0


def test_libcaer_plain_sram_word_write_lands_in_fpga_memory():
    fpga = fresh_fpga()
    replay(fpga, sequence("sram_single_word_write"))
    assert fpga.sram_words(12345, 1).tolist() == [0xBEEF] and fpga.unexpected_count == 0


def test_libcaer_poisson_program_sets_rates_on_the_chip_it_selected():
    fpga = fresh_fpga()
    replay(fpga, sequence("poisson_chip_select"))
    assert fpga.unexpected_count == 0  # 0, 8, 4, 12 are all valid selections
    replay(fpga, sequence("poisson_program_u2"))
    assert fpga.unexpected_count == 0
    rates = fpga.simulator.poisson.rates_hz
    for source, rate in vectors()["sequences"]["poisson_rates"]:
        code = int(np.float32(rate) / np.float32(0.06706))
        assert rates[2, source] == pytest.approx(code * 0.06706), source
    assert not rates[[0, 1, 3]].any()
    assert not fpga.simulator.poisson.running  # RUN 1 then 0


def test_libcaer_synapse_reconfiguration_selects_the_chip_it_meant():
    fpga = fresh_fpga()
    replay(fpga, sequence("synapse_reconfig_program_u3"))
    state = fpga.synapse_reconfig
    assert (state.chip, state.sram_base_address, state.use_sram_kernels, state.run) == (3, 2, True, False)
    assert state.global_kernels == {5: 0x9AB}
    assert fpga.unexpected_count == 0


def test_libcaer_chip_words_reach_the_selected_chip():
    fpga = fresh_fpga()
    replay(fpga, sequence("chip_words_u1"))
    t = fpga.simulator.tables
    n = 1024 + 0x123  # chip 1, neuron 0x123
    assert (t.cam_core[n, 7], t.cam_neuron[n, 7], t.cam_type[n, 7]) == (0, 5, 3)
    assert t.use_tau2[1024 + 3 * 256 + 200]  # TAU2_SET of core 3, neuron 200
    assert t.use_tau2[1024 : 1024 + 256].all()  # TAU2_RESET: all of core 0
    assert not t.use_tau2[1024 + 256 : 1024 + 512].any()  # TAU1_RESET: none of core 1
    assert fpga.simulator.tables.monitor[1, 2] == 45
    assert fpga.unexpected_count == 0


def test_libcaer_timestamp_reset_and_counter_reads_are_expected_transfers():
    fpga = fresh_fpga()
    fpga.dropped_aer_events, fpga.dropped_transactions = (1 << 32) | 0x234, 77
    replay(fpga, sequence("timestamp_reset"))
    reads = sequence("read_drop_counters")
    got = [fpga.control_in(request, value, index, 4).hex() for _, request, value, index, _ in reads]
    assert got == [t[4] for t in reads]  # the same high/low halves libcaer was given
    replay(fpga, sequence("open") + sequence("usb_early_packet_delay") + sequence("spikegen_registers"))
    assert fpga.unexpected_count == 0


@pytest.mark.unexpected_transfers_ok
@pytest.mark.parametrize(
    "transfers, why",
    [
        # the driver's old spike-generator upload: burst mode on before the start address
        ([("out", 0xBF, 14, 4, "00000001"), ("out", 0xBF, 14, 5, "00000001"), ("out", 0xBF, 14, 1, "00000000")], "burst mode on"),
        # the driver's old Poisson chip select: the host id instead of 0/8/4/12
        ([("out", 0xBF, 18, 3, "00000001")], "CHIPID 1"),
        # a chip word written through a plain register write instead of an acknowledged 0xC6
        ([("out", 0xBF, 5, 1, "00000000"), ("out", 0xBF, 5, 2, "009141ed")], "0xBF write to 5/2"),
        # two 0xC6 batches without reading the acknowledgement in between
        ([("out", 0xC6, 1, 0, "05020051700d"), ("out", 0xC6, 1, 0, "05020051700d")], "acknowledgement"),
        # configuration registers in a 0xC2 batch (libcaer sends one 0xBF each)
        ([("out", 0xC2, 1, 0, "090000000001")], "0xC2 entry 9/0"),
    ],
)
def test_transfers_libcaer_never_sends_are_counted_and_logged(transfers, why):
    fpga = fresh_fpga()
    replay(fpga, [("out", 0xBF, 5, 1, "00000000"), ("out", 0xC6, 1, 0, "05020051700d"), ("in", 0xC6, 0, 0, "c600")])
    replay(fpga, transfers)
    assert fpga.unexpected_count >= 1
    assert any(why in entry for entry in fpga.unexpected_transfers), list(fpga.unexpected_transfers)
