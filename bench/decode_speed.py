"""Event-stream decoder throughput: events per second through ``StreamDecoder.decode``.

The stream is what the FPGA sends under heavy load: random spikes from all 16 cores with
inter-event gaps of 0–3 µs, so most events carry their own timestamp word (about two words per
event, the worst realistic case).  It is decoded in 64 KiB chunks (8 libcaer-size transfers) as
the reader thread does.  USB 2.0 high speed carries at most ~40 MB/s ≈ 10 M events/s at two words
each, so the target of 30 M events/s is three times that.

Prints a few human lines, then one JSON object as the last line.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from drivers.dynapse1.event_words import StreamDecoder
from drivers.dynapse1.spikes import SpikeEvents
from emulator.fpga_stream import StreamEncoder

N_EVENTS = 5_000_000
CHUNK_BYTES = 8 * 8192
TARGET_EVENTS_PER_S = 30e6


def main() -> None:
    rng = np.random.default_rng(0)
    ts = np.cumsum(rng.integers(0, 4, N_EVENTS))
    events = SpikeEvents(ts, rng.integers(0, 4, N_EVENTS), rng.integers(0, 4, N_EVENTS), rng.integers(0, 256, N_EVENTS))
    data = StreamEncoder().encode(events)
    chunks = [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)]
    StreamDecoder().decode(chunks[0])  # compile / load the numba cache outside the timing

    best = float("inf")
    for _ in range(5):
        decoder = StreamDecoder()
        start = time.perf_counter()
        n = 0
        for chunk in chunks:
            n += len(decoder.decode(chunk)[0])
        best = min(best, time.perf_counter() - start)
        assert n == N_EVENTS, (n, N_EVENTS)
    rate = N_EVENTS / best
    words_per_event = len(data) / 2 / N_EVENTS
    print(f"decoded {N_EVENTS} events ({words_per_event:.2f} words/event) in {best * 1e3:.1f} ms (best of 5)")
    print(f"{rate / 1e6:.1f} M events/s; target {TARGET_EVENTS_PER_S / 1e6:.0f} M events/s; cpus {os.cpu_count()}")
    print(
        json.dumps(
            {
                "benchmark": "decode_speed",
                "events_per_s": rate,
                "target_events_per_s": TARGET_EVENTS_PER_S,
                "ratio_to_target": rate / TARGET_EVENTS_PER_S,
                "words_per_event": words_per_event,
                "chunk_bytes": CHUNK_BYTES,
                "cpu_count": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
