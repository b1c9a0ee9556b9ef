"""Load OHLCV candles from the CSV layouts people actually have.

Every loader returns a DataFrame indexed by UTC timestamp with float columns
open, high, low, close, volume, in strictly increasing time order. A bad file raises
CandleFileError naming the file, the line and the problem.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from model_wrapper.errors import UsageError
from model_wrapper.model.features import CANDLE_COLUMNS

# "Adj Close" is optional: it is never used, and many exports leave it out.
YAHOO_HEADER = ("date", "open", "high", "low", "close", "volume")
GENERIC_HEADER = ("timestamp", "open", "high", "low", "close", "volume")
BINANCE_COLUMNS = 12  # open time, OHLCV, close time, quote volume, trades, taker x2, ignore


class CandleFileError(UsageError, ValueError):
    def __init__(self, path: Path | str, line: int | None, problem: str) -> None:
        where = f"{path}, line {line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")
        self.path, self.line, self.problem = str(path), line, problem


def load_candles(path: str | Path, min_rows: int = 1) -> pd.DataFrame:
    """Detect the layout (Yahoo, Binance kline, generic) from the first line and load it."""
    path = Path(path)
    # Blank lines are skipped, so remember each row's physical line number for the errors.
    rows: list[tuple[int, list[str]]] = []
    try:
        # utf-8-sig: spreadsheet exports ("CSV UTF-8") start with a byte-order mark.
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            try:
                start = 1
                for row in reader:
                    if any(cell.strip() for cell in row):
                        rows.append((start, row))
                    start = reader.line_num + 1
            except csv.Error as e:
                raise CandleFileError(path, reader.line_num, f"malformed CSV: {e}") from e
    except (OSError, UnicodeDecodeError) as e:
        raise CandleFileError(path, None, f"cannot read file: {e}") from e
    if not rows:
        raise CandleFileError(path, None, "file is empty")
    header_line, first_row = rows[0]
    header = tuple(cell.strip().lower() for cell in first_row)
    if _is_number(first_row[0]):
        candles = _parse(path, rows, layout="binance")
    elif header[:1] == ("date",):
        candles = _parse(path, rows[1:], layout="yahoo", header=header, header_line=header_line)
    else:
        candles = _parse(path, rows[1:], layout="generic", header=header, header_line=header_line)
    if len(candles) < min_rows:
        raise CandleFileError(
            path, None, f"too few rows: need at least {min_rows} candles, found {len(candles)}"
        )
    return candles


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse(
    path: Path,
    rows: list[tuple[int, list[str]]],
    layout: str,
    header: tuple[str, ...] = (),
    header_line: int = 1,
) -> pd.DataFrame:
    if layout == "binance":
        time_col, cols = 0, {"open": 1, "high": 2, "low": 3, "close": 4, "volume": 5}
        width = 6
    else:
        expected = YAHOO_HEADER if layout == "yahoo" else GENERIC_HEADER
        missing = [name for name in expected if name not in header]
        if missing:
            raise CandleFileError(
                path,
                header_line,
                f"missing columns {missing}; expected a header like {','.join(expected)} "
                f"(Yahoo: Date,Open,High,Low,Close,Adj Close,Volume), got {','.join(header)}",
            )
        time_col = header.index(expected[0])
        cols = {name: header.index(name) for name in CANDLE_COLUMNS}
        width = len(header)

    times: list[pd.Timestamp] = []
    values = np.empty((len(rows), len(CANDLE_COLUMNS)), dtype="float64")
    for i, (line, row) in enumerate(rows):
        if len(row) < width:
            raise CandleFileError(path, line, f"expected {width} fields, found {len(row)}")
        times.append(_parse_time(path, line, row[time_col].strip(), layout))
        for j, name in enumerate(CANDLE_COLUMNS):
            text = row[cols[name]].strip()
            try:
                value = float(text)
            except ValueError:
                raise CandleFileError(path, line, f"{name} is not a number: {text!r}") from None
            if not np.isfinite(value):
                raise CandleFileError(path, line, f"{name} is not finite: {text!r}")
            if name == "volume" and value < 0:
                raise CandleFileError(path, line, f"volume is negative: {text!r}")
            if name != "volume" and value <= 0:
                raise CandleFileError(path, line, f"{name} must be a positive price: {text!r}")
            values[i, j] = value
        if i and times[i] <= times[i - 1]:
            raise CandleFileError(
                path,
                line,
                f"timestamps must increase: {times[i].isoformat()} follows "
                f"{times[i - 1].isoformat()}",
            )
    index = pd.DatetimeIndex(times, name="timestamp")
    return pd.DataFrame(values, index=index, columns=list(CANDLE_COLUMNS))


def _parse_time(path: Path, line: int, text: str, layout: str) -> pd.Timestamp:
    try:
        if _is_number(text):
            number = float(text)
            # Binance spot klines moved from milliseconds to microseconds in 2025;
            # epoch seconds are common in generic files.
            unit = "us" if number > 1e14 else "ms" if number > 1e11 else "s"
            return pd.Timestamp(int(number), unit=unit, tz="UTC")
        ts = pd.Timestamp(text)
    except (ValueError, OverflowError):
        raise CandleFileError(path, line, f"unparseable timestamp: {text!r}") from None
    if ts is pd.NaT:
        raise CandleFileError(path, line, f"unparseable timestamp: {text!r}")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
