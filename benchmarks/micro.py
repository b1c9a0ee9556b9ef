"""In-process micro-benchmark of the wrapper, run as a child process while no server runs.

    python -m benchmarks.micro --setup DIR --out micro.json

Milliseconds per call (median over many calls, after a warm-up) for 1 and 64 windows of: the
wrapper's `forecast_unchecked` (what the gateway calls once it has enforced the version's input
contract), the loaded pyfunc's predict (the checked path: `mlflow models serve`, a notebook), the
same wrapper without MLflow's PyFuncModel layer, its inference function alone (the runtime it
chose: NumPy, XLA or a traced graph), an eager `network(x)` call, Keras `Model.predict` (the slow
path the design avoids), and MLflow's own Keras flavor loaded as a pyfunc (what (c) runs).
The wrapper's own four also run on 1,000 windows (the set-up's windows repeated: a forward pass
costs the same on any values), where throughput matters more than latency. Two more rows give
the bound: the network's matrix products alone, and with one tanh over the gates, in the NumPy
runtime's own layout and blocks. Every row carries
`windows_per_s` (batch / median); the log ends with the pyfunc's latency for one window and its
windows/s for 1,000.
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

BATCHES = (1, 64)
BULK = 1000  # windows per call for the wrapper's own cases: in-process throughput
WRAPPER_CASES = 4  # the first cases of `cases`: the wrapper's, cheap enough for BULK windows
PYFUNC_CASE = "pyfunc predict (mlflow.pyfunc.load_model; the checked path)"


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
        (PYFUNC_CASE, lambda: pyfunc.predict(raw)),
        ("wrapper predict without PyFuncModel (unwrap_python_model)",
         lambda: wrapper.predict(None, raw)),
        (f"its inference function alone ({backend}, scaled input)", lambda: wrapper._infer(pre)),
        ("eager network(x)", lambda: network(pre, training=False)),
        ("Keras Model.predict (slow path)", lambda: network.predict(pre, verbose=0)),
        ("mlflow.keras flavor as pyfunc, predict (what (c) runs)",
         lambda: keras_flavor.predict(pre)),
    ]  # fmt: skip


BOUND_PRODUCTS = "bound: the LSTM's 12 matrix products alone (float32 BLAS)"
BOUND_GATES = "bound: the products and one tanh over the gates per step"


def bound_cases(
    units: int, members: int, seq_len: int, n_features: int, n: int, block: int
) -> list[tuple[str, Callable[[], object]]]:
    """The arithmetic a forward pass cannot avoid, in the NumPy runtime's own layout (a step is
    [M, 4 units, F + units + 1] x [M, F + units + 1, N], in blocks of `block` windows): what
    bounds its windows/s on this machine."""
    rng = np.random.default_rng(0)
    step = rng.standard_normal((members, 4 * units, n_features + units + 1)).astype(np.float32)
    xh = rng.standard_normal((members, n_features + units + 1, min(n, block))).astype(np.float32)
    z = np.empty((members, 4 * units, xh.shape[-1]), np.float32)
    blocks = range(-(-n // block))

    def products() -> None:
        for _ in blocks:
            for _ in range(seq_len):
                np.matmul(step, xh, out=z)

    def gates() -> None:
        for _ in blocks:
            for _ in range(seq_len):
                np.matmul(step, xh, out=z)
                np.tanh(z, out=z)

    return [(BOUND_PRODUCTS, products), (BOUND_GATES, gates)]


def lstm_shape(network: Any) -> tuple[int, int]:
    """(units, members) of the network's LSTM layers."""
    import keras

    def lstms(layer: Any) -> list[Any]:
        if isinstance(layer, keras.layers.LSTM):
            return [layer]
        return [x for sub in getattr(layer, "layers", []) for x in lstms(sub)]

    found = lstms(network)
    return int(found[0].units), len(found)


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

    from model_wrapper.model.runtime import NUMPY_BLOCK

    units, members = lstm_shape(network)
    _, seq_len, n_features = windows.shape
    rows: list[dict[str, Any]] = []
    for n in (*BATCHES, BULK):
        raw, pre = (
            np.resize(windows, (n, *windows.shape[1:])),
            np.resize(scaled, (n, *scaled.shape[1:])),
        )
        chosen = cases(pyfunc, wrapper, network, keras_flavor, raw, pre)
        chosen = chosen if n in BATCHES else chosen[:WRAPPER_CASES]
        chosen += bound_cases(units, members, seq_len, n_features, n, NUMPY_BLOCK)
        for name, fn in chosen:
            result = time_calls(fn, args.budget)
            result["windows_per_s"] = n / (result["median_ms"] / 1000)
            log.info("%-70s n=%-4d %8.3f ms %10.0f windows/s", name, n, result["median_ms"],
                     result["windows_per_s"])  # fmt: skip
            rows.append({"name": name, "batch": n, **result})
    by = {(r["name"], r["batch"]): r for r in rows}
    log.info(
        "in-process pyfunc predict: %.3f ms for 1 window, %.0f windows/s for %d windows",
        by[PYFUNC_CASE, 1]["median_ms"], by[PYFUNC_CASE, BULK]["windows_per_s"], BULK,
    )  # fmt: skip
    args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
