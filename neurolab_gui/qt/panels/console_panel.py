"""Console panel: pyqtgraph's ConsoleWidget with the live ``board``, ``model`` and ``session``.

The namespace is a plain dict kept current by the session's signals, so
``board`` always names the board connected *now* and ``model`` the network
loaded *now*, also after a reconnect.

Two limits keep one command from freezing the app:

* **Output is cut before it reaches the text widget** (:class:`OutputLimiter`).  Laying out one
  line in a ``QTextEdit`` costs time quadratic in its length (100 k characters held the GUI
  thread 1-2 s, 2 M characters more than 5 minutes), so a line shows its first
  :data:`MAX_LINE_CHARS` characters and then says how many more there were; a command shows at
  most :data:`MAX_COMMAND_CHARS` characters of output, with a note of the rest; and the document
  keeps the last :data:`MAX_BLOCKS` lines, so a long session does not slow every later print.
* **Commands run on the GUI thread**, as pyqtgraph runs them (``allowNonGuiExecution=False``).
  Running them on a worker would let a command touch widgets from a non-GUI thread, which
  crashes Qt, and most console work is quick calls on ``session`` and ``board`` that the GUI
  shows at once.  So a slow command freezes the window until it returns; the banner and the
  input line's tooltip say so, and ``run_in_background(fn, *args)`` runs slow work as a
  :class:`~neurolab_gui.core.jobs.Job` on a worker and prints its result (or error) here when it
  ends.  ``fn`` must not touch the GUI.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
from PyQt6.QtWidgets import QVBoxLayout, QWidget
from pyqtgraph.console import ConsoleWidget

from drivers.dynapse1.bias_table import BiasValue
from neurolab_gui.core.jobs import Job
from neurolab_gui.core.session import Session

from ..bridge import relay

log = logging.getLogger(__name__)

#: Characters of one output line shown; the rest is counted in a note.
MAX_LINE_CHARS = 5_000
#: Characters of output one command may show; the rest is counted in a note.
MAX_COMMAND_CHARS = 100_000
#: Lines the console keeps (the oldest go first).
MAX_BLOCKS = 5_000

BANNER = (
    "NeuroLab console.  session = the application core, board = the connected board (or None),\n"
    "model = the loaded network (or None), np = numpy.  Bias changes made here show up in the sliders:\n"
    "    session.biases.set(0, 0, 'IF_DC_P', 1, 30)      board.set_bias(0, 0, 'IF_DC_P', BiasValue(1, 30))\n"
    "Commands run on the GUI thread: the window is frozen until one returns.  For slow work use\n"
    "    job = run_in_background(fn, *args)      (fn must not touch the GUI; job.cancel(), job.result())\n"
    f"Long output is cut: {MAX_LINE_CHARS:,} characters a line, {MAX_COMMAND_CHARS:,} a command.\n"
)

Sink = Callable[[str, str, str], None]


class OutputLimiter:
    """Bounds console output on its way to the text widget: per line, per command, in one write.

    ``write(text, style, scrollToBottom)`` takes what pyqtgraph's REPL thread emits
    (``sigInputGenerated``) and passes a bounded version to ``sink`` (the widget's ``write``):

    * every line is cut at ``line_chars`` characters, with ``" … N more characters (not shown)"``
      when the line ends;
    * what a command prints (``counts()`` is true while its output is captured) is cut at
      ``command_chars`` characters, with a note of the rest;
    * what a command prints is collected and reaches the widget in one write when the command
      ends (:meth:`finish_command`, also called before anything that is not the command's own
      output: a traceback, the next prompt).  Each write into the ``QTextEdit`` costs about
      0.25 ms whatever its length, and more once the document is at its block limit, so 30 k
      ``print`` calls written one by one held the GUI thread for a minute.  Nothing is lost by
      waiting: the command holds the GUI thread, so the widget could not be painted before it
      ends anyway.

    Parameters
    ----------
    sink : callable
        Where the bounded text goes, with the same arguments.
    counts : callable
        True while a write is the running command's output.
    line_chars, command_chars : int
        The limits.
    """

    def __init__(self, sink: Sink, counts: Callable[[], bool], line_chars: int = MAX_LINE_CHARS,
                 command_chars: int = MAX_COMMAND_CHARS) -> None:
        self._sink = sink
        self._counts = counts
        self.line_chars = line_chars
        self.command_chars = command_chars
        self._pending: list[str] = []  # the running command's output, bounded, not yet written
        self._line_shown = 0  # characters of the current (unfinished) line shown
        self._line_hidden = 0  # and cut from it
        self._command_shown = 0
        self._command_hidden = 0
        self._command_hidden_lines = 0

    def write(self, text: str, style: str = "output", scroll: str = "auto") -> None:
        counted = style == "output" and self._counts()
        n = len(text)
        if (counted and "\n" not in text and self._line_shown + n <= self.line_chars
                and self._command_shown + n < self.command_chars):
            # the common case (a print's pieces), kept cheap: a print loop runs on the GUI thread
            self._pending.append(text)
            self._line_shown += n
            self._command_shown += n
            return
        if not counted:
            self.finish_command()
        out = self._pending if counted else []
        for i, piece in enumerate(text.split("\n")):
            if i:
                self._end_line(out, counted)
            if counted and self._command_shown >= self.command_chars:
                self._command_hidden += len(piece)
                continue
            room = self.line_chars - self._line_shown
            if counted:
                room = min(room, self.command_chars - self._command_shown)
            shown = piece[:max(room, 0)]
            out.append(shown)
            self._line_shown += len(shown)
            if counted:
                self._command_shown += len(shown)
                if self._command_shown >= self.command_chars:
                    self._command_hidden += len(piece) - len(shown)
                    continue
            self._line_hidden += len(piece) - len(shown)
        if not counted and out:
            self._sink("".join(out), style, scroll)

    def _end_line(self, out: list[str], counted: bool) -> None:
        if counted and self._command_shown >= self.command_chars:
            self._command_hidden_lines += 1
            self._command_hidden += 1
        else:
            if self._line_hidden:
                out.append(f" … {self._line_hidden:,} more characters (not shown)")
            out.append("\n")
            if counted:
                self._command_shown += 1
        self._line_shown = self._line_hidden = 0

    def finish_command(self) -> None:
        """Write what the running command printed, with notes of what was cut, in one write."""
        out, self._pending = self._pending, []
        if self._line_hidden:
            out.append(f" … {self._line_hidden:,} more characters (not shown)")
        if self._command_hidden:
            lines = f" ({self._command_hidden_lines:,} lines)" if self._command_hidden_lines else ""
            out.append(f"\n… {self._command_hidden:,} more characters{lines} not shown: a command shows at most "
                       f"{self.command_chars:,} characters of output\n")
        elif self._line_hidden:
            out.append("\n")
        if self._line_hidden or self._command_hidden:
            self._line_shown = 0
        self._line_hidden = self._command_hidden = self._command_hidden_lines = self._command_shown = 0
        text = "".join(out)
        if text:
            self._sink(text, "output", "auto")


class ConsolePanel(QWidget):
    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self.namespace: dict = {"session": session, "np": np, "board": session.board, "model": session.model,
                                "BiasValue": BiasValue, "run_in_background": self.run_in_background}
        self.console = ConsoleWidget(namespace=self.namespace, text=BANNER)
        repl = self.console.repl
        repl.output.document().setMaximumBlockCount(MAX_BLOCKS)
        repl.input.setToolTip("Commands run on the GUI thread: the window is frozen until one returns.\n"
                              "For slow work: job = run_in_background(fn, *args)  (fn must not touch the GUI).")
        # all output (prints, results, tracebacks, the echoed command) goes from the REPL thread's
        # signal to the widget's write: put the limiter between them.  Those are pyqtgraph's
        # internals (as in 0.14.0): a version without them keeps a working console, unlimited.
        self.limiter = OutputLimiter(repl.write, counts=lambda: False)
        try:
            thread = repl._thread
            interceptor = thread._stdoutInterceptor
            thread.sigInputGenerated.disconnect(repl.write)
        except (AttributeError, TypeError) as exc:
            log.warning("console: output is not limited (this pyqtgraph's console differs: %s); one long print can freeze the window", exc)
        else:
            self.limiter = OutputLimiter(repl.write, counts=lambda: sys.stdout is interceptor)
            thread.sigInputGenerated.connect(self.limiter.write)
            thread.sigCommandExecuted.connect(self.limiter.finish_command)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.console)
        relay(session.connection.connected, self._refresh, self)
        relay(session.connection.disconnected, self._refresh, self)
        relay(session.model_changed, self._refresh, self)

    def _refresh(self, *_: object) -> None:
        self.namespace["board"] = self.session.board
        self.namespace["model"] = self.session.model

    def execute(self, command: str) -> None:
        """Run one line as if typed (used by tests and scripted demos)."""
        self._refresh()
        self.console.repl._thread.runCmd(command)

    def output(self) -> str:
        return self.console.repl.output.toPlainText()

    def run_in_background(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Job:
        """Run ``fn(*args, **kwargs)`` as a job on a worker thread; print its result here when it ends.

        The console stays usable meanwhile.  ``fn`` must not touch Qt widgets (only the GUI thread
        may); session and board calls are fine.  Returns the started :class:`Job`
        (``job.cancel()``, ``job.done``, ``job.result()``).
        """
        name = getattr(fn, "__name__", "job")
        job: Job = Job(f"console {name}", lambda progress, cancel: fn(*args, **kwargs))
        relay(job.finished, lambda result: self.limiter.write(f"[{name} finished] {result!r}\n"), self)
        relay(job.failed, lambda exc: self.limiter.write(f"[{name} failed] {type(exc).__name__}: {exc}\n"), self)
        relay(job.cancelled, lambda exc: self.limiter.write(f"[{name} {job.cancel_outcome}]\n"), self)
        return job.start()
