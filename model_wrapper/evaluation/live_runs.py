"""Live figures as MLflow runs: one run per (version, role) in the project's experiment, tagged
`run_kind=live`, updated (not duplicated) by every scorecard, its figures also on the version."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from model_wrapper.evaluation.live import DEFAULT_LEVEL, LiveFigures, Scored
from model_wrapper.evaluation.panels import Forecasts
from model_wrapper.evaluation.reports import live_report

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LIVE = "live"


def find_live_run(
    client: MlflowClient, experiment_id: str, name: str, version: str, role: str
) -> str | None:
    """The live run of (name, version, role), if a scorecard made one."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.run_kind = '{LIVE}' and tags.registered_model_name = '{name}' "
            f"and tags.model_version = '{version}' and tags.role = '{role}'"
        ),
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def live_metrics(
    name: str, version: str, role: str
) -> tuple[str, dict[str, float], dict[str, str]]:
    """The live run of (name, version, role) as the last scorecard recorded it: (run id,
    metrics, tags), searched for in every experiment. UsageError when there is none."""
    from model_wrapper.errors import UsageError

    client = MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        experiments,
        filter_string=(
            f"tags.run_kind = '{LIVE}' and tags.registered_model_name = '{name}' "
            f"and tags.model_version = '{version}' and tags.role = '{role}'"
        ),
        max_results=1,
    )
    if not runs:
        raise UsageError(
            f"no live evidence for {name} version {version} as the {role} version: serve it "
            "(SHADOW_ALIAS for a challenger), let the forecasts meet their closes, and run the "
            "scorecard"
        )
    run = runs[0]
    return run.info.run_id, dict(run.data.metrics), dict(run.data.tags)


def record(
    figures: dict[tuple[str, str], LiveFigures], name: str, experiment_id: str
) -> dict[tuple[str, str], str]:
    """Writes every (version, role)'s figures into its live run (made if new) and onto the
    version; returns the run ids."""
    client = MlflowClient()
    served = {f.version: f for (_, role), f in figures.items() if role == "served"}
    ids = {}
    for key, fig in figures.items():
        run_id = find_live_run(client, experiment_id, name, fig.version, fig.role)
        tags = {
            "run_kind": LIVE,
            "registered_model_name": name,
            "model_version": fig.version,
            "model_alias": fig.alias,
            "role": fig.role,
            "mlflow.runName": f"live {name} v{fig.version} ({fig.role})",
        }
        if fig.served_version is not None:
            tags["served_version"] = fig.served_version
        if run_id is None:
            run_id = client.create_run(experiment_id, tags=tags).info.run_id
        else:
            for tag, text in tags.items():
                client.set_tag(run_id, tag, text)
        step = int(fig.metrics["live_n"])
        for metric, value in fig.metrics.items():
            if math.isfinite(value):
                client.log_metric(run_id, metric, value, step=step)
        client.log_figure(
            run_id, picture(name, fig, served.get(fig.served_version or "")), "live_report.png"
        )
        client.set_terminated(run_id, "FINISHED")
        ids[key] = run_id
        _tag_version(client, name, fig, run_id)
    return ids


def _tag_version(client: MlflowClient, name: str, fig: LiveFigures, run_id: str) -> None:
    tags = {
        "live_evaluation_run_id": run_id,
        "live_n": str(int(fig.metrics["live_n"])),
        "live_mae_ratio_to_persistence": f"{fig.metrics['live_mae_ratio_to_persistence']:.4f}",
    }
    try:
        for key, value in tags.items():
            client.set_model_version_tag(name, fig.version, key, value)
    except MlflowException:
        pass  # a version the log names that this registry does not hold: the run says it all


def picture(name: str, fig: LiveFigures, served: LiveFigures | None) -> Figure:
    level = next((s.level for s in fig.scored if s.level), None) or DEFAULT_LEVEL
    curves = [_curve(f"v{fig.version} ({fig.role})", fig.scored)]
    if fig.role == "shadow" and served is not None:
        common = {s.request_id for s in fig.scored}
        curves.append(
            _curve(
                f"v{served.version} (served), same windows",
                [s for s in served.scored if s.request_id in common],
            )
        )
    m = fig.metrics
    title = (
        f"{name} v{fig.version} live ({fig.role}, @{fig.alias}): {int(m['live_n'])} forecasts, "
        f"MAE {m['live_mae']:,.2f} USD = {m['live_mae_ratio_to_persistence']:.4f} x persistence"
    )
    if "live_mae_ratio_to_served" in m and math.isfinite(m["live_mae_ratio_to_served"]):
        title += f", {m['live_mae_ratio_to_served']:.4f} x v{fig.served_version}'s"
    return live_report(title, curves, level, forecasts=_forecasts(fig.scored, level))


def _curve(
    label: str, rows: list[Scored]
) -> tuple[str, pd.DatetimeIndex, np.ndarray, np.ndarray, np.ndarray | None]:
    rows = sorted(rows, key=lambda s: s.candle)
    actual = np.array([s.actual for s in rows])
    hits = None
    if rows and all(s.lower is not None for s in rows):
        hits = np.array([s.lower <= s.actual <= s.upper for s in rows])  # type: ignore[operator]
    return (
        label,
        pd.DatetimeIndex([s.candle for s in rows]),
        np.abs(np.array([s.forecast for s in rows]) - actual),
        np.abs(np.array([s.last_close for s in rows]) - actual),
        hits,
    )


def _forecasts(rows: list[Scored], level: float) -> Forecasts:
    """The version's own forecasts at the candles they forecast (at the window's last candle
    for rows that do not record it)."""

    def when(s: Scored) -> pd.Timestamp:
        return s.target if s.target is not None else s.candle

    rows = sorted(rows, key=when)
    banded = bool(rows) and all(s.lower is not None and s.upper is not None for s in rows)
    return Forecasts(
        pd.DatetimeIndex([when(s) for s in rows]),
        np.array([s.actual for s in rows]),
        np.array([s.last_close for s in rows]),
        np.array([s.forecast for s in rows]),
        np.array([s.lower for s in rows], dtype=np.float64) if banded else None,
        np.array([s.upper for s in rows], dtype=np.float64) if banded else None,
        level,
    )
