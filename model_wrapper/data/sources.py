"""Where candles come from, named so that every run and version can say which data it used.

A data spec is what the command lines take: "synthetic" (the seeded demo series), "synthetic:N"
(its first N hours) or the path of a candle CSV.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from model_wrapper.data.candles import load_candles
from model_wrapper.data.synthetic import synthetic_candles
from model_wrapper.errors import UsageError

if TYPE_CHECKING:
    from mlflow.data.pandas_dataset import PandasDataset

DEMO_ROWS = 3000  # what `train` and `make run` fit on
# Evaluating "synthetic" continues the same seeded series past the demo's training period.
EVALUATION_ROWS = 4000
SYNTHETIC_SEED = 42


@dataclass(frozen=True)
class DataSource:
    source: str  # a path, or "synthetic(seed=..., rows=...)"
    candles: pd.DataFrame

    @cached_property
    def dataset(self) -> PandasDataset:
        import mlflow
        from mlflow.data.code_dataset_source import CodeDatasetSource

        origin: str | CodeDatasetSource = self.source
        if self.source.startswith("synthetic("):
            origin = CodeDatasetSource(
                {"generator": "model_wrapper.synthetic", "spec": self.source}
            )
        dataset: PandasDataset = mlflow.data.from_pandas(  # type: ignore[attr-defined]
            self.candles.reset_index(), source=origin, name="candles"
        )
        return dataset

    @property
    def digest(self) -> str:
        return str(self.dataset.digest)

    def log_input(self, context: str) -> None:
        """Record the data as an input of the active run (source, digest, rows)."""
        import mlflow

        mlflow.log_input(self.dataset, context=context)


def load_data(spec: str, default_rows: int = DEMO_ROWS, min_rows: int = 1) -> DataSource:
    """The candles a data spec names; a CSV error names the file and line."""
    if spec == "synthetic" or spec.startswith("synthetic:"):
        rows_text = spec.partition(":")[2] or str(default_rows)
        if not rows_text.isdigit() or int(rows_text) < min_rows:
            raise UsageError(
                f"data {spec!r}: expected 'synthetic' or 'synthetic:N' with N >= {min_rows} rows"
            )
        rows = int(rows_text)
        candles = synthetic_candles(rows, seed=SYNTHETIC_SEED)
        return DataSource(f"synthetic(seed={SYNTHETIC_SEED}, rows={rows})", candles)
    path = Path(spec).expanduser().resolve()
    return DataSource(str(path), load_candles(path, min_rows=min_rows))


def cut_at(data: DataSource, end: str, min_rows: int = 1) -> DataSource:
    """The candles up to and including `end` (a date or time, read as UTC): a run that must not
    see later data. The source says where it was cut, so the digest and the name agree."""
    try:
        stamp = pd.Timestamp(end)
    except ValueError:
        raise UsageError(f"end {end!r}: expected a date or time, e.g. 2023-12-31") from None
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    if len(end) <= 10:  # a date: the whole day
        stamp += pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
    candles = data.candles.loc[:stamp]
    if len(candles) < min_rows:
        raise UsageError(
            f"end {end!r} leaves {len(candles)} candles of {data.source}; need at least {min_rows}"
        )
    return DataSource(f"{data.source} up to {stamp.isoformat()}", candles)
