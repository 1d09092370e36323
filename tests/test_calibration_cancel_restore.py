"""A cancelled calibration puts the board back as it was: the user's biases and the deployed network.

Hostile API report #2 and #3: cancelling a core calibration left ``samna_recommended`` on the
calibrated cores instead of the user's biases, and every calibration (core or network), cancelled or
finished, left the chip's connections cleared while ``session.deployment`` stayed set, so
``run_deployed`` ran an empty chip and reported accuracy 0.0.  These tests deploy a 12-unit network on
the in-process emulator, change a few biases the way a user would (flags included), cancel the job
at a fixed step through its own cancel token, and compare the bias model, the board's cache, the
emulator's own bias table and its CAM/SRAM with what they held before.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from drivers.dynapse1.bias_table import BiasValue
from emulator.virtual_board import virtual_fpga_of
from neurolab_gui.core import workflows
from neurolab_gui.core.jobs import JobState
from tests.test_calibration_engine import FAST, tiny_network

N_TEST = 4


@pytest.fixture
def deployed(emulator_session):
    """The session with the tiny network deployed (no weight matching: fast) and the user's own
    edits on top: one bias of the network's core with every flag changed, one of another core."""
    from neurolab_gui.core.conversion.pipeline import ConversionResult
    from neurolab_gui.core.conversion.report import ConversionReport

    session = emulator_session
    net, mapped, task = tiny_network()
    session.set_conversion(ConversionResult(ConversionReport("tiny"), net, mapped, matching=None))
    session.task = task
    workflows.deploy_to_board(session, use_profile=False)
    chip, core = mapped.group_cores[0]
    session.biases.apply({(chip, core, "IF_NMDA_N"): BiasValue(6, 77, high=False, normal=False, enabled=False),
                          (chip, 3, "IF_DC_P"): BiasValue(4, 9, high=False)})
    return session


def board_state(session) -> dict:
    """Every per-core bias as the bias model, the board's cache and the emulator itself hold it,
    and the emulator's connection tables."""
    board = session.board
    sim = virtual_fpga_of(board).simulator
    keys = sorted(session.biases.snapshot())
    chip = {}
    for key in keys:
        coarse, fine, high, normal, enabled = sim.get_bias(*key)
        chip[key] = BiasValue(coarse, fine, high, normal, enabled)
    tables = sim.tables
    return {"model": session.biases.snapshot(), "cache": {k: board.get_bias(*k) for k in keys}, "chip": chip,
            "connections": [a.copy() for a in (tables.cam_core, tables.cam_neuron, tables.cam_type, tables.sram)]}


def assert_same_board(before: dict, after: dict) -> None:
    for where in ("model", "cache", "chip"):
        changed = {k: (v, after[where][k]) for k, v in before[where].items() if after[where][k] != v}
        assert not changed, f"{where}: {len(changed)} biases differ, e.g. {list(changed.items())[:3]}"
    for a, b in zip(before["connections"], after["connections"], strict=True):
        assert np.array_equal(a, b), "the chip's connections are not those of the deployed network"


def cancelled_at(session, job, when) -> BaseException:
    """Start ``job`` on the session's board slot, cancel it through its own token at the first
    progress report ``when`` accepts, wait for its end; returns the exception it ended with."""
    def watch(event) -> None:
        if when(event):
            job.cancel()

    job.progress.connect(watch)
    session.board_jobs.start(job)
    assert job.wait(120)
    assert job.state == JobState.CANCELLED, job.state
    with pytest.raises(BaseException) as ended:
        job.result()
    return ended.value


def assert_runs_as_before(session, before) -> None:
    after = workflows.run_deployed(session, n_test=N_TEST)
    assert after.spiking.spikes_per_inference() == pytest.approx(before.spiking.spikes_per_inference(), rel=0.1)
    assert after.spiking.spikes_per_inference() > 10  # the network runs: an empty chip gives 0
    np.testing.assert_array_equal(after.predictions, before.predictions)


def test_a_cancelled_core_calibration_puts_back_the_users_biases_and_the_deployed_network(deployed):
    session = deployed
    ran = workflows.run_deployed(session, n_test=N_TEST)
    before = board_state(session)
    cores = workflows.calibration_cores(session)
    # after the first measurement round: the start set is written, the probe's netlist replaced the network
    cancelled_at(session, workflows.calibration_job(session, cores), lambda e: e.step == "tune core biases")
    assert_same_board(before, board_state(session))
    assert session.deployment is not None
    assert_runs_as_before(session, ran)


def test_a_finished_core_calibration_keeps_its_biases_and_the_deployed_networks_connections(deployed):
    session = deployed
    ran = workflows.run_deployed(session, n_test=N_TEST)
    before = board_state(session)
    chip, core = workflows.calibration_cores(session)[0]
    workflows.calibrate_cores(session, [(chip, core)])
    after = board_state(session)
    assert after["model"][(chip, core, "IF_RFR_N")] != before["model"][(chip, core, "IF_RFR_N")]  # calibrated
    assert after["model"][(chip, 3, "IF_DC_P")] == before["model"][(chip, 3, "IF_DC_P")]  # another core: untouched
    for a, b in zip(before["connections"], after["connections"], strict=True):
        assert np.array_equal(a, b), "the measurement's connections were left in place of the deployed network"
    # still deployed, its changed biases counted (the app's deployment line says so) ...
    assert session.deployment is not None and session.deployment_bias_changes > 0
    # ... and with its biases back it runs as before: the chip holds the network
    session.biases.apply(before["model"])
    assert_runs_as_before(session, ran)


def test_a_network_calibration_cancelled_in_the_engine_puts_back_the_deployed_network(deployed):
    session = deployed
    ran = workflows.run_deployed(session, n_test=N_TEST)
    before = board_state(session)
    # after the time-constant probe: taus tuned, probe connections on the chip
    job = workflows.network_calibration_job(session, FAST, in_the_loop=False, n_test=N_TEST)
    cancelled_at(session, job, lambda e: e.step == "tune refractory period")
    assert_same_board(before, board_state(session))
    assert_runs_as_before(session, ran)


def stand_in_engine(monkeypatch) -> None:
    """The network calibration's engine replaced by one that changes a bias and returns the
    network as it was: the workflow's own accuracy runs follow in a second, not five."""
    from neurolab_gui.core.calibration import engine

    def calibrate_network(board, mapped, net, task, config, progress=None, cancel=None):
        chip, core = mapped.group_cores[0]
        board.set_bias(chip, core, "IF_RFR_N", board.get_bias(chip, core, "IF_RFR_N").with_setting(3, 200))
        return SimpleNamespace(mapped=mapped, mapped_before=mapped, gain_cv_before=0.2, gain_cv_after=0.1,
                               inh_gain_cv_before=0.2, inh_gain_cv_after=0.1, chip_s_measurement=1.0, chip_s_loop=0.0,
                               chip_seconds_total=1.0)

    monkeypatch.setattr(engine, "calibrate_network", calibrate_network)


def test_a_network_calibration_cancelled_during_its_accuracy_runs_puts_back_the_deployed_network(deployed, monkeypatch):
    session = deployed
    ran = workflows.run_deployed(session, n_test=N_TEST)
    before = board_state(session)
    stand_in_engine(monkeypatch)
    job = workflows.network_calibration_job(session, FAST, in_the_loop=False, n_test=N_TEST)
    cancelled_at(session, job, lambda e: e.step == "run")  # the first batch of the "before" run
    assert_same_board(before, board_state(session))
    assert_runs_as_before(session, ran)


def test_a_deployed_network_that_cannot_be_written_back_is_dropped_and_the_outcome_says_so(deployed, monkeypatch, caplog):
    session = deployed
    board = session.board
    write_netlist = board.write_netlist

    def failing_rewrite(netlist):  # the probe's netlists are written; the deployed network's is refused
        if netlist is session.deployment.mapped.netlist:
            raise ConnectionError("USB transfer failed")
        return write_netlist(netlist)

    monkeypatch.setattr(board, "write_netlist", failing_rewrite)
    cores = workflows.calibration_cores(session)
    ended = cancelled_at(session, workflows.calibration_job(session, cores), lambda e: e.step == "tune core biases")
    problem = "the network deployed before could not be written back (USB transfer failed): deploy it again"
    assert str(ended) == f"calibration cancelled by the user; {problem}"
    assert problem in caplog.text  # a warning: the app's log panel shows it
    assert session.deployment is None
    with pytest.raises(RuntimeError, match="deploy the network to the connected board first"):
        workflows.run_deployed(session, n_test=N_TEST)


def test_a_network_calibration_on_a_real_time_board_has_an_eta_from_its_first_report(deployed, monkeypatch):
    """Issue 16: "progress with ETA from the first second".  Nothing of the work is done before the
    first probe run ends (about 5 s on the real-time emulator), so the first ETA is the plan's."""
    import dataclasses

    session = deployed
    connection = session.connection
    monkeypatch.setattr(connection, "_target", dataclasses.replace(connection.target, clock="realtime"))
    before = board_state(session)
    job = workflows.network_calibration_job(session, FAST, in_the_loop=False, n_test=N_TEST)
    seen = []
    job.progress.connect(seen.append)
    cancelled_at(session, job, lambda e: True)  # at the first report
    first = seen[0]
    assert first.fraction == 0.0 and first.step == "plan"
    assert 1.0 < first.eta_s < 600 and f"about {first.eta_s:.0f} s" in first.message
    assert_same_board(before, board_state(session))
