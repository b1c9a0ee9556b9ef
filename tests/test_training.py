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


def test_every_runtime_equals_the_tensorflow_graph_on_real_windows() -> None:
    """NumPy serves what this project trains (one network or an ensemble); anything else falls
    back to XLA or the plain graph. Each agrees with TensorFlow within 1e-5."""
    import keras

    from model_wrapper.pyfunc import _compile, numpy_forward

    windows = make_windows(synthetic_candles(400, seed=4), 12)
    for ensemble in (1, 2):
        fitted = fit_recipe(windows, TrainConfig(epochs=1, ensemble=ensemble), verbose=0)
        infer, backend = _compile(fitted.network, 12, 18)
        assert backend == "numpy"
        x = scaled_inputs(windows.x, fitted.scaler)
        expected = np.asarray(fitted.network(x, training=False))
        np.testing.assert_allclose(infer(x), expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(infer(x[:1]), expected[:1], rtol=1e-5, atol=1e-6)

    other = keras.Sequential([keras.Input((12, 18)), keras.layers.GRU(8), keras.layers.Dense(3)])
    assert numpy_forward(other) is None
    infer, backend = _compile(other, 12, 18)
    assert backend in ("xla", "graph")
    x = scaled_inputs(windows.x[:20], fitted.scaler)
    np.testing.assert_allclose(np.asarray(infer(x)), np.asarray(other(x)), rtol=1e-5, atol=1e-6)
