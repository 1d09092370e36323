"""Byte-exact chip words, FPGA payloads and spike-generator words, each with its inverse."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from drivers.dynapse1 import chip_words as cw
from drivers.dynapse1 import fpga_registers as fr
from drivers.dynapse1 import spikegen_words as sg
from drivers.dynapse1.bias_table import CORE_BIASES, GLOBAL_BIASES
from drivers.dynapse1.topology import SynapseType


def test_bias_word_worked_example():
    # Reference §4.3: C0 IF_DC_P, coarse 1, fine 30, High, Normal, P, enabled.
    assert cw.core_bias_word(0, "IF_DC_P", 1, 30) == 0x009141ED


def test_bias_word_own_examples():
    # IF_TAU1_N on core 3 (address 12 + 1 + 64 = 77), coarse 7 (reversed 7), fine 5, Low, N type.
    assert cw.core_bias_word(3, "IF_TAU1_N", 7, 5, high=False) == (77 << 18) | (1 << 16) | (7 << 12) | (5 << 4) | 0b0111
    # coarse 3 → reversed 6; P type, cascode, disabled
    assert cw.core_bias_word(1, "R2R_P", 3, 85, normal=False, enabled=False) == (49 << 18) | 0x10000 | 0x6000 | (85 << 4) | 0b1000
    # SSP: bits 15–10 set, 6-bit fine, nothing in 3–0; BUFFER: coarse + fine only.
    assert cw.global_bias_word("U_SSP", 0, 7) == (51 << 18) | 0x10000 | 0xFC00 | (7 << 4)
    assert cw.global_bias_word("D_BUFFER", 1, 2) == (114 << 18) | 0x10000 | (4 << 12) | (2 << 4)


def test_bias_word_round_trip_every_bias():
    for core, name, coarse, high in itertools.product(range(4), CORE_BIASES, range(8), (True, False)):
        word = cw.core_bias_word(core, name, coarse, 200, high=high)
        assert cw.classify_chip_word(word) is cw.ChipWordKind.BIAS
        back = cw.decode_bias_word(word)
        assert (back.coarse, back.fine, back.high, back.n_type) == (coarse, 200, high, name.endswith("_N"))
        assert cw.bias_name_of_address(back.address) == (core, name)
    for name in GLOBAL_BIASES:
        word = cw.global_bias_word(name, 2, 9)
        back = cw.decode_bias_word(word)
        assert cw.bias_name_of_address(back.address) == (None, name)
        assert back.fine == 9


def test_bias_word_rejects_bad_values():
    with pytest.raises(ValueError, match="coarse"):
        cw.core_bias_word(0, "IF_DC_P", 8, 0)
    with pytest.raises(ValueError, match="fine"):
        cw.core_bias_word(0, "IF_DC_P", 0, 256)
    with pytest.raises(KeyError, match="unknown bias"):
        cw.core_bias_word(0, "IF_NOPE", 0, 0)
    with pytest.raises(ValueError, match="6 bits"):
        cw.global_bias_word("U_SSN", 0, 64)


def test_cam_word_worked_example_and_round_trip():
    assert cw.encode_cam_word(0x123, 7, 0, 5, SynapseType.AMPA) == 0x305290E3
    rng = np.random.default_rng(1)
    for _ in range(500):
        n, i, c, p, s = (int(rng.integers(0, k)) for k in (1024, 64, 4, 256, 4))
        word = cw.encode_cam_word(n, i, c, p, s)
        assert cw.classify_chip_word(word) is cw.ChipWordKind.CAM
        assert cw.decode_cam_word(word) == cw.CamWord(n, i, c, p, SynapseType(s))
    with pytest.raises(ValueError, match="CAM index"):
        cw.encode_cam_word(0, 64, 0, 0, 0)


def test_sram_word_worked_example_and_round_trip():
    assert cw.encode_sram_word(0x123, 1, 1, cw.Route(), 15) == 0x103E91B0
    rng = np.random.default_rng(2)
    for _ in range(500):
        route = cw.Route(*(int(rng.integers(0, k)) for k in (2, 4, 2, 4)))
        n, cell, vc, mask = (int(rng.integers(0, k)) for k in (1024, 4, 4, 16))
        word = cw.encode_sram_word(n, cell, vc, route, mask)
        assert cw.classify_chip_word(word) is cw.ChipWordKind.SRAM
        assert cw.decode_sram_word(word) == cw.SramWord(n, cell, vc, route, mask)


def test_host_routes_reach_the_fpga_and_chip_routes_are_consistent():
    for chip in range(4):
        assert cw.route_destination(chip, cw.HOST_ROUTES[chip]) == cw.HOST
        for dest in range(4):
            assert cw.route_destination(chip, cw.route_between(chip, dest)) == dest
    # libcaer's cell 0 for chip 1 neuron 0x123: route sx=1 dx=1 sy=1 dy=2, mask = chip + 1
    word = cw.host_route_sram_word(1, 0x123)
    assert cw.decode_sram_word(word) == cw.SramWord(0x123, 0, 1, cw.Route(1, 1, 1, 2), 2)


def test_tau_monitor_and_input_spike_words():
    assert cw.neuron_tau2_word(0x2FF) == 0x6FF
    assert cw.core_tau_word(2, tau2=False) == 0x1200
    assert cw.core_tau_word(3, tau2=True) == 0x1B00
    assert cw.monitor_words(1, 5) == [0x900, 0x105]
    assert cw.classify_chip_word(0x6FF) is cw.ChipWordKind.NEURON_TAU2
    assert cw.classify_chip_word(0x1B00) is cw.ChipWordKind.CORE_TAU
    assert cw.classify_chip_word(0x900) is cw.ChipWordKind.MONITOR_RESET
    assert cw.classify_chip_word(0x105) is cw.ChipWordKind.MONITOR_SELECT
    word = cw.encode_input_spike_word(2, 17, 0b1010, cw.Route(1, 1, 0, 1))
    assert word == (17 << 20) | (2 << 18) | (1 << 13) | (1 << 7) | (1 << 6) | (1 << 4) | 0b1010
    assert cw.classify_chip_word(word) is cw.ChipWordKind.INPUT_SPIKE
    assert cw.decode_input_spike_word(word) == cw.InputSpikeWord(2, 17, cw.Route(1, 1, 0, 1), 0b1010)


def test_register_payload_packing():
    writes = [fr.RegisterWrite(fr.Module.CHIP, fr.ChipParam.CONTENT, 0x009141ED), fr.RegisterWrite(0, 2, 1)]
    payload = fr.pack_entries(writes)
    assert payload == bytes([5, 2, 0x00, 0x91, 0x41, 0xED, 0, 2, 0, 0, 0, 1])
    assert fr.unpack_entries(payload) == writes
    assert fr.pack_register_value(0x01020304) == b"\x01\x02\x03\x04"
    with pytest.raises(ValueError, match="multiple of 6"):
        fr.unpack_entries(b"\x00" * 7)
    assert [fr.chip_id_to_device(c) for c in range(4)] == [0, 8, 4, 12]
    assert fr.chip_id_from_device(4) == 2


def test_spikegen_words_and_long_gaps():
    event = sg.FpgaSpikeEvent(chip=2, neuron=200, core_mask=0b0101, isi=1000)
    assert sg.encode_event_word(event) == (200 << 6) | (2 << 4) | 0b0101
    events = sg.events_from_delays([(1, 3, 15, 10.0), (1, 4, 1, 150_000.0)])  # ISIBase 90 → 1 µs units
    assert [(e.core_mask, e.isi) for e in events] == [(15, 10), (0, 65535), (0, 65535), (1, 150_000 - 2 * 65535)]
    memory = sg.encode_generator_memory(events)
    assert list(memory[:2]) == [(3 << 6) | (1 << 4) | 15, 10]
    assert sg.decode_generator_memory(memory, len(events), variable_isi=True) == events
    packed = sg.pack_burst_words(np.array([1, 2, 3], np.uint16))
    assert packed == [0x00020001, 0x00000003]
    assert sg.unpack_burst_word(packed[0]) == (1, 2)


def test_poisson_rate_code():
    assert sg.poisson_rate_code(0.0) == 0
    assert sg.poisson_rate_code(100.0) == round(100 / 0.06706)
    assert abs(sg.poisson_rate_hz(sg.poisson_rate_code(250.0)) - 250.0) < 0.04
    with pytest.raises(ValueError, match="maximum"):
        sg.poisson_rate_code(5000.0)
    with pytest.raises(ValueError, match="non-negative"):
        sg.poisson_rate_code(-1.0)


def test_long_gaps_past_the_limit_are_refused_before_the_dummies_are_built(monkeypatch):
    """Three gaps of 10^12 µs need ~4.6e7 dummy events: counted and refused, not built first."""
    built = []
    monkeypatch.setattr(sg, "FpgaSpikeEvent", lambda *a: built.append(a))
    with pytest.raises(ValueError, match=r"\d+ spike-generator events \(after splitting long gaps\) exceed the limit 32767"):
        sg.events_from_delays([(0, 1, 1, 1e12)] * 3)
    assert built == []
