"""What runs the network: a NumPy forward pass of the LSTM from its weights (no TensorFlow),
or, for a version without them, the fastest TensorFlow function that agrees with the plain graph.

Never `Model.predict` (it builds a dataset and a loop on every call). TensorFlow is imported only
inside the functions that need it: importing this module, or serving from NumPy weights, never
loads it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Batch sizes the inference function is compiled for; larger inputs run in chunks of the last.
BATCH_BUCKETS = (1, 4, 16, 64)
NUMPY_WEIGHTS = "numpy_weights"  # the artifact NumPy serves from, when present


def pick_runtime(network: Any, seq_len: int, n_features: int) -> tuple[Any, str]:
    """The fastest inference function that agrees with the plain graph, ready now.

    Model.predict builds a dataset and a loop on every call and an eager call dispatches op by
    op; a traced graph with a fixed signature is far cheaper, XLA cheaper again, and for a
    network this small NumPy cheaper still: TensorFlow's per-call overhead is most of the cost.
    NumPy also keeps nothing per load, where every XLA compilation stays cached for the life of
    the process (a gateway that reloads would grow with each load). Each is used only if it
    matches the plain graph on a probe; XLA compiles once per input shape, so every bucket size
    is compiled here rather than on a request.
    """
    import tensorflow as tf

    spec = [tf.TensorSpec([None, seq_len, n_features], tf.float32)]
    graph = tf.function(lambda x: network(x, training=False), input_signature=spec)
    probe = _probe(seq_len, n_features)
    expected = np.asarray(graph(probe))
    forward = numpy_forward(network)
    if forward is not None and _agrees(forward(probe), expected):
        return forward, "numpy"
    try:
        xla = tf.function(
            lambda x: network(x, training=False), input_signature=spec, jit_compile=True
        )
        if _agrees(np.asarray(xla(probe)), expected):
            for size in BATCH_BUCKETS:
                xla(np.zeros((size, seq_len, n_features), np.float32))
            return xla, "xla"
    except Exception:  # no XLA on this platform: the plain graph is still fast
        pass
    for size in BATCH_BUCKETS:
        graph(np.zeros((size, seq_len, n_features), np.float32))
    return graph, "graph"


def _probe(seq_len: int, n_features: int) -> np.ndarray:
    """Inputs on which a runtime must match the TensorFlow graph before it serves."""
    return np.random.default_rng(0).standard_normal((16, seq_len, n_features)).astype(np.float32)


def _agrees(got: np.ndarray, expected: np.ndarray) -> bool:
    return bool(np.allclose(got, expected, rtol=1e-5, atol=1e-6))


def numpy_forward(network: Any) -> Any:
    """The network's inference in NumPy (float32), or None for an architecture it does not know."""
    weights = numpy_weights(network)
    return None if weights is None else forward_from_weights(weights)


def verified_numpy_weights(network: Any, seq_len: int, n_features: int) -> dict[str, Any] | None:
    """`numpy_weights`, only if the NumPy forward pass they give matches the network's own
    TensorFlow graph on a probe: what may be logged as the `numpy_weights` artifact."""
    weights = numpy_weights(network)
    if weights is None:
        return None
    probe = _probe(seq_len, n_features)
    expected = np.asarray(network(probe, training=False))
    return weights if _agrees(forward_from_weights(weights)(probe), expected) else None


def numpy_weights(network: Any) -> dict[str, Any] | None:
    """The arrays the NumPy forward pass runs, by flat name (what `np.savez` stores), or None
    for an architecture it does not know.

    It knows what this project trains: LSTM (tanh, sigmoid gates, last state only) -> Dropout
    (inactive at inference) -> Dense layers (relu or linear), alone or as the members of an
    averaged ensemble. Keras orders the LSTM's gates input, forget, cell, output.
    """
    import keras

    members = [layer for layer in network.layers if isinstance(layer, keras.Model)] or [network]
    if len(members) > 1 and not any(
        isinstance(layer, keras.layers.Average) for layer in network.layers
    ):
        return None
    weights: dict[str, Any] = {}
    for m, member in enumerate(members):
        member_weights = _member_weights(member)
        if member_weights is None:
            return None
        weights |= {f"{m}/{name}": array for name, array in member_weights.items()}
    return weights


def forward_from_weights(weights: dict[str, Any]) -> Any:
    """x [N, T, F] float32 -> the network's outputs, averaged over the members (an ensemble)."""
    by_member: dict[str, dict[str, Any]] = {}
    for name, array in weights.items():
        member, key = name.split("/", 1)
        by_member.setdefault(member, {})[key] = array
    plans = [_plan(arrays) for _, arrays in sorted(by_member.items(), key=lambda m: int(m[0]))]

    def forward(x: np.ndarray) -> np.ndarray:
        outputs = [_run_plan(plan, x) for plan in plans]
        return np.asarray(np.mean(outputs, axis=0, dtype=np.float32))

    return forward


def _plan(member: dict[str, Any]) -> tuple[Any, ...]:
    f32 = {name: np.asarray(array, np.float32) for name, array in member.items()}
    n_dense = sum(1 for name in member if name.endswith("/kernel") and name.startswith("dense"))
    dense = tuple(
        (f32[f"dense{j}/kernel"], f32[f"dense{j}/bias"], bool(member[f"dense{j}/relu"]))
        for j in range(n_dense)
    )
    return f32["lstm/kernel"], f32["lstm/recurrent"], f32["lstm/bias"], dense


def _member_weights(member: Any) -> dict[str, Any] | None:
    import keras

    layers = [layer for layer in member.layers if not isinstance(layer, keras.layers.InputLayer)]
    if not layers or not isinstance(layers[0], keras.layers.LSTM):
        return None
    lstm = layers[0].get_config()
    if (
        lstm.get("activation") != "tanh"
        or lstm.get("recurrent_activation") != "sigmoid"
        or not lstm.get("use_bias", True)
        or lstm.get("return_sequences")
        or lstm.get("go_backwards")
        or lstm.get("stateful")
    ):
        return None
    kernel, recurrent, bias = (np.asarray(w, np.float32) for w in layers[0].get_weights())
    weights = {"lstm/kernel": kernel, "lstm/recurrent": recurrent, "lstm/bias": bias}
    dense = 0
    for layer in layers[1:]:
        if isinstance(layer, keras.layers.Dropout):
            continue
        config = layer.get_config() if isinstance(layer, keras.layers.Dense) else {}
        if config.get("activation") not in ("relu", "linear") or not config.get("use_bias"):
            return None
        w, b = (np.asarray(v, np.float32) for v in layer.get_weights())
        weights |= {
            f"dense{dense}/kernel": w,
            f"dense{dense}/bias": b,
            f"dense{dense}/relu": np.asarray(config["activation"] == "relu"),
        }
        dense += 1
    return weights


def _run_plan(plan: tuple[Any, ...], x: np.ndarray) -> np.ndarray:
    kernel, recurrent, bias, dense = plan
    units = recurrent.shape[0]
    inputs = x @ kernel + bias  # every step's input projection at once: [N, T, 4 units]
    h = np.zeros((len(x), units), np.float32)
    c = np.zeros_like(h)
    with np.errstate(over="ignore"):  # exp overflow is a gate at exactly 0: the right answer
        for t in range(x.shape[1]):
            z = inputs[:, t] + h @ recurrent
            gates = 1.0 / (1.0 + np.exp(-z))
            c = gates[:, units : 2 * units] * c + gates[:, :units] * np.tanh(
                z[:, 2 * units : 3 * units]
            )
            h = gates[:, 3 * units :] * np.tanh(c)
    out = h
    for w, b, relu in dense:
        out = out @ w + b
        if relu:
            out = np.maximum(out, 0, dtype=np.float32)
    return out
