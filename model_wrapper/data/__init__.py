"""Candles (from CSV files or the seeded synthetic series), data sources named for MLflow, and
the windows the recipe and the evaluations cut from them."""
