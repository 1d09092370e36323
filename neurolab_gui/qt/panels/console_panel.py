"""Console panel: pyqtgraph's ConsoleWidget with the live ``board``, ``model`` and ``session``.

The namespace is a plain dict kept current by the session's signals, so
``board`` always names the board connected *now* and ``model`` the network
loaded *now*, also after a reconnect.
"""

from __future__ import annotations

import numpy as np
from PyQt6.QtWidgets import QVBoxLayout, QWidget
from pyqtgraph.console import ConsoleWidget

from drivers.dynapse1.bias_table import BiasValue
from neurolab_gui.core.session import Session

from ..bridge import relay

BANNER = (
    "NeuroLab console.  session = the application core, board = the connected board (or None),\n"
    "model = the loaded network (or None), np = numpy.  Bias changes made here show up in the sliders:\n"
    "    session.biases.set(0, 0, 'IF_DC_P', 1, 30)      board.set_bias(0, 0, 'IF_DC_P', BiasValue(1, 30))\n"
)


class ConsolePanel(QWidget):
    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self.namespace: dict = {"session": session, "np": np, "board": session.board, "model": session.model, "BiasValue": BiasValue}
        self.console = ConsoleWidget(namespace=self.namespace, text=BANNER)
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
