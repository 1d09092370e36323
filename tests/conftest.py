"""Test configuration and fixtures shared by the whole suite.

Qt runs offscreen here, set by the configuration rather than by the person
running the tests; no test needs hardware, a display or the network.

Fixtures
--------
session : a fresh :class:`~neurolab_gui.core.session.Session` with no board, closed afterwards.
emulator_session : ``session`` connected to a fast emulated board (seed 5, default mismatch,
    no acquisition thread): what the core tests that drive a board start from.
make_window : a factory of main windows over fresh sessions, ``make_window(spike_capacity=...,
    **connect)``; with ``connect`` keywords (``seed``, ``mismatch``, ``clock``, ``acquire``) the
    session is connected to the emulator.  Every window and session is closed afterwards.
window : one main window over an unconnected session.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402


@pytest.fixture
def session():
    from neurolab_gui.core.session import Session

    s = Session(spike_capacity=200_000)
    yield s
    s.close()


@pytest.fixture
def emulator_session(session):
    assert session.connect("emulator", seed=5, mismatch=True, clock="fast", acquire=False), session.connection.status.message
    return session


@pytest.fixture
def make_window(qtbot, tmp_path):
    from neurolab_gui.core.session import Session
    from neurolab_gui.qt.main_window import MainWindow

    windows = []

    def make(spike_capacity: int = 200_000, **connect):
        session = Session(spike_capacity=spike_capacity)
        w = MainWindow(session, layout_path=tmp_path / "layout.json")
        w.reporter.show_messages = False
        qtbot.addWidget(w)
        windows.append(w)
        if connect:
            assert session.connect("emulator", **connect), session.connection.status.message
        return w

    yield make
    for w in windows:
        w.session.close()
        w.close()


@pytest.fixture
def window(make_window):
    return make_window()
