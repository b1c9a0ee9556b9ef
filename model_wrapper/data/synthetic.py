"""A seeded generator of BTC-like hourly candles, the default data so everything runs offline."""

from __future__ import annotations

import numpy as np
import pandas as pd


def synthetic_candles(
    n: int = 3000,
    seed: int = 42,
    start_price: float = 30_000.0,
    start: str = "2023-01-01",
) -> pd.DataFrame:
    """Hourly candles with volatility regimes, fat tails and volume that rises with |return|.

    Returns follow a GARCH(1,1)-like variance whose long-run level switches between a calm and
    a stormy regime (a two-state Markov chain); shocks are Student-t with 4 degrees of freedom.

    The first k candles of a longer series equal a series of k candles with the same seed
    (each random stream has its own generator), so a model trained on the demo's 3,000 hours
    can be evaluated on the hours that follow them.
    """
    shock_rng, switch_rng, open_rng, wick_rng, volume_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)
    )
    calm, stormy = 0.004, 0.012  # hourly sigma of each regime
    p_switch = 0.01
    shocks = shock_rng.standard_t(df=4, size=n) / np.sqrt(2.0)  # unit variance for df=4
    switches = switch_rng.random(n) < p_switch
    stormy_now = False
    variance = calm**2
    returns = np.empty(n)
    for t in range(n):
        if switches[t]:
            stormy_now = not stormy_now
        long_run = (stormy if stormy_now else calm) ** 2
        prev = returns[t - 1] if t else 0.0
        variance = 0.05 * long_run + 0.10 * prev**2 + 0.85 * variance
        # A small mean reversion in returns gives the network something to learn.
        returns[t] = 0.00002 - 0.05 * prev + np.sqrt(variance) * shocks[t]
    close = start_price * np.exp(np.cumsum(returns))
    open_ = np.concatenate(([start_price], close[:-1])) * np.exp(open_rng.normal(0, 0.0003, n))
    sigma = np.sqrt(np.maximum(returns**2, calm**2))
    wicks = np.abs(wick_rng.normal(0, 0.5, (n, 2))) * sigma[:, None]
    high = np.maximum(open_, close) * np.exp(wicks[:, 0])
    low = np.minimum(open_, close) * np.exp(-wicks[:, 1])
    volume = 800.0 * np.exp(25.0 * np.abs(returns) + volume_rng.normal(0, 0.3, n))
    index = pd.date_range(start, periods=n, freq="h", tz="UTC", name="timestamp")
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index
    )
