"""The GUI's DC sweep (session_sweep.dc_sweep) on an emulated board, without Qt.

The sweep is the calibration's ``measure_dc_curves`` run inside a session: these tests check what
the session adds to it (the user's network stays, the bias model records the steps, cancel
restores IF_DC_P) and read the simulator only to see what arrived on the chip.
"""

from __future__ import annotations

import numpy as np
import pytest

from drivers.dynapse1.netlist import InputAddress, Netlist, NeuronAddress
from drivers.dynapse1.topology import SynapseType
from emulator.virtual_board import virtual_fpga_of
from neurolab_gui.core.cancellation import Cancelled
from neurolab_gui.core.fitting.transfer_curves import TransferCurves
from neurolab_gui.core.jobs import CancelToken
from neurolab_gui.core.session_sweep import dc_sweep

CHIP, CORE = 1, 2
SETTINGS = [(5, 40), (5, 120), (5, 250), (4, 120)]


@pytest.fixture
def session(emulator_session):
    emulator_session.biases.apply_preset("samna_recommended", cores=[(CHIP, CORE)])
    return emulator_session


def test_sweep_keeps_the_users_network_and_logs_its_steps_in_the_bias_model(session):
    network = Netlist()
    network.add(InputAddress(CHIP, 9), NeuronAddress(CHIP, CORE, 17), SynapseType.AMPA, 3)
    network.add(NeuronAddress(CHIP, CORE, 17), NeuronAddress(CHIP, CORE, 40), SynapseType.GABA_B, 2)
    session.board.write_netlist(network)
    tables = virtual_fpga_of(session.board).simulator.tables
    cam_before = (tables.cam_written.copy(), tables.cam_core.copy(), tables.cam_neuron.copy(), tables.cam_type.copy())
    assert cam_before[0].sum() == 2 * 64  # both target neurons' CAMs were written (unused entries as cleared ones)
    original = session.biases.value(CHIP, CORE, "IF_DC_P")
    log_before = len(session.biases.log)
    undo_before = list(session.biases._undo)
    steps: list[TransferCurves] = []

    curves = dc_sweep(session, CHIP, CORE, SETTINGS, duration_s=0.1, on_step=steps.append)(lambda p: None, CancelToken())

    cam_after = (tables.cam_written, tables.cam_core, tables.cam_neuron, tables.cam_type)
    assert all(np.array_equal(a, b) for a, b in zip(cam_before, cam_after, strict=True))  # nothing cleared or rewritten
    assert [len(c.x) for c in steps] == [1, 2, 3, 4] and steps[-1] is not curves
    assert curves.kind == "dc" and curves.rates_hz.shape == (256, len(SETTINGS))
    assert len(curves.addresses) == 256 and curves.addresses[17] == NeuronAddress(CHIP, CORE, 17)
    median = np.median(curves.rates_hz, axis=0)
    assert median[2] > median[0]  # more DC current, faster firing
    # every step and the restore went through the bias model (undo history and change log)
    sweep_log = [c for c in session.biases.log[log_before:] if c.origin == "sweep"]
    assert len(sweep_log) == len(SETTINGS) + 1
    assert session.biases.value(CHIP, CORE, "IF_DC_P") == original
    # ... but the sweep ends where it started, so it leaves no undo step: the next undo is the
    # preset's (an undo that changed nothing would hide it)
    assert session.biases._undo == undo_before
    simulator = virtual_fpga_of(session.board).simulator
    assert simulator.get_bias(CHIP, CORE, "IF_DC_P") == (original.coarse, original.fine, original.high, original.normal, original.enabled)


def test_cancelling_mid_sweep_restores_if_dc_p_on_the_model_and_the_chip(session):
    simulator = virtual_fpga_of(session.board).simulator
    original = session.biases.value(CHIP, CORE, "IF_DC_P")
    assert (original.coarse, original.fine) not in SETTINGS  # so a restore is visible
    undo_before = list(session.biases._undo)
    steps: list[TransferCurves] = []
    cancel = CancelToken()

    def on_step(curves: TransferCurves) -> None:
        steps.append(curves)
        if len(steps) == 2:  # the user presses cancel during the second level
            cancel.cancel()

    work = dc_sweep(session, CHIP, CORE, SETTINGS, duration_s=0.05, on_step=on_step)

    with pytest.raises(Cancelled, match="sweep cancelled"):
        work(lambda p: None, cancel)

    assert len(steps) == 2  # stopped after the level in progress, not at the end
    assert session.biases.value(CHIP, CORE, "IF_DC_P") == original
    assert session.biases._undo == undo_before  # restored: no undo step that would change nothing
    assert simulator.get_bias(CHIP, CORE, "IF_DC_P")[:2] == (original.coarse, original.fine)
    assert len(session.spikes.ring) > 0  # the levels measured before the cancel reached the raster


def test_sweep_refuses_bad_requests_naming_the_problem(session):
    with pytest.raises(ValueError, match="at least one"):
        dc_sweep(session, CHIP, CORE, [])
    with pytest.raises(ValueError, match="duration_s must be a finite number > 0, got 0.0"):
        dc_sweep(session, CHIP, CORE, SETTINGS, duration_s=0.0)
    with pytest.raises(ValueError, match=r"neuron id 256 out of range 0\.\.255"):
        dc_sweep(session, CHIP, CORE, SETTINGS, neurons=[3, 256])


@pytest.mark.parametrize("kwargs, message", [
    # NaN and inf passed the builder's "<= 0" and failed on the worker with a traceback
    (dict(duration_s=float("nan")), "duration_s must be a finite number > 0, got nan"),
    (dict(duration_s=float("inf")), "duration_s must be a finite number > 0, got inf"),
    (dict(duration_s="0.1"), "duration_s must be a finite number > 0, got '0.1'"),
    # ids and settings are integers only, as the bias values are: no truncation by int()
    (dict(settings=[(3.7, 100)]), r"coarse value must be an integer 0\.\.7, got 3\.7"),
    (dict(settings=[(3, True)]), "fine value must be an integer 0..255, got the boolean True"),
    (dict(neurons=[1.5]), "neuron id must be an integer, got 1.5"),
    (dict(chip=0.9), "chip id must be an integer, got 0.9"),
    (dict(chip=True), "chip id must be an integer, got the boolean True"),
    (dict(core="0"), "core id must be an integer, got '0'"),
])
def test_sweep_refuses_non_integers_and_non_finite_durations_when_built(session, kwargs, message):
    args = dict(chip=CHIP, core=CORE, settings=SETTINGS) | kwargs
    with pytest.raises(ValueError, match=message):
        dc_sweep(session, **args)


def test_sweep_takes_numpy_integers(session):
    dc_sweep(session, np.int64(CHIP), np.uint8(CORE), [(np.int32(c), np.int64(f)) for c, f in SETTINGS],
             duration_s=np.float32(0.05), neurons=np.arange(3))
