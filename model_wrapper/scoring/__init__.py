"""Batch scoring: every complete window of a candle history through a registered version."""
