"""Out-of-sample evidence: forecast metrics against persistence and EWMA-FHS, evaluating a
logged version, the one alias gate, walk-forward backtests, and the report pictures."""
