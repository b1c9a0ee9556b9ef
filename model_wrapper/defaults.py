"""The project's defaults, spelled once: what the command lines, training and the registry code
use when told nothing else. (The gateway declares its own, the spec's, in gateway/settings.py; a
test keeps the two in agreement.)"""

from __future__ import annotations

DEFAULT_TRACKING_URI = "http://127.0.0.1:5000"
DEFAULT_EXPERIMENT = "btc-lstm"
DEFAULT_MODEL_NAME = "BTC_LSTM_Production"
DEFAULT_ALIAS = "staging"
# How much worse than persistence (in MAE) a version may be and still get an alias.
DEFAULT_TOLERANCE = 0.005
