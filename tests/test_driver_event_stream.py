"""Event-stream decoder: round trips, byte-boundary splits, wraps, resets, and a seeded fuzz loop."""

from __future__ import annotations

import numpy as np

from drivers.dynapse1.event_words import StreamDecoder, encode_words
from drivers.dynapse1.spikes import SpikeEvents
from emulator.fpga_stream import StreamEncoder


def _random_events(rng: np.random.Generator, n: int, max_gap: int) -> SpikeEvents:
    ts = np.cumsum(rng.integers(0, max_gap, n))
    return SpikeEvents(ts, rng.integers(0, 4, n), rng.integers(0, 4, n), rng.integers(0, 256, n))


def _assert_same(a: SpikeEvents, b: SpikeEvents) -> None:
    np.testing.assert_array_equal(a.timestamp_us, b.timestamp_us)
    np.testing.assert_array_equal(a.chip, b.chip)
    np.testing.assert_array_equal(a.core, b.core)
    np.testing.assert_array_equal(a.neuron, b.neuron)


def test_random_round_trip_including_long_gaps():
    rng = np.random.default_rng(0)
    events = _random_events(rng, 20_000, 200_000)  # gaps up to 6 wraps
    data = StreamEncoder().encode(events)
    decoder = StreamDecoder()
    out, stats = decoder.decode(data)
    _assert_same(out, events)
    assert stats.corrupt_words == 0 and decoder.total.events == len(events)


def test_split_at_every_word_boundary_decodes_the_same():
    rng = np.random.default_rng(1)
    events = _random_events(rng, 300, 50_000)
    data = StreamEncoder().encode(events)
    for cut in range(0, len(data) + 1, 2):
        decoder = StreamDecoder()
        a, _ = decoder.decode(data[:cut])
        b, _ = decoder.decode(data[cut:])
        _assert_same(SpikeEvents.concatenate([a, b]), events)
    # and in many random pieces of whole words
    decoder = StreamDecoder()
    cuts = np.unique(np.sort(rng.integers(0, len(data) // 2, 200))) * 2
    parts = [decoder.decode(p)[0] for p in np.split(np.frombuffer(data, np.uint8), cuts)]
    _assert_same(SpikeEvents.concatenate(parts), events)


def test_odd_buffer_loses_its_stray_byte_and_the_next_buffer_is_aligned():
    # libcaer drops the trailing byte of an odd USB buffer; the next buffer starts on a word
    spike = (1 << 12) | (7 << 4) | 2
    decoder = StreamDecoder()
    first = encode_words([0x8000 | 10, spike]) + b"\x99"
    out, stats = decoder.decode(first)
    assert list(out.timestamp_us) == [10] and stats.stray_bytes == 1
    out, stats = decoder.decode(encode_words([0x8000 | 20, spike]))
    assert list(out.timestamp_us) == [20] and stats.stray_bytes == 0 and stats.corrupt_words == 0
    assert decoder.total.stray_bytes == 1


def test_hand_made_words_timestamp_semantics():
    spike = (1 << 12) | (7 << 4) | 2  # core 0, neuron 7, chip 1
    words = [0x8000 | 100, spike, (7 << 12) | 1, spike, 0x8000 | 5, spike, (6 << 12) | (255 << 4) | 4]
    out, stats = StreamDecoder().decode(encode_words(words))
    assert list(out.timestamp_us) == [100, 32768, 32773, 32773]
    assert list(out.core) == [0, 0, 0, 3] and list(out.chip) == [1, 1, 1, 3] and out.neuron[-1] == 255
    assert stats.corrupt_words == 0


def test_wrap_across_2_15_and_2_31_and_reset():
    decoder = StreamDecoder()
    spike = (2 << 12) | (1 << 4) | 1
    # 65535 wraps of 2^15 µs = 2^31 − 2^15; two more cross 2^31 (libcaer would count an overflow)
    words = [(7 << 12) | 0xFFF] * 16 + [(7 << 12) | 15, 0x8000 | 0x7FFF, spike, (7 << 12) | 2, 0x8000 | 3, spike]
    out, _ = decoder.decode(encode_words(words))
    assert list(out.timestamp_us) == [(1 << 31) - 1, (1 << 31) + (1 << 15) + 3]
    assert decoder.overflow_count == 1
    out, stats = decoder.decode(encode_words([0x0001, 0x8000 | 9, spike]))
    assert list(out.timestamp_us) == [9] and stats.timestamp_resets == 1


def test_encoder_marks_idle_time_with_wraps():
    encoder, decoder = StreamEncoder(), StreamDecoder()
    data = encoder.advance_to(3 * 32768 + 17)
    decoder.decode(data)
    assert decoder.now_us == 3 * 32768 + 17
    assert len(data) == 2 * 4  # three wraps and one timestamp word


def test_unknown_and_corrupt_words_are_counted_not_raised():
    words = [0x0000, (3 << 12) | 5, (4 << 12) | 1, (1 << 12) | 0, (1 << 12) | 5, (1 << 12) | 0x11]
    out, stats = StreamDecoder().decode(encode_words(words))
    assert len(out) == 1 and stats.corrupt_words == 5


def test_fuzz_random_buffers_never_raise():
    rng = np.random.default_rng(1234)
    decoder = StreamDecoder()
    blob = rng.integers(0, 256, 4_000_000, dtype=np.uint8).tobytes()
    sizes = rng.integers(0, 64, 100_000)
    offsets = rng.integers(0, len(blob) - 64, 100_000)
    total_events = 0
    for off, size in zip(offsets.tolist(), sizes.tolist(), strict=True):
        out, stats = decoder.decode(blob[off : off + size])
        total_events += len(out)
        assert len(out) <= size // 2 + 1
        assert np.all(out.chip < 4) and np.all(out.core < 4)
    assert total_events > 0
    assert decoder.total.corrupt_words > 0


def _both_paths(chunks: list[bytes], base: int = 0, low: int = 0) -> None:
    """Decode ``chunks`` (state carried across them) with the compiled kernel and with the numpy
    formulation the app uses before the kernel is loaded; everything must be identical."""
    from drivers.dynapse1 import event_words as ew

    kernel = ew.load_kernel()
    state_k = state_v = (base, low)
    for raw in chunks:
        words = np.frombuffer(raw, "<u2", count=len(raw) // 2)
        out = [np.empty(len(words), t) for t in (np.int64, np.uint8, np.uint8, np.uint16)]
        n, corrupt, resets, backwards, b, lo = kernel(words, ew._CORE_OF_CODE, np.int64(state_k[0]), np.int64(state_k[1]), *out)
        state_k = (int(b), int(lo))
        events, corrupt_v, resets_v, backwards_v, *state_v = ew._decode_vectorised(words, *state_v)
        _assert_same(events, SpikeEvents(*(column[:n] for column in out)))
        assert (corrupt_v, resets_v, backwards_v, tuple(state_v)) == (corrupt, resets, backwards, state_k)


def test_the_vectorised_decoder_equals_the_compiled_kernel():
    rng = np.random.default_rng(7)
    dense = StreamEncoder().encode(_random_events(rng, 30_000, 4))
    sparse = StreamEncoder().encode(_random_events(rng, 3_000, 300_000))  # wraps, some of several units
    garbage = rng.integers(0, 1 << 16, 20_000).astype("<u2").tobytes()  # resets, corrupt spikes, unknown codes
    cuts = sorted(rng.integers(0, len(dense) // 2, 30) * 2)
    _both_paths([dense[a:b] for a, b in zip([0, *cuts], [*cuts, len(dense)], strict=True)])
    _both_paths([sparse, garbage, dense[:5000], b"", garbage[:7]], base=(1 << 31) + 12345, low=777)
    for tail in range(1, 6):  # the running state after short buffers, ending in each kind of word
        _both_paths([garbage[: 2 * tail], encode_words([0x8000 | 5, 0x7003, 0x0001, 0x1021][:tail])])


def test_the_vectorised_decoder_equals_libcaers_event_translator():
    from tests.libcaer_vectors import vectors

    for case in (v for k, v in vectors()["event_translator"].items() if not k.startswith("_")):
        _both_paths([bytes.fromhex(chunk) for chunk in case["chunks"]])


def test_a_deferred_kernel_decodes_with_numpy_until_it_is_loaded():
    """What the app does: no numba before its first events; the warm-up loads the kernel later."""
    import json
    import subprocess
    import sys

    code = ("import sys, json\nfrom drivers.dynapse1 import event_words as ew\new.defer_kernel()\n"
            "d = ew.StreamDecoder()\nout, _ = d.decode(ew.encode_words([0x8000 | 9, 0x1041]))\n"
            "before = 'numba' in sys.modules\new.load_kernel()\nout2, _ = d.decode(ew.encode_words([0x8000 | 12, 0x1041]))\n"
            "print(json.dumps([before, 'numba' in sys.modules, out.timestamp_us.tolist(), out2.timestamp_us.tolist()]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(result.stdout.splitlines()[-1]) == [False, True, [9], [12]]


# --- hostile report 3, #11: non-monotonic timestamps, input types; #6: where a reset falls ---------


def _decode_both_ways(raw: bytes):
    """(events, stats) of one buffer through the kernel and through the numpy path (deferred kernel)."""
    from drivers.dynapse1 import event_words as ew

    ew.load_kernel()
    compiled = StreamDecoder().decode(raw)
    kernel, deferred = ew._kernel, ew._deferred
    ew._kernel, ew._deferred = None, True  # what the app does before its warm-up loads the kernel
    try:
        vectorised = StreamDecoder().decode(raw)
    finally:
        ew._kernel, ew._deferred = kernel, deferred
    return compiled, vectorised


def test_non_monotonic_timestamps_are_counted_and_their_events_kept():
    spike = (1 << 12) | (1 << 4) | 1
    # 30000 -> 5 goes back (a flipped bit), 5 -> 5 repeats (libcaer's check is strict); a wrap
    # then resets the low part, after which 0 does not advance either; 30001 and 7 are forward
    words = [0x8000 | 30000, spike, 0x8000 | 5, spike, 0x8000 | 5, spike, 0x8000 | 30001, spike,
             (7 << 12) | 1, 0x8000 | 0, spike, 0x8000 | 7, spike]
    for events, stats in _decode_both_ways(encode_words(words)):
        assert events.timestamp_us.tolist() == [30000, 5, 5, 30001, 32768, 32775]
        assert stats.non_monotonic_timestamps == 3 and stats.corrupt_words == 0
    decoder = StreamDecoder()
    decoder.decode(encode_words(words[:4]))
    decoder.decode(encode_words(words[4:]))  # the check spans buffers
    assert decoder.total.non_monotonic_timestamps == 3
    # the FPGA's (and the emulator's) stream never triggers it
    rng = np.random.default_rng(3)
    _, stats = StreamDecoder().decode(StreamEncoder().encode(_random_events(rng, 5000, 100_000)))
    assert stats.non_monotonic_timestamps == 0


def test_decode_refuses_what_is_not_a_buffer_of_bytes():
    import array

    import pytest

    good = encode_words([0x8000 | 9, 0x1011])
    for ok in (good, bytearray(good), memoryview(good), np.frombuffer(good, np.uint8), array.array("B", good)):
        events, _ = StreamDecoder().decode(ok)
        assert events.timestamp_us.tolist() == [9]
    for bad, named in ((12, "int"), ("ab", "str"), (None, "NoneType"), (np.array([0x8009, 0x1011], np.uint16), "uint16"),
                       (np.array([1.5]), "float64")):
        with pytest.raises(TypeError, match=named):
            StreamDecoder().decode(bad)


def test_each_reset_of_a_buffer_says_where_it_fell_among_the_events():
    spike = (1 << 12) | (1 << 4) | 1
    words = [0x0001, 0x8000 | 100, spike, spike, 0x8000 | 200, 0x0001, 0x8000 | 3, spike, 0x0001, 0x0001, spike]
    for events, stats in _decode_both_ways(encode_words(words)):
        assert events.timestamp_us.tolist() == [100, 100, 3, 0]
        assert [(r.event_index, r.time_before_us) for r in stats.resets] == [(0, 0), (2, 200), (3, 3), (3, 0)]
        assert stats.timestamp_resets == 4
