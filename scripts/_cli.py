"""What every command line shares: the tracking server, the experiment, one-line errors, and
runs that end KILLED when the command is interrupted."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import NoReturn

USAGE_ERROR = 2  # unknown model, alias or version; unreadable data; missing argument
# MLflow's Default experiment, where `mlflow run` puts a run when told no experiment.
DEFAULT_EXPERIMENT_ID = "0"


def connect() -> str | None:
    """Point MLflow at MLFLOW_TRACKING_URI (or the local default); the experiment to use.

    Under `mlflow run` the run already exists (MLFLOW_RUN_ID), in the experiment `mlflow run`
    chose before this process started: None then, so the scripts log into that run.
    """
    import mlflow

    from model_wrapper.defaults import DEFAULT_EXPERIMENT, DEFAULT_TRACKING_URI

    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI))
    if os.environ.get("MLFLOW_RUN_ID"):
        if os.environ.get("MLFLOW_EXPERIMENT_ID") == DEFAULT_EXPERIMENT_ID:
            # A run cannot move between experiments, and `mlflow run` reads no experiment from
            # MLproject: all a script can do is say so.
            print(
                "note: `mlflow run` put this run in the Default experiment; pass "
                f"--experiment-name {DEFAULT_EXPERIMENT} (or export MLFLOW_EXPERIMENT_NAME="
                f"{DEFAULT_EXPERIMENT}) to keep the project's runs in one experiment",
                file=sys.stderr,
            )
        return None
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT


def fail(message: str, code: int = USAGE_ERROR) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


class Interrupted(BaseException):
    """SIGINT or SIGTERM, raised in the main thread; carries the run that was active."""

    def __init__(self, signum: int, run_id: str | None) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.run_id = run_id


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Usage errors as one line and exit 2, not a traceback: a UsageError (bad data, no
    evidence), candles the features refuse, and MLflow's answer for a model, alias or version
    that does not exist. Anything else is a bug and keeps its traceback (exit 1).

    SIGINT and SIGTERM end the MLflow run in progress KILLED (`mlflow.start_run()` alone would
    leave FAILED after an exception, and RUNNING after a plain SIGTERM) and exit 128 + signal.
    """
    from mlflow.exceptions import MlflowException

    from model_wrapper.errors import UsageError
    from model_wrapper.model.features import CandlesRefused

    with _interruptible():
        try:
            yield
        except Interrupted as e:
            _end_killed(e)
        except (UsageError, CandlesRefused) as e:
            fail(str(e))
        except MlflowException as e:
            if e.error_code not in _UNKNOWN_NAME:
                raise
            fail(" ".join(e.message.split())[:300])


# What MLflow answers for a model, alias or version that does not exist.
_UNKNOWN_NAME = frozenset(("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"))


@contextmanager
def _interruptible() -> Iterator[None]:
    # Under `mlflow run` the run is created by the parent `mlflow run` process, which dies on
    # SIGTERM without telling this one: when the parent goes, act as if the signal came here.
    launched_by_mlflow_run = bool(os.environ.get("MLFLOW_RUN_ID"))

    def interrupt(signum: int, frame: FrameType | None) -> None:
        import mlflow

        run = mlflow.active_run()
        raise Interrupted(signum, run.info.run_id if run else os.environ.get("MLFLOW_RUN_ID"))

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    parent, stop = os.getppid(), threading.Event()
    if launched_by_mlflow_run:
        threading.Thread(target=_watch_parent, args=(parent, stop), daemon=True).start()
    try:
        yield
    finally:
        stop.set()
        for s, handler in previous.items():
            signal.signal(s, handler)


def _watch_parent(parent: int, stop: threading.Event) -> None:
    while not stop.wait(0.5):
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
            return


def _end_killed(e: Interrupted) -> NoReturn:
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_DFL)  # a second signal stops at once
    if e.run_id:
        from mlflow import MlflowClient

        MlflowClient().set_terminated(e.run_id, "KILLED")
    ended = f": run {e.run_id} ended KILLED" if e.run_id else ""
    print(f"interrupted by {signal.Signals(e.signum).name}{ended}", file=sys.stderr)
    sys.exit(128 + e.signum)
