"""Tidy tracking against a real registry: one experiment for every path into training, and runs
that end KILLED, never RUNNING, when interrupted (here: `mlflow run -e serve_pyfunc` stopped
with SIGTERM, the orphan the issue met)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from tests.helpers import Outcome, Registry, TrainedVersions, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
MLFLOW = str(Path(sys.executable).with_name("mlflow"))
# `mlflow run` runs `python` (and `mlflow models serve` runs `uvicorn`) from PATH.
VENV_PATH = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


def project_env(registry: Registry, experiment: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_EXPERIMENT")}
    return env | {
        "MLFLOW_TRACKING_URI": registry.uri,
        "MLFLOW_EXPERIMENT_NAME": experiment,
        "PATH": VENV_PATH,
    }


def test_both_training_paths_land_in_one_experiment_with_a_dataset_input(
    registry: Registry, run_cli: Callable[..., Outcome], monkeypatch: pytest.MonkeyPatch
) -> None:
    experiment, name = "btc-lstm-one-experiment", "BTC_LSTM_tracking"
    train = ("--data", "synthetic:400", "--epochs", "1", "--alias", "")
    subprocess.run(
        [MLFLOW, "run", str(ROOT), "-e", "train", "--env-manager", "local",
         "-P", "data=synthetic:400", "-P", "epochs=1", "-P", "alias=candidate",
         "-P", f"registered_model_name={name}", "-P", "learning_rate=0.01",
         "-P", "batch_size=32", "-P", "units=8", "-P", "patience=2", "-P", "seed=7",
         "-P", "end=2023-01-15"],
        env=project_env(registry, experiment), check=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    (first,) = MlflowClient().search_model_versions(f"name = '{name}'")
    check_what_training_logs(name, first.version, "candidate")
    params = MlflowClient().get_run(first.run_id).data.params
    assert {k: params[k] for k in ("learning_rate", "batch_size", "units", "patience", "seed")} == {
        "learning_rate": "0.01", "batch_size": "32", "units": "8", "patience": "2", "seed": "7"
    }  # fmt: skip
    # The demo series starts 2023-01-01 hourly: cut at the 15th's last hour, 360 candles.
    assert params["n_candles"] == "360"
    assert params["data_source"].endswith("up to 2023-01-15T23:59:59.999999+00:00")
    unknown = subprocess.run(
        [MLFLOW, "run", str(ROOT), "-e", "train", "--env-manager", "local",
         "-P", "data=synthetic:400", "-P", "learnig_rate=0.01"],
        env=project_env(registry, experiment), cwd=ROOT, timeout=300, capture_output=True,
        text=True,
    )  # fmt: skip
    assert unknown.returncode != 0
    (line,) = [x for x in unknown.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith("error: unknown parameter 'learnig_rate'; train takes ")
    assert "learning_rate" in line and "Traceback" not in unknown.stderr
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", experiment)
    try:
        result = run_cli("scripts.train", *train, "--registered-model-name", name)
    finally:
        mlflow.set_experiment("btc-lstm")  # what the other in-process tests expect
    assert result.returncode == 0, result.stderr
    client = MlflowClient()
    versions = client.search_model_versions(f"name = '{name}'")
    runs = [client.get_run(v.run_id) for v in versions]
    assert len(runs) == 2
    expected = client.get_experiment_by_name(experiment).experiment_id
    assert {r.info.experiment_id for r in runs} == {expected}
    assert {r.data.tags.get("mlflow.source.type") for r in runs} == {"PROJECT", "LOCAL"}
    for run in runs:
        (dataset,) = run.inputs.dataset_inputs
        assert dataset.dataset.name == "candles" and dataset.dataset.digest
        assert [t.value for t in dataset.tags if t.key == "mlflow.data.context"] == ["training"]


def check_what_training_logs(name: str, version_number: str, alias: str) -> None:
    """The run's metrics and report, the version's period tags, and an alias that followed the
    holdout gate whichever way this tiny model went."""
    client = MlflowClient()
    version = client.get_model_version(name, version_number)  # search leaves aliases out
    run = client.get_run(version.run_id)
    assert run.data.params["epochs"] == "1"
    for metric in (
        "holdout_mae",
        "holdout_persistence_mae",
        "holdout_mae_ratio_to_persistence",
        "holdout_interval_coverage",
        "best_epoch",
        "final_val_loss",
        "loss",
        "val_loss",
    ):
        assert metric in run.data.metrics
    assert "holdout_report.png" in [a.path for a in client.list_artifacts(run.info.run_id)]
    ratio = run.data.metrics["holdout_mae_ratio_to_persistence"]
    coverage = run.data.metrics["holdout_interval_coverage"]
    # The gate: MAE within 0.5% of persistence's and the 80% interval covering 0.75 to 0.85.
    passed = ratio <= 1.005 and abs(coverage - 0.8) <= 0.05
    assert version.tags["holdout_gate"] == ("passed" if passed else "failed")
    assert (alias in version.aliases) == passed
    assert version.tags["train_end"] and version.tags["data_digest"]


def test_a_serve_pyfunc_run_stopped_with_sigterm_ends_killed_and_stops_its_server(
    registry: Registry, trained: TrainedVersions, tmp_path: Path
) -> None:
    experiment, port = "btc-lstm-serve-pyfunc", free_port()
    log_path = tmp_path / "mlflow-run.log"
    command = [
        MLFLOW, "run", str(ROOT), "-e", "serve_pyfunc", "--env-manager", "local",
        "-P", "alias=staging", "-P", f"port={port}",
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        # Its own session, so that whatever is left can be stopped as a group at the end.
        process = subprocess.Popen(
            command,
            env=project_env(registry, experiment),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    client = MlflowClient()

    def serving() -> bool:
        assert process.poll() is None, log_path.read_text()[-3000:]
        return answers_ping(port)

    def run_status() -> str:
        (run,) = client.search_runs(
            [client.get_experiment_by_name(experiment).experiment_id],
            "tags.run_kind = 'serve_pyfunc'",
        )
        return str(run.info.status)

    try:
        wait_for(serving, 180, "mlflow run -e serve_pyfunc to serve")
        assert run_status() == "RUNNING"
        # What a process manager does: SIGTERM to `mlflow run` alone, which dies at once.
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        wait_for(lambda: run_status() != "RUNNING", 60, "the run to end")
        assert run_status() == "KILLED"  # and never FAILED on the way
        wait_for(lambda: not answers_ping(port), 60, "the server to stop")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def answers_ping(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False
