"""Console panel (offscreen, typed into the real console's input line): long output is cut before it
reaches the text widget, the document stays bounded, and slow work can run as a background job."""

import pytest
from PyQt6.QtCore import Qt
from PyQt6.QtTest import QTest

from neurolab_gui.qt.panels.console_panel import MAX_BLOCKS, MAX_COMMAND_CHARS, MAX_LINE_CHARS, ConsolePanel


@pytest.fixture
def console(session, qtbot):
    panel = ConsolePanel(session)
    qtbot.addWidget(panel)
    panel.resize(800, 400)
    panel.show()  # a hidden text widget lays nothing out: the cost of long lines would not show
    qtbot.waitExposed(panel)
    return panel


def type_command(panel: ConsolePanel, text: str) -> None:
    """Type ``text`` into the console's input line and press Return, as a user does."""
    line = panel.console.repl.input
    line.setFocus()
    QTest.keyClicks(line, text)
    QTest.keyClick(line, Qt.Key.Key_Return)


def test_one_long_line_is_cut_with_a_count_and_does_not_stall(console, heartbeat):
    # before: laying out one 1 M-character line held the GUI thread for minutes (200 k: 5 s)
    with heartbeat.watch("print 1 M characters"):
        type_command(console, "print('x' * 1_000_000)")
    heartbeat.assert_no_stall()
    hidden = 1_000_000 - MAX_LINE_CHARS
    assert ("\n" + "x" * MAX_LINE_CHARS + f" … {hidden:,} more characters (not shown)\n") in console.output()
    assert "x" * (MAX_LINE_CHARS + 1) not in console.output()


def test_a_short_print_is_shown_whole(console):
    type_command(console, "print('hello ' * 20)")
    assert "\n" + "hello " * 20 + "\n" in console.output()
    assert "not shown" not in console.output()


def test_a_command_shows_at_most_its_share_of_output_with_a_note(console):
    # 2000 lines of 100 characters: the first MAX_COMMAND_CHARS characters are shown, the rest
    # (and print's own newline) counted
    type_command(console, r"print(('z' * 99 + '\n') * 2000)")
    out = console.output()
    assert out.count("z" * 99 + "\n") == MAX_COMMAND_CHARS // 100
    assert (f"… {200_001 - MAX_COMMAND_CHARS:,} more characters (1,001 lines) not shown: "
            f"a command shows at most {MAX_COMMAND_CHARS:,} characters of output") in out
    type_command(console, "print('next')")  # the next command has its own share
    assert console.output().endswith(">>> print('next')\nnext\n")


def test_many_prints_keep_the_document_bounded(console):
    type_command(console, f"for i in range({MAX_BLOCKS + 1000}): print(i)")
    type_command(console, "")  # ends the block, which runs it
    document = console.console.repl.output.document()
    assert document.blockCount() <= MAX_BLOCKS
    assert console.output().endswith(f"\n{MAX_BLOCKS + 999}\n")


def test_a_traceback_after_cut_output_is_shown(console):
    type_command(console, r"print(('y' * 99 + '\n') * 2000); 1/0")
    out = console.output()
    assert "(1,001 lines) not shown: a command shows at most" in out
    assert out.rstrip().endswith("ZeroDivisionError: division by zero")


def test_slow_work_runs_in_the_background_and_prints_its_result(console, qtbot):
    # commands run on the GUI thread (a slow one freezes the window): the console says so and
    # offers run_in_background for slow work
    assert "GUI thread" in console.output() and "run_in_background" in console.output()
    assert "GUI thread" in console.console.repl.input.toolTip()
    type_command(console, "job = run_in_background(sum, [1, 2, 3])")
    qtbot.waitUntil(lambda: "[sum finished] 6\n" in console.output(), timeout=5000)
    type_command(console, "bad = run_in_background(int, 'x')")
    qtbot.waitUntil(lambda: "[int failed] ValueError: invalid literal" in console.output(), timeout=5000)
    assert console.namespace["job"].result() == 6


def test_a_pyqtgraph_whose_console_internals_differ_still_opens_the_panel_and_says_output_is_unlimited(session, qtbot, monkeypatch, caplog):
    # the limiter hooks pyqtgraph's REPL thread (private attributes); without them the panel (and so
    # the main window) must still be built, and say that its output is not limited
    from pyqtgraph.console import ConsoleWidget

    from neurolab_gui.qt.panels import console_panel

    class OtherConsole(ConsoleWidget):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.repl._thread = None  # no _stdoutInterceptor, no signals: as if renamed

    monkeypatch.setattr(console_panel, "ConsoleWidget", OtherConsole)
    with caplog.at_level("WARNING"):
        panel = ConsolePanel(session)
    qtbot.addWidget(panel)
    assert any("output is not limited" in r.getMessage() for r in caplog.records)
    assert panel.namespace["run_in_background"] is not None
