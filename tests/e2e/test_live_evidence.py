"""Live evidence end to end: a shadow never changes an answer; a replay through a gateway with a
champion and a shadowed challenger, scored by the scorecard, decides `promote --evidence live`;
the guard rolls a forced bad champion back and a polling gateway follows. Real gateways, a real
registry, and the project's entry points through `mlflow run`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from model_wrapper.data.synthetic import synthetic_candles
from model_wrapper.evaluation.live import read_lines
from model_wrapper.registry.aliases import move_alias
from model_wrapper.training.recipe import TrainConfig
from model_wrapper.training.run import train_and_register
from tests.helpers import (
    JSON,
    MODEL_NAME,
    ROOT,
    BadVersions,
    GatewayProcess,
    LiveGateway,
    Registry,
    TrainedVersions,
    real_windows,
    record_figures,
    wait_for,
)

MLFLOW = str(Path(sys.executable).with_name("mlflow"))
VENV_PATH = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
LIVE_MODEL = "BTC_LSTM_Live"
EXPERIMENT = "btc-lstm-live"
TRAIN_ROWS = 600
REPLAY_ROWS = 280
PREDICTIONS = 1000

RAISING_MODEL_CODE = """
import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class Raising(PythonModel):
    \"\"\"Passes the smoke test (a window of ones), raises on every real window.\"\"\"

    def predict(self, context, model_input, params=None):
        x = np.asarray(model_input, dtype=float)
        if np.all(x == 1.0):
            return pd.DataFrame({"pred_btc_close_next": np.ones(len(x))})
        raise RuntimeError("this version raises on every real window")


mlflow.models.set_model(Raising())
"""


# 1. A shadow never touches an answer ---------------------------------------------------------


@pytest.fixture(scope="module")
def raising_version(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    code = tmp_path_factory.mktemp("raising") / "raising_model.py"
    code.write_text(RAISING_MODEL_CODE)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(code),
            metadata={"seq_len": 12, "n_features": 18},
            registered_model_name=MODEL_NAME,
            pip_requirements=["mlflow"],
        )
    version = str(info.registered_model_version)
    MlflowClient().set_registered_model_alias(MODEL_NAME, "raising", version)
    return version


def answers(url: str, windows: np.ndarray, prefix: str) -> list[bytes]:
    """The body of every answer, eight requests at a time."""

    async def all_of_them() -> list[bytes]:
        limits = httpx.Limits(max_connections=8)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
            gate = asyncio.Semaphore(8)

            async def one(i: int) -> bytes:
                async with gate:
                    body = json.dumps({"X": windows[i].tolist(), "metadata": {"n": i}})
                    r = await client.post(
                        "/predict", content=body, headers={**JSON, "X-Request-ID": f"{prefix}{i}"}
                    )
                    assert r.status_code == 200, r.text
                    return r.content

            return list(await asyncio.gather(*(one(i) for i in range(len(windows)))))

    return asyncio.run(all_of_them())


def metric(gw: GatewayProcess, line_start: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in gw.http.get("/metrics").text.splitlines()
        if line.startswith(line_start)
    )


def test_a_shadow_changes_no_answer_whatever_it_does(
    live_gateway: LiveGateway,
    trained: TrainedVersions,
    bad_versions: BadVersions,
    raising_version: str,
    start_gateway: Callable[..., GatewayProcess],
    tmp_path: Path,
) -> None:
    """1,000 predictions through gateways shadowing a good version, one that raises on every
    window, and one that cannot load: every answer equals the same prediction's answer from the
    live gateway, which has no shadow."""
    windows = real_windows(PREDICTIONS, seed=202)
    expected = answers(live_gateway.url, windows, "plain-")
    log = tmp_path / "shadowed.jsonl"
    good = start_gateway({"SHADOW_ALIAS": "Production", "PREDICTION_LOG": str(log)})
    raising = start_gateway({"SHADOW_ALIAS": "raising"})
    broken = start_gateway({"SHADOW_ALIAS": "broken"})
    wait_for(lambda: good.health()["shadow"]["model_loaded"], 60, "the good shadow to load")
    wait_for(lambda: raising.health()["shadow"]["model_loaded"], 60, "the raising one to load")
    differ = {
        name: sum(a != b for a, b in zip(answers(gw.url, windows, name), expected, strict=True))
        for name, gw in (("good-", good), ("raising-", raising), ("broken-", broken))
    }
    assert broken.health()["shadow"] == {
        "model_alias": "broken",
        "model_version": None,
        "model_loaded": False,
    }
    wait_for(
        lambda: metric(raising, "gateway_shadow_failures_total{") >= PREDICTIONS,
        30,
        "the raising shadow to have tried every window",
    )

    def shadow_lines() -> list[dict[str, object]]:
        lines, _ = read_lines([log])
        return [line for line in lines if line["role"] == "shadow"]

    wait_for(lambda: len(shadow_lines()) == PREDICTIONS, 30, "a shadow line per prediction")
    lines, _ = read_lines([log])
    served = {line["request_id"]: line for line in lines if line["role"] == "served"}
    shadow = shadow_lines()
    record_figures(
        tmp_path,
        "shadow_changes_nothing",
        {
            "predictions": PREDICTIONS,
            "answers_that_differ": differ,
            "shadow_lines": len(shadow),
            "raising_failures": metric(raising, 'gateway_shadow_failures_total{reason="error"}'),
            "broken_load_failures": metric(broken, 'gateway_shadow_failures_total{reason="load"}'),
        },
    )
    assert differ == {"good-": 0, "raising-": 0, "broken-": 0}
    assert {line["request_id"] for line in shadow} == set(served)
    assert {line["model_version"] for line in shadow} == {trained.production}
    assert {line["model_version"] for line in served.values()} == {trained.staging}
    assert (
        metric(good, f'gateway_forecasts_total{{role="shadow",version="{trained.production}"}}')
        == PREDICTIONS
    )
    assert metric(raising, 'gateway_shadow_failures_total{reason="error"}') == PREDICTIONS
    assert metric(broken, 'gateway_shadow_failures_total{reason="load"}') >= 1


# 2. Live evidence decides promotion; the guard rolls back -------------------------------------


def drifting(candles: pd.DataFrame, per_candle: float) -> pd.DataFrame:
    """The candles with a steady trend added: prices grow by `per_candle` (log) every candle."""
    trend = np.exp(per_candle * np.arange(len(candles)))
    out = candles.copy()
    for column in ("open", "high", "low", "close"):
        out[column] = out[column] * trend
    return out


@dataclass(frozen=True)
class Champions:
    good: str
    drift: str
    replay_csv: Path


@pytest.fixture(scope="module")
def champions(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Champions:
    """Two versions of a model of their own: `good`, trained on the kind of candles the replay
    sends, and `drift`, trained on a steadily rising series (it forecasts a rise that never
    comes); and the replay's candles, after both training periods."""
    config = TrainConfig(epochs=2)
    train = synthetic_candles(TRAIN_ROWS, seed=11)
    good = train_and_register(train, config, LIVE_MODEL, alias=None).version
    drift = train_and_register(drifting(synthetic_candles(TRAIN_ROWS, seed=12), 0.004), config,
                               LIVE_MODEL, alias=None).version  # fmt: skip
    replay = synthetic_candles(
        REPLAY_ROWS, seed=13, start=str(train.index[-1] + pd.Timedelta(hours=1)),
        start_price=float(train["close"].iloc[-1]),
    )  # fmt: skip
    csv = tmp_path_factory.mktemp("replay") / "candles.csv"
    replay.rename_axis("timestamp").to_csv(csv)
    return Champions(good, drift, csv)


def mlflow_run(
    registry: Registry, entry_point: str, **parameters: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_EXPERIMENT")}
    env |= {
        "MLFLOW_TRACKING_URI": registry.uri,
        "MLFLOW_EXPERIMENT_NAME": EXPERIMENT,
        "PATH": VENV_PATH,
    }
    command = [MLFLOW, "run", str(ROOT), "-e", entry_point, "--env-manager", "local"]
    for key, value in parameters.items():
        command += ["-P", f"{key}={value}"]
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def check_follow_mode(registry: Registry, log: Path, csv: str, tmp_path: Path) -> None:
    """The scorecard in --follow mode serves its figures on /metrics, under the names the live
    alert rules use (deploy/monitoring/live_alerts.yml), and reads what the log gains."""
    from prometheus_client.parser import text_string_to_metric_families

    from tests.helpers import free_port, stop_process

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_EXPERIMENT")}
    env |= {"MLFLOW_TRACKING_URI": registry.uri, "MLFLOW_EXPERIMENT_NAME": EXPERIMENT}
    with open(tmp_path / "scorecard.log", "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "scripts.scorecard", "--log", str(log), "--candles", csv,
             "--registered-model-name", LIVE_MODEL, "--follow", "true", "--port", str(port),
             "--interval", "0.5"],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:

        def scraped() -> dict[str, list[object]]:
            assert process.poll() is None, (tmp_path / "scorecard.log").read_text()[-3000:]
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except httpx.TransportError:
                return {}
            return {f.name: f.samples for f in text_string_to_metric_families(text)}

        wait_for(lambda: bool(scraped().get("scorecard_recent_n")), 60, "the scorecard's gauges")
        before = {s.labels["status"]: s.value for s in scraped()["scorecard_lines"]}
        with open(log, "a") as f:  # a line the log gains: a candle the CSV does not have yet
            f.write(json.dumps({"time": "2099-01-01T00:00:00+00:00", "request_id": "late",
                                "role": "served", "model_alias": "champion",
                                "model_version": "1", "candle_time": "2099-01-01T00:00:00Z",
                                "pred_btc_close_next": 1.0}) + "\n")  # fmt: skip

        def pending() -> float:
            return next(
                s.value for s in scraped()["scorecard_lines"] if s.labels["status"] == "pending"
            )

        wait_for(lambda: pending() == before["pending"] + 1, 30, "the new line to be read")
        exported = set(scraped())
    finally:
        stop_process(process)
    rules = (ROOT / "deploy" / "monitoring" / "live_alerts.yml").read_text()
    used = set(re.findall(r"\b(scorecard_[a-z_]+)", rules))
    assert used and used <= exported, used - exported


def python_m(registry: Registry, module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """A command line as a cron job runs it (its own exit code, no `mlflow run` around it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_EXPERIMENT")}
    env |= {"MLFLOW_TRACKING_URI": registry.uri, "MLFLOW_EXPERIMENT_NAME": EXPERIMENT}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def served_by(gw: GatewayProcess, version: str, shadow: str | None) -> bool:
    health = gw.health()
    return health["model_version"] == version and (
        shadow is None or health["shadow"]["model_version"] == shadow
    )


def live_run_metrics(version: str, role: str) -> dict[str, float]:
    client = MlflowClient()
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    (run,) = client.search_runs(
        [experiment],
        f"tags.run_kind = 'live' and tags.model_version = '{version}' and tags.role = '{role}'"
        f" and tags.registered_model_name = '{LIVE_MODEL}'",
    )
    return dict(run.data.metrics)


def test_live_evidence_promotes_the_better_version_and_the_guard_rolls_a_bad_one_back(
    registry: Registry,
    champions: Champions,
    start_gateway: Callable[..., GatewayProcess],
    tmp_path: Path,
) -> None:
    move_alias(LIVE_MODEL, "champion", champions.good, moved_by="test")
    move_alias(LIVE_MODEL, "challenger", champions.drift, moved_by="test")
    log = tmp_path / "predictions.jsonl"
    gw = start_gateway(
        {
            "REGISTERED_MODEL_NAME": LIVE_MODEL,
            "MODEL_ALIAS": "champion",
            "SHADOW_ALIAS": "challenger",
            "PREDICTION_LOG": str(log),
            "MODEL_POLL_INTERVAL": "1",
        }
    )
    wait_for(lambda: served_by(gw, champions.good, champions.drift), 60, "both versions loaded")
    csv = str(champions.replay_csv)
    start = str(pd.read_csv(csv)["timestamp"].iloc[40])
    replayed = mlflow_run(registry, "replay", gateway=gw.url, candles=csv, start=start)
    assert replayed.returncode == 0, replayed.stderr[-3000:]
    wait_for(lambda: len(read_lines([log])[0]) >= 2 * (REPLAY_ROWS - 41), 30, "every line")
    scored = mlflow_run(
        registry, "scorecard", log=str(log), candles=csv, registered_model_name=LIVE_MODEL
    )
    assert scored.returncode == 0, scored.stderr[-3000:]
    bad = live_run_metrics(champions.drift, "shadow")
    # The drifting challenger loses to the champion, significantly: promote refuses it.
    assert bad["live_mae_ratio_to_served"] > 1.01
    assert bad["live_dm_pvalue_vs_served"] < 0.05
    refused = python_m(
        registry, "scripts.promote", "--evidence", "live", "--from-alias", "challenger",
        "--to-alias", "champion", "--registered-model-name", LIVE_MODEL,
    )  # fmt: skip
    assert refused.returncode == 3, refused.stdout + refused.stderr[-2000:]
    assert "refused: version" in refused.stdout
    assert (
        MlflowClient().get_model_version_by_alias(LIVE_MODEL, "champion").version == champions.good
    )

    # The good version shadowed behind the bad one: it passes.
    move_alias(LIVE_MODEL, "champion", champions.drift, moved_by="test")
    move_alias(LIVE_MODEL, "challenger", champions.good, moved_by="test")
    wait_for(lambda: served_by(gw, champions.drift, champions.good), 30, "the swap to be followed")
    subprocess.run(
        [sys.executable, "-m", "scripts.replay", "--gateway", gw.url, "--candles", csv,
         "--start", start],
        cwd=ROOT, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    wait_for(lambda: len(read_lines([log])[0]) >= 4 * (REPLAY_ROWS - 41), 30, "every line")
    rescored = mlflow_run(
        registry, "scorecard", log=str(log), candles=csv, registered_model_name=LIVE_MODEL
    )
    assert rescored.returncode == 0, rescored.stderr[-3000:]
    good = live_run_metrics(champions.good, "shadow")
    assert good["live_mae_ratio_to_served"] < 1
    check_follow_mode(registry, log, csv, tmp_path)
    # The guard judges the bad champion: a dry run changes nothing.
    guard = {"alias": "champion", "log": str(log), "candles": csv,
             "registered_model_name": LIVE_MODEL}  # fmt: skip
    dry = mlflow_run(registry, "guard", dry_run="true", **guard)
    # `mlflow run` exits 1 whatever the entry point's own code (the guard's is 4 here).
    assert dry.returncode == 1, dry.stdout + dry.stderr[-2000:]
    assert "would roll @champion back" in dry.stdout
    client = MlflowClient()
    assert client.get_model_version_by_alias(LIVE_MODEL, "champion").version == champions.drift
    # A tiny model two epochs old ties persistence by a hair: the gate's tolerance, given.
    passed = mlflow_run(registry, "promote", evidence="live", from_alias="challenger",
                        to_alias="champion", registered_model_name=LIVE_MODEL,
                        tolerance="0.01")  # fmt: skip
    assert passed.returncode == 0, passed.stdout + passed.stderr[-2000:]
    promoted = client.get_model_version(LIVE_MODEL, champions.good)
    assert promoted.tags["promotion_evidence"] == "live"
    assert promoted.tags["previous_holder.champion"] == champions.drift
    wait_for(lambda: served_by(gw, champions.good, None), 30, "the promotion to be followed")

    # A forced bad champion: the guard rolls it back, and the polling gateway follows.
    forced = mlflow_run(registry, "promote", version=champions.drift, to_alias="champion",
                        force="true", registered_model_name=LIVE_MODEL)  # fmt: skip
    assert forced.returncode == 0, forced.stderr[-2000:]
    wait_for(lambda: served_by(gw, champions.drift, None), 30, "the forced move to be followed")
    rolled = python_m(
        registry, "scripts.guard", "--alias", "champion", "--log", str(log), "--candles", csv,
        "--registered-model-name", LIVE_MODEL,
    )  # fmt: skip
    assert rolled.returncode == 4, rolled.stdout + rolled.stderr[-2000:]
    assert client.get_model_version_by_alias(LIVE_MODEL, "champion").version == champions.good
    assert (
        "guard_rolled_back.champion" in client.get_model_version(LIVE_MODEL, champions.drift).tags
    )
    wait_for(lambda: served_by(gw, champions.good, None), 5, "the gateway to follow the rollback")
    record_figures(
        tmp_path,
        "live_evidence",
        {
            "drift_as_shadow": {k: bad[k] for k in sorted(bad)},
            "good_as_shadow": {k: good[k] for k in sorted(good)},
            "refused": refused.stdout.strip().splitlines()[-2:],
            "promoted": [line for line in passed.stdout.splitlines() if "@champion" in line],
            "rolled_back": rolled.stdout.strip().splitlines()[-2:],
        },
    )
