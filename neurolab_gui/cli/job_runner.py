"""The one way a CLI command runs its job in the foreground and reports how it ended.

``train``, ``convert``, ``deploy`` and ``robustness`` run their long work as a
:class:`~neurolab_gui.core.jobs.Job` (on a worker thread, cancelled by Ctrl-C).  :func:`run_job`
turns the job's end into what the README promises:

* the result when it finished;
* Ctrl-C (:class:`~neurolab_gui.core.cancellation.Cancelled`): the command's "cancelled" line, exit 130;
* a user error (:data:`~neurolab_gui.core.jobs.USER_ERRORS`: a refused model or setting, a
  missing file): ``error: <message>`` on stderr, exit 2, no traceback (``-v`` adds it);
* any other exception is a fault of NeuroLab: the job has already logged its traceback (ERROR),
  so it is not printed twice; ``error: ... internal error`` names it, exit 1.
"""

from __future__ import annotations

import sys
import traceback
from typing import TypeVar

from neurolab_gui.core.cancellation import Cancelled
from neurolab_gui.core.jobs import USER_ERRORS, Job, ProgressSink, run_in_foreground

T = TypeVar("T")


def run_job(job: Job[T], sink: ProgressSink | None, *, cancelled: str, verbose: int = 0,
            failures: tuple[type[BaseException], ...] = ()) -> T | int:
    """Run ``job`` in the foreground (:func:`~neurolab_gui.core.jobs.run_in_foreground`, progress to ``sink``).

    Parameters
    ----------
    job : the command's job, not started
    sink : where its progress goes
    cancelled : the line printed when Ctrl-C cancelled it (e.g. ``"conversion cancelled"``)
    verbose : the ``-v`` count; from 1 a user error's traceback is printed too
    failures : exceptions the command expects from its environment (e.g. Ray unreachable), reported
        as ``error: <message>`` with exit code 1 and no traceback printed

    Returns
    -------
    The job's result, or an exit code (130, 2 or 1) after telling the user why (none of these
    jobs returns an int).
    """
    try:
        return run_in_foreground(job, sink)
    except Cancelled:
        print(cancelled)
        return 130
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        if verbose:
            traceback.print_exc()
        return 2
    except failures as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug: its traceback is in the job's ERROR log above
        print(f"error: internal error in the {job.name} job ({type(exc).__name__}: {exc}); "
              "its traceback is logged above - please report it", file=sys.stderr)
        return 1
