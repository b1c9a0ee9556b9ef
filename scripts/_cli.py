"""What every command line shares: the tracking server, the experiment, and one-line errors."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

DEFAULT_TRACKING_URI = "http://127.0.0.1:5000"
USAGE_ERROR = 2  # unknown model, alias or version; unreadable data; missing argument


def connect() -> str | None:
    """Point MLflow at MLFLOW_TRACKING_URI (or the local default); the experiment to use.

    Under `mlflow run` the run already exists (MLFLOW_RUN_ID), in the experiment the user
    chose there: None then, so the scripts log into that run.
    """
    import mlflow

    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI))
    if os.environ.get("MLFLOW_RUN_ID"):
        return None
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or "btc-lstm"


def fail(message: str, code: int = USAGE_ERROR) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Known failures (bad data, unknown names) as one line and exit 2, not a traceback."""
    from mlflow.exceptions import MlflowException

    from model_wrapper.candles import CandleFileError

    try:
        yield
    except (CandleFileError, ValueError) as e:
        fail(str(e))
    except MlflowException as e:
        fail(" ".join(e.message.split())[:300])
