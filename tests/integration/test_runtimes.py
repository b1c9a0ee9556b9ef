"""Which runtime serves the network: each one the wrapper may pick equals the TensorFlow graph
within 1e-5 on real windows, for one network and for an averaged ensemble, and when one fails to
convert or disagrees, the next one serves. (NumPy on a trained ensemble:
tests/integration/test_training.py; its arithmetic without TensorFlow, for every architecture
the artifact can hold: tests/unit/test_numpy_forward.py.)"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from model_wrapper.data.synthetic import synthetic_candles
from model_wrapper.data.windows import make_windows
from model_wrapper.model import runtime as pyfunc
from model_wrapper.model.features import N_FEATURES
from model_wrapper.training.network import build_network
from model_wrapper.training.recipe import average_networks, fit_scaler, scaled_inputs
from tests.helpers import SEQ_LEN


@pytest.fixture(scope="module", params=["one network", "an ensemble of three"])
def network(request: pytest.FixtureRequest) -> Any:
    """Untrained networks of the project's architecture, alone or averaged as `fit_recipe`
    averages an ensemble: their weights are as good as any for comparing runtimes, and no
    training is needed."""
    import keras

    members = []
    for member in range(1 if request.param == "one network" else 3):
        keras.utils.set_random_seed(5 + member)
        members.append(
            build_network(SEQ_LEN, N_FEATURES, units=8, name=f"m{member}", compile=False)
        )
    return average_networks(members, SEQ_LEN, N_FEATURES)


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    """Real windows, scaled as the wrapper scales them: the network's real inputs (in the
    memory order `scale_windows` answers in, which the wrapper hands to its runtime)."""
    windows = make_windows(synthetic_candles(200, seed=6), SEQ_LEN)
    return scaled_inputs(windows.x, fit_scaler(windows.x, windows.target))


def graph_outputs(network: Any, x: np.ndarray) -> np.ndarray:
    return np.asarray(network(np.ascontiguousarray(x), training=False))


def assert_serves_like_the_graph(infer: Any, network: Any, x: np.ndarray) -> None:
    for n in (1, 3, 64, len(x)):
        for batch in (x[:n], np.ascontiguousarray(x[:n])):
            got = np.asarray(pyfunc_run(infer, batch))
            np.testing.assert_allclose(got, graph_outputs(network, batch), rtol=1e-5, atol=1e-6)
    probe = pyfunc._probe(SEQ_LEN, N_FEATURES)
    got = np.asarray(pyfunc_run(infer, probe))
    np.testing.assert_allclose(got, graph_outputs(network, probe), rtol=1e-5, atol=1e-6)


def pyfunc_run(infer: Any, chunk: np.ndarray) -> np.ndarray:
    """In chunks of at most 64 windows, as the wrapper's _prices runs a batch."""
    out = [np.asarray(infer(chunk[i : i + 64])) for i in range(0, len(chunk), 64)]
    return np.concatenate(out)


@pytest.fixture
def no_numpy_forward(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(pyfunc, "numpy_forward", lambda network: None)
    yield


@pytest.fixture
def no_xla(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A platform where XLA fails to compile."""
    import tensorflow as tf

    real_function = tf.function

    def without_xla(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("jit_compile"):
            raise RuntimeError("XLA is not available on this platform")
        return real_function(*args, **kwargs)

    monkeypatch.setattr(tf, "function", without_xla)
    yield


def test_numpy_serves_what_the_project_trains(network: Any, x: np.ndarray) -> None:
    infer, runtime = pyfunc.pick_runtime(network, SEQ_LEN, N_FEATURES)
    assert runtime == "numpy"
    assert_serves_like_the_graph(infer, network, x)


def test_numpy_declines_a_network_it_does_not_know() -> None:
    """Its forward pass is hand-written for this project's layers; any other network is left to
    XLA or the graph (which `no_numpy_forward` stands in for below)."""
    import keras

    other = keras.Sequential([keras.Input((12, 18)), keras.layers.GRU(8), keras.layers.Dense(3)])
    assert pyfunc.numpy_forward(other) is None
    assert pyfunc.verified_numpy_weights(other, 12, 18) is None


def other_architectures() -> dict[str, Any]:
    """Networks `numpy_weights` knows besides the project's: NumPy must serve them exactly too,
    or not at all."""
    import keras

    keras.utils.set_random_seed(7)
    inputs = keras.Input((SEQ_LEN, N_FEATURES))

    def lstm(units: int, *dense: tuple[int, str]) -> Any:
        layers = [keras.layers.Dense(w, activation=a) for w, a in dense]
        return keras.Sequential(
            [keras.Input((SEQ_LEN, N_FEATURES)), keras.layers.LSTM(units), *layers]
        )

    relu_out = [lstm(6, (3, "relu")), lstm(6, (3, "relu"))]
    return {
        "members of different widths": average_networks(
            [
                build_network(SEQ_LEN, N_FEATURES, units=u, name=f"w{u}", compile=False)
                for u in (8, 12)
            ],
            SEQ_LEN,
            N_FEATURES,
        ),
        "an ensemble with a relu output": keras.Model(
            inputs, keras.layers.Average()([m(inputs) for m in relu_out])
        ),
        "the LSTM alone": lstm(5),
        "two hidden layers": lstm(10, (8, "relu"), (4, "relu"), (2, "linear")),
    }


def test_numpy_serves_every_architecture_it_knows_exactly(x: np.ndarray) -> None:
    for name, network in other_architectures().items():
        infer, runtime = pyfunc.pick_runtime(network, SEQ_LEN, N_FEATURES)
        assert runtime == "numpy", name
        assert_serves_like_the_graph(infer, network, x)


def test_a_numpy_forward_that_disagrees_is_not_served(
    network: Any, x: np.ndarray, no_xla: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(Without XLA, so that the graph serves: compiling XLA for every batch bucket is the
    slow part of the test below, and which runtime comes next is not what is tested here.)"""

    def off_by_a_little(network: Any) -> Any:
        return lambda batch: graph_outputs(network, batch) * (1 + 1e-3)

    monkeypatch.setattr(pyfunc, "numpy_forward", off_by_a_little)
    infer, runtime = pyfunc.pick_runtime(network, SEQ_LEN, N_FEATURES)
    assert runtime == "graph"
    assert_serves_like_the_graph(infer, network, x)


def test_xla_when_numpy_cannot_serve(network: Any, x: np.ndarray, no_numpy_forward: None) -> None:
    infer, runtime = pyfunc.pick_runtime(network, SEQ_LEN, N_FEATURES)
    assert runtime == "xla"  # XLA compiles on this platform (Linux x86-64 CPU)
    assert_serves_like_the_graph(infer, network, x)


def test_the_graph_when_xla_fails_to_compile(
    network: Any, x: np.ndarray, no_numpy_forward: None, no_xla: None
) -> None:
    infer, runtime = pyfunc.pick_runtime(network, SEQ_LEN, N_FEATURES)
    assert runtime == "graph"
    assert_serves_like_the_graph(infer, network, x)


def test_numpy_weights_are_logged_only_where_they_match_the_graph(
    network: Any, x: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `log_forecaster` writes as the `numpy_weights` artifact, from which a server loads
    the version without TensorFlow: the arrays NumPy runs, checked against the graph first."""
    weights = pyfunc.verified_numpy_weights(network, SEQ_LEN, N_FEATURES)
    assert weights is not None
    # The artifact's format, which every logged version holds: flat names, one member each.
    layers = r"lstm/(kernel|recurrent|bias)|dense[0-9]+/(kernel|bias|relu)"
    assert all(re.fullmatch(rf"[0-9]+/({layers})", name) for name in weights)
    assert_serves_like_the_graph(pyfunc.forward_from_weights(weights), network, x)

    def off_by_a_little(arrays: Any) -> Any:
        return lambda batch: graph_outputs(network, batch) * (1 + 1e-3)

    monkeypatch.setattr(pyfunc, "forward_from_weights", off_by_a_little)
    assert pyfunc.verified_numpy_weights(network, SEQ_LEN, N_FEATURES) is None
