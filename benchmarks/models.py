"""Set-up, run as a child process: train and register the demo model, log the same Keras network
with MLflow's own Keras flavor, and write the request bodies every server gets.

    python -m benchmarks.models --out DIR   (MLFLOW_TRACKING_URI names the registry)

Writes DIR/models.json and, one JSON body per line:
  gateway.jsonl  {"X": window}            for the gateway and the floor
  serve.jsonl    {"inputs": [window]}     for `mlflow models serve` of the wrapper (b)
  keras.jsonl    {"inputs": [scaled]}     for the Keras flavor (c), which takes scaled inputs
  oip.jsonl      {"inputs": [{"name": "X", "shape": [64, T, F], ...}]}  for the batch route
The version also gets a second alias, the shadow the gateway-shadow run follows.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import numpy as np

from model_wrapper.data.synthetic import synthetic_candles
from model_wrapper.model.features import DEFAULT_SEQ_LEN, N_FEATURES, window_from_candles

log = logging.getLogger("benchmarks.models")

MODEL_NAME = "BTC_LSTM_Bench"
ALIAS = "bench"
SHADOW_ALIAS = "bench-shadow"  # the same version: a shadow costs the same whatever it forecasts
OIP_BATCH = 64  # windows per request on the batch route
KERAS_MODEL_NAME = "BTC_LSTM_Bench_KerasFlavor"
SEQ_LEN = DEFAULT_SEQ_LEN


def real_windows(n: int, seed: int = 100) -> np.ndarray:
    """n distinct windows from candles the model never saw, built the way clients build them."""
    candles = synthetic_candles(60 + n, seed=seed)
    return np.asarray(
        [window_from_candles(candles.iloc[: 40 + i], SEQ_LEN) for i in range(n)], np.float64
    )


def write_bodies(path: Path, bodies: list[object]) -> None:
    path.write_text("".join(json.dumps(b, separators=(",", ":")) + "\n" for b in bodies))


def oip_bodies(windows: np.ndarray, count: int = 20) -> list[object]:
    """`count` Open Inference Protocol bodies of OIP_BATCH windows each, cycling through them."""
    _, t, f = windows.shape
    bodies: list[object] = []
    for i in range(count):
        block = np.take(windows, range(i * OIP_BATCH, (i + 1) * OIP_BATCH), axis=0, mode="wrap")
        x = {"name": "X", "shape": [OIP_BATCH, t, f], "datatype": "FP64"}
        bodies.append({"inputs": [{**x, "data": block.reshape(-1).tolist()}]})
    return bodies


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.models")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--candles", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--windows", type=int, default=200)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    import keras
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    from model_wrapper.model.transforms import scale_windows
    from model_wrapper.registry.publish import pip_requirements
    from model_wrapper.training.recipe import TrainConfig
    from model_wrapper.training.run import train_and_register

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    args.out.mkdir(parents=True, exist_ok=True)

    # Serving speed does not depend on how well the network learned: a short training will do.
    config = TrainConfig(seq_len=SEQ_LEN, epochs=args.epochs)
    # Whatever its holdout says, the benchmark serves it: the gate is for real aliases.
    result = train_and_register(
        synthetic_candles(args.candles), config, MODEL_NAME, None, experiment="benchmarks"
    )
    for alias in (ALIAS, SHADOW_ALIAS):
        mlflow.MlflowClient().set_registered_model_alias(MODEL_NAME, alias, result.version)
    log.info("registered %s version %s as @%s", MODEL_NAME, result.version, ALIAS)

    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{MODEL_NAME}/{result.version}",
            dst_path=str(args.out / "pyfunc-model"),
        )
    )
    network = keras.saving.load_model(local / "artifacts" / "network.keras", compile=False)
    scaler = json.loads((local / "artifacts" / "scaler.json").read_text())

    windows = real_windows(args.windows)
    # The Keras flavor takes what the wrapper feeds its network: the wrapper's own scaling.
    scaled = scale_windows(windows, scaler["mean"], scaler["scale"]).astype(np.float32)

    # The same network as (c): what a user gets from MLflow's own flavor for a Keras 3 model.
    with mlflow.start_run(run_name="keras-flavor"):
        info = mlflow.keras.log_model(
            network,
            name="model",
            signature=ModelSignature(
                inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, SEQ_LEN, N_FEATURES))]),
                outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3))]),
            ),
            # Pinned, as the wrapper's are; inferring them would load the model once more.
            pip_requirements=pip_requirements(),
            registered_model_name=KERAS_MODEL_NAME,
        )
    keras_version = str(info.registered_model_version)
    log.info("registered %s version %s (mlflow.keras flavor)", KERAS_MODEL_NAME, keras_version)

    write_bodies(args.out / "gateway.jsonl", [{"X": w} for w in windows.tolist()])
    write_bodies(args.out / "serve.jsonl", [{"inputs": [w]} for w in windows.tolist()])
    write_bodies(args.out / "keras.jsonl", [{"inputs": [w]} for w in scaled.tolist()])
    write_bodies(args.out / "oip.jsonl", oip_bodies(windows))
    np.save(args.out / "windows.npy", windows)
    np.save(args.out / "scaled.npy", scaled)
    (args.out / "models.json").write_text(
        json.dumps(
            {
                "model_name": MODEL_NAME,
                "version": result.version,
                "alias": ALIAS,
                "shadow_alias": SHADOW_ALIAS,
                "oip_batch": OIP_BATCH,
                "keras_model_name": KERAS_MODEL_NAME,
                "keras_version": keras_version,
                "pyfunc_dir": str(local),
                "candles": args.candles,
                "epochs": args.epochs,
                "train_seconds": result.seconds,
                "holdout_mae_usd": result.metrics.get("holdout_mae"),
                "windows": len(windows),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
