"""load_candles on small CSV files in every supported layout, and on every kind of bad file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model_wrapper.data.candles import CandleFileError, load_candles

# Three hourly candles starting 2024-01-01 00:00 UTC (epoch 1704067200 s).
EPOCH_S = (1704067200, 1704070800, 1704074400)
TIMES = [pd.Timestamp(s, unit="s", tz="UTC") for s in EPOCH_S]
OHLCV = [
    (42000.5, 42100.0, 41900.25, 42050.0, 12.5),
    (42050.0, 42300.0, 42000.0, 42250.75, 0.0),  # zero volume is legal
    (42250.75, 42260.0, 41800.0, 41850.0, 30.125),
]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def ohlcv_csv(row: tuple[float, ...]) -> str:
    return ",".join(repr(x) for x in row)


def yahoo_text() -> str:
    lines = ["Date,Open,High,Low,Close,Adj Close,Volume"]
    for t, (o, h, lo, c, v) in zip(TIMES, OHLCV, strict=True):
        # Adj Close differs from Close on purpose: the loader must use Close.
        lines.append(f"{t.strftime('%Y-%m-%d %H:%M:%S')},{o},{h},{lo},{c},{c * 0.9},{v}")
    return "\n".join(lines) + "\n"


def binance_text(scale: int) -> str:
    """Binance kline rows: open time, OHLCV, close time, quote volume, trades, taker x2, ignore."""
    lines = []
    for s, row in zip(EPOCH_S, OHLCV, strict=True):
        open_time = s * scale
        close_time = (s + 3600) * scale - 1
        lines.append(f"{open_time},{ohlcv_csv(row)},{close_time},123.4,56,1.2,3.4,0")
    return "\n".join(lines) + "\n"


def generic_text(stamps: list[str]) -> str:
    lines = ["timestamp,open,high,low,close,volume"]
    lines += [f"{s},{ohlcv_csv(row)}" for s, row in zip(stamps, OHLCV, strict=True)]
    return "\n".join(lines) + "\n"


LAYOUTS = {
    "yahoo": yahoo_text(),
    "binance_ms": binance_text(1000),
    "binance_us": binance_text(1_000_000),
    "generic_iso_z": generic_text([t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in TIMES]),
    "generic_iso_naive": generic_text([t.strftime("%Y-%m-%d %H:%M:%S") for t in TIMES]),
    # Same instants written in another zone: the loader must convert to UTC.
    "generic_iso_offset": generic_text([t.tz_convert("Europe/Berlin").isoformat() for t in TIMES]),
    "generic_epoch_s": generic_text([str(s) for s in EPOCH_S]),
}


def expected_frame() -> pd.DataFrame:
    index = pd.DatetimeIndex(TIMES, name="timestamp")
    return pd.DataFrame(OHLCV, index=index, columns=["open", "high", "low", "close", "volume"])


# ---------------------------------------------------------------- good files


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_loads_the_same_candles(tmp_path: Path, layout: str) -> None:
    candles = load_candles(write(tmp_path, f"{layout}.csv", LAYOUTS[layout]))
    assert list(candles.columns) == ["open", "high", "low", "close", "volume"]
    assert all(dtype == np.float64 for dtype in candles.dtypes)
    np.testing.assert_array_equal(candles.to_numpy(), np.array(OHLCV))
    assert isinstance(candles.index, pd.DatetimeIndex)
    assert str(candles.index.tz) == "UTC"
    assert list(candles.index) == TIMES
    assert candles.index.is_monotonic_increasing


def test_all_layouts_give_identical_frames(tmp_path: Path) -> None:
    # Same dtype and index unit too, so callers can concatenate files of different layouts.
    frames = [load_candles(write(tmp_path, f"{k}.csv", v)) for k, v in LAYOUTS.items()]
    for frame in frames[1:]:
        pd.testing.assert_frame_equal(frame, frames[0])
    pd.testing.assert_frame_equal(frames[0], expected_frame(), check_index_type=False)


def test_generic_columns_may_come_in_any_order_and_case(tmp_path: Path) -> None:
    lines = [" Volume , CLOSE,low,High,open,TimeStamp"]
    for s, (o, h, lo, c, v) in zip(EPOCH_S, OHLCV, strict=True):
        lines.append(f"{v},{c},{lo},{h},{o},{s}")
    candles = load_candles(write(tmp_path, "reordered.csv", "\n".join(lines) + "\n"))
    np.testing.assert_array_equal(candles.to_numpy(), np.array(OHLCV))
    assert list(candles.index) == TIMES


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    text = LAYOUTS["generic_epoch_s"].replace("\n", "\n\n", 2) + "\n\n  \n"
    candles = load_candles(write(tmp_path, "blank.csv", text))
    np.testing.assert_array_equal(candles.to_numpy(), np.array(OHLCV))


def test_min_rows_is_met_exactly(tmp_path: Path) -> None:
    assert len(load_candles(write(tmp_path, "g.csv", LAYOUTS["generic_iso_z"]), min_rows=3)) == 3


def test_path_may_be_a_string(tmp_path: Path) -> None:
    path = write(tmp_path, "g.csv", LAYOUTS["generic_iso_z"])
    assert len(load_candles(str(path))) == 3


# ---------------------------------------------------------------- bad files

GENERIC_HEADER = "timestamp,open,high,low,close,volume"
GOOD_1 = f"{EPOCH_S[0]},{ohlcv_csv(OHLCV[0])}"
GOOD_2 = f"{EPOCH_S[1]},{ohlcv_csv(OHLCV[1])}"


def generic_with_bad_row(bad: str) -> str:
    # The bad row is always physical line 4.
    return "\n".join([GENERIC_HEADER, GOOD_1, GOOD_2, bad]) + "\n"


# (file text, line the error must name, fragments the message must contain)
BAD_FILES: dict[str, tuple[str, int, tuple[str, ...]]] = {
    "missing_volume_column": (
        "timestamp,open,high,low,close\n1704067200,1,2,0.5,1.5\n",
        1,
        ("missing columns ['volume']",),
    ),
    "missing_timestamp_column": (
        "time,open,high,low,close,volume\n1704067200,1,2,0.5,1.5,3\n",
        1,
        ("missing columns ['timestamp']",),
    ),
    "yahoo_missing_volume": (
        "Date,Open,High,Low,Close,Adj Close\n2024-01-01,1,2,0.5,1.5,1.5\n",
        1,
        ("missing columns ['volume']",),
    ),
    "unparseable_number": (
        generic_with_bad_row("1704074400,42250.75,42260,41800,4185O.0,30"),
        4,
        ("close is not a number", "'4185O.0'"),
    ),
    "empty_number": (
        generic_with_bad_row("1704074400,42250.75,,41800,41850,30"),
        4,
        ("high is not a number", "''"),
    ),
    "equal_timestamps": (
        generic_with_bad_row(f"{EPOCH_S[1]},{ohlcv_csv(OHLCV[2])}"),
        4,
        ("timestamps must increase", "2024-01-01T01:00:00+00:00 follows 2024-01-01T01:00:00"),
    ),
    "decreasing_timestamps": (
        generic_with_bad_row(f"{EPOCH_S[0]},{ohlcv_csv(OHLCV[2])}"),
        4,
        ("timestamps must increase", "2024-01-01T00:00:00+00:00 follows 2024-01-01T01:00:00"),
    ),
    "zero_price": (
        generic_with_bad_row("1704074400,0,42260,41800,41850,30"),
        4,
        ("open must be a positive price", "'0'"),
    ),
    "negative_price": (
        generic_with_bad_row("1704074400,42250,42260,-41800,41850,30"),
        4,
        ("low must be a positive price", "'-41800'"),
    ),
    "negative_volume": (
        generic_with_bad_row("1704074400,42250,42260,41800,41850,-0.5"),
        4,
        ("volume is negative", "'-0.5'"),
    ),
    "nan_price": (
        generic_with_bad_row("1704074400,42250,NaN,41800,41850,30"),
        4,
        ("high is not finite", "'NaN'"),
    ),
    "infinite_volume": (
        generic_with_bad_row("1704074400,42250,42260,41800,41850,inf"),
        4,
        ("volume is not finite", "'inf'"),
    ),
    "short_row": (
        generic_with_bad_row("1704074400,42250,42260,41800,41850"),
        4,
        ("expected 6 fields, found 5",),
    ),
    "unparseable_timestamp": (
        generic_with_bad_row("2024-01-01 25:00,42250,42260,41800,41850,30"),
        4,
        ("unparseable timestamp", "'2024-01-01 25:00'"),
    ),
    "empty_timestamp": (
        generic_with_bad_row(",42250,42260,41800,41850,30"),
        4,
        ("unparseable timestamp", "''"),
    ),
    "binance_bad_number": (
        binance_text(1000) + "1704078000000,x,2,0.5,1.5,3,1704081599999,0,0,0,0,0\n",
        4,
        ("open is not a number", "'x'"),
    ),
    "binance_short_row": (
        binance_text(1000) + "1704078000000,1,2,0.5,1.5\n",
        4,
        ("found 5",),
    ),
    # Yahoo writes "null" for days without data.
    "yahoo_null_row": (
        yahoo_text() + "2024-01-02,null,null,null,null,null,null\n",
        5,
        ("open is not a number", "'null'"),
    ),
    # A blank line must not shift the line number the error names.
    "line_number_counts_blank_lines": (
        "\n".join([GENERIC_HEADER, GOOD_1, "", GOOD_2, "1704074400,1,2,0.5,bad,3"]) + "\n",
        5,
        ("close is not a number", "'bad'"),
    ),
    "header_after_blank_lines": (
        "\n\n" + "timestamp,open,high,low\n1704067200,1,2,0.5\n",
        3,
        ("missing columns ['close', 'volume']",),
    ),
    # csv's own errors must come out as CandleFileError too, not as _csv.Error.
    "oversized_field": (
        generic_with_bad_row("1704074400,42250,42260,41800,41850," + "1" * 200_000),
        4,
        ("malformed CSV", "field larger than field limit"),
    ),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_file_names_path_line_and_problem(tmp_path: Path, case: str) -> None:
    text, line, fragments = BAD_FILES[case]
    path = write(tmp_path, f"{case}.csv", text)
    with pytest.raises(CandleFileError) as info:
        load_candles(path)
    err = info.value
    message = str(err)
    assert err.path == str(path)
    assert err.line == line
    assert message.startswith(f"{path}, line {line}: "), message
    for fragment in fragments:
        assert fragment in message, message
    assert err.problem in message


@pytest.mark.parametrize("text", ["", "\n\n", " , ,\n\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, "empty.csv", text)
    with pytest.raises(CandleFileError) as info:
        load_candles(path)
    # No line to point at: the whole file is the problem.
    assert info.value.line is None
    assert str(info.value) == f"{path}: file is empty"


def test_too_few_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "few.csv", LAYOUTS["generic_iso_z"])
    with pytest.raises(CandleFileError) as info:
        load_candles(path, min_rows=5)
    message = str(info.value)
    assert info.value.line is None
    assert message.startswith(f"{path}: too few rows")
    assert "need at least 5" in message
    assert "found 3" in message


def test_header_only_is_too_few_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "header.csv", GENERIC_HEADER + "\n")
    with pytest.raises(CandleFileError, match="found 0"):
        load_candles(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "candles.csv"
    with pytest.raises(CandleFileError) as info:
        load_candles(path)
    assert info.value.line is None
    assert str(info.value).startswith(f"{path}: cannot read file")
    assert "No such file" in str(info.value)


def test_undecodable_file(tmp_path: Path) -> None:
    path = tmp_path / "binary.csv"
    path.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(CandleFileError) as info:
        load_candles(path)
    assert str(info.value).startswith(f"{path}: cannot read file")


def test_error_is_a_value_error(tmp_path: Path) -> None:
    # Callers that catch ValueError for bad input keep working.
    path = write(tmp_path, "bad.csv", generic_with_bad_row("x,1,1,1,1,1"))
    with pytest.raises(ValueError):
        load_candles(path)


def test_yahoo_without_adj_close_and_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffDate,Open,High,Low,Close,Volume\n2024-01-01,1,2,0.5,1.5,3\n".encode())
    candles = load_candles(path)
    assert candles["close"].tolist() == [1.5]
    assert str(candles.index.tz) == "UTC"
