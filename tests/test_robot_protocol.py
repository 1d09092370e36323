"""PushBot protocol: byte-exact command encodings and the mixed-stream parser."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.robot import pushbot_protocol as proto
from drivers.robot.pushbot_protocol import DvsEvents, EventFormat, PushBotStreamParser

# --- command encoders ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        (proto.encode_flush(), b"\n"),
        (proto.encode_reset(), b"R\n"),
        (proto.encode_event_streaming(True), b"E+\n"),
        (proto.encode_event_streaming(False), b"E-\n"),
        (proto.encode_event_format(EventFormat.NO_TIMESTAMP), b"!E0\n"),
        (proto.encode_event_format(EventFormat.TS16), b"!E2\n"),
        (proto.encode_event_format(EventFormat.TS24), b"!E3\n"),
        (proto.encode_event_format(EventFormat.TS32), b"!E4\n"),
        (proto.encode_event_format(EventFormat.TS16, proto.EDVSTOOLS_FORMAT_NUMBERS), b"!E1\n"),
        (proto.encode_motor_driver(True), b"!M+\n"),
        (proto.encode_motor_driver(False), b"!M-\n"),
        (proto.encode_motor_duty_velocity(0, 42), b"!MVD0=42\n"),
        (proto.encode_motor_duty_velocity(1, -7), b"!MVD1=-7\n"),
        (proto.encode_motor_duty_velocity(0, 150), b"!MVD0=100\n"),
        (proto.encode_motor_duty_velocity(1, -250.0), b"!MVD1=-100\n"),
        (proto.encode_motor_duty_velocity(0, 12.6), b"!MVD0=13\n"),
        (proto.encode_motor_velocity(1, 80), b"!MV1=80\n"),
        (proto.encode_board_led(proto.BoardLed.OFF), b"!L0\n"),
        (proto.encode_board_led(proto.BoardLed.BLINK), b"!L2\n"),
        (proto.encode_echo_mode(0), b"!U0\n"),
        (proto.encode_sensor_stream(proto.sensor_mask([1, 3]), 8), b"!S+10,8\n"),  # the guide's example
        (proto.encode_sensor_stream(proto.sensor_mask([0, 28]), 100), b"!S+268435457,100\n"),
        (proto.encode_sensor_stop(), b"!S-\n"),
        (proto.encode_sensor_stop(6), b"!S-6\n"),
        (proto.encode_pwm_frequency("C", 200), b"!PC=5000\n!PC0=2500\n!PC1=2500\n"),
        (proto.encode_pwm_frequency("A", 150), b"!PA=6667\n!PA0=3333\n"),
        (proto.encode_all_lights_off(), b"!PA=0\n!PA0=0\n!PB=0\n!PB0=0\n!PC=0\n!PC0=0\n!PC1=0\n"),
    ],
)
def test_command_bytes_are_exact(encoded: bytes, expected: bytes) -> None:
    assert encoded == expected


@pytest.mark.parametrize("text", ["P", " P", "P\t"])
def test_bootloader_command_is_refused(text: str) -> None:
    with pytest.raises(proto.ForbiddenCommandError, match="bootloader"):
        proto.command_line(text)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: proto.encode_motor_duty_velocity(2, 10), "motor index"),
        (lambda: proto.encode_motor_duty_velocity(0, float("nan")), "NaN"),
        (lambda: proto.encode_sensor_stream(0, 10), "mask"),
        (lambda: proto.encode_sensor_stream(1, 0), "period"),
        (lambda: proto.encode_echo_mode(3), "echo mode"),
        (lambda: proto.encode_pwm_frequency("D", 100), "timer"),
        (lambda: proto.encode_timer_on_time("A", 1, 10), "channels"),
        (lambda: proto.command_line("E+\nR"), "line break"),
        (lambda: proto.event_format_from_number(1), "not a supported event format"),
    ],
)
def test_bad_command_arguments_raise_clear_errors(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_format_numbers_round_trip() -> None:
    for numbering in (proto.GUIDE_FORMAT_NUMBERS, proto.EDVSTOOLS_FORMAT_NUMBERS):
        for fmt, number in numbering.items():
            assert proto.event_format_from_number(number, numbering) is fmt


# --- event encoding and parsing ---------------------------------------------------------------------


def _random_events(rng: np.random.Generator, n: int, fmt: EventFormat) -> DvsEvents:
    # Gaps well below one wrap period so that wrap counting can reconstruct the time.
    max_gap = max(1, (1 << fmt.timestamp_bits) // 4) if fmt.timestamp_bits else 1
    t = np.cumsum(rng.integers(0, min(max_gap, 40_000), n)) if fmt.timestamp_bits else np.full(n, -1)
    return DvsEvents(rng.integers(0, 128, n), rng.integers(0, 128, n), rng.random(n) < 0.5, t)


def _assert_events_equal(a: DvsEvents, b: DvsEvents) -> None:
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.polarity, b.polarity)
    np.testing.assert_array_equal(a.t_us, b.t_us)


def test_event_layout_matches_the_guide() -> None:
    """Byte 0 = 1yyyyyyy, byte 1 = pxxxxxxx, then the timestamp MSB first."""
    data = proto.encode_dvs_events([5], [9], [True], [0x1234], EventFormat.TS16)
    assert data == bytes([0x80 | 9, 0x80 | 5, 0x12, 0x34])
    data = proto.encode_dvs_events([127], [0], [False], [0xABCDEF01], EventFormat.TS32)
    assert data == bytes([0x80, 0x7F, 0xAB, 0xCD, 0xEF, 0x01])
    assert proto.encode_dvs_events([1], [2], [True], None, EventFormat.NO_TIMESTAMP) == bytes([0x82, 0x81])


@pytest.mark.parametrize("fmt", list(EventFormat))
def test_round_trip_with_reply_lines_between_events(fmt: EventFormat) -> None:
    rng = np.random.default_rng(int(fmt))
    sizes = rng.integers(0, 300, 8)
    everything = _random_events(rng, int(sizes.sum()), fmt)
    bounds = np.cumsum([0, *sizes])
    batches = [everything.select(slice(a, b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    stream = b""
    for i, batch in enumerate(batches):
        stream += proto.encode_dvs_events(batch.x, batch.y, batch.polarity, batch.t_us, fmt)
        stream += f"-S1 {1000 + i}\n".encode() + b"!MVD0=5\r\n"
    parser = PushBotStreamParser(fmt)
    result = parser.feed(stream)
    expected = DvsEvents.concatenate(batches)
    if fmt is EventFormat.NO_TIMESTAMP:
        expected.t_us[:] = -1
    _assert_events_equal(result.events, expected)
    assert [r.values for r in result.sensor_readings] == [(1000 + i,) for i in range(len(batches))]
    assert result.lines == ["!MVD0=5"] * len(batches)
    assert parser.counters.garbage_bytes == 0


def test_timestamp_wraps_are_extended_across_feeds() -> None:
    t = np.array([65_000, 65_500, 100, 30_000, 65_535, 0, 10])
    stream = proto.encode_dvs_events(np.zeros(7), np.zeros(7), np.ones(7, bool), t, EventFormat.TS16)
    parser = PushBotStreamParser(EventFormat.TS16)
    out = DvsEvents.concatenate([parser.feed(stream[:9]).events, parser.feed(stream[9:]).events])
    np.testing.assert_array_equal(out.t_us, [65_000, 65_500, 65_636, 95_536, 131_071, 131_072, 131_082])
    assert parser.counters.timestamp_wraps == 2


def test_polarity_sense_is_a_parameter() -> None:
    stream = proto.encode_dvs_events([3, 4], [1, 1], [True, False], [1, 2], EventFormat.TS16)
    assert PushBotStreamParser(EventFormat.TS16).feed(stream).events.polarity.tolist() == [True, False]
    assert PushBotStreamParser(EventFormat.TS16, on_polarity_bit=0).feed(stream).events.polarity.tolist() == [
        False,
        True,
    ]


def test_sensor_lines_decimal_signed_and_hex() -> None:
    stream = b"-S7 +12 -3 4\n-S10 0x1A ff -10\n-S28 1500 -20\n-S0 3980\n"
    readings = PushBotStreamParser().feed(stream).sensor_readings
    assert [(r.sensor, r.values) for r in readings] == [
        (7, (12, -3, 4)),
        (10, (0x1A, 0xFF, -16)),
        (28, (1500, -20)),
        (0, (3980,)),
    ]


def test_garbage_lines_are_dropped_and_the_parser_resyncs() -> None:
    events = proto.encode_dvs_events([10, 20], [30, 40], [True, False], [100, 200], EventFormat.TS16)
    stream = b"\x01\x02junk\n" + events + b"x" * (proto.MAX_LINE_LENGTH + 10) + b"\n" + events + b"-S0 4000\n"
    parser = PushBotStreamParser(EventFormat.TS16)
    result = parser.feed(stream)
    assert result.events.x.tolist() == [10, 20, 10, 20]
    assert result.lines == []
    assert [r.values for r in result.sensor_readings] == [(4000,)]
    assert parser.counters.discarded_lines == 2
    assert parser.counters.garbage_bytes == 6 + proto.MAX_LINE_LENGTH + 10


def _reference_parse(data: bytes, width: int) -> tuple[list[tuple[int, ...]], list[str], int]:
    """The byte-wise state machine the vectorised parser must agree with (raw event bytes)."""
    events: list[tuple[int, ...]] = []
    lines: list[str] = []
    line = bytearray()
    bad = False
    i = 0
    while i < len(data):
        b = data[i]
        if b & 0x80:
            if i + width > len(data):
                break
            events.append(tuple(data[i : i + width]))
            i += width
            continue
        i += 1
        if b == 0x0A:
            text = line.decode() if not bad else ""
            if text.strip() and not bad:
                lines.append(text.strip())
            line.clear()
            bad = False
        elif not bad:
            if not (0x20 <= b < 0x7F or b in (9, 13)) or len(line) >= proto.MAX_LINE_LENGTH:
                bad = True
                line.clear()
            else:
                line.append(b)
    return events, lines, i


@pytest.mark.parametrize("fmt", [EventFormat.NO_TIMESTAMP, EventFormat.TS16, EventFormat.TS24, EventFormat.TS32])
def test_random_splits_and_fuzzed_garbage_match_the_bytewise_state_machine(fmt: EventFormat) -> None:
    rng = np.random.default_rng(100 + int(fmt))
    for trial in range(60):
        # A mixture of real events, reply lines and random bytes (including MSB-1 garbage).
        parts = []
        for _ in range(rng.integers(1, 12)):
            kind = rng.integers(0, 3)
            if kind == 0:
                ev = _random_events(rng, int(rng.integers(1, 50)), fmt)
                parts.append(proto.encode_dvs_events(ev.x, ev.y, ev.polarity, ev.t_us, fmt))
            elif kind == 1:
                parts.append(f"-S{rng.integers(0, 29)} {rng.integers(-999, 9999)}\n".encode())
            else:
                parts.append(rng.integers(0, 256, rng.integers(1, 80), dtype=np.uint8).tobytes())
        stream = b"".join(parts)
        whole = PushBotStreamParser(fmt).feed(stream)
        split_parser = PushBotStreamParser(fmt)
        cuts = np.sort(rng.integers(0, len(stream) + 1, rng.integers(0, 20)))
        pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        results = [split_parser.feed(piece) for piece in pieces]
        split_events = DvsEvents.concatenate([r.events for r in results])
        _assert_events_equal(whole.events, split_events)
        assert whole.lines == [line for r in results for line in r.lines]
        assert whole.sensor_readings == [s for r in results for s in r.sensor_readings]

        ref_events, ref_lines, _ = _reference_parse(stream, fmt.event_bytes)
        assert len(ref_events) == len(whole.events), trial
        if ref_events:
            raw = np.array(ref_events, dtype=np.int64)
            np.testing.assert_array_equal(whole.events.y, raw[:, 0] & 0x7F)
            np.testing.assert_array_equal(whole.events.x, raw[:, 1] & 0x7F)
            np.testing.assert_array_equal(whole.events.polarity, raw[:, 1] >> 7 == 1)
            if fmt.timestamp_bits:
                ts = np.zeros(len(raw), np.int64)
                for j in range(int(fmt)):
                    ts = (ts << 8) | raw[:, 2 + j]
                np.testing.assert_array_equal(whole.events.t_us & ((1 << fmt.timestamp_bits) - 1), ts)
        sensor_texts = {s.text for s in whole.sensor_readings}
        assert [line for line in ref_lines if not any(line.endswith(t) for t in sensor_texts)] == whole.lines


def test_pure_random_bytes_never_raise() -> None:
    rng = np.random.default_rng(7)
    parser = PushBotStreamParser(EventFormat.TS16)
    total = 0
    for _ in range(200):
        chunk = rng.integers(0, 256, rng.integers(0, 2000), dtype=np.uint8).tobytes()
        result = parser.feed(chunk)
        total += len(result.events)
        assert np.all(result.events.x < 128) and np.all(result.events.y < 128)
    assert parser.counters.events == total


def test_a_long_event_run_is_parsed_in_few_steps() -> None:
    """200k events in one chunk: the vectorised walk handles it (and correctly)."""
    rng = np.random.default_rng(3)
    ev = _random_events(rng, 200_000, EventFormat.TS16)
    stream = proto.encode_dvs_events(ev.x, ev.y, ev.polarity, ev.t_us, EventFormat.TS16)
    _assert_events_equal(PushBotStreamParser(EventFormat.TS16).feed(stream).events, ev)


def test_line_noise_is_flagged_and_filler_bytes_are_no_events() -> None:
    """Noise on the link (hostile report #7): a 0xFF run became events at (127, 127) and nothing said
    the link was noisy.  All-0xFF events are now dropped and counted, and a wrap after an implausibly
    long gap is counted as suspect; it still counts as a wrap, so a clean stream decodes exactly."""
    t = np.array([40_000, 40_010, 65_500, 30, 40])
    real = proto.encode_dvs_events([1, 2, 3, 4, 5], [6, 7, 8, 9, 10], np.ones(5, bool), t, EventFormat.TS16)
    # a phantom event jumping back by 30 ms, then a run of 0xFF, between real events
    phantom = proto.encode_dvs_events([50], [60], [True], [10_000], EventFormat.TS16)
    stream = real[:8] + phantom + b"\xff" * 400 + real[8:]
    parser = PushBotStreamParser(EventFormat.TS16)
    out = DvsEvents.concatenate([parser.feed(stream[i : i + 7]).events for i in range(0, len(stream), 7)])
    assert out.x.tolist() == [1, 2, 50, 3, 4, 5]
    period = 1 << 16
    # 40_010 -> 10_000 is taken as a wrap 35.5 ms later (suspect); 65_500 -> 30 is one 66 µs later
    assert out.t_us.tolist() == [40_000, 40_010, period + 10_000, period + 65_500, 2 * period + 30, 2 * period + 40]
    assert parser.counters.timestamp_wraps == 2
    assert parser.counters.suspect_wraps == 1
    assert parser.counters.suspect_events == 100
    assert parser.counters.events == 6


def test_a_quiet_moment_across_a_wrap_keeps_time_running_forward() -> None:
    """A genuine wrap after a 40 ms gap (a dim, still scene) must not turn time back by a period."""
    t = np.array([60_000, 100_000, 100_050])  # 100_000 - 65_536 = 34_464 raw after the wrap
    stream = proto.encode_dvs_events([1, 2, 3], [1, 2, 3], np.ones(3, bool), t, EventFormat.TS16)
    parser = PushBotStreamParser(EventFormat.TS16)
    assert parser.feed(stream).events.t_us.tolist() == t.tolist()
    assert parser.counters.suspect_wraps == 1


def test_random_bytes_are_flagged_as_a_noisy_link() -> None:
    """200 kB of random bytes: most decoded timestamp decreases imply gaps no streaming sensor leaves,
    so the suspect count shows the noise (a clean stream of the same rate has next to none)."""
    rng = np.random.default_rng(11)
    noise = rng.integers(0, 256, 200_000, dtype=np.uint8).tobytes()
    parser = PushBotStreamParser(EventFormat.TS16)
    parser.feed(noise)
    counters = parser.counters
    assert counters.events > 25_000
    assert counters.suspect_wraps > 0.8 * counters.timestamp_wraps > counters.events / 4
    clean = PushBotStreamParser(EventFormat.TS16)
    ev = _random_events(rng, 20_000, EventFormat.TS16)
    clean.feed(proto.encode_dvs_events(ev.x, ev.y, ev.polarity, ev.t_us, EventFormat.TS16))
    assert clean.counters.suspect_wraps <= clean.counters.timestamp_wraps // 4
