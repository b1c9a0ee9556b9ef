"""The recipe without MLflow: an ensemble is one saved model that loads as the wrapper loads it,
and NumPy serves it as the TensorFlow graph does. (A single network's runtimes, and the
fallbacks for networks NumPy does not know: tests/integration/test_runtimes.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model_wrapper.data.synthetic import synthetic_candles
from model_wrapper.data.windows import Windows, make_windows
from model_wrapper.training.recipe import Fitted, TrainConfig, fit_recipe, scaled_inputs


@pytest.fixture(scope="module")
def windows() -> Windows:
    return make_windows(synthetic_candles(400, seed=4), 12)


@pytest.fixture(scope="module")
def ensemble(windows: Windows) -> Fitted:
    """Two members, one epoch each: training is not what is tested here."""
    return fit_recipe(windows, TrainConfig(epochs=1, ensemble=2), verbose=0)


def test_an_ensemble_saves_and_loads_as_one_model(
    ensemble: Fitted, windows: Windows, tmp_path: Path
) -> None:
    import keras

    assert len(ensemble.history) == 2
    path = tmp_path / "network.keras"
    ensemble.network.save(path)
    # As the pyfunc loads it: compile=False, nothing of this repository imported.
    loaded = keras.saving.load_model(path, compile=False)
    x = scaled_inputs(windows.x[:5], ensemble.scaler)
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(ensemble.network(x)))
    assert 0.0 <= ensemble.forecast["shrinkage"] <= 1.0
    assert ensemble.forecast["interval_level"] == 0.8


def test_numpy_serves_an_ensemble_as_the_tensorflow_graph_does(
    ensemble: Fitted, windows: Windows
) -> None:
    from model_wrapper.model.runtime import pick_runtime

    infer, backend = pick_runtime(ensemble.network, 12, 18)
    assert backend == "numpy"
    x = scaled_inputs(windows.x, ensemble.scaler)
    expected = np.asarray(ensemble.network(x, training=False))
    np.testing.assert_allclose(infer(x), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(infer(x[:1]), expected[:1], rtol=1e-5, atol=1e-6)


def test_short_fits_run_eagerly_and_long_ones_as_graphs(ensemble: Fitted) -> None:
    from model_wrapper.training.network import EAGER_MAX_STEPS, runs_eagerly

    assert runs_eagerly(300, 1, 64) and runs_eagerly(64 * EAGER_MAX_STEPS, 1, 64)
    assert not runs_eagerly(64 * EAGER_MAX_STEPS + 1, 1, 64)
    assert not runs_eagerly(3000, 30, 64)  # a real training
    # The ensemble above was fitted eagerly: its losses are real numbers.
    for history in ensemble.history:
        assert np.isfinite(history.losses["loss"]).all()
