"""Replay candles through a gateway as a live client would: one window per candle, in time order,
each with its `candle_time`, so that the scorecard can match every forecast to its close.

    python -m scripts.replay --gateway http://127.0.0.1:8000 --candles BTC-USD.csv \
        --start 2023-01-01 [--end 2024-03-31] [--rate 50]

The windows are cut from the whole history before each candle (the model's feature code, as
`GatewayClient.predict(candles)` cuts them), posted as fast as the gateway answers unless --rate
(requests per second) says otherwise. Prints what it sent and what came back; a refused window
(a 4xx) is counted, not retried.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from model_wrapper.data.candles import load_candles
from model_wrapper.errors import UsageError
from model_wrapper.model.features import DEFAULT_SEQ_LEN, compute_features, min_candles
from scripts._cli import fail


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", required=True, help="the gateway's base URL")
    parser.add_argument("--candles", required=True, help="a candle CSV (Yahoo, Binance, generic)")
    parser.add_argument("--start", required=True, help="the first candle to forecast from")
    parser.add_argument("--end", default="", help="the last one (default: the file's last)")
    parser.add_argument("--rate", type=float, default=0.0, help="requests per second (0: no cap)")
    parser.add_argument("--seq-len", type=int, default=DEFAULT_SEQ_LEN)
    args = parser.parse_args(argv)
    from gateway.client import GatewayClient, GatewayError

    try:
        windows = replay_windows(
            load_candles(args.candles), args.seq_len, args.start, args.end or None
        )
    except UsageError as e:
        fail(str(e))
    sent = refused = 0
    pause = 1 / args.rate if args.rate > 0 else 0.0
    started = time.monotonic()
    with GatewayClient(args.gateway, timeout=30) as gateway:
        for when, window in windows:
            if pause:
                time.sleep(max(0.0, started + sent * pause - time.monotonic()))
            try:
                gateway.predict(window, metadata={"candle_time": when.isoformat()})
            except GatewayError as e:
                if e.status_code is None or e.status_code >= 500:
                    fail(f"{when:%Y-%m-%d %H:%M}: {e}", code=1)
                refused += 1
            sent += 1
    seconds = time.monotonic() - started
    print(f"replayed {sent} windows ({refused} refused) in {seconds:.1f} s")


def replay_windows(
    candles: pd.DataFrame, seq_len: int, start: str, end: str | None
) -> list[tuple[pd.Timestamp, list[list[float]]]]:
    """(time of the window's last candle, the [T, F] window) for every candle from start to
    end. Every feature uses past candles only, so the rows of one pass over the whole history
    are the windows each prefix would give (window_from_candles on candles up to that one)."""
    features = compute_features(candles)
    index = pd.DatetimeIndex(features.index)
    first, last = _utc(start), _utc(end) if end else index[-1]
    rows = features.to_numpy(dtype="float64")
    out = []
    for i in range(seq_len - 1, len(rows)):
        when = index[i]
        if first <= when <= last:
            out.append((when, [[float(v) for v in row] for row in rows[i - seq_len + 1 : i + 1]]))
    if not out:
        raise UsageError(
            f"no candle from {start} to {end or 'the end'} has the {min_candles(seq_len)} candles "
            f"of history a window needs (the file spans {candles.index[0]:%Y-%m-%d} .. "
            f"{candles.index[-1]:%Y-%m-%d})"
        )
    return out


def _utc(text: str) -> pd.Timestamp:
    when = pd.Timestamp(text)
    return when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")


if __name__ == "__main__":
    main()
