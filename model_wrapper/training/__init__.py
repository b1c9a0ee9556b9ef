"""The Keras LSTM with its quantile head, the training recipe, and the training run that logs
and registers a version."""
