"""Evaluate a logged model out of sample: the evidence `promote` and `wrap` act on.

A version records the period it was trained on (`train_end` in its metadata); only windows
whose target candle comes after it (and after the baseline's) are scored, beside persistence,
the EWMA-FHS interval and, when given, a baseline version such as the alias's current holder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient

from model_wrapper.data.sources import DataSource
from model_wrapper.data.windows import Windows, make_windows
from model_wrapper.errors import UsageError
from model_wrapper.evaluation.gate import gate
from model_wrapper.evaluation.metrics import compare_to_baseline, ewma_fhs_interval, score_forecasts
from model_wrapper.evaluation.reports import forecast_report
from model_wrapper.evaluation.windows_table import log_windows_table, scored_windows_table
from model_wrapper.model.transforms import LOWER, POINT, UPPER
from model_wrapper.registry.uris import parse_model_uri, resolve_version


class NoEvidence(UsageError):
    """The data holds no window after the model's training period, or the model has no period."""


@dataclass(frozen=True)
class LoadedModel:
    uri: str
    pyfunc: Any
    name: str | None  # registered model name, for models:/ URIs
    version: str | None
    train_end: pd.Timestamp | None
    seq_len: int
    interval_level: float

    def forecast(self, windows: Windows) -> dict[str, np.ndarray]:
        # float32 is what every logged signature so far accepts (and what the network reads).
        return forecast_columns(self.pyfunc.predict(windows.x.astype(np.float32)))


@dataclass(frozen=True)
class Evaluation:
    run_id: str
    metrics: dict[str, float]
    first: pd.Timestamp  # first and last target candle scored
    last: pd.Timestamp
    model: LoadedModel
    baseline: LoadedModel | None


def load(uri: str) -> LoadedModel:
    """The model behind `uri` (models:/NAME/N, models:/NAME@alias, runs:/...), with its period."""
    name = version = None
    if parse_model_uri(uri) is not None:
        name, version = resolve_version(uri)
        uri = f"models:/{name}/{version}"  # the alias may move while we work
    pyfunc = mlflow.pyfunc.load_model(uri)
    meta = pyfunc.metadata.metadata or {}
    end = meta.get("train_end")
    return LoadedModel(
        uri=uri,
        pyfunc=pyfunc,
        name=name,
        version=version,
        train_end=pd.Timestamp(end) if end else None,
        seq_len=int(meta.get("seq_len", 12)),
        interval_level=float(meta.get("forecast", {}).get("interval_level", 0.8)),
    )


def has_training_period(uri: str) -> bool:
    """Whether the model records `train_end` (reads the MLmodel file only, not the weights)."""
    info = mlflow.models.get_model_info(uri)
    return bool((info.metadata or {}).get("train_end"))


def forecast_columns(output: Any) -> dict[str, np.ndarray]:
    """A pyfunc's answer as columns; versions from before the interval return prices only."""
    if isinstance(output, pd.DataFrame):
        return {c: output[c].to_numpy(np.float64) for c in output.columns}
    return {POINT: np.asarray(output, dtype=np.float64).reshape(-1)}


def out_of_sample(data: DataSource, models: list[LoadedModel]) -> Windows:
    """The windows of `data` whose target comes after every model's training period."""
    for m in models:
        if m.train_end is None:
            raise NoEvidence(
                f"{m.uri} records no training period (train_end): it was logged before "
                "versions knew their data, so no window can be shown to be out of sample"
            )
    cutoff = max(m.train_end for m in models if m.train_end is not None)
    windows = make_windows(data.candles, models[0].seq_len)
    after = np.flatnonzero(windows.times > cutoff)
    if len(after) == 0:
        raise NoEvidence(
            f"no window of {data.source} has its target after {cutoff:%Y-%m-%d %H:%M} (the end "
            f"of the training period); the data's targets end at {windows.times[-1]:%Y-%m-%d %H:%M}"
        )
    return windows.select(after)


def evaluate(
    model_uri: str,
    data: DataSource,
    baseline_uri: str | None = None,
    experiment: str | None = None,
) -> Evaluation:
    """Score a model (and a baseline) on the out-of-sample windows of `data`; log the run."""
    model = load(model_uri)
    baseline = load(baseline_uri) if baseline_uri else None
    windows = out_of_sample(data, [model] + ([baseline] if baseline else []))
    level = model.interval_level
    columns = model.forecast(windows)
    metrics = score_forecasts(
        windows.next_close,
        windows.last_close,
        columns[POINT],
        columns.get(LOWER),
        columns.get(UPPER),
        level,
        ewma=ewma_fhs_interval(data.candles["close"], windows.times, level),
    )
    if baseline is not None:
        base = baseline.forecast(windows)
        interval = (base[LOWER], base[UPPER]) if LOWER in base else None
        metrics |= compare_to_baseline(
            windows.next_close, columns[POINT], base[POINT], interval, level
        )
    tags = {"run_kind": "evaluation", "model_uri": model.uri, "model_version": model.version or ""}
    if baseline is not None:
        tags |= {"baseline_uri": baseline.uri, "baseline_version": baseline.version or ""}
    if experiment:
        mlflow.set_experiment(experiment)
    first, last = windows.times[0], windows.times[-1]
    with mlflow.start_run(tags=tags) as run:
        mlflow.log_params(
            {
                # Not "data": `mlflow run` logs the entry point's own parameter under it.
                "data_source": data.source,
                "first_target": first.isoformat(),
                "last_target": last.isoformat(),
            }
        )
        mlflow.set_tags(tags)  # also when the run already existed (`mlflow run`)
        data.log_input("evaluation")
        finite = {k: v for k, v in metrics.items() if math.isfinite(v)}
        mlflow.log_metrics(finite)
        mlflow.log_dict(
            {
                "model_uri": model.uri,
                "baseline_uri": baseline.uri if baseline else None,
                "data": data.source,
                "data_digest": data.digest,
                "first_target": first.isoformat(),
                "last_target": last.isoformat(),
                "interval_level": level,
                "metrics": {k: (v if math.isfinite(v) else None) for k, v in metrics.items()},
            },
            "evaluation.json",
        )
        mlflow.log_figure(
            forecast_report(
                windows.times,
                windows.next_close,
                windows.last_close,
                columns[POINT],
                columns.get(LOWER),
                columns.get(UPPER),
                metrics,
                f"{model.uri} out of sample on {data.source}",
                level,
            ),
            "evaluation_report.png",
        )
        log_windows_table(scored_windows_table(windows, data.candles.index, columns))
    if model.name and model.version:
        summary = {
            "last_evaluation_run_id": run.info.run_id,
            "last_evaluation_data": data.source,
            "last_evaluation_period": f"{first:%Y-%m-%d} .. {last:%Y-%m-%d}",
            "last_evaluation_n_windows": str(len(windows)),
            "last_evaluation_mae_ratio": f"{metrics['mae_ratio_to_persistence']:.4f}",
            "last_evaluation_interval_coverage": f"{metrics['interval_coverage']:.3f}",
        }
        client = MlflowClient()
        for key, value in summary.items():
            client.set_model_version_tag(model.name, model.version, key, value)
    return Evaluation(run.info.run_id, metrics, first, last, model, baseline)


def gate_reasons(evaluation: Evaluation, tolerance: float) -> list[str]:
    """Why the evaluated model must not take the alias (the one gate); empty when it may."""
    baseline = evaluation.baseline
    return gate(
        evaluation.metrics,
        evaluation.model.interval_level,
        tolerance,
        holder=baseline.version if baseline is not None else None,
    )


def describe(evaluation: Evaluation) -> str:
    m = evaluation.metrics
    text = (
        f"{int(m['n_windows'])} windows {evaluation.first:%Y-%m-%d} .. {evaluation.last:%Y-%m-%d}: "
        f"MAE {m['mae']:.2f} USD = {m['mae_ratio_to_persistence']:.4f} x persistence "
        f"(DM p = {m['dm_pvalue_vs_persistence']:.3f}), 80% interval coverage "
        f"{m['interval_coverage']:.3f}"
    )
    if evaluation.baseline is not None:
        text += f", {m['mae_ratio_to_baseline']:.4f} x version {evaluation.baseline.version}'s MAE"
    return text + f" (evaluation run {evaluation.run_id})"
