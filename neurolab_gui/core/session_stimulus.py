"""Stimulus controls for a session: the FPGA spike generator and the Poisson generator.

The GUI's stimulus panel calls these; they validate, talk to the board and log
what was sent to the session's recording (``/events/input``).  The controller reaches its
session only through three callables (the board, the newest event time, the input log), so
this module does not import the session that owns it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from drivers.dynapse1.board_api import Board, SpikeGenEvent
from drivers.dynapse1.netlist import InputAddress
from drivers.dynapse1.spikes import SpikeEvents
from drivers.dynapse1.topology import N_NEURONS_PER_CORE, check_chip

from .events import Signal
from .probing.program import check_program_size, spike_program


class StimulusController:
    """Spike-generator and Poisson-generator operations on the session's board.

    Parameters
    ----------
    board : returns the connected board, or None
    latest_timestamp_us : returns the newest event timestamp seen on the board [µs], or None
    record_input : logs the input events sent (the session's recording)
    mark : ``mark(kind, text)`` puts a marker in the session's recording (Poisson settings)
    """

    def __init__(
        self,
        board: Callable[[], Board | None],
        latest_timestamp_us: Callable[[], int | None],
        record_input: Callable[[SpikeEvents], None],
        mark: Callable[[str, str], None] = lambda kind, text: None,
    ) -> None:
        self._get_board = board
        self._latest_timestamp_us = latest_timestamp_us
        self._record_input = record_input
        self._mark = mark
        self.poisson_rates: dict[tuple[int, int], float] = {}  # (chip, source id 0..1023) -> Hz
        self.spikegen_running = False
        #: ``changed()`` after any stimulus setting changed.
        self.changed = Signal("stimulus changed")

    def _board(self) -> Board:
        board = self._get_board()
        if board is None:
            raise RuntimeError("no board connected: connect to the emulator or a DYNAP-SE1 first")
        return board

    # --- Poisson generator ----------------------------------------------------------
    def set_poisson(self, chip: int, sources: Sequence[int], rate_hz: float) -> None:
        """Drive Poisson sources ``sources`` (0..1023, = core*256 + neuron) on ``chip`` at ``rate_hz`` (0 = off)."""
        chip = check_chip(chip)
        if rate_hz < 0:
            raise ValueError(f"Poisson rate must be >= 0 Hz, got {rate_hz}")
        ids = [int(s) for s in sources]
        bad = [s for s in ids if not 0 <= s < 4 * N_NEURONS_PER_CORE]
        if bad:
            raise ValueError(f"Poisson source ids must lie in 0..1023, got {bad[:5]}")
        self._board().set_poisson_rates(chip, {s: float(rate_hz) for s in ids})
        for s in ids:
            if rate_hz > 0:
                self.poisson_rates[(chip, s)] = float(rate_hz)
            else:
                self.poisson_rates.pop((chip, s), None)
        self._mark("stimulus", f"Poisson chip {chip}: {len(ids)} sources at {float(rate_hz):g} Hz (first {ids[:4]})")
        self.changed.emit()

    def stop_poisson(self) -> None:
        """Set every Poisson source that this controller turned on back to 0 Hz."""
        board = self._board()
        by_chip: dict[int, dict[int, float]] = {}
        for chip, s in self.poisson_rates:
            by_chip.setdefault(chip, {})[s] = 0.0
        for chip, rates in by_chip.items():
            board.set_poisson_rates(chip, rates)
        self.poisson_rates.clear()
        self._mark("stimulus", "Poisson sources off")
        self.changed.emit()

    # --- FPGA spike generator --------------------------------------------------------
    def load_regular_train(
        self, chip: int, sources: Sequence[int], core_mask: int, rate_hz: float, duration_s: float, repeat: bool = False
    ) -> int:
        """Load regular trains at ``rate_hz`` from virtual sources ``sources`` (0..255) for ``duration_s``.

        Sources fire in turn within each period.  Returns the number of events loaded; a train
        longer than the generator holds is refused with ``ValueError`` before any spike time is
        computed or anything is sent.

        With ``repeat`` the generator replays the list in a loop.  It counts the first event's ISI
        from the start and, at every wrap, from the list's last event (``dynapse_protocol.md`` §5;
        the emulator's :class:`emulator.stimulus.SpikeGenerator`), so the loop lasts the sum of
        the ISIs.  The first spike carries ISI 0 (it fires at Start) and the list ends with one
        dummy event (core mask 0: it reaches no core) one step after the last spike, so the loop
        lasts exactly ``n_periods / rate_hz`` and every source keeps its rate across the wrap.
        Without the dummy, either every loop is one step short (first ISI 0) or the whole train
        starts one step late (first ISI one step: 10 s at 0.1 Hz and one source).
        """
        chip = check_chip(chip)
        if not 1 <= core_mask <= 15:
            raise ValueError(f"core mask must be 1..15 (one bit per destination core), got {core_mask}")
        if not (np.isfinite(rate_hz) and np.isfinite(duration_s) and rate_hz > 0 and duration_s > 0):
            raise ValueError("rate and duration must be positive")
        if not sources:
            raise ValueError("choose at least one source")
        n_periods = max(1, int(duration_s * rate_hz))
        n = n_periods * len(sources)
        check_program_size(n + int(repeat))  # before any array of n: a train far too long is refused at once
        step = 1e6 / rate_hz / len(sources)
        times_us = np.arange(n) * step
        addresses = [InputAddress(chip, int(s)) for s in sources]
        program = spike_program(times_us, np.arange(n) % len(sources), addresses, [core_mask] * len(sources))
        if repeat:  # closes the loop one step after the last spike (see above)
            program.append(SpikeGenEvent(addresses[0], 0, float(np.rint(n * step) - np.rint((n - 1) * step))))
        if repeat and sum(e.isi_us for e in program) < 1.0:
            # the generator would replay the list infinitely often: refuse here, not at Start
            raise ValueError(f"a repeating train needs a loop of at least 1 µs; {n} events at {rate_hz:g} Hz "
                             f"for {duration_s:g} s last {n * step:.3g} µs (lengthen the duration)")
        self._board().load_spike_generator(program, repeat=repeat)
        self._loaded = (chip, list(sources), np.rint(times_us).astype(np.int64))
        self.changed.emit()
        return n

    def start_spike_generator(self) -> None:
        board = self._board()
        board.start_spike_generator()
        self.spikegen_running = True
        loaded = getattr(self, "_loaded", None)
        if loaded is not None:
            # Log what is being sent (one pass of a repeating train).  The board clock cannot be
            # read without a round trip, so the train is placed at the newest event timestamp
            # seen: exact on the emulator's fast clock when idle, within one USB batch (~ms) otherwise.
            chip, sources, times_us = loaded
            n = len(times_us)
            t = (self._latest_timestamp_us() or 0) + times_us
            src = np.resize(np.asarray(sources, np.uint16), n)
            self._record_input(SpikeEvents(t, np.full(n, chip, np.uint8), np.zeros(n, np.uint8), src))
        self.changed.emit()

    def stop_spike_generator(self) -> None:
        self._board().stop_spike_generator()
        self.spikegen_running = False
        self.changed.emit()
