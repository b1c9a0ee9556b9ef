"""Evidence before alias moves, against a real mlflow server and real entry points: versions
record their data and period, `evaluate` scores only windows after it, `promote` gates on it,
`train` gates its own alias, `backtest` refits period by period."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from model_wrapper.data.sources import DataSource, load_data
from model_wrapper.data.synthetic import synthetic_candles
from model_wrapper.evaluation.windows_table import WINDOW_COLUMNS, WINDOWS_ARTIFACT
from model_wrapper.model.features import window_from_candles
from model_wrapper.model.transforms import LOWER, OUTPUT_COLUMNS, POINT
from model_wrapper.training.recipe import TrainConfig
from model_wrapper.training.run import train_and_register
from tests.helpers import Outcome, Registry

NAME = "BTC_LSTM_evidence"
ROWS, TRAIN_ROWS = 1000, 700
CONFIG = TrainConfig(epochs=20)  # converged enough that the good one earns its alias
BAD_CONFIG = TrainConfig(epochs=1)  # its MAE is ~2.7x persistence's whatever the epochs (1 to 20)
METRICS = {
    "n_windows",
    "mae",
    "rmse",
    "mape",
    "directional_accuracy",
    "persistence_mae",
    "persistence_rmse",
    "mae_ratio_to_persistence",
    "dm_pvalue_vs_persistence",
    "interval_coverage",
    "interval_mean_width_pct",
    "interval_pinball_loss",
    "ewma_interval_coverage",
    "ewma_interval_pinball_loss",
}


def write_yahoo_csv(candles: pd.DataFrame, path: Path) -> Path:
    """Candles in the layout Yahoo Finance exports (what a user downloads)."""
    frame = pd.DataFrame(
        {
            "Date": candles.index.strftime("%Y-%m-%d"),
            "Open": candles["open"].to_numpy(),
            "High": candles["high"].to_numpy(),
            "Low": candles["low"].to_numpy(),
            "Close": candles["close"].to_numpy(),
            "Adj Close": candles["close"].to_numpy(),
            "Volume": candles["volume"].to_numpy(),
        }
    )
    frame.to_csv(path, index=False)
    return path


def daily(candles: pd.DataFrame, start: str) -> pd.DataFrame:
    return candles.set_axis(
        pd.date_range(start, periods=len(candles), freq="D", tz="UTC", name="timestamp")
    )


def drifting_candles(n: int, start: str) -> pd.DataFrame:
    """A series that rises 1% a day like clockwork: a model fitted to it forecasts a rise."""
    rng = np.random.default_rng(5)
    close = 100 * np.exp(0.01 * np.arange(1, n + 1) + rng.normal(0, 0.001, n))
    open_ = np.concatenate(([100.0], close[:-1]))
    return daily(
        pd.DataFrame(
            {
                "open": open_,
                "high": np.maximum(open_, close) * 1.001,
                "low": np.minimum(open_, close) * 0.999,
                "close": close,
                "volume": rng.uniform(900, 1100, n),
            }
        ),
        start,
    )


@dataclass(frozen=True)
class Evidence:
    full_csv: Path  # ROWS daily candles
    train_csv: Path  # the first TRAIN_ROWS of them
    good: str  # trained on train_csv
    bad: str  # trained on a steady climb that ended before the CSV's period


@pytest.fixture(scope="module")
def evidence(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Evidence:
    folder = tmp_path_factory.mktemp("evidence")
    candles = daily(synthetic_candles(ROWS, seed=21), "2019-01-01")
    full = write_yahoo_csv(candles, folder / "BTC-USD.csv")
    part = write_yahoo_csv(candles.iloc[:TRAIN_ROWS], folder / "BTC-USD-until-2020-11.csv")
    good = train_and_register(load_data(str(part)), CONFIG, NAME, alias=None)
    climb = DataSource("steady climb", drifting_candles(400, "2017-01-01"))
    bad = train_and_register(climb, BAD_CONFIG, NAME, alias=None)
    return Evidence(full, part, good.version, bad.version)


def test_a_version_records_its_data_and_period(evidence: Evidence) -> None:
    client = MlflowClient()
    version = client.get_model_version(NAME, evidence.good)
    candles = load_data(str(evidence.train_csv)).candles
    assert pd.Timestamp(version.tags["train_end"]) == candles.index[-1]
    assert pd.Timestamp(version.tags["train_start"]) > candles.index[0]  # after the warm-up
    assert version.tags["data_source"] == str(evidence.train_csv)
    assert f"Trained on {evidence.train_csv}" in version.description
    run = client.get_run(version.run_id)
    (dataset,) = [i.dataset for i in run.inputs.dataset_inputs]
    assert dataset.digest == version.tags["data_digest"]
    assert json.loads(dataset.source) == {"uri": str(evidence.train_csv)}


def windows_table(client: MlflowClient, run_id: str, folder: Path) -> pd.DataFrame:
    return pd.read_parquet(client.download_artifacts(run_id, WINDOWS_ARTIFACT, str(folder)))


def test_evaluate_scores_only_windows_after_the_training_period(
    evidence: Evidence, run_cli: Callable[..., Outcome], tmp_path: Path
) -> None:
    client = MlflowClient()
    uri = f"models:/{NAME}/{evidence.good}"
    result = run_cli("scripts.evaluate", "--model", uri, "--data", str(evidence.full_csv))
    assert result.returncode == 0, result.stderr
    (run,) = client.search_runs(
        [client.get_experiment_by_name("btc-lstm").experiment_id],
        f"tags.run_kind = 'evaluation' and tags.model_version = '{evidence.good}'",
    )
    train_end = pd.Timestamp(client.get_model_version(NAME, evidence.good).tags["train_end"])
    after = load_data(str(evidence.full_csv)).candles.index > train_end
    assert set(run.data.metrics) >= METRICS
    assert run.data.metrics["n_windows"] == after.sum() == ROWS - TRAIN_ROWS
    assert pd.Timestamp(run.data.params["first_target"]) > train_end
    assert run.data.tags["model_uri"] == uri
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"evaluation.json", "evaluation_report.png"} <= artifacts
    # One row per scored window, in time order, each with the forecast the version answers for
    # that window (built here the way a client builds it, from the candles up to its last).
    table = windows_table(client, run.info.run_id, tmp_path)
    candles = load_data(str(evidence.full_csv)).candles
    assert tuple(table.columns) == WINDOW_COLUMNS
    assert len(table) == run.data.metrics["n_windows"]
    assert table["time"].is_monotonic_increasing and table["time"].is_unique
    assert list(table["target_time"]) == list(candles.index[after])
    assert list(table["time"]) == list(candles.index[TRAIN_ROWS - 1 : -1])
    np.testing.assert_array_equal(table["actual_close"], candles["close"].to_numpy()[after])
    np.testing.assert_array_equal(
        table["last_close"], candles["close"].to_numpy()[TRAIN_ROWS - 1 : -1]
    )
    pyfunc = mlflow.pyfunc.load_model(uri)
    seq_len = int(pyfunc.metadata.metadata["seq_len"])
    x = np.asarray([window_from_candles(candles.loc[:t], seq_len) for t in table["time"]])
    answer = pyfunc.predict(x.astype(np.float32))
    for column in OUTPUT_COLUMNS:
        np.testing.assert_allclose(table[column], answer[column], rtol=1e-9)
    assert (table[LOWER] < table["pred_interval_upper"]).all()
    mae = np.mean(np.abs(table[POINT] - table["actual_close"]))
    assert mae == pytest.approx(run.data.metrics["mae"], rel=1e-9)
    report = json.loads(
        Path(
            client.download_artifacts(run.info.run_id, "evaluation.json", str(tmp_path))
        ).read_text()
    )
    assert report["metrics"]["mae"] == pytest.approx(run.data.metrics["mae"])
    version = client.get_model_version(NAME, evidence.good)
    assert version.tags["last_evaluation_run_id"] == run.info.run_id


def test_evaluate_refuses_data_inside_the_training_period(
    evidence: Evidence, run_cli: Callable[..., Outcome]
) -> None:
    result = run_cli(
        "scripts.evaluate", "--model", f"models:/{NAME}/{evidence.good}", "--data",
        str(evidence.train_csv),
    )  # fmt: skip
    assert result.returncode == 2
    assert "has its target after" in result.stderr and "Traceback" not in result.stderr


def test_promote_refuses_a_bad_candidate_records_a_forced_move_then_passes_a_good_one(
    evidence: Evidence, run_cli: Callable[..., Outcome]
) -> None:
    client = MlflowClient()
    alias, data = "evidence_champion", str(evidence.full_csv)
    promote = ("scripts.promote", "--registered-model-name", NAME, "--to-alias", alias)
    refused = run_cli(*promote, "--version", evidence.bad, "--data", data)
    assert refused.returncode == 3, refused.stderr
    assert f"refused: version {evidence.bad} stays off @{alias}" in refused.stdout
    assert "x persistence's" in refused.stdout
    with pytest.raises(MlflowException):
        client.get_model_version_by_alias(NAME, alias)  # unchanged: it never existed

    forced = run_cli(*promote, "--version", evidence.bad, "--data", data, "--force", "true")
    assert forced.returncode == 0, forced.stderr
    champion = client.get_model_version_by_alias(NAME, alias)
    assert champion.version == evidence.bad
    assert champion.tags["promotion_forced"] == "true"
    assert float(champion.tags["promotion_mae_ratio_to_persistence"]) > 1.005
    assert "FORCED onto @evidence_champion" in champion.description

    passed = run_cli(*promote, "--version", evidence.good, "--data", data)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    holder = client.get_model_version_by_alias(NAME, alias)
    assert holder.version == evidence.good
    assert holder.tags["promotion_forced"] == "false"
    assert float(holder.tags["promotion_mae_ratio_to_champion"]) < 1
    assert float(holder.tags["promotion_mae_ratio_to_persistence"]) <= 1.005
    assert f"promoted to @{alias}" in holder.description


def test_promote_needs_data_and_names_unknown_aliases_in_one_line(
    evidence: Evidence, run_cli: Callable[..., Outcome]
) -> None:
    base = ("scripts.promote", "--registered-model-name", NAME, "--to-alias", "x")
    no_data = run_cli(*base, "--version", evidence.good)
    assert no_data.returncode == 2 and "promote needs --data" in no_data.stderr
    unknown = run_cli(*base, "--from-alias", "no_such_alias", "--data", "synthetic")
    assert unknown.returncode == 2
    assert unknown.stderr.count("\n") == 1 and "no_such_alias" in unknown.stderr
    assert unknown.stderr.startswith("error: ")


def test_train_registers_but_keeps_the_alias_when_the_holdout_gate_fails(
    evidence: Evidence, run_cli: Callable[..., Outcome]
) -> None:
    client = MlflowClient()
    # A negative tolerance no model can meet: the gate must refuse, the version must remain.
    result = run_cli(
        "scripts.train", "--data", str(evidence.train_csv), "--epochs", "1", "--alias",
        "gated", "--tolerance", "-0.5", "--registered-model-name", NAME,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "@gated left where it was" in result.stdout
    with pytest.raises(MlflowException):
        client.get_model_version_by_alias(NAME, "gated")
    newest = max(client.search_model_versions(f"name = '{NAME}'"), key=lambda v: int(v.version))
    assert newest.tags["holdout_gate"] == "failed"


def test_backtest_refits_before_every_period(
    evidence: Evidence, run_cli: Callable[..., Outcome], tmp_path: Path
) -> None:
    """The backtest command line in this process (TensorFlow is loaded once; `mlflow run`
    itself is tested with `train` and `serve_pyfunc` in tests/e2e/test_tracking.py, and every entry
    point's command against its script in tests/unit/test_project_files.py)."""
    client = MlflowClient()
    candles = load_data(str(evidence.full_csv)).candles
    start = candles.index[ROWS - 120]
    result = run_cli(
        "scripts.backtest", "--data", str(evidence.full_csv), "--refit-days", "60",
        "--start", f"{start:%Y-%m-%d}", "--epochs", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    experiment = client.get_experiment_by_name("btc-lstm").experiment_id
    (parent,) = client.search_runs([experiment], "tags.run_kind = 'backtest'")
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == 2
    table = windows_table(client, parent.info.run_id, tmp_path)
    assert tuple(table.columns) == (*WINDOW_COLUMNS, "fold", "seed")
    assert len(table) == 120
    assert table["time"].is_monotonic_increasing and table["time"].is_unique
    assert list(table["target_time"]) == list(candles.index[ROWS - 120 :])
    np.testing.assert_array_equal(table["actual_close"], candles["close"].to_numpy()[ROWS - 120 :])
    assert set(table["seed"]) == {42}
    for child in children:
        # Each period's model saw only targets before the period.
        train_end = pd.Timestamp(child.data.params["train_end"])
        period_start = pd.Timestamp(child.data.params["period_start"], tz="UTC")
        assert train_end < period_start
        # Its rows in the table are its windows, with the forecasts it was scored on.
        rows = table[table["fold"] == int(child.data.params["fold"])]
        assert len(rows) == child.data.metrics["n_windows"]
        assert (rows["target_time"] >= period_start).all() and (rows["time"] >= train_end).all()
        mae = np.mean(np.abs(rows[POINT] - rows["actual_close"]))
        assert mae == pytest.approx(child.data.metrics["mae"], rel=1e-9)
    assert sum(c.data.metrics["n_windows"] for c in children) == 120
    assert parent.data.metrics["pooled_n_windows"] == 120
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"backtest.csv", "backtest.png"} <= artifacts


def test_train_moves_its_alias_only_past_a_holder_it_can_compare_with(
    registry: Registry,
) -> None:
    """A version trained on older data never replaces one trained on newer (no window is out
    of sample for both: train says so and leaves the alias); against a holder trained on older
    data, the holdout windows after the holder's period compare them."""
    name, client = "BTC_LSTM_holder", MlflowClient()
    config = TrainConfig(epochs=1)
    early = synthetic_candles(500, seed=31, start="2020-01-01")
    late = synthetic_candles(
        500, seed=32, start="2020-03-01", start_price=float(early["close"].iloc[-1])
    )
    newer = train_and_register(late, config, name, alias=None).version
    client.set_registered_model_alias(name, "fresh", newer)
    older = train_and_register(early, config, name, alias="fresh", tolerance=10.0)
    assert not older.alias_set
    assert "cannot be compared" in older.gate_message
    assert client.get_model_version_by_alias(name, "fresh").version == newer

    client.set_registered_model_alias(name, "aged", older.version)
    later = train_and_register(late, config, name, alias="aged", tolerance=10.0)
    # The whole holdout comes after the older holder's period: every window compares them.
    holdout = int(client.get_run(later.run_id).data.params["n_holdout"])
    assert later.metrics["holdout_n_shared_with_holder"] == holdout
    assert later.metrics["holdout_mae_ratio_to_baseline"] > 0
    assert f"x version {older.version}'s (the holder of @aged)" in later.gate_message
    moved = client.get_model_version_by_alias(name, "aged").version == later.version
    assert moved == later.alias_set
    if moved:
        tags = client.get_model_version(name, later.version).tags
        assert tags["previous_holder.aged"] == older.version
