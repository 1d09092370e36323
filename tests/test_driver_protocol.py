"""Exact control-transfer sequences of the Board operations, against a scripted fake pyusb device.

In the spirit of PyMeasure's ``expected_protocol``: every transfer the driver makes must match
the next expected one byte for byte, and the script must be used up.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from drivers.dynapse1 import fpga_registers as fr
from drivers.dynapse1.board import DynapseBoard
from drivers.dynapse1.board_api import BiasValue, SpikeGenEvent
from drivers.dynapse1.netlist import InputAddress
from drivers.dynapse1.usb_transport import UsbTransport

OUT, IN = 0x40, 0xC0
ACK = (IN, 0xC6, 0, 0, 2, b"\xc6\x00")


def chip_words(*words: int) -> bytes:
    return b"".join(bytes([5, 2]) + w.to_bytes(4, "big") for w in words)


def regs(*entries: tuple[int, int, int]) -> bytes:
    return b"".join(bytes([m, p]) + v.to_bytes(4, "big") for m, p, v in entries)


def singles(*entries: tuple[int, int, int]) -> list[tuple]:
    """One 0xBF write per register, as libcaer's ``spiConfigSend`` sends them."""
    return [(OUT, 0xBF, m, p, v.to_bytes(4, "big"), None) for m, p, v in entries]


class ScriptedDevice:
    """A pyusb ``Device`` stand-in that checks each control transfer against a script."""

    iSerialNumber = 0
    bcdDevice = 3

    def __init__(self, script: list[tuple]) -> None:
        self.script = list(script)

    def ctrl_transfer(self, bmRequestType, bRequest, wValue=0, wIndex=0, data_or_wLength=None, timeout=None):
        assert self.script, f"unexpected transfer 0x{bmRequestType:02X} 0x{bRequest:02X} {wValue} {wIndex}"
        request_type, request, value, index, payload, reply = self.script.pop(0)
        sent = data_or_wLength if isinstance(data_or_wLength, int) else bytes(data_or_wLength)
        assert (bmRequestType, bRequest, wValue, wIndex, sent) == (request_type, request, value, index, payload)
        return reply if bmRequestType & 0x80 else len(sent)


@contextmanager
def expected_protocol(script: list[tuple]):
    device = ScriptedDevice(script)
    transport = UsbTransport(device)
    transport._connected = True  # opened elsewhere; only the Board's transfers are under test
    board = DynapseBoard(transport, prefetch=False, settle_s=0)
    yield board
    assert device.script == [], f"{len(device.script)} expected transfers were not made"


def test_set_bias_selects_the_chip_once_then_sends_acknowledged_words():
    with expected_protocol(
        [
            (OUT, 0xBF, 5, 1, (8).to_bytes(4, "big"), None),  # CHIP/ID ← U1 (device encoding 8)
            (OUT, 0xC6, 1, 0, chip_words(0x009141ED), None),
            ACK,
            (OUT, 0xC6, 1, 0, chip_words(0x009141ED), None),  # same chip: no second CHIP/ID write
            ACK,
        ]
    ) as board:
        board.set_bias(1, 0, "IF_DC_P", BiasValue(1, 30))
        board.set_bias(1, 0, "IF_DC_P", BiasValue(1, 30))


def test_write_cam_words_in_batches_of_85():
    from drivers.dynapse1.chip_words import clear_cam_words

    words = clear_cam_words(range(2))  # 128 words → batches of 85 and 43
    with expected_protocol(
        [
            (OUT, 0xBF, 5, 1, (4).to_bytes(4, "big"), None),  # U2
            (OUT, 0xC6, 85, 0, chip_words(*words[:85]), None),
            ACK,
            (OUT, 0xC6, 43, 0, chip_words(*words[85:]), None),
            ACK,
        ]
    ) as board:
        board._write_chip_words(2, words)
    assert words[0] == 0x00020000 and words[65] == (1 << 17) | (1 << 5) | 1


def test_start_and_stop_streaming_sequences():
    start = singles((9, 0, 1), (0, 0, 1), (0, 1, 1), (5, 0, 1), (1, 3, 1))
    stop = singles((5, 0, 0), (1, 3, 0), (0, 3, 0), (0, 1, 0), (0, 0, 0), (9, 0, 0))
    with expected_protocol(start + stop) as board:
        board._start_stream()
        board.transport.send(fr.single_writes(fr.stop_streaming_sequence()))  # what close() sends first


def test_spike_generator_upload_and_start():
    events = [SpikeGenEvent(InputAddress(2, 200), 0b0101, 3.0), SpikeGenEvent(InputAddress(0, 1), 0b1000, 1.0)]
    word0 = (200 << 6) | (2 << 4) | 0b0101
    word1 = (1 << 6) | 0b1000
    # libcaer caerDynapseWriteSramWords: the start address with burst mode off, then burst on
    upload = [
        *singles((16, 0, 0), (14, 4, 1), (14, 3, 0), (14, 1, 0), (14, 5, 1)),
        (OUT, 0xC2, 2, 0, regs((14, 3, (3 << 16) | word0), (14, 3, (1 << 16) | word1)), None),  # event, ISI (3 µs)
        *singles((14, 5, 0), (16, 1, 1), (16, 2, 0), (16, 3, 1), (16, 5, 90), (16, 6, 0)),
    ]
    with expected_protocol(upload + singles((16, 0, 0), (16, 0, 1))) as board:
        board.load_spike_generator(events)
        board.start_spike_generator()


def test_timestamp_reset_is_one_transfer_with_a_pulse():
    with expected_protocol([(OUT, 0xC2, 2, 0, regs((0, 2, 1), (0, 2, 0)), None)]) as board:
        board.transport.write_registers(fr.timestamp_reset_pulse())


def test_wrong_transfer_is_detected():
    with pytest.raises(AssertionError):
        with expected_protocol([(OUT, 0xBF, 5, 1, (0).to_bytes(4, "big"), None)]) as board:
            board.set_bias(1, 0, "IF_DC_P", BiasValue(1, 30))
