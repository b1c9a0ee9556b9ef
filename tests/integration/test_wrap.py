"""`wrap`: a new wrapper version around an already trained network, against a real registry."""

from __future__ import annotations

from collections.abc import Callable

import mlflow
import numpy as np
from mlflow import MlflowClient

from tests.helpers import MODEL_NAME, Outcome, TrainedVersions, real_windows

WRAPPED = "BTC_LSTM_wrapped"


def test_wrap_logs_a_new_version_with_lineage_the_same_outputs_and_no_training(
    trained: TrainedVersions, run_cli: Callable[..., Outcome]
) -> None:
    client = MlflowClient()
    source = client.get_model_version(MODEL_NAME, trained.staging)
    result = run_cli(
        "scripts.wrap", "--source", f"models:/{MODEL_NAME}@staging", "--registered-model-name",
        WRAPPED, "--alias", "rewrapped", "--data", "synthetic:600",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "max abs difference" in result.stdout and "(the same)" in result.stdout
    assert "evaluated out of sample" in result.stdout

    new = client.get_model_version_by_alias(WRAPPED, "rewrapped")
    assert new.tags["wrapped_from_version"] == trained.staging
    assert new.tags["wrapped_from_run_id"] == source.run_id
    assert new.tags["source_model_uri"] == f"models:/{MODEL_NAME}/{trained.staging}"
    for tag in ("data_source", "data_digest", "train_start", "train_end"):
        assert new.tags[tag] == source.tags[tag]
    assert new.description.startswith(f"Re-wrapped from models:/{MODEL_NAME}/{trained.staging}")
    assert "last_evaluation_run_id" in new.tags  # --data evaluated the new version

    # The same network, scaler and metadata: the same forecasts, the same evidence.
    old_model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{trained.staging}")
    new_model = mlflow.pyfunc.load_model(f"models:/{WRAPPED}/{new.version}")
    assert new_model.metadata.metadata == old_model.metadata.metadata
    x = real_windows(5)
    np.testing.assert_allclose(
        new_model.predict(x).to_numpy(), old_model.predict(x).to_numpy(), rtol=1e-6
    )

    run = client.get_run(new.run_id)
    source_run = client.get_run(source.run_id)
    assert run.data.tags["run_kind"] == "wrap"
    assert run.data.tags["source_run_id"] == source.run_id
    assert run.data.params["source.epochs"] == source_run.data.params["epochs"]
    assert run.data.metrics["source.holdout_mae"] == source_run.data.metrics["holdout_mae"]
    assert run.data.metrics["max_abs_diff_vs_source"] <= 1e-6 * float(x[0, -1, 3])
    # No training: no loss curve.
    assert client.get_metric_history(run.info.run_id, "loss") == []
    assert not {"loss", "val_loss", "best_epoch"} & set(run.data.metrics)


def test_wrap_names_an_unknown_source_in_one_line(
    trained: TrainedVersions, run_cli: Callable[..., Outcome]
) -> None:
    unknown = run_cli("scripts.wrap", "--source", f"models:/{MODEL_NAME}@no_such_alias")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("error: ") and unknown.stderr.count("\n") == 1
    assert "no_such_alias" in unknown.stderr
    not_registered = run_cli("scripts.wrap", "--source", "runs:/0123/model")
    assert not_registered.returncode == 2
    assert "models:/NAME/N or models:/NAME@alias" in not_registered.stderr
