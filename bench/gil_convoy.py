"""Why the GUI process sets a 1 ms GIL switch interval (``qt.main_window.GIL_SWITCH_INTERVAL_S``).

A drawn frame calls from Qt into Python dozens of times, and each call takes the GIL again.  This
imitates such a frame (``--calls`` short C calls that release the GIL, each followed by Python)
beside ``--busy`` threads running pure Python, and times frames at Python's default 5 ms switch
interval and at 1 ms, in the same run.  Last printed line: one JSON object.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import sys
import threading
import time


def frame_times(interval_s: float, busy: int, calls: int, frames: int) -> list[float]:
    sys.setswitchinterval(interval_s)
    stop = threading.Event()

    def spin() -> None:
        x = 0
        while not stop.is_set():
            x += 1

    threads = [threading.Thread(target=spin, daemon=True) for _ in range(busy)]
    for t in threads:
        t.start()
    libc = ctypes.CDLL(None)
    times = []
    try:
        for _ in range(frames):
            start = time.perf_counter()
            for _ in range(calls):
                libc.usleep(20)  # ctypes releases the GIL around the call; the return takes it again
            times.append(time.perf_counter() - start)
    finally:
        stop.set()
        for t in threads:
            t.join()
    return sorted(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--busy", type=int, default=2)
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--frames", type=int, default=40)
    args = ap.parse_args()
    result = {}
    for interval in (0.005, 0.001):
        times = frame_times(interval, args.busy, args.calls, args.frames)
        result[f"{interval * 1e3:g}ms"] = {"median_frame_ms": round(1e3 * times[len(times) // 2], 1), "worst_frame_ms": round(1e3 * times[-1], 1)}
        print(interval, result[f"{interval * 1e3:g}ms"], flush=True)
    print(json.dumps({"busy_threads": args.busy, "calls_per_frame": args.calls, **result}))


if __name__ == "__main__":
    main()
