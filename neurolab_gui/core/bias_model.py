"""Biases as observable parameters: one :class:`BiasParameter` per (chip, core, name) over a Board.

Modelled on ophyd-async / QCoDeS parameters: each bias has an address, a unit
(amperes), limits, a coarse/fine <-> current conversion, a cached value and a
change signal.  :class:`BiasModel` owns all 4 × 4 × 25 of them and adds what a
person tuning biases needs: undo/redo, a change log (who changed what, when),
copying one core's biases to other cores, and save / load / diff of bias sets.

Where the truth lives: the chip cannot read biases back, so the board keeps
the last value written (``Board.get_bias``) and calls its bias listeners after
*every* write, whoever made it (GUI, console, calibration).  The model
subscribes to that listener and updates its cache from it, which is how
changes made outside the GUI reach the sliders.  Writes made through the model
carry an *origin* ("gui", "file", "copy", "undo", ...); writes that arrive
from the board without one are logged as ``"external"``.

Values.  Every value is a :class:`~drivers.dynapse1.bias_table.BiasValue` (coarse, fine, high/low,
normal/cascode, enabled), validated when it is made and passed on whole down to
``Board.set_bias``, so moving a slider keeps the flags that were set.  Changing
only the setting goes through :meth:`BiasValue.with_setting`, changing only a
flag through :meth:`BiasModel.set_flags`.

Failed writes.  The board writes a set as one transaction (``BiasWriteError``
when a transfer fails, after rolling back); the model's cache follows the
board's listener, so it always holds what the board holds.  A failed write adds
no undo step when it was rolled back, and an undo step for what did change when
the roll-back failed too.

Held biases.  A board job that writes biases for a while and puts them back at its end (the DC
sweep's IF_DC_P) holds them for its duration (:meth:`BiasModel.hold`): a write to a held bias
from anyone else -- a panel, the console, a preset, copy-core, a file, Undo/Redo -- is refused
with :class:`BiasHeldError` before anything is sent, so no edit is lost under the job's next level
and no undo step records a transient level as its "old" value.  A write that touches a held bias
and others is refused whole.  :attr:`BiasModel.holds_changed` tells panels to grey those controls.

The slider axis is the driver's :data:`~drivers.dynapse1.bias_table.LADDER` (see there
why that ladder).  A DC sweep or another scripted series of writes is one undo
step (:meth:`BiasModel.undo_group`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from drivers.arguments import finite_number
from drivers.dynapse1.bias_files import BiasSet, load_bias_file, published_bias_set, published_bias_set_names
from drivers.dynapse1.bias_table import (
    CORE_BIASES,
    LADDER,
    SILENT,
    BiasLadder,
    BiasSpec,
    BiasValue,
    bias_spec,
    closest_setting,
    core_bias_address,
    nominal_current,
)
from drivers.dynapse1.board import BiasWriteError
from drivers.dynapse1.board_api import Board
from drivers.dynapse1.topology import N_CHIPS, N_CORES_PER_CHIP, check_chip, check_core

from .events import Signal

__all__ = ["LADDER", "SILENT", "BiasChange", "BiasHeldError", "BiasHold", "BiasKey", "BiasLadder", "BiasModel", "BiasParameter",
           "BiasValue", "BiasWriteError",
           "core_bias_keys", "diff_bias_sets", "read_bias_file"]

log = logging.getLogger(__name__)

BiasKey = tuple[int, int, str]
_Step = list[tuple[BiasKey, BiasValue, BiasValue]]  # (key, value before, value after)


@dataclass(frozen=True)
class BiasChange:
    """One entry of the bias change log."""

    time_s: float  # wall-clock time.time()
    chip: int
    core: int
    name: str
    old: BiasValue
    new: BiasValue
    origin: str  # gui, console, file, copy, undo, redo, calibration, external, ...

    @property
    def key(self) -> BiasKey:
        return (self.chip, self.core, self.name)


class BiasHeldError(RuntimeError):
    """A write touched a bias that a running job holds (:meth:`BiasModel.hold`); nothing was written.

    The message names the bias, its core and the job: "IF_DC_P of chip 2 core 3 is being swept;
    cancel the sweep to change it".
    """


@dataclass(frozen=True)
class BiasHold:
    """Biases a running job writes and restores itself (:meth:`BiasModel.hold`).

    ``activity`` completes "<bias> of chip c core k is ..." ("being swept"), ``job`` names what
    to cancel ("the sweep"); ``thread`` is the job's thread, the only one whose writes pass.
    """

    keys: frozenset[BiasKey]
    activity: str
    job: str
    thread: int

    def reason(self, key: BiasKey) -> str:
        chip, core, name = key
        return f"{name} of chip {chip} core {core} is {self.activity}; cancel {self.job} to change it"


class BiasParameter:
    """One per-core bias: address, unit, limits, coarse/fine <-> current, cached value, change signal.

    Writes go through the owning :class:`BiasModel` so that they are logged and undoable.
    """

    def __init__(self, model: BiasModel, chip: int, core: int, name: str) -> None:
        self._model = model
        self.chip = check_chip(chip)
        self.core = check_core(core)
        self.spec: BiasSpec = bias_spec(name)
        self.name = name
        self.address = core_bias_address(core, name)
        self.unit = self.spec.unit
        self.limits = self.spec.limits
        self._value = SILENT
        #: Emitted as ``changed(parameter, change)`` after the cached value changed.
        self.changed = Signal(f"bias {chip}/{core}/{name}")

    @property
    def key(self) -> BiasKey:
        return (self.chip, self.core, self.name)

    @property
    def value(self) -> BiasValue:
        """Cached value (what was last written to the board, or set offline)."""
        return self._value

    @property
    def current(self) -> float:
        """Nominal current of the cached value in amperes."""
        return nominal_current(self._value.coarse, self._value.fine)

    @property
    def ladder_index(self) -> int:
        return LADDER.index_of(self._value.coarse, self._value.fine)

    def set(self, coarse: int, fine: int, origin: str = "script") -> None:
        """Write another coarse/fine setting, keeping the flags."""
        self._model.set(self.chip, self.core, self.name, coarse, fine, origin=origin)

    def set_value(self, value: BiasValue, origin: str = "script") -> None:
        """Write a whole value, flags included."""
        self._model.set_value(self.chip, self.core, self.name, value, origin=origin)

    def set_flags(self, *, high: bool | None = None, normal: bool | None = None, enabled: bool | None = None,
                  origin: str = "script") -> None:
        """Change flags (None: keep), keeping the setting."""
        self._model.set_flags(self.chip, self.core, self.name, high=high, normal=normal, enabled=enabled, origin=origin)

    def set_current(self, current_a: float, origin: str = "script") -> None:
        """Write the setting whose nominal current is closest to ``current_a`` (a finite number of
        amperes within :attr:`limits`; ``"1e-9"`` or a bool is refused with a ``ValueError``)."""
        try:
            current_a = finite_number("current_a", current_a, strict=False)
        except ValueError as exc:
            raise ValueError(f"{self.name}: {exc}") from None
        if not self.limits[0] <= current_a <= self.limits[1]:
            raise ValueError(f"{self.name}: current {current_a:g} A outside {self.limits[0]:g}..{self.limits[1]:g} A")
        coarse, fine = closest_setting(current_a)
        self.set(coarse, fine, origin=origin)

    def set_ladder_index(self, index: int, origin: str = "gui") -> None:
        """Write the setting at ``index`` of :data:`~drivers.dynapse1.bias_table.LADDER` (an integer
        in range: 1.5 and True are refused with a ``ValueError``)."""
        coarse, fine = LADDER.setting(index)
        self.set(coarse, fine, origin=origin)

    def __repr__(self) -> str:
        v = self._value
        flags = f" {v.flags_text()}" if v.flags_text() else ""
        return f"<BiasParameter {self.chip}/{self.core}/{self.name} coarse={v.coarse} fine={v.fine} ≈{self.current:.3g} A{flags}>"


class BiasModel:
    """All per-core biases of a board, with undo/redo, a change log, copy-core and bias files.

    Parameters
    ----------
    board : Board or None
        The board to write to.  Without one the model edits its cache offline;
        :meth:`attach` later reads the board's values into the cache.
    max_log : int
        Change-log entries kept (oldest dropped first) so memory stays bounded.
    """

    #: Writes to the same biases closer together than this (seconds) may merge into one undo step.
    COALESCE_S = 1.5

    def __init__(self, board: Board | None = None, max_log: int = 100_000) -> None:
        self._last_step_time = 0.0
        self._last_step_coalescable = False
        self.parameters: dict[BiasKey, BiasParameter] = {
            (chip, core, name): BiasParameter(self, chip, core, name)
            for chip in range(N_CHIPS)
            for core in range(N_CORES_PER_CHIP)
            for name in CORE_BIASES
        }
        self._lock = threading.RLock()
        self._local = threading.local()  # origin of the write in progress on this thread
        self._undo: list[_Step] = []
        self._redo: list[_Step] = []
        self._max_log = max_log
        self.log: list[BiasChange] = []
        #: ``changed(change: BiasChange)`` after any bias changed, whoever changed it.
        self.changed = Signal("bias model changed")
        #: ``history_changed()`` when undo/redo availability changed.
        self.history_changed = Signal("bias history changed")
        #: ``history_cleared(reason: str)`` when :meth:`attach` dropped the undo/redo history (for
        #: the change log: the person should know why Undo went grey).
        self.history_cleared = Signal("bias history cleared")
        #: ``write_failed(error: BiasWriteError)`` when a write through the model failed on the board
        #: (emitted before the error is raised to the caller, so a panel can say what happened).
        self.write_failed = Signal("bias write failed")
        #: ``holds_changed()`` after a job started or stopped holding biases (:meth:`hold`).
        self.holds_changed = Signal("bias holds changed")
        self._holds: list[BiasHold] = []
        self._board: Board | None = None
        self._listening: set[int] = set()
        if board is not None:
            self.attach(board)

    # --- board ------------------------------------------------------------------------
    @property
    def board(self) -> Board | None:
        return self._board

    def attach(self, board: Board) -> None:
        """Use ``board`` from now on: read its current biases into the cache and follow its writes.

        The undo/redo history is cleared: its steps hold values of the cache before the board was
        read (offline edits, or another board's values), and undoing one would write a value this
        board never had.  Offline edits are not carried over either (the board's values win);
        :attr:`history_cleared` says so, with how many steps were dropped.
        """
        with self._lock:
            self._board = board
            if id(board) not in self._listening:
                board.add_bias_listener(lambda c, k, n, v, b=board: self._on_board_bias(b, c, k, n, v))
                self._listening.add(id(board))
            for key, param in self.parameters.items():
                value = board.get_bias(*key)
                if value != param.value:
                    self._record(key, value, "board")
            dropped = len(self._undo) + len(self._redo)
            self._undo.clear()
            self._redo.clear()
            self._last_step_coalescable = False
        if dropped:
            reason = (f"undo history cleared ({dropped} step{'s' * (dropped != 1)}): the biases are now the board's; "
                      "edits made before it was attached are not undone or replayed on it")
            log.info("%s", reason)
            self.history_cleared.emit(reason)
            self.history_changed.emit()

    def detach(self) -> None:
        """Stop writing to the board (it was closed or unplugged); the cache stays for offline edits."""
        with self._lock:
            self._board = None

    def _on_board_bias(self, board: Board, chip: int, core: int, name: str, value: BiasValue) -> None:
        if board is not self._board or (chip, core, name) not in self.parameters:
            return
        origin = getattr(self._local, "origin", None) or "external"
        with self._lock:
            # the board's cache, not the notified value: notifications from two threads may arrive
            # out of order, the cache read under our lock is the latest
            latest = board.get_bias(chip, core, name)
            self._record((chip, core, name), latest, origin)

    # --- reading ------------------------------------------------------------------------
    def parameter(self, chip: int, core: int, name: str) -> BiasParameter:
        chip, core, _ = check_chip(chip), check_core(core), bias_spec(name)
        return self.parameters[(chip, core, name)]

    def value(self, chip: int, core: int, name: str) -> BiasValue:
        return self.parameter(chip, core, name).value

    def snapshot(self, cores: Iterable[tuple[int, int]] | None = None) -> dict[BiasKey, BiasValue]:
        """Current values, of every core or of the given ``(chip, core)`` pairs (valid ids, else
        ``ValueError``: ``(9, 9)`` matched no core and gave an empty snapshot)."""
        wanted = None if cores is None else {(check_chip(a), check_core(b)) for a, b in cores}
        with self._lock:
            return {k: p.value for k, p in self.parameters.items() if wanted is None or k[:2] in wanted}

    # --- writing ------------------------------------------------------------------------
    def set(
        self, chip: int, core: int, name: str, coarse: int, fine: int, origin: str = "script", coalesce: bool = False
    ) -> None:
        """Write another coarse/fine setting of one bias, keeping its flags; one undo step (see :meth:`apply`)."""
        param = self.parameter(chip, core, name)
        self.apply({param.key: param.value.with_setting(coarse, fine)}, origin=origin, coalesce=coalesce)

    def set_value(
        self, chip: int, core: int, name: str, value: BiasValue, origin: str = "script", coalesce: bool = False
    ) -> None:
        """Write one bias's whole value, flags included; one undo step."""
        self.apply({self.parameter(chip, core, name).key: value}, origin=origin, coalesce=coalesce)

    def set_flags(
        self, chip: int, core: int, name: str, *, high: bool | None = None, normal: bool | None = None,
        enabled: bool | None = None, origin: str = "script",
    ) -> None:
        """Change the flags of one bias (None: keep), keeping its setting; one undo step."""
        param = self.parameter(chip, core, name)
        changes = {k: v for k, v in (("high", high), ("normal", normal), ("enabled", enabled)) if v is not None}
        self.apply({param.key: param.value.replace(**changes)}, origin=origin)

    def apply(
        self, values: Mapping[BiasKey, BiasValue], origin: str = "script", undoable: bool = True, coalesce: bool = False
    ) -> None:
        """Write several biases at once, checked first (nothing half-applied); one undo step.

        ``coalesce=True`` merges this write into the previous undo step when that step touched
        the same biases less than :attr:`COALESCE_S` ago, so dragging a slider is one undo step.
        Raises ``KeyError``/``ValueError``/``TypeError`` naming the bad entry and changes nothing.
        A failed transfer raises the board's :class:`BiasWriteError` (the cache then holds what
        the board holds; whatever did change is one undo step).
        """
        checked: dict[BiasKey, BiasValue] = {}
        for key, value in values.items():
            chip, core, name = key
            param = self.parameter(chip, core, name)
            if not isinstance(value, BiasValue):  # a BiasValue validated itself when it was made
                raise TypeError(f"bias {key!r}: expected a BiasValue, got {type(value).__name__}")
            checked[param.key] = value
        with self._lock:
            self._refuse_held(checked)
            before = {k: self.parameters[k].value for k in checked}
            step = [(k, before[k], v) for k, v in checked.items() if before[k] != v]
            if not step:
                return
            try:
                self._write({k: new for k, _, new in step}, origin)
            except BiasWriteError as exc:
                # The cache followed the board: keep whatever did change as an undo step.
                done = [(k, before[k], self.parameters[k].value) for k, _, _ in step if self.parameters[k].value != before[k]]
                if undoable and done:
                    self._push_step(done, coalesce=False)
                    self.history_changed.emit()
                self.write_failed.emit(exc)
                raise
            if undoable:
                self._push_step(step, coalesce)
        if undoable:
            self.history_changed.emit()

    def _push_step(self, step: _Step, coalesce: bool) -> None:
        group = getattr(self._local, "group", None)
        if group is not None:  # inside undo_group: remember only the first old value of each bias
            for key, old, _ in step:
                group.setdefault(key, old)
            return
        now = time.monotonic()
        last = self._undo[-1] if self._undo else None
        if (
            coalesce
            and self._last_step_coalescable
            and last is not None
            and now - self._last_step_time < self.COALESCE_S
            and {k for k, _, _ in last} == {k for k, _, _ in step}
        ):
            first_old = {k: old for k, old, _ in last}
            self._undo[-1] = [(k, first_old[k], new) for k, _, new in step]
        else:
            self._undo.append(step)
        self._last_step_time = now
        self._last_step_coalescable = coalesce  # only a drag merges into a drag, never into a flag or file step
        self._redo.clear()

    @contextlib.contextmanager
    def undo_group(self) -> Iterator[None]:
        """Make every model write of this thread inside the block one undo step.

        Undoing it restores the values from before the block; the change log still lists every
        write.  Used by the DC sweep, whose levels are one action for the person who started it.
        Writes from other threads (the GUI while a sweep runs) stay steps of their own.
        """
        if getattr(self._local, "group", None) is not None:  # nested: the outer group collects
            yield
            return
        self._local.group = {}
        try:
            yield
        finally:
            group: dict[BiasKey, BiasValue] = self._local.group
            self._local.group = None
            with self._lock:
                # a block that ends where it started (a finished or cancelled sweep restores its
                # bias) leaves no step: an undo that changes nothing would only hide the one before
                step = [(k, old, self.parameters[k].value) for k, old in group.items() if self.parameters[k].value != old]
                if step:
                    self._undo.append(step)
                    self._last_step_time = time.monotonic()
                    self._last_step_coalescable = False
                    self._redo.clear()
            if step:
                self.history_changed.emit()

    @contextlib.contextmanager
    def external_step(self, origin: str) -> Iterator[None]:
        """Writes a long job makes on the board itself, on this thread, inside the block: logged with
        ``origin`` (not "external") and kept as one undo step of every bias that ended up changed.

        :meth:`undo_group` collects writes made through the model; this collects those a job makes
        through the board directly (deployment, the calibration engine), from the cache the board's
        listener keeps.  A job that restores the biases it started from (a cancelled calibration)
        leaves no step.
        """
        before = self.snapshot()
        self._local.origin = origin
        try:
            yield
        finally:
            self._local.origin = None
            after = self.snapshot()
            step = [(k, before[k], after[k]) for k in before if before[k] != after[k]]
            if step:
                with self._lock:
                    self._undo.append(step)
                    self._last_step_time = time.monotonic()
                    self._last_step_coalescable = False
                    self._redo.clear()
                self.history_changed.emit()

    # --- holds ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def hold(self, keys: Iterable[BiasKey], activity: str, job: str) -> Iterator[BiasHold]:
        """Hold ``keys`` for the block: only this thread may write them through the model.

        For a job that writes biases for a while and restores them at its end (the DC sweep):
        wrap the writes *and* the restore.  Meanwhile any other write that touches a held bias
        (:meth:`apply` and everything built on it -- a slider, a flag, a preset, copy-core, a
        file -- and :meth:`undo`/:meth:`redo` of a step that touches one) raises
        :class:`BiasHeldError` naming the bias, its core and ``job``, and writes nothing, not even
        the biases of that write that are not held: a preset or a copy to all cores is refused
        whole, so it is never half-applied.  :attr:`holds_changed` is emitted when the hold starts
        and when it ends.  A key another job holds already raises :class:`BiasHeldError` at once.
        """
        wanted = frozenset(self.parameter(*key).key for key in keys)
        hold = BiasHold(wanted, activity, job, threading.get_ident())
        with self._lock:
            self._refuse_held(wanted)
            self._holds.append(hold)
        self.holds_changed.emit()
        try:
            yield hold
        finally:
            with self._lock:
                self._holds.remove(hold)
            self.holds_changed.emit()

    def hold_reason(self, chip: int, core: int, name: str) -> str | None:
        """Why bias ``name`` of ``(chip, core)`` cannot be written now ("... is being swept; cancel
        the sweep to change it"), or None when no job holds it."""
        key = (int(chip), int(core), name)
        with self._lock:
            return next((h.reason(key) for h in self._holds if key in h.keys), None)

    def _refuse_held(self, keys: Iterable[BiasKey]) -> None:
        """Raise :class:`BiasHeldError` if another thread's hold covers one of ``keys`` (caller holds the lock)."""
        if not self._holds:
            return
        me = threading.get_ident()
        keys = list(keys)
        for key in keys:
            for hold in self._holds:
                if hold.thread != me and key in hold.keys:
                    whole = "" if len(keys) == 1 else f" (nothing of this {len(keys)}-bias change was written)"
                    raise BiasHeldError(hold.reason(key) + whole)

    def _write(self, values: Mapping[BiasKey, BiasValue], origin: str) -> None:
        board = self._board
        if board is None:  # offline edit: the cache is all there is
            for key, value in values.items():
                self._record(key, value, origin)
            return
        self._local.origin = origin
        try:
            if len(values) == 1:
                (chip, core, name), value = next(iter(values.items()))
                board.set_bias(chip, core, name, value)
            else:
                board.apply_bias_set(dict(values))
        finally:
            self._local.origin = None

    def _record(self, key: BiasKey, value: BiasValue, origin: str) -> None:
        param = self.parameters[key]
        old = param.value
        if old == value:
            return
        param._value = value
        change = BiasChange(time.time(), key[0], key[1], key[2], old, value, origin)
        self.log.append(change)
        if len(self.log) > self._max_log:
            del self.log[: len(self.log) - self._max_log]
        param.changed.emit(param, change)
        self.changed.emit(change)

    # --- undo / redo ------------------------------------------------------------------------
    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self) -> bool:
        """Restore the values before the last model write; False if there is nothing to undo."""
        with self._lock:
            if not self._undo:
                return False
            self._refuse_held(k for k, _, _ in self._undo[-1])
            step = self._undo.pop()
            self._last_step_coalescable = False
            try:
                self._write({k: old for k, old, _ in step}, "undo")
            except BiasWriteError as exc:
                self._undo.append(step)  # still undoable: the board holds (or was rolled back to) the cache
                self.write_failed.emit(exc)
                raise
            self._redo.append(step)
        self.history_changed.emit()
        return True

    def redo(self) -> bool:
        with self._lock:
            if not self._redo:
                return False
            self._refuse_held(k for k, _, _ in self._redo[-1])
            step = self._redo.pop()
            try:
                self._write({k: new for k, _, new in step}, "redo")
            except BiasWriteError as exc:
                self._redo.append(step)
                self.write_failed.emit(exc)
                raise
            self._undo.append(step)
        self.history_changed.emit()
        return True

    # --- whole-core operations ------------------------------------------------------------
    def copy_core(self, source: tuple[int, int], targets: Iterable[tuple[int, int]]) -> int:
        """Copy all 25 biases of ``source`` (chip, core) to each target core; returns biases changed."""
        src_chip, src_core = check_chip(source[0]), check_core(source[1])
        values: dict[BiasKey, BiasValue] = {}
        for chip, core in targets:
            check_chip(chip), check_core(core)
            if (chip, core) == (src_chip, src_core):
                continue
            for name in CORE_BIASES:
                values[(chip, core, name)] = self.parameters[(src_chip, src_core, name)].value
        before = len(self.log)
        self.apply(values, origin="copy")
        return len(self.log) - before

    # --- published bias sets -----------------------------------------------------------------
    @staticmethod
    def preset_names() -> list[str]:
        """Names of the bias sets shipped in ``resources/biases`` (libcaer, UG, samna, ...)."""
        return published_bias_set_names()

    def apply_preset(
        self,
        name: str,
        cores: Iterable[tuple[int, int]] | None = None,
        overrides: Mapping[str, tuple[int, int]] | None = None,
        origin: str = "preset",
    ) -> None:
        """Write a shipped bias set (all 25 biases) to ``cores`` (default: every core) as one undo step.

        ``overrides`` replaces single biases of the set, ``{name: (coarse, fine)}`` or ``{name: BiasValue}``.  An unknown
        set raises ``KeyError`` naming the known sets, a bad bias name ``KeyError``, a bad value ``ValueError``;
        nothing is written then.
        """
        preset = published_bias_set(name)
        extra = {}
        for bias, value in (overrides or {}).items():
            bias_spec(bias)
            extra[bias] = value if isinstance(value, BiasValue) else BiasValue(*value)
        targets = [(check_chip(c), check_core(k)) for c, k in (cores if cores is not None else
                   [(c, k) for c in range(N_CHIPS) for k in range(N_CORES_PER_CHIP)])]
        self.apply({(c, k, n): extra.get(n, preset.value(c, k, n)) for c, k in targets for n in CORE_BIASES}, origin=origin)

    # --- files ----------------------------------------------------------------------------
    # One bias-set format in the project: the driver's (drivers.dynapse1.bias_files).

    def save(self, path: str | Path, cores: Iterable[tuple[int, int]] | None = None, name: str = "") -> Path:
        """Write the current biases (all cores, or ``cores``) as a bias file (JSON, or YAML by suffix).

        ``cores`` must name valid ``(chip, core)`` pairs, at least one: a ``ValueError`` says which
        is not, before anything is written (a file with no cores was written without a word).
        """
        path = Path(path)
        snapshot = self.snapshot(cores)
        if not snapshot:
            raise ValueError(f"no core to save to {path}: cores names none")
        by_core: dict[tuple[int, int], dict[str, BiasValue]] = {}
        for (chip, core, bias), value in snapshot.items():
            by_core.setdefault((chip, core), {})[bias] = value
        BiasSet(name=name or path.stem, source="NeuroLab bias panel", cores=by_core).save(path)
        return path

    def load(self, path: str | Path, origin: str = "file") -> dict[BiasKey, BiasValue]:
        """Apply a bias file (NeuroLab JSON/YAML, samna JSON or a CortexControl script) as one undo
        step; returns the values it set.  A bad file raises ``BiasFileError`` and changes nothing."""
        values = read_bias_file(path)
        self.apply(values, origin=origin)
        return values

    def diff(self, other: Mapping[BiasKey, BiasValue]) -> list[tuple[BiasKey, BiasValue, BiasValue]]:
        """Entries of ``other`` that differ from the current values: ``(key, current, other)``."""
        return diff_bias_sets(self.snapshot(), other)


def core_bias_keys(cores: Iterable[tuple[int, int]]) -> list[BiasKey]:
    """All 25 bias keys of every ``(chip, core)`` in ``cores`` (what a calibration holds)."""
    return [(int(chip), int(core), name) for chip, core in cores for name in CORE_BIASES]


def read_bias_file(path: str | Path) -> dict[BiasKey, BiasValue]:
    """The per-core values a bias file sets, read with :func:`drivers.dynapse1.bias_files.load_bias_file`.

    Following that format: a file with ``defaults`` sets all 16 cores; one with only ``cores``
    (what the bias panel saves, and what the importers produce) sets just those cores.  Either
    way each core gets all 25 biases, unnamed ones being libcaer's silent 7/0.
    """
    bias_set = load_bias_file(path)
    if bias_set.defaults:
        return bias_set.to_board_mapping()
    return {(c, k, n): bias_set.value(c, k, n) for c, k in sorted(bias_set.cores) for n in CORE_BIASES}


def diff_bias_sets(a: Mapping[BiasKey, BiasValue], b: Mapping[BiasKey, BiasValue]) -> list[tuple[BiasKey, BiasValue, BiasValue]]:
    """Keys present in ``b`` whose value differs from ``a`` (missing in ``a`` counts as silent), sorted."""
    out = []
    for key in sorted(b):
        va = a.get(key, SILENT)
        if va != b[key]:
            out.append((key, va, b[key]))
    return out


BiasListener = Callable[[BiasChange], None]
