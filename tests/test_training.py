"""The recipe without MLflow: an ensemble is one saved model that loads as the wrapper loads it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model_wrapper.synthetic import synthetic_candles
from model_wrapper.training import TrainConfig, fit_recipe, make_windows, scaled_inputs


def test_an_ensemble_saves_and_loads_as_one_model(tmp_path: Path) -> None:
    import keras

    windows = make_windows(synthetic_candles(300, seed=3), 12)
    fitted = fit_recipe(windows, TrainConfig(epochs=1, ensemble=2), verbose=0)
    assert len(fitted.history) == 2
    path = tmp_path / "network.keras"
    fitted.network.save(path)
    # As the pyfunc loads it: compile=False, nothing of this repository imported.
    loaded = keras.saving.load_model(path, compile=False)
    x = scaled_inputs(windows.x[:5], fitted.scaler)
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(fitted.network(x)))
    assert 0.0 <= fitted.forecast["shrinkage"] <= 1.0
    assert fitted.forecast["interval_level"] == 0.8
