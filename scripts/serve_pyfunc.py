"""`mlflow models serve` for a registered version, inside an MLflow run that ends when it does.

    python -m scripts.serve_pyfunc --alias staging --port 5001

The run (the `serve_pyfunc` entry point's, or a new one) records which version served; it ends
FINISHED when the server stops by itself with status 0, FAILED when it fails, and KILLED on
SIGINT/SIGTERM (to this process or, under `mlflow run`, to `mlflow run`), which also stops the
server.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess

from model_wrapper.defaults import DEFAULT_ALIAS, DEFAULT_MODEL_NAME
from scripts._cli import Interrupted, connect, fail, one_line_errors


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registered-model-name", default=DEFAULT_MODEL_NAME)
    parser.add_argument("--alias", default=DEFAULT_ALIAS)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", default="5001")
    args = parser.parse_args(argv)
    experiment = connect()
    with one_line_errors():
        import mlflow
        from mlflow import MlflowClient

        name = args.registered_model_name
        version = str(MlflowClient().get_model_version_by_alias(name, args.alias).version)
        uri = f"models:/{name}/{version}"  # the alias may move while this one serves
        if experiment:
            mlflow.set_experiment(experiment)
        tags = {"run_kind": "serve_pyfunc", "model_uri": uri, "model_alias": args.alias}
        with mlflow.start_run(tags=tags):
            mlflow.set_tags(tags)  # also when the run already existed (`mlflow run`)
            command = [
                shutil.which("mlflow") or "mlflow", "models", "serve", "-m", uri,
                "--env-manager", "local", "--host", args.host, "--port", str(args.port),
            ]  # fmt: skip
            print(f"serving {uri} (@{args.alias}) on http://{args.host}:{args.port}", flush=True)
            server = subprocess.Popen(command)
            try:
                code = server.wait()
            except Interrupted:
                server.terminate()
                try:
                    server.wait(30)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
                # Ended here, so that leaving `start_run` does not mark it FAILED first.
                mlflow.end_run("KILLED")
                raise
            if code != 0:
                mlflow.end_run("FAILED")
        if code != 0:
            fail(f"mlflow models serve exited with status {code}", code=1)


if __name__ == "__main__":
    main()
