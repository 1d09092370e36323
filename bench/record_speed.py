"""Recorder throughput, stop time, memory and loss at a steady offered event rate.

A producer thread offers spike batches of ``--batch`` events (about what one USB read returns
under load) at ``--rate`` events/s for ``--seconds`` s, the way the acquisition thread does;
then the recording is stopped.  Measured:

* ``events_per_s``: events in the file / time the producer offered them (the rate sustained;
  with ``lost`` 0 it equals the offered rate);
* ``stop_s``: from ``request_stop`` (what the GUI calls) to the file being complete;
* ``peak_mb``: growth of the process's peak RSS during the run (queue + writer buffers);
* ``lost``: events offered minus events in the file (drops of the bounded queue);
* ``max_events_per_s``: the same recorder fed as fast as the producer can (default queue bound,
  so the excess drops): events in the file / time from the first offer to the file being
  complete, i.e. the writer's ceiling on this machine;
* ``peer_per_batch_events_per_s``: the peer, the previous writer's method (one resize + write
  per USB batch per column into lzf datasets), fed the same way for the same time.

With ``--emulator-seconds S`` it also records the real app path for S s: a ``Session`` with the
emulator in its child process on the real-time clock, every core driven hard (IF_DC_P 3/255 over
samna_recommended), acquisition → fan-out → recorder, and reports ``emulator_events_per_s``,
``emulator_lost`` (dropped by the recorder), ``emulator_stop_s``.

The target is 4 M events/s sustained with nothing lost (twice the emulated board's ~2 M).
Timings on a shared 2-core machine are noisy; run it under ``nice`` when others work.

Usage: ``python bench/record_speed.py [--rate 4e6] [--seconds 5] [--batch 20000]``
Prints a few human lines, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import threading
import time
from pathlib import Path

import h5py
import numpy as np

from drivers.dynapse1.spikes import SpikeEvents
from neurolab_gui.core.recording import Recorder
from neurolab_gui.core.session_file import SessionFile


def make_batches(batch: int, n_distinct: int = 32) -> list[SpikeEvents]:
    rng = np.random.default_rng(0)
    return [
        SpikeEvents(np.sort(rng.integers(0, 5000, batch)), rng.integers(0, 4, batch), rng.integers(0, 4, batch), rng.integers(0, 256, batch))
        for _ in range(n_distinct)
    ]


def offer(sink, batches: list[SpikeEvents], rate: float | None, seconds: float) -> tuple[int, float]:
    """Offer batches to ``sink(events)`` at ``rate`` events/s (None: as fast as possible); returns (offered, start)."""
    n_batch = len(batches[0])
    start = time.perf_counter()
    offered = 0
    i = 0
    while True:
        now = time.perf_counter()
        if now - start >= seconds:
            break
        if rate is not None:
            due = start + offered / rate
            if due > now:
                time.sleep(min(due - now, 0.005))
                continue
        b = batches[i % len(batches)]
        offset = i * 5000  # board time keeps running
        sink(SpikeEvents(b.timestamp_us + offset, b.chip, b.core, b.neuron))
        offered += n_batch
        i += 1
    return offered, start


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_recorder(path: Path, batches, rate, seconds) -> dict:
    rss0 = peak_rss_mb()
    rec = Recorder(path, software_version="bench", board_serial="BENCH", board_emulated=True)
    rec.start()
    result: dict = {}

    def producer():
        result["offered"], result["start"] = offer(rec.record_spikes, batches, rate, seconds)

    thread = threading.Thread(target=producer)
    thread.start()
    thread.join()
    t_stop = time.perf_counter()
    offering_s = t_stop - result["start"]
    rec.request_stop()
    rec.wait(60)
    done = time.perf_counter()
    in_file = SessionFile(path).rows("events/spikes")
    return {
        "events_per_s": in_file / offering_s,
        "written_per_s": in_file / (done - result["start"]),
        "stop_s": done - t_stop,
        "peak_mb": peak_rss_mb() - rss0,
        "lost": result["offered"] - in_file,
        "offered": result["offered"],
        "segments": len(SessionFile(path).segments),
    }


def run_peer(path: Path, batches, seconds) -> float:
    """The previous writer's method: per batch, resize and write each lzf column."""
    with h5py.File(path, "w") as f:
        g = f.create_group("events/spikes")
        cols = {c: g.create_dataset(c, shape=(0,), maxshape=(None,), dtype=d, chunks=(65_536,), compression="lzf")
                for c, d in (("t", "i8"), ("chip", "u1"), ("core", "u1"), ("neuron", "u2"))}

        def sink(ev: SpikeEvents) -> None:
            for name, data in (("t", ev.timestamp_us), ("chip", ev.chip), ("core", ev.core), ("neuron", ev.neuron)):
                ds = cols[name]
                n0 = ds.shape[0]
                ds.resize((n0 + len(data),))
                ds[n0:] = data

        offered, start = offer(sink, batches, None, seconds)
        return offered / (time.perf_counter() - start)


def run_emulator(path: Path, seconds: float) -> dict:
    """Record the emulated board at full activity through the app's own path."""
    from neurolab_gui.core.session import Session

    session = Session()
    session.emulator_in_separate_process = True
    if not session.connect(clock="realtime"):
        raise RuntimeError(session.connection.status.message)
    try:
        session.biases.apply_preset("samna_recommended")
        for chip in range(4):
            for core in range(4):
                session.biases.set(chip, core, "IF_DC_P", 3, 255, origin="bench")
        time.sleep(2.0)  # let the neurons charge up
        session.start_recording(path)
        start = time.perf_counter()
        time.sleep(seconds)
        offered_s = time.perf_counter() - start
        session.stop_recording()
        t_stop = time.perf_counter()
        session.last_recorder.wait(60)
        stop_s = time.perf_counter() - t_stop
    finally:
        session.close()
    f = SessionFile(path)
    return {"events_per_s": f.rows("events/spikes") / offered_s, "lost": f.dropped_events, "stop_s": stop_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=4e6)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--emulator-seconds", type=float, default=0.0, help="also record the emulated board this long")
    args = parser.parse_args()
    batches = make_batches(args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paced = run_recorder(tmp / "paced.h5", batches, args.rate, args.seconds)
        print(f"paced at {args.rate:,.0f} ev/s for {args.seconds} s: {paced['events_per_s']:,.0f} ev/s to disk, "
              f"lost {paced['lost']:,}, stop {paced['stop_s'] * 1e3:.0f} ms, peak +{paced['peak_mb']:.0f} MB, "
              f"{paced['segments']} segment files")
        flat_out = run_recorder(tmp / "max.h5", batches, None, min(args.seconds, 3.0))
        print(f"as fast as offered: {flat_out['written_per_s']:,.0f} ev/s written (offered {flat_out['offered'] / min(args.seconds, 3.0):,.0f}/s, "
              f"dropped {flat_out['lost']:,}, stop {flat_out['stop_s'] * 1e3:.0f} ms)")
        emulator = run_emulator(tmp / "emulator.h5", args.emulator_seconds) if args.emulator_seconds > 0 else None
        if emulator is not None:
            print(f"emulated board at full activity for {args.emulator_seconds} s: {emulator['events_per_s']:,.0f} ev/s recorded, "
                  f"lost {emulator['lost']:,}, stop {emulator['stop_s'] * 1e3:.0f} ms")
        peer = run_peer(tmp / "peer.h5", batches, min(args.seconds, 3.0))
        print(f"peer (per-batch lzf appends, the previous writer): {peer:,.0f} ev/s; "
              f"ratio {flat_out['written_per_s'] / peer:.1f}x")
    extra = {} if emulator is None else {
        "emulator_events_per_s": round(emulator["events_per_s"]), "emulator_lost": int(emulator["lost"]),
        "emulator_stop_s": round(emulator["stop_s"], 3),
    }
    print(json.dumps({
        **extra,
        "events_per_s": round(paced["events_per_s"]),
        "stop_s": round(paced["stop_s"], 3),
        "peak_mb": round(paced["peak_mb"], 1),
        "lost": int(paced["lost"]),
        "offered_rate": args.rate,
        "max_events_per_s": round(flat_out["written_per_s"]),
        "peer_per_batch_events_per_s": round(peer),
    }))


if __name__ == "__main__":
    main()
