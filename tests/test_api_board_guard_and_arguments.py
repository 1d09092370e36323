"""The script API: board-using workflows called directly share the one-job-per-board guard, and
the arguments a script passes are checked at the call (hostile API report, findings 4, 5, 7-10, 13).

A board run is stubbed where only the guard is under test (a real one takes seconds of chip
time); the threads meet at events set inside the stub or a sweep step, never after sleeps.
"""

from __future__ import annotations

import math
import threading
import types

import numpy as np
import pytest

from drivers.dynapse1.bias_table import LADDER
from drivers.dynapse1.topology import check_chip, check_core, check_neuron
from neurolab_gui.core import workflows
from neurolab_gui.core.jobs import BoardBusy, Job
from neurolab_gui.core.session_sweep import dc_sweep

WAIT_S = 30.0  # a bound on every rendezvous, so a broken guard fails the test instead of hanging it


class _SlowRun:
    """Stands in for ``run_deployment``: says it entered, then waits until released."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        self.calls: list[int] = []

    def __call__(self, deployment, x, y, lengths, **kwargs):
        self.calls.append(len(x))
        self.entered.set()
        assert self.release.wait(WAIT_S), "never released"
        return types.SimpleNamespace(accuracy=0.75, n=len(x))


@pytest.fixture
def deployed(emulator_session, monkeypatch):
    """A session with a (stub) deployment on its board, a five-sample test set and a slow stub run."""
    from neurolab_gui.core.conversion import deployment as deployment_module

    session = emulator_session
    session.deployment = types.SimpleNamespace(board=session.board, serial=session.board.serial, notes=[])
    session.task = types.SimpleNamespace(x_test=np.zeros((5, 3, 2)), y_test=np.zeros(5, int), lengths_test=np.full(5, 3))
    stub = _SlowRun()
    monkeypatch.setattr(deployment_module, "run_deployment", stub)
    return session, stub


def _in_thread(call) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run() -> None:
        try:
            out["result"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


# --- finding 4: one board user at a time, also for direct workflow calls -------------------------
def test_two_threads_calling_run_deployed_the_second_is_refused_and_the_first_is_unaffected(deployed):
    session, stub = deployed
    thread, out = _in_thread(lambda: workflows.run_deployed(session, n_test=2))
    assert stub.entered.wait(WAIT_S)
    with pytest.raises(BoardBusy, match="a board run is running on the board"):
        workflows.run_deployed(session, n_test=3)
    with pytest.raises(BoardBusy, match="a board run is running"):
        workflows.deploy_to_board(session)
    stub.release.set()
    thread.join(WAIT_S)
    assert "error" not in out and out["result"].accuracy == 0.75 and stub.calls == [2]
    assert session.board_jobs.running is None  # the direct call gave the slot back
    assert workflows.run_deployed(session, n_test=1).n == 1  # and the next call gets it


def test_run_deployed_inside_its_own_board_job_does_not_refuse_itself(deployed):
    session, stub = deployed
    job = session.board_jobs.start(workflows.run_job(session, n_test=4))
    assert stub.entered.wait(WAIT_S)
    with pytest.raises(BoardBusy, match="a board run is running"):  # the job holds the slot for its work
        workflows.run_deployed(session, n_test=1)
    stub.release.set()
    assert job.result(WAIT_S).accuracy == 0.75 and stub.calls == [4]


def test_direct_workflow_calls_during_a_sweep_job_are_refused_naming_the_sweep(deployed):
    session, stub = deployed
    stepped, resume = threading.Event(), threading.Event()

    def on_step(curves) -> None:  # the sweep's worker waits here, holding the board
        stepped.set()
        assert resume.wait(WAIT_S)

    settings = [(5, 40), (5, 120)]
    job = session.board_jobs.start(Job("sweep", dc_sweep(session, 0, 0, settings, 0.02, neurons=[0, 1], on_step=on_step),
                                       uses_board=True))
    assert stepped.wait(WAIT_S)
    with pytest.raises(BoardBusy, match="a sweep is running on the board"):
        workflows.run_deployed(session, n_test=1)
    with pytest.raises(BoardBusy, match="a sweep is running on the board"):  # the sweep's own work, called directly
        dc_sweep(session, 0, 1, settings, 0.02, neurons=[0])(lambda p: None, threading.Event())
    with pytest.raises(BoardBusy, match="a sweep is running on the board"):
        workflows.calibrate_cores(session, [(0, 1)])
    assert stub.calls == []  # nothing ran under the sweep
    resume.set()
    assert len(job.result(WAIT_S).x) == len(settings)  # the sweep itself finished all its levels


def test_acquisition_pauses_from_two_threads_resume_only_when_the_last_ends(emulator_session):
    connection = emulator_session.connection
    connection.start_acquisition()
    first_in, second_in, first_out, second_out = (threading.Event() for _ in range(4))

    def first() -> None:
        with connection.acquisition_paused():
            first_in.set()
            assert second_in.wait(WAIT_S)
        first_out.set()

    def second() -> None:
        assert first_in.wait(WAIT_S)
        with connection.acquisition_paused():
            second_in.set()
            assert first_out.wait(WAIT_S)
            states["while second measures"] = connection.acquiring
        second_out.set()

    states: dict = {}
    threads = [threading.Thread(target=f, daemon=True) for f in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    assert states == {"while second measures": False}  # the first to leave did not restart it under the second
    assert connection.acquiring  # the last one out did


# --- finding 5: n_test / n_train -----------------------------------------------------------------
@pytest.mark.parametrize("bad", [-1, -19, 0, 2.7, "3", True, math.nan])
def test_run_deployed_refuses_an_n_test_that_is_no_positive_integer(deployed, bad):
    session, stub = deployed
    with pytest.raises(ValueError, match="n_test must be a positive integer"):
        workflows.run_deployed(session, n_test=bad)
    with pytest.raises(ValueError, match="n_test must be a positive integer"):
        workflows.run_job(session, n_test=bad)
    assert stub.calls == [] and session.board_jobs.running is None


def test_run_deployed_takes_numpy_integers_and_none_for_all(deployed):
    session, stub = deployed
    stub.release.set()
    workflows.run_deployed(session, n_test=np.int64(2))
    workflows.run_deployed(session, n_test=None)
    assert stub.calls == [2, 5]


@pytest.mark.parametrize("bad", [-1, 0, 1.5, "10"])
def test_train_network_refuses_a_bad_n_train_before_anything_runs(session, bad):
    with pytest.raises(ValueError, match="n_train must be a positive integer"):
        workflows.train_network(session, "seq_digits", lambda: pytest.fail("built a configuration"), n_train=bad)
    with pytest.raises(ValueError, match="n_train must be a positive integer"):
        workflows.training_job(session, "seq_digits", lambda: None, n_train=bad)
    assert session.model is None


# --- finding 9: the pipeline configuration -------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    (dict(epochs=-1), "epochs must be a positive integer, got -1"),
    (dict(epochs=0), "epochs must be a positive integer, got 0"),
    (dict(qat_epochs=-3), "qat_epochs must be an integer >= 0, got -3"),
    (dict(n_test_spiking=-2), "n_test_spiking must be a positive integer, got -2"),
    (dict(stages=("bogus",)), "unknown stage.*'bogus'.*board_ideal"),
    (dict(stages="board"), "stages must be a sequence of stage names"),
    (dict(max_fan_in=0), "max_fan_in must be a positive integer, got 0"),
    (dict(n_core_groups=-1), "n_core_groups must be a positive integer"),
    (dict(n_hidden=0), "n_hidden must be a positive integer, got 0"),
    (dict(n_hidden=2.5), "n_hidden must be a positive integer, got 2.5"),
])
def test_pipeline_config_refuses_bad_choices_naming_them(kwargs, message):
    with pytest.raises(ValueError, match=message):
        workflows.pipeline_config("seq_digits", **kwargs)


def test_pipeline_config_takes_what_the_model_panel_passes():
    cfg = workflows.pipeline_config("seq_digits", n_hidden=np.int64(16), epochs=1, qat_epochs=0, n_test_spiking=3,
                                    stages=["board_ideal"], max_fan_in=63, n_core_groups=1)
    assert (cfg.n_hidden, cfg.train.epochs, cfg.constraint.qat.epochs, cfg.stages) == (16, 1, 0, ("board_ideal",))


# --- finding 10: connect -------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    (dict(mismatch="no"), "mismatch must be True or False, got 'no'"),
    (dict(mismatch=0), "mismatch must be True or False"),
    (dict(seed="abc"), "seed must be an integer >= 0, got 'abc'"),
    (dict(seed=math.nan), "seed must be an integer >= 0, got nan"),
    (dict(seed=-1), "seed must be an integer >= 0, got -1"),
    (dict(seed=2**64), r"seed must lie in 0\.\.999999999999999999"),
])
def test_connect_refuses_bad_arguments_before_anything_happens(session, kwargs, message):
    with pytest.raises(ValueError, match=message):
        session.connect("emulator", clock="fast", acquire=False, **kwargs)
    assert session.board is None and session.connection.status.state != "connecting"


def test_connect_takes_a_numpy_seed(session):
    assert session.connect("emulator", seed=np.int64(3), mismatch=np.bool_(False), clock="fast", acquire=False)
    assert session.board.serial == "EMU00003"


# --- findings 7, 8 and 13: ids, durations, bias helpers ------------------------------------------
@pytest.mark.parametrize("check, bad, message", [
    (check_chip, 1.9, "chip id must be an integer, got 1.9"),
    (check_chip, "0", "chip id must be an integer, got '0'"),
    (check_chip, True, "chip id must be an integer, got the boolean True"),
    (check_core, 2.0, "core id must be an integer, got 2.0"),
    (check_neuron, np.float64(3), "neuron id must be an integer"),
])
def test_ids_are_integers_only(check, bad, message):
    with pytest.raises(ValueError, match=message):
        check(bad)


def test_ids_take_python_and_numpy_integers():
    values = (check_chip(np.int64(3)), check_core(np.uint8(1)), check_neuron(255))
    assert values == (3, 1, 255) and all(type(v) is int for v in values)


def test_a_fractional_chip_writes_nothing(emulator_session):
    log_before = len(emulator_session.biases.log)
    with pytest.raises(ValueError, match="chip id must be an integer, got 1.9"):
        emulator_session.biases.set(1.9, 0, "IF_DC_P", 2, 40)
    assert len(emulator_session.biases.log) == log_before


@pytest.mark.parametrize("bad", [math.nan, math.inf, "0.1", -0.1, True])
def test_read_events_refuses_a_duration_that_is_no_finite_number(emulator_session, bad):
    with pytest.raises(ValueError, match="duration_s must be a finite number >= 0"):
        emulator_session.board.read_events(bad)


def test_bias_save_refuses_invalid_or_no_cores_and_writes_nothing(emulator_session, tmp_path):
    path = tmp_path / "biases.json"
    with pytest.raises(ValueError, match="chip id 9 out of range"):
        emulator_session.biases.save(path, cores=[(9, 9)])
    with pytest.raises(ValueError, match="no core to save"):
        emulator_session.biases.save(path, cores=[])
    assert not path.exists()
    emulator_session.biases.save(path, cores=[(np.int64(0), 1)])
    assert path.exists()


def test_set_current_and_ladder_index_refuse_non_numbers_clearly(emulator_session):
    parameter = emulator_session.biases.parameter(0, 0, "IF_DC_P")
    before = parameter.value
    with pytest.raises(ValueError, match="IF_DC_P: current_a must be a finite number >= 0, got '1e-9'"):
        parameter.set_current("1e-9")
    for bad in (1.5, True, "5"):
        with pytest.raises(ValueError, match="ladder index must be an integer"):
            parameter.set_ladder_index(bad)
    assert parameter.value == before
    parameter.set_ladder_index(np.int64(100))
    assert (parameter.value.coarse, parameter.value.fine) == LADDER.setting(100)
