"""Windows from candles, for `predict(candles)`: the model's own feature code, loaded from its file.

The feature code is `model_wrapper/model/features.py`, the code every version carries (numpy and
pandas only). The client loads that one file by path, under a name of its own, rather than
importing the `model_wrapper` package: the gateway and its client depend on no part of the
training stack, and a window is cut exactly as the model's code cuts it.
"""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

_MODULE = "gateway_client_features"
# The project installs both packages side by side (from a checkout or a wheel alike).
FEATURES_FILE = Path(__file__).resolve().parents[2] / "model_wrapper" / "model" / "features.py"


@cache
def feature_code() -> ModuleType:
    """The model's feature module, loaded once from its file."""
    if not FEATURES_FILE.exists():
        raise RuntimeError(
            f"predict(candles) needs the model's feature code ({FEATURES_FILE}, installed with "
            "this project); pass a [T, F] window instead"
        )
    module_spec = importlib.util.spec_from_file_location(_MODULE, FEATURES_FILE)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[_MODULE] = module  # dataclasses and pickling look modules up by name
    module_spec.loader.exec_module(module)
    return module


def window_from_candles(candles: pd.DataFrame, seq_len: int) -> list[list[float]]:
    """The [T, F] window for the latest candles (see features.window_from_candles)."""
    window: list[list[float]] = feature_code().window_from_candles(candles, seq_len)
    return window


def last_candle_time(candles: pd.DataFrame) -> str | None:
    """The time of the last candle, ISO 8601 in UTC, when the candles carry their times (a
    DatetimeIndex, as the project's loaders give, or a `time` column)."""
    import pandas as pd

    if isinstance(candles.index, pd.DatetimeIndex) and len(candles.index):
        when = candles.index[-1]
    elif "time" in candles.columns and len(candles):
        when = pd.Timestamp(candles["time"].iloc[-1])
    else:
        return None
    stamp = pd.Timestamp(when)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return str(stamp.isoformat())
