"""Everything that travels inside the MLflow model: candles, features, the LSTM and its pyfunc."""
