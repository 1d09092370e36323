"""Emulated boards put together: a simulator, its virtual FPGA, the USB backend and the driver.

:func:`open_emulated_board` returns a :class:`~drivers.dynapse1.board.DynapseBoard` opened
through the same driver path as silicon; :func:`virtual_fpga_of` finds the virtual FPGA (and
through it the simulator and the measured real-time lag) behind such a board.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any

from .virtual_usb import VirtualDynapseBackend

log = logging.getLogger(__name__)

#: The virtual FPGA behind every board opened by :func:`open_emulated_board` (weak: closed boards go).
_FPGA_OF_BOARD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def virtual_fpga_of(board: Any) -> Any:
    """The :class:`~emulator.virtual_fpga.VirtualFpga` (or its
    :class:`~emulator.fpga_process.RemoteVirtualFpga`) behind a board opened by
    :func:`open_emulated_board`; None for any other board."""
    try:
        return _FPGA_OF_BOARD.get(board)
    except TypeError:  # not weak-referenceable: certainly not ours
        return None


def open_emulated_board(
    serial: str = "EMU00000", config: Any = None, clock: str = "fast", *, separate_process: bool = False, **board_options: Any
):
    """A :class:`~drivers.dynapse1.board.DynapseBoard` on a fresh emulated board.

    The board is opened through the same driver path as silicon (libcaer start-up, version
    checks, streaming); only the bias settling wait is skipped (``settle_s=0``) because the
    emulator's biases take effect at once.  With ``separate_process`` the FPGA and simulator run
    in a child process (:mod:`emulator.fpga_process`), which the GUI uses so that simulating a
    full board never competes with drawing; the child ends when the board is closed (or, at the
    latest, when it is garbage-collected or the program exits).
    """
    from drivers.dynapse1.board import open_board

    backend = VirtualDynapseBackend()
    if separate_process:
        from .fpga_process import RemoteVirtualFpga

        fpga: Any = backend.plug(RemoteVirtualFpga(serial, config, clock))
    else:
        # not at the top: these load numba, which the parent of a board in a child never needs
        from .simulator import BoardSimulator
        from .virtual_fpga import VirtualFpga

        fpga = backend.plug(VirtualFpga(serial, BoardSimulator(serial, config), clock))
    board_options.setdefault("settle_s", 0.0)
    try:
        board = open_board(serial, backend=backend, **board_options)
    except BaseException:
        if separate_process:
            fpga.close()
        raise
    _FPGA_OF_BOARD[board] = fpga
    if separate_process:
        transport = weakref.ref(board.transport)

        def lost(reason: str) -> None:
            # the child died or stopped: the board is unplugged now, not at the next transfer
            backend.unplug(serial)
            live = transport()
            if live is not None:
                live.device_lost(reason)

        fpga.add_lost_listener(lost)

        def close_quietly() -> None:
            try:
                fpga.close()
            except Exception:  # a thread's uncaught error would reach the app's excepthook (stdout)
                log.exception("closing the emulator process of %s failed", serial)

        def end_child() -> None:
            # Joining the child takes a few hundred ms: not on the closing (the GUI's) thread.
            threading.Thread(target=close_quietly, name=f"neurolab-emulator-close-{serial}", daemon=True).start()

        board.add_close_listener(end_child)
        weakref.finalize(board, fpga.close)  # a board dropped without close()
    return board
