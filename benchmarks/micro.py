"""In-process micro-benchmark of the wrapper, run as a child process while no server runs.

    python -m benchmarks.micro --setup DIR --out micro.json

Milliseconds per call (median over many calls, after a warm-up) for 1 and 64 windows of: the
wrapper's `forecast_unchecked` (what the gateway calls once it has enforced the version's input
contract), the loaded pyfunc's predict (the checked path: `mlflow models serve`, a notebook), the
same wrapper without MLflow's PyFuncModel layer, its inference function alone (the runtime it
chose: NumPy, XLA or a traced graph), an eager `network(x)` call, Keras `Model.predict` (the slow
path the design avoids), and MLflow's own Keras flavor loaded as a pyfunc (what (c) runs).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("benchmarks.micro")


def time_calls(
    fn: Callable[[], object], budget_s: float, min_calls: int = 20, max_calls: int = 2000
) -> dict[str, float]:
    for _ in range(5):  # first calls trace, allocate and fill caches
        fn()
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < max_calls and (len(times) < min_calls or time.perf_counter() < deadline):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    times.sort()
    return {
        "median_ms": 1000 * statistics.median(times),
        "p90_ms": 1000 * times[int(0.9 * (len(times) - 1))],
        "calls": len(times),
    }


def cases(
    pyfunc: Any, wrapper: Any, network: Any, keras_flavor: Any, raw: np.ndarray, pre: np.ndarray
) -> list[tuple[str, Callable[[], object]]]:
    """What to time: `raw` windows for the wrapper, `pre` (already scaled) for the bare network."""
    backend = getattr(wrapper, "backend", "tf.function")  # "numpy", "xla" or "graph"
    checked = raw.astype(np.float64)  # as the gateway passes windows that met the contract
    return [
        ("wrapper forecast_unchecked (what the gateway calls)",
         lambda: wrapper.forecast_unchecked(checked)),
        ("pyfunc predict (mlflow.pyfunc.load_model; the checked path)",
         lambda: pyfunc.predict(raw)),
        ("wrapper predict without PyFuncModel (unwrap_python_model)",
         lambda: wrapper.predict(None, raw)),
        (f"its inference function alone ({backend}, scaled input)", lambda: wrapper._infer(pre)),
        ("eager network(x)", lambda: network(pre, training=False)),
        ("Keras Model.predict (slow path)", lambda: network.predict(pre, verbose=0)),
        ("mlflow.keras flavor as pyfunc, predict (what (c) runs)",
         lambda: keras_flavor.predict(pre)),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.micro")
    parser.add_argument("--setup", type=Path, required=True, help="benchmarks.models --out DIR")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--budget", type=float, default=2.0, help="seconds per measurement")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    import keras
    import mlflow

    setup = json.loads((args.setup / "models.json").read_text())
    windows = np.load(args.setup / "windows.npy").astype(np.float32)
    scaled = np.load(args.setup / "scaled.npy")
    pyfunc_dir = Path(setup["pyfunc_dir"])

    pyfunc = mlflow.pyfunc.load_model(str(pyfunc_dir))
    wrapper: Any = pyfunc.unwrap_python_model()
    network = keras.saving.load_model(pyfunc_dir / "artifacts" / "network.keras", compile=False)
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    (args.setup / "keras-model").mkdir(exist_ok=True)
    keras_flavor = mlflow.pyfunc.load_model(
        f"models:/{setup['keras_model_name']}/{setup['keras_version']}",
        dst_path=str(args.setup / "keras-model"),
    )

    rows: list[dict[str, Any]] = []
    for n in (1, 64):
        for name, fn in cases(pyfunc, wrapper, network, keras_flavor, windows[:n], scaled[:n]):
            result = time_calls(fn, args.budget)
            log.info("%-70s n=%-3d %8.3f ms", name, n, result["median_ms"])
            rows.append({"name": name, "batch": n, **result})
    args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
