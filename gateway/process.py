"""Process-wide set-up for a gateway process, done by its entry points (`python -m gateway`,
`gateway.app:app_from_environ`), never by create_app: an app built inside tests or another
program leaves the process as it found it."""

from __future__ import annotations

import os
import warnings

from gateway.logs import configure_logging
from gateway.settings import Settings


def prepare_process(settings: Settings, log_level: str = "info") -> None:
    import mlflow  # here, not at import: a bad setting stops start-up without paying for it

    configure_logging(settings.log_format, log_level)
    # MLflow nags on every load of a version whose predict has no type hints (those logged
    # before the wrapper's got one); the wrapper's own check is the contract, so it is noise.
    warnings.filterwarnings("ignore", message=".*type hint", category=UserWarning)
    # MLflow's own default is not the spec's: set it from settings, once.
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    # The MLflow client retries a dead registry for minutes by default; start-up retries and
    # /reload errors should take seconds. Operators can still override both.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    # TensorFlow reads these when it starts (at the first model load). Its default pools spin
    # a thread per core; one thread each leaves the other core to the event loop, which is what
    # limits throughput (BENCHMARKS.md).
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    # The same for NumPy's BLAS, which has started its pool already (at import): a product
    # large enough to be split (a shadow's batch, a busy batcher's) wakes a second thread that
    # then spins on the event loop's core. With a shadow on, one thread took the served c=1
    # p50 from 1.38x to 0.85x shadow-off (make bench). Unless the operator chose a count.
    if not any(os.environ.get(v) for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")):
        from threadpoolctl import threadpool_limits

        threadpool_limits(1, user_api="blas")
