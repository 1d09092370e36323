"""A motor watchdog process that outlives a killed host and stops the robot's wheels.

The PushBot firmware has no watchdog and no motor timeout (``shared/reference/interop.md``
§2): a host that dies by SIGKILL, ``os._exit`` or a crash leaves ``!MV`` running until reset
and ``!MVD`` coasting for ~1 s + |v|/10 s.  No handler in the host runs on SIGKILL, so the
only host-side cover is a second process:

* the host starts it with two file descriptors passed down: the robot link itself (the
  serial port, pty or TCP socket the host opened) and the read end of a heartbeat pipe;
* the host writes one byte to the pipe every ``timeout_s / 5`` (the driver's reader thread
  does it, so a frozen process stops beating, a busy one does not);
* when the pipe reports **end of file** (the kernel closes the host's end the moment the
  host dies, however it dies) the watchdog writes the stop sequence (motors 0, ``!M-``) to
  the inherited link and exits;
* when the heartbeat is **silent** for ``timeout_s`` (host stopped with SIGSTOP, or hung in
  C code) it writes motors 0 once and keeps watching: a host that wakes up again drives on;
* a clean close sends ``q`` first: the watchdog then exits without writing.

It writes on the link only when the host cannot, so the two never interleave a command.  The
process runs this file as a script (``python -I -S watchdog.py ...``): it imports nothing but
the standard library, starts in ~20 ms, and sits in its own session so the terminal's
Ctrl-C / hang-up reach the host, not it.  What it cannot cover: the link itself gone (cable,
WLAN), the watchdog killed too (``kill -9`` of the whole process group), a power cut; the
README lists these, and a hardware kill switch is the answer there.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

HEARTBEAT = b"."
DISARM = b"q"


class MotorWatchdog:
    """The host's handle on the watchdog process.

    Parameters
    ----------
    link_fd : the open robot link (serial/pty fd or TCP socket fd) the watchdog may write to
    stop_bytes : written when the host is gone (motors 0 and the driver off)
    hold_bytes : written when the heartbeat is silent (motors 0 only: the host may come back)
    timeout_s : heartbeat silence that counts as a frozen host
    """

    def __init__(self, link_fd: int, stop_bytes: bytes, hold_bytes: bytes, timeout_s: float = 0.5) -> None:
        if not timeout_s > 0:
            raise ValueError(f"watchdog timeout must be > 0 s, got {timeout_s}")
        self.link_fd = link_fd
        self.stop_bytes = stop_bytes
        self.hold_bytes = hold_bytes
        self.timeout_s = timeout_s
        self._process: subprocess.Popen | None = None
        self._beat_fd: int | None = None
        self._last_beat = 0.0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> MotorWatchdog:
        """Start the process (POSIX only: it inherits the link's file descriptor)."""
        if os.name != "posix":
            raise OSError("the motor watchdog passes file descriptors to a child process: POSIX only")
        if self._process is not None:
            raise RuntimeError("watchdog already started")
        read_fd, write_fd = os.pipe()  # both close-on-exec; pass_fds hands the read end down alone
        try:
            self._process = subprocess.Popen(
                [
                    sys.executable, "-I", "-S", os.path.abspath(__file__),
                    str(self.link_fd), str(read_fd), repr(self.timeout_s),
                    self.stop_bytes.hex(), self.hold_bytes.hex(),
                ],  # fmt: skip
                pass_fds=(self.link_fd, read_fd),
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except BaseException:
            os.close(write_fd)
            raise
        finally:
            os.close(read_fd)
        os.set_blocking(write_fd, False)
        self._beat_fd = write_fd
        self._last_beat = time.monotonic()
        return self

    def beat(self) -> None:
        """Tell the watchdog the host is alive (cheap: writes at most every ``timeout_s / 5``)."""
        fd = self._beat_fd
        now = time.monotonic()
        if fd is None or now - self._last_beat < self.timeout_s / 5:
            return
        self._last_beat = now
        try:
            os.write(fd, HEARTBEAT)
        except (BlockingIOError, BrokenPipeError, OSError):
            pass  # a full pipe still says "alive"; a dead watchdog is reported by ``alive``

    def disarm(self, timeout_s: float = 1.0) -> None:
        """Clean shutdown: the watchdog exits without touching the link (idempotent)."""
        fd, self._beat_fd = self._beat_fd, None
        if fd is not None:
            try:
                os.write(fd, DISARM)
            except OSError:
                pass
            os.close(fd)
        process, self._process = self._process, None
        if process is not None:
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _write_all(fd: int, data: bytes, deadline: float) -> bool:
    view = memoryview(data)
    while view:
        try:
            sent = os.write(fd, view)
        except BlockingIOError:
            sent = 0
        except OSError:
            return False
        view = view[sent:]
        if view:
            if time.monotonic() > deadline:
                return False
            select.select([], [fd], [], 0.01)
    return True


def _watch(link_fd: int, beat_fd: int, timeout_s: float, stop_bytes: bytes, hold_bytes: bytes) -> int:
    last_beat = time.monotonic()
    held = False
    while True:
        ready, _, _ = select.select([beat_fd], [], [], timeout_s / 10)
        now = time.monotonic()
        if ready:
            try:
                data = os.read(beat_fd, 4096)
            except OSError:
                data = b""
            if DISARM in data:
                return 0
            if not data:  # the host is gone: its end of the pipe was closed by the kernel
                _write_all(link_fd, stop_bytes, now + 1.0)
                return 0
            last_beat, held = now, False
        elif not held and now - last_beat > timeout_s:
            held = True
            if not _write_all(link_fd, hold_bytes, now + 1.0):
                return 1  # the link itself is gone; nothing left to protect


if __name__ == "__main__":
    _link, _beat, _timeout, _stop, _hold = sys.argv[1:6]
    raise SystemExit(_watch(int(_link), int(_beat), float(_timeout), bytes.fromhex(_stop), bytes.fromhex(_hold)))
