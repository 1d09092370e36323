"""Where the core gets its boards: the one module of ``neurolab_gui.core`` that imports the emulator.

Everything else in the core works on :class:`drivers.dynapse1.board_api.Board` objects and never
learns whether silicon or the emulator answers.  The functions here open them:

* :func:`open_silicon` - a DYNAP-SE1 on the USB bus (the driver's ``open_board``);
* :func:`open_emulator` - an emulated board behind the virtual USB, reached through the very
  same driver code path as silicon (:func:`start_emulator_process` boots its child process ahead);
* :func:`open_brian2_board` - the Brian2 reference stage: a simulator configured exactly like a
  board (:class:`emulator.sim_board.SimulatorBoard`) whose time advances in the Brian2 model;
* :func:`open_batched_emulator` - N emulated boards with different serials run together
  (:class:`emulator.batched_board.BatchedBoard`), for Monte-Carlo robustness studies;
* :func:`emulator_lag_s` - how far a real-time emulated board trails the wall clock;
* :func:`parse_board` - the one ``--board`` grammar of every command (``emulator[:SEED]``, the
  emulator's serial ``EMU<SEED>`` or a board serial) as a :class:`BoardSpec`, whose
  :meth:`BoardSpec.open` opens it.

The emulator is imported inside the functions, so a core that only talks to silicon never loads
it.  An import-linter contract (``pyproject.toml``) forbids ``neurolab_gui.core`` to import
``emulator`` anywhere else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from drivers.dynapse1.board_api import Board

#: Serial of the emulated board that :func:`open_emulator` opens by default.
DEFAULT_EMULATOR_SERIAL = "EMU00000"

#: What a board serial may contain (also the calibration profile's file name).
_SERIAL = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
#: The emulator's serial for a mismatch seed (:func:`emulator_serial_for`), read back as that seed.
_EMULATOR_SERIAL = re.compile(r"EMU([0-9]{1,18})", re.IGNORECASE)
#: The largest emulator seed: its serial EMU<SEED> must read back as the emulator (18 digits)
MAX_EMULATOR_SEED = 10**18 - 1


@dataclass(frozen=True)
class BoardSpec:
    """A board named on a command line: the emulator with a mismatch ``seed``, or silicon by ``serial``."""

    serial: str | None = None  # None: the emulator
    seed: int = 0

    @property
    def emulated(self) -> bool:
        return self.serial is None

    def open(self, *, emulator_serial: str | None = None, **emulator_options: Any) -> Board:
        """Open the board: :func:`open_silicon`, or :func:`open_emulator` with this seed (``emulator_options``
        such as ``dt`` or ``clock`` apply to the emulator only).

        The emulated board's serial is :func:`emulator_serial_for` the seed unless ``emulator_serial``
        says otherwise: the serial the app's connection bar gives the same emulator, so a
        calibration profile saved from either is found by the other.
        """
        if self.serial is not None:
            return open_silicon(self.serial)
        return open_emulator(emulator_serial or emulator_serial_for(self.seed), seed=self.seed, **emulator_options)

    def __str__(self) -> str:
        return self.serial if self.serial is not None else f"emulator:{self.seed}"


def emulator_serial_for(seed: int) -> str:
    """The serial of the emulated board with mismatch ``seed`` (``EMU00005`` for seed 5)."""
    return f"EMU{int(seed):05d}"


def parse_board(text: str) -> BoardSpec:
    """``"emulator"``, ``"emulator:SEED"``, an emulator serial ``EMU<SEED>`` or a board serial as a :class:`BoardSpec`.

    ``EMU<SEED>`` (``EMU00009``) is the serial ``neurolab devices`` and the app give the emulator
    with mismatch seed SEED (:func:`emulator_serial_for`), so it names the same board as
    ``emulator:SEED``.  Raises ``ValueError`` naming the problem (an empty name, a seed that is
    not a non-negative integer, a serial with characters a DYNAP-SE1 serial does not have).
    """
    text = text.strip()
    name, sep, seed = text.partition(":")
    if name.lower() == "emulator":
        if not sep:
            return BoardSpec()
        if not (seed.isascii() and seed.isdigit()) or int(seed) > MAX_EMULATOR_SEED:
            raise ValueError(f"bad emulator seed {seed!r} in --board {text!r}: use emulator:SEED with SEED an integer "
                             f"from 0 to {MAX_EMULATOR_SEED} (its serial EMU<SEED> must name the emulator again)")
        return BoardSpec(None, int(seed))
    emulated = _EMULATOR_SERIAL.fullmatch(text)
    if emulated:
        return BoardSpec(None, int(emulated.group(1)))
    if not _SERIAL.match(text):
        raise ValueError(f"bad board {text!r}: use 'emulator', 'emulator:SEED', an emulator serial EMU<SEED> or a board "
                         "serial (letters, digits, '_', '.', '-')")
    return BoardSpec(text)


def emulator_config(*, seed: int = 0, mismatch: bool = True, dt: float | None = None) -> Any:
    """An ``emulator.config.EmulatorConfig``: the default mismatch (or none), ``seed``, and ``dt`` if given."""
    from emulator.config import EmulatorConfig, MismatchConfig

    options: dict[str, Any] = {"seed": seed, "mismatch": MismatchConfig() if mismatch else MismatchConfig.ideal()}
    if dt is not None:
        options["dt"] = dt
    return EmulatorConfig(**options)


def open_emulator(
    serial: str = DEFAULT_EMULATOR_SERIAL,
    *,
    seed: int = 0,
    mismatch: bool = True,
    dt: float | None = None,
    clock: str = "fast",
    separate_process: bool = False,
    config: Any = None,
) -> Board:
    """A fresh emulated board, opened through the driver like silicon.

    Parameters
    ----------
    serial : the board's serial number (it also seeds the mismatch, with ``seed``)
    seed, mismatch, dt : the emulator configuration (:func:`emulator_config`), unless ``config``
        gives a whole ``EmulatorConfig``
    clock : ``"fast"`` (simulated time runs as fast as the CPU allows; batch work) or
        ``"realtime"`` (paced to the wall clock; live use)
    separate_process : simulate in a child process, so a full board never competes with the GUI
    """
    from emulator.virtual_board import open_emulated_board

    cfg = config if config is not None else emulator_config(seed=seed, mismatch=mismatch, dt=dt)
    return open_emulated_board(serial, cfg, clock=clock, separate_process=separate_process)


def start_emulator_process(serial: str = DEFAULT_EMULATOR_SERIAL, *, seed: int = 0, mismatch: bool = True,
                           dt: float | None = None, clock: str = "fast", config: Any = None) -> None:
    """Start the child process of the emulated board that :func:`open_emulator` with the same
    arguments and ``separate_process=True`` would start, without waiting for it: it boots (imports,
    builds its mismatch) while the caller does other work, and that open adopts it
    (``emulator.fpga_process.start_early``)."""
    from emulator.fpga_process import start_early

    start_early(serial, config if config is not None else emulator_config(seed=seed, mismatch=mismatch, dt=dt), clock)


def open_batched_emulator(serials, *, seed: int = 0, mismatch: bool = True, threads: int = 0, config: Any = None,
                          chips=None, record_all_spikes: bool = True) -> Any:
    """N emulated boards run together (``emulator.batched_board.BatchedBoard``): one serial each.

    The Monte-Carlo robustness study's board: the same network and stimulus on every board, each
    with its own mismatch, bit for bit what :func:`open_emulator`'s simulator would do per serial.
    ``read_events`` returns one event list per board.  ``chips``: simulate only these chips (and
    those routed to them), exactly; None = all four.  ``record_all_spikes=False``: only host events.
    """
    from emulator.batched_board import BatchedBoard

    cfg = config if config is not None else emulator_config(seed=seed, mismatch=mismatch)
    return BatchedBoard(list(serials), cfg, threads, chips, record_all_spikes)


def open_silicon(serial: str | None = None) -> Board:
    """The DYNAP-SE1 with ``serial`` on the USB bus (the only one when None)."""
    from drivers.dynapse1.board import open_board

    return open_board(serial=serial)


def open_brian2_board(config: Any = None, target: str = "cython") -> Board:
    """A Board-like simulator for the Brian2 reference stage (mismatch off unless ``config`` says otherwise).

    A fresh ``BoardSimulator`` receives exactly the tables and biases a board would (through the
    driver's netlist compiler and the virtual FPGA); reading events then runs
    ``emulator.brian2_reference.run_brian2`` on that configuration with code-generation ``target``.
    """
    from emulator.brian2_reference import run_brian2
    from emulator.config import EmulatorConfig, MismatchConfig
    from emulator.sim_board import SimulatorBoard
    from emulator.simulator import BoardSimulator

    sim = BoardSimulator("BRIAN2-REF", config or EmulatorConfig(mismatch=MismatchConfig.ideal()))
    return SimulatorBoard(sim, runner=lambda s, d: run_brian2(s, d, dt=s.config.dt, target=target))


def emulator_lag_s(board: Board) -> float | None:
    """How far an emulated board on the real-time clock trails the wall clock [s], else None.

    Measured by the virtual FPGA (``emulator.virtual_fpga.VirtualFpga.lag_s``); silicon and the
    fast clock have no such lag.
    """
    if not getattr(board, "is_emulated", False):
        return None
    from emulator.virtual_board import virtual_fpga_of

    fpga = virtual_fpga_of(board)
    if fpga is None or fpga.clock != "realtime":
        return None
    return float(fpga.lag_s)


def bias_table(board: Board) -> dict:
    """Every per-core bias of every chip of ``board`` as its bias API reports it (what was last
    written), to write back with :func:`restore_board`."""
    from drivers.dynapse1.bias_table import CORE_BIASES
    from drivers.dynapse1.topology import N_CHIPS, N_CORES_PER_CHIP

    return {(chip, core, name): board.get_bias(chip, core, name)
            for chip in range(N_CHIPS) for core in range(N_CORES_PER_CHIP) for name in CORE_BIASES}


def restore_board(board: Board, biases: dict, chips) -> None:
    """Put ``board`` back after a cancelled board job (calibration, deployment): the spike
    generator stopped, the connections of ``chips`` (the network's) cleared, and ``biases`` written
    back, all of them (a write cut short by Ctrl-C may have left any of them changed)."""
    board.stop_spike_generator()
    board.clear_connections(list(chips))
    board.apply_bias_set(biases)
