"""Batch scoring throughput, run as a child process while no server runs: the `score` entry
point's job (`model_wrapper.scoring.score`: candles -> windows -> `spark_udf` -> Parquet) on an
embedded Spark, twice on the same candles.

    python -m benchmarks.batch --setup DIR --out batch.json [--windows 100000] [--master local[2]]

The first run includes starting Spark (its JVM and Python workers); the second reuses the
session, which is what a long-lived job or a cluster pays per batch. Each row gives the seconds
from candles to the Parquet written and the windows per second.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

log = logging.getLogger("benchmarks.batch")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.batch")
    parser.add_argument("--setup", type=Path, required=True, help="benchmarks.models --out DIR")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--windows", type=int, default=100_000)
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    import mlflow

    from model_wrapper.data.sources import DataSource
    from model_wrapper.data.synthetic import synthetic_candles
    from model_wrapper.model.features import DEFAULT_SEQ_LEN, WARMUP
    from model_wrapper.scoring.spark import score

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    setup = json.loads((args.setup / "models.json").read_text())
    uri = f"models:/{setup['model_name']}/{setup['version']}"
    candles = synthetic_candles(args.windows + DEFAULT_SEQ_LEN + WARMUP - 1, seed=5)
    data = DataSource(source=f"synthetic(seed=5, rows={len(candles)})", candles=candles)
    rows = []
    for run in ("first (Spark started)", "second (Spark warm)"):
        started = time.perf_counter()
        scored = score(uri, data, str(args.setup / "scores.parquet"), args.master, "benchmarks")
        wall = time.perf_counter() - started
        rows.append(
            {"run": run, "windows": scored.rows, "seconds": wall,
             "windows_per_s": scored.rows / wall, "master": args.master}
        )  # fmt: skip
        log.info("score %s: %d windows in %.1f s, %.0f windows/s", run, scored.rows, wall,
                 scored.rows / wall)  # fmt: skip
    args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
