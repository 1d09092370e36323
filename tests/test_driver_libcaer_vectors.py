"""The driver against libcaer itself: bias/CAM/SRAM words, the event translator and the exact
control-transfer sequences, all compared with vectors recorded from libcaer's own code
(``tests/data/libcaer/PROVENANCE.md``).  Where the driver deliberately differs (it refuses an
out-of-range value that libcaer would silently mask; it skips spikes from chips a board does not
have), the test says so and checks that difference exactly."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.dynapse1 import chip_words as cw
from drivers.dynapse1 import fpga_registers as fr
from drivers.dynapse1 import libcaer_sequences as ls
from drivers.dynapse1.bias_table import GLOBAL_BIASES, core_bias_address
from drivers.dynapse1.board import DynapseBoard
from drivers.dynapse1.event_words import StreamDecoder
from drivers.dynapse1.spikegen_words import poisson_rate_code
from drivers.dynapse1.usb_transport import UsbTransport
from tests.libcaer_vectors import RecordingDevice, digest, sequence, vectors


def _rows(name: str) -> list[list]:
    return vectors()[name]["rows"]


def _recording_board(registers: dict | None = None) -> tuple[DynapseBoard, RecordingDevice]:
    device = RecordingDevice(registers)
    transport = UsbTransport(device)
    transport._connected = True  # opened elsewhere; only the Board's transfers are under test
    return DynapseBoard(transport, prefetch=False, settle_s=0), device


def _as_tuples(transfers: list[fr.ControlTransfer]) -> list[tuple]:
    """Driver transfers in the recorded form, with the acknowledgement read after each 0xC6."""
    out: list[tuple] = []
    for t in transfers:
        out.append(t.as_tuple())
        if t.is_chip_words:
            out.append(("in", 0xC6, 0, 0, "c600"))
    return out


# --- bias words ---------------------------------------------------------------------------------------


def _bias_address(name: str) -> int:
    if name[0] == "C" and name[1].isdigit():
        return core_bias_address(int(name[1]), name[3:])
    return GLOBAL_BIASES[name]


def test_every_libcaer_bias_name_has_the_same_address():
    names = {row[0]: row[1] for row in _rows("bias_generate")}
    assert len(names) == 106  # 4 × 25 per-core biases + 6 chip-global
    for name, address in names.items():
        assert _bias_address(name) == address, name


def _encode(address: int, coarse: int, fine: int, flags: int) -> int:
    return cw.encode_bias_word(
        address, coarse, fine, high=bool(flags & 8), normal=bool(flags & 4), n_type=bool(flags & 2), enabled=bool(flags & 1)
    )


def _check_generate(rows: list[list]) -> int:
    """Words equal to libcaer's inside the driver's domain; a ValueError outside it, where
    libcaer would silently mask the value into a different bias.  Returns the rows compared."""
    compared = 0
    for name, address, coarse, fine, flags, word in rows:
        shifted_source = name.endswith(("SSP", "SSN"))
        if address < 128 and coarse < 8 and fine < (64 if shifted_source else 256):
            assert _encode(address, coarse, fine, flags) == word, (name, coarse, fine, flags)
            compared += 1
        else:
            with pytest.raises(ValueError):
                _encode(address, coarse, fine, flags)
    return compared


def test_bias_words_equal_caer_bias_dynapse_generate():
    assert _check_generate(_rows("bias_generate")) > 7000


def test_out_of_range_bias_inputs_are_refused_where_libcaer_would_mask_them():
    rows = _rows("bias_generate_out_of_range")
    assert _check_generate(rows) < len(rows)


def test_bias_parse_equals_caer_bias_dynapse_parse():
    checked = 0
    for word, address, coarse, fine, enabled, sex_n, normal, high in _rows("bias_parse"):
        if not (word >> 16) & 1 or (word >> 17) & 1:
            with pytest.raises(ValueError):  # not a bias word: libcaer parses anything, we refuse
                cw.decode_bias_word(word)
            continue
        b = cw.decode_bias_word(word)
        assert (b.address, b.coarse, b.fine) == (address, coarse, fine), hex(word)
        assert (b.enabled, b.n_type, b.normal, b.high) == (bool(enabled), bool(sex_n), bool(normal), bool(high)), hex(word)
        checked += 1
    assert checked > 1000


def test_buffer_and_shifted_source_words_parse_with_flags_false():
    for name in ("U_BUFFER", "D_BUFFER", "U_SSP", "D_SSN"):
        b = cw.decode_bias_word(cw.global_bias_word(name, 1, 2))
        assert (b.high, b.normal, b.n_type, b.enabled) == (False, False, False, False), name


# --- CAM and SRAM words ------------------------------------------------------------------------------------


def test_cam_words_equal_caer_dynapse_generate_cam_bits():
    for in_addr, neuron, cam, syn, word in _rows("cam"):
        assert cw.encode_cam_word(neuron, cam, in_addr >> 8, in_addr & 0xFF, syn) == word
        decoded = cw.decode_cam_word(word)
        assert (decoded.neuron, decoded.cam_index, decoded.pre_core, decoded.pre_neuron, int(decoded.synapse)) == (
            neuron, cam, in_addr >> 8, in_addr & 0xFF, syn,
        )  # fmt: skip
    for in_addr, neuron, cam, syn, word in _rows("cam_out_of_range"):
        if in_addr < 1024 and neuron < 1024 and cam < 64 and syn < 4:
            assert cw.encode_cam_word(neuron, cam, in_addr >> 8, in_addr & 0xFF, syn) == word
        else:
            with pytest.raises(ValueError):
                cw.encode_cam_word(neuron, cam, (in_addr >> 8) & 0xFF, in_addr & 0xFF, syn)


def test_sram_words_equal_caer_dynapse_generate_sram_bits():
    for neuron, cell, vc, sx, dx, sy, dy, dest, word in _rows("sram"):
        assert cw.encode_sram_word(neuron, cell, vc, cw.Route(sx, dx, sy, dy), dest) == word
        d = cw.decode_sram_word(word)
        assert (d.neuron, d.cell, d.virtual_core, d.route, d.core_mask) == (neuron, cell, vc, cw.Route(sx, dx, sy, dy), dest)
    for neuron, cell, vc, sx, dx, sy, dy, dest, word in _rows("sram_out_of_range"):
        if neuron < 1024 and cell < 4 and vc < 4 and dx < 4 and dy < 4 and dest < 16:
            assert cw.encode_sram_word(neuron, cell, vc, cw.Route(sx, dx, sy, dy), dest) == word
        else:
            with pytest.raises(ValueError):
                cw.encode_sram_word(neuron, cell, vc, cw.Route(sx, min(dx, 255), sy, min(dy, 255)), dest)


def test_poisson_rate_codes_truncate_a_float32_division_like_libcaer():
    rows = vectors()["poisson_rate_code"]["rows"]
    assert [poisson_rate_code(rate) for rate, _ in rows] == [code for _, code in rows]
    # the exact multiples of the unit are where rounding would have been one code higher
    assert any(round(rate / 0.06706) != code for rate, code in rows)


# --- the event translator ----------------------------------------------------------------------------------


def _libcaer_spikes(events: list[list]) -> tuple[np.ndarray, int]:
    """libcaer's spikes as (full time, chip, core, neuron) rows, with the full time rebuilt from
    the TIMESTAMP_WRAP/RESET special events (the first packet after a change carries a stale
    tsOverflow in libcaer, see PROVENANCE.md); also how many spikes name a chip outside 0–3."""
    overflow, rows, foreign = 0, [], 0
    for e in events:
        if e[0] == "timestamp_wrap":
            overflow += 1
        elif e[0] == "timestamp_reset":
            overflow = 0
        else:
            _, ts31, _packet_overflow, chip, core, neuron = e
            if chip >= 4:
                foreign += 1
                continue
            rows.append((overflow * (1 << 31) + ts31, chip, core, neuron))
    return np.array(rows, dtype=np.int64).reshape(-1, 4), foreign


@pytest.mark.parametrize("scenario", sorted(k for k in vectors()["event_translator"] if not k.startswith("_")))
def test_stream_decoder_equals_libcaer_event_translator(scenario):
    case = vectors()["event_translator"][scenario]
    decoder = StreamDecoder()
    parts = [decoder.decode(bytes.fromhex(chunk))[0] for chunk in case["chunks"]]
    got = np.stack(
        [np.concatenate([getattr(p, c).astype(np.int64) for p in parts]) for c in ("timestamp_us", "chip", "core", "neuron")], axis=1
    )
    expected, foreign = _libcaer_spikes(case["events"])
    np.testing.assert_array_equal(got, expected)
    # spikes from chip fields outside 1–4 are counted as corrupt words (libcaer emits them as chips 4–14 / 63)
    assert decoder.total.corrupt_words >= foreign
    odd = sum(len(c) // 2 % 2 for c in case["chunks"])
    assert decoder.total.stray_bytes == odd


def test_the_vectors_cover_what_the_issue_lists():
    cases = vectors()["event_translator"]
    overflow_events = [e for e in cases["overflow_31bit"]["events"] if e[0] == "timestamp_wrap"]
    assert len(overflow_events) >= 2  # crosses 2^31 twice
    assert sum(e[0] == "timestamp_reset" for e in cases["timestamp_resets"]["events"]) == 3
    assert {e[3] for e in cases["chip_ids"]["events"]} >= {63, 4, 14}  # chip fields 0, 5, 15
    assert any(len(c) % 4 == 2 for c in cases["odd_length_buffers"]["chunks"])  # odd byte counts (hex)


# --- control-transfer sequences ------------------------------------------------------------------------------


def test_default_configuration_is_libcaers_plus_the_documented_tau_reset():
    board, device = _recording_board()
    board._send_default_configuration()
    libcaer = sequence("default_config")
    tau = []
    for chip in range(4):
        tau.append(ls.select_chip(chip).as_tuple())
        tau.append(fr.chip_word_transfers([cw.core_tau_word(core, tau2=False) for core in range(4)])[0].as_tuple())
        tau.append(("in", 0xC6, 0, 0, "c600"))
    assert len(libcaer) == 2509
    assert device.transfers == libcaer[:-2] + tau + libcaer[-2:]


def test_start_and_stop_streaming_equal_libcaer_data_start_and_stop():
    # libcaer's dynapseDataStart/Stop are plain dynapseConfigSet calls: one 0xBF each
    board, device = _recording_board()
    board._start_stream()
    board.close()
    expected = [fr.single_write(*w.__dict__.values()).as_tuple() for w in fr.start_streaming_sequence() + fr.stop_streaming_sequence()]
    assert device.transfers == expected


def test_timestamp_reset_pulse_equals_libcaer():
    board, device = _recording_board()
    board.transport.write_registers(fr.timestamp_reset_pulse())
    assert device.transfers == sequence("timestamp_reset")


@pytest.mark.parametrize("n", [1, 2, 7, 171, 400])
def test_fpga_sram_upload_equals_caer_dynapse_write_sram_words(n):
    name = f"sram_write_words_{n}"
    data, base = vectors()["sequences"][f"{name}_data"], vectors()["sequences"][f"{name}_base"]
    assert _as_tuples(ls.sram_write_words(base, data)) == sequence(name)
    board, device = _recording_board()
    board.write_fpga_sram(base, data)
    assert device.transfers == sequence(name)


def test_plain_sram_word_write_equals_libcaer():
    assert _as_tuples(ls.sram_write_word(12345, 0xBEEF)) == sequence("sram_single_word_write")


def test_spike_generator_register_writes_are_single_transfers_like_libcaer():
    writes = [fr.single_write(fr.Module.SPIKEGEN, p, 1000 * p + 7).as_tuple() for p in range(7)]
    assert writes == sequence("spikegen_registers")


def test_poisson_chip_select_uses_the_device_chip_encoding():
    assert [fr.single_write(fr.Module.POISSONSPIKEGEN, fr.PoissonParam.CHIPID, fr.poisson_chip_id_value(c)).as_tuple() for c in range(4)] == sequence(
        "poisson_chip_select"
    )


def test_poisson_program_equals_caer_dynapse_write_poisson_spike_rate():
    board, device = _recording_board()
    rates = {source: rate for source, rate in vectors()["sequences"]["poisson_rates"]}
    board.set_poisson_rates(2, rates)
    board.stop_poisson()
    assert device.transfers == sequence("poisson_program_u2")


def test_synapse_reconfiguration_equals_libcaer():
    assert [ls.synapse_reconfig_select_chip(c).as_tuple() for c in range(4)] == sequence("synapse_reconfig_chip_select")
    board, device = _recording_board()
    board.configure_synapse_reconfig(3, run=True, sram_base_address=2, use_sram_kernels=True, global_kernel=(5 << 12) | 0x9AB)
    board.transport.write_register(fr.Module.SYNAPSERECONFIG, fr.SynapseReconfigParam.RUN, 0)
    assert device.transfers == sequence("synapse_reconfig_program_u3")


def test_chip_words_and_their_framing_equal_libcaer():
    words = [
        [cw.encode_cam_word(0x123, 7, 0, 5, 3)],  # caerDynapseWriteCam
        [cw.encode_sram_word(0x123, 1, 1, cw.Route(), 15)],  # caerDynapseWriteSramN
        [cw.encode_sram_word(2 * 256 + 17, 3, 2, cw.Route(1, 1, 1, 2), 4)],  # caerDynapseWriteSram (core, address)
        cw.monitor_words(2, 45),  # MONITOR_NEU: both words in one transfer
        [cw.neuron_tau2_word(3 * 256 + 200)],  # TAU2_SET
        [cw.core_tau_word(1, tau2=False)],  # TAU1_RESET
        [cw.core_tau_word(0, tau2=True)],  # TAU2_RESET
    ]
    expected = [ls.select_chip(1), *(t for batch in words for t in fr.chip_word_transfers(batch))]
    assert _as_tuples(expected) == sequence("chip_words_u1")


def test_clear_cam_equals_libcaer():
    stored = vectors()["sequences"]["clear_cam_u3"]
    transfers = _as_tuples([ls.select_chip(3), *fr.chip_word_transfers(cw.clear_cam_words())])
    assert len(transfers) == stored["count"] and transfers[:4] == [tuple(t) for t in stored["head"]]
    assert digest(transfers) == stored["sha256"]


def test_early_packet_delay_register_equals_libcaer():
    got = [fr.single_write(fr.Module.USB, fr.UsbParam.EARLY_PACKET_DELAY, fr.early_packet_delay_value(u)).as_tuple() for u in (1, 8)]
    assert got == sequence("usb_early_packet_delay")


def test_drop_counters_are_read_high_then_low_like_libcaer():
    reads = sequence("read_drop_counters")  # MUX 11 (high), 12 (low); AER 45 (high), 46 (low)
    registers = {(value, index): int(data, 16) for _, _, value, index, data in reads}
    registers.update({(0, 10): 1, (1, 40): 1})  # both modules have statistics
    board, device = _recording_board(registers)
    total = board.read_fpga_drop_counters()
    assert total == ((1 << 32) | 0x234) + 77 == board.counters.fpga_dropped_events
    counter_reads = [(t[2], t[3]) for t in device.transfers if (t[2], t[3]) not in ((0, 10), (1, 40))]
    assert counter_reads == [(0, 11), (0, 12), (0, 11), (1, 45), (1, 46), (1, 45)]  # caerDeviceConfigGet64's order


def test_startup_reads_equal_libcaers_device_open():
    registers = {(6, 0): 5, (6, 1): 64, (6, 2): 1, (6, 3): 90, (1, 40): 1, (0, 10): 1}
    board, device = _recording_board(registers)
    board.transport.read_register(6, 0)  # what open() checks first (the USB open itself is pyusb's)
    board._read_device_info()  # then what open() reads next
    assert device.transfers == sequence("open")  # logic version, then populateDeviceInfo's reads in order
    assert board.logic_clock_mhz == 90 and board.is_master
    assert board._fpga_statistics == [(0, 11), (1, 45)]
