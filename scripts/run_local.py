"""`make run`: a local MLflow registry, the demo model behind `staging`, and the gateway.

1. Uses MLFLOW_TRACKING_URI if set; otherwise reuses the local MLflow server on
   127.0.0.1:$REGISTRY_PORT (default 5000) if one answers, or starts one in the background
   (SQLite in .local/mlflow/mlflow.db, artifacts in .local/mlflow/artifacts; it keeps running
   after this script stops, log in .local/mlflow/server.log; `make stop` stops it).
2. Trains the demo model on synthetic candles and registers it behind `staging`, unless the
   alias already points at a version (`--retrain` trains a new one anyway).
3. Writes a real request to .local/predict-request.json, prints curl examples, and runs the
   gateway on 127.0.0.1:$GATEWAY_PORT (default 8000) in the foreground (Ctrl+C stops it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCAL = ROOT / ".local"
GATEWAY_HOST = "127.0.0.1"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retrain", action="store_true", help="train a new version anyway")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args(argv)

    from scripts.local_registry import ensure_local_registry, is_healthy, local_port

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported
    gateway_port = int(os.environ.get("GATEWAY_PORT", "8000"))
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri is None:
        uri = ensure_local_registry(local_port())
    elif not is_healthy(uri):
        sys.exit(f"make run: MLFLOW_TRACKING_URI={uri} does not answer /health")
    else:
        print(f"== using the MLflow server at {uri}")

    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from model_wrapper.data.sources import load_data
    from model_wrapper.defaults import DEFAULT_ALIAS, DEFAULT_EXPERIMENT, DEFAULT_MODEL_NAME
    from model_wrapper.model.features import window_from_candles
    from model_wrapper.training.recipe import TrainConfig
    from model_wrapper.training.run import train_and_register

    mlflow.set_tracking_uri(uri)
    name = os.environ.get("REGISTERED_MODEL_NAME", DEFAULT_MODEL_NAME)
    alias = os.environ.get("MODEL_ALIAS", DEFAULT_ALIAS)
    data = load_data("synthetic")
    candles = data.candles
    try:
        version = MlflowClient().get_model_version_by_alias(name, alias).version
    except MlflowException:
        version = None
    if version is None or args.retrain:
        print(f"== training the demo model ({args.epochs} epochs max) on synthetic hourly candles")
        result = train_and_register(
            data,
            TrainConfig(epochs=args.epochs),
            registered_model_name=name,
            alias=alias,
            experiment=os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT,
        )
        print(f"== registered {name} version {result.version} in {result.seconds:.0f} s")
        print(f"   {result.gate_message}")
        if not result.alias_set:
            if version is None:
                sys.exit(f"make run: @{alias} was not set, so there is nothing to serve")
            print(f"== @{alias} stays on version {version}")
        else:
            version = result.version
            print(f"== {name}@{alias} -> version {version}")
    else:
        print(f"== {name}@{alias} is version {version} (make run ARGS=--retrain for a new one)")

    request = LOCAL / "predict-request.json"
    request.parent.mkdir(exist_ok=True)
    request.write_text(
        json.dumps({"X": window_from_candles(candles), "metadata": {"request_id": "demo-1"}})
    )
    base = f"http://{GATEWAY_HOST}:{gateway_port}"
    print(
        "\n== gateway starting on " + base + "; try, from another terminal:\n"
        f"  curl -s {base}/health\n"
        f"  curl -s -X POST {base}/predict -H 'Content-Type: application/json' "
        f"-d @{request.relative_to(ROOT)}\n"
        f"  curl -s -X POST {base}/reload -H 'Content-Type: application/json' "
        f'-d \'{{"alias": "{alias}"}}\'\n',
        flush=True,
    )
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        # Lets the demo deliver callbacks to a receiver on this machine.
        "CALLBACK_ALLOWED_NETWORKS": os.environ.get("CALLBACK_ALLOWED_NETWORKS", "127.0.0.1/32"),
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
    }
    os.chdir(ROOT)
    os.execve(
        sys.executable,
        [sys.executable, "-m", "gateway", "--host", GATEWAY_HOST, "--port", str(gateway_port)],
        env,
    )


if __name__ == "__main__":
    main()
