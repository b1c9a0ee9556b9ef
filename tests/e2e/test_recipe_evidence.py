"""`promote --evidence backtest:<run id>`: a version retrained on all the data (no window left
out of sample) is promoted on the walk-forward backtest of its own recipe, the same training
parameters and code version, whose pooled figures pass the one gate; another recipe's backtest
is refused, naming what differs. The command lines run as processes from the repository, so
that MLflow records the code version (the git commit) on both runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mlflow import MlflowClient

from model_wrapper.data.synthetic import synthetic_candles
from model_wrapper.evaluation.gate import gate
from tests.helpers import ROOT, Registry, record_figures

NAME = "BTC_LSTM_recipe"
EXPERIMENT = "btc-lstm-recipe"


def run(registry: Registry, module: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_EXPERIMENT")}
    env |= {"MLFLOW_TRACKING_URI": registry.uri, "MLFLOW_EXPERIMENT_NAME": EXPERIMENT}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_a_retrained_version_is_promoted_on_its_recipes_backtest(
    registry: Registry, tmp_path: Path
) -> None:
    csv = tmp_path / "candles.csv"
    # Seeded so that this one-epoch recipe's three periods pool to a pass (MAE 1.0007 x
    # persistence, coverage 0.815): the acceptance is what is tested; the refusals, too.
    candles = synthetic_candles(1200, seed=43)
    candles.rename_axis("timestamp").to_csv(csv)
    start = candles.index[1000].isoformat()
    backtest = run(
        registry, "scripts.backtest", "--data", str(csv), "--refit-days", "4", "--start", start,
        "--epochs", "1",
    )  # fmt: skip
    assert backtest.returncode == 0, backtest.stderr[-3000:]
    client = MlflowClient()
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    (parent,) = client.search_runs([experiment], "tags.run_kind = 'backtest'")
    same = run(registry, "scripts.train", "--data", str(csv), "--epochs", "1", "--alias", "",
               "--registered-model-name", NAME)  # fmt: skip
    other = run(registry, "scripts.train", "--data", str(csv), "--epochs", "2", "--alias", "",
                "--registered-model-name", NAME)  # fmt: skip
    assert same.returncode == other.returncode == 0, same.stderr[-2000:] + other.stderr[-2000:]
    same_version, other_version = "1", "2"
    assert (
        client.get_run(client.get_model_version(NAME, same_version).run_id).data.tags[
            "mlflow.source.git.commit"
        ]
        == parent.data.tags["mlflow.source.git.commit"]
    )

    evidence = f"backtest:{parent.info.run_id}"
    promote = ("scripts.promote", "--registered-model-name", NAME, "--to-alias", "Production",
               "--evidence", evidence)  # fmt: skip
    refused = run(registry, *promote, "--version", other_version)
    assert refused.returncode == 3, refused.stdout + refused.stderr[-2000:]
    assert "the backtest is of another recipe: epochs (2 here, 1 in the backtest) differ" in (
        refused.stdout
    )

    pooled = {
        k.removeprefix("pooled_"): v
        for k, v in parent.data.metrics.items()
        if k.startswith("pooled_")
    }
    reasons = gate(pooled, 0.8, 0.005)
    record_figures(tmp_path, "recipe_evidence", {"pooled": pooled, "gate_refusals": reasons})
    decided = run(registry, *promote, "--version", same_version)
    # The recipe is the same: only the gate on the pooled figures decides.
    assert "another recipe" not in decided.stdout
    assert decided.returncode == (3 if reasons else 0), decided.stdout + decided.stderr[-2000:]
    if reasons:
        assert all(reason in decided.stdout for reason in reasons)
    else:
        version = client.get_model_version(NAME, same_version)
        assert version.tags["promotion_evidence"] == "backtest"
        assert version.tags["promotion_backtest_run_id"] == parent.info.run_id
