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
# Windows the NumPy forward pass runs at once: a larger batch runs in blocks of this many, whose
# buffers stay in cache and are reused from the allocator instead of faulted in afresh.
NUMPY_BLOCK = 256
# The matrix products run on a block padded to a multiple of this many windows: BLAS then gives
# every window the same arithmetic whatever else shares its batch (a narrow or ragged product
# takes other kernels, whose last bits differ), so a window's forecast never depends on the
# traffic it was batched with. The element-wise work runs on the given windows only (the same
# per element at any length). NUMPY_BLOCK is a multiple of it.
NUMPY_LANES = 16


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
    """x [N, T, F] float32 -> the network's outputs [N, K] float32, averaged over the members
    (an ensemble).

    `weights` is the `numpy_weights` artifact as logged (flat names "member/layer/...", the
    layout of every version in a registry); it is laid out for speed here, once per load.
    Members of one shape (all that this project trains) run side by side as one `_Stack`.
    """
    by_member: dict[str, dict[str, Any]] = {}
    for name, array in weights.items():
        member, key = name.split("/", 1)
        by_member.setdefault(member, {})[key] = array
    plans = [_plan(arrays) for _, arrays in sorted(by_member.items(), key=lambda m: int(m[0]))]
    if all(_shape(plan) == _shape(plans[0]) for plan in plans):
        return _Stack(plans)
    stacks = [_Stack([plan]) for plan in plans]

    def forward(x: np.ndarray) -> np.ndarray:
        return np.asarray(np.mean([stack(x) for stack in stacks], axis=0, dtype=np.float32))

    return forward


def _plan(member: dict[str, Any]) -> tuple[Any, ...]:
    f32 = {name: np.asarray(array, np.float32) for name, array in member.items()}
    n_dense = sum(1 for name in member if name.endswith("/kernel") and name.startswith("dense"))
    dense = tuple(
        (f32[f"dense{j}/kernel"], f32[f"dense{j}/bias"], bool(member[f"dense{j}/relu"]))
        for j in range(n_dense)
    )
    return f32["lstm/kernel"], f32["lstm/recurrent"], f32["lstm/bias"], dense


def _shape(plan: tuple[Any, ...]) -> tuple[Any, ...]:
    kernel, recurrent, _, dense = plan
    return kernel.shape, recurrent.shape, tuple((w.shape, relu) for w, _, relu in dense)


# Keras orders an LSTM's gates input, forget, cell, output; a step here orders them output,
# input, forget, cell: the three sigmoid gates are one block, and the cell state, kept right
# after the cell gate, pairs [input, forget] with [cell gate, cell state] in one multiply.
_GATE_ORDER = (3, 0, 1, 2)


class _Stack:
    """M LSTM networks of one shape run side by side: each NumPy call of a step serves every
    member, and the members' average is folded into the last (linear) layer.

    The batch is the last axis, so that every gate is a contiguous block (NumPy's loops over a
    few columns of [N, units] pay per row). A step's one matmul takes [x_t, h_{t-1}, 1] against
    the kernel, recurrent kernel and bias stacked together, for all four gates; the sigmoid
    gates' rows are halved at load, so that one tanh gives every gate (sigmoid(z) =
    tanh(z/2)/2 + 1/2; halving a float32 is exact). Buffers are allocated per call: threads
    may share a version.
    """

    def __init__(self, plans: list[tuple[Any, ...]]) -> None:
        members, self.units = len(plans), plans[0][1].shape[0]
        u = self.units
        order = np.concatenate([np.arange(k * u, (k + 1) * u) for k in _GATE_ORDER])
        halve = np.repeat(np.asarray([0.5, 0.5, 0.5, 1.0], np.float32), u)[:, np.newaxis]
        # [M, 4 units, F + units + 1]: a row per gate unit; columns x_t, h_{t-1}, then the bias.
        self.step = np.stack(
            [np.concatenate([k, r, b[np.newaxis]])[:, order].T * halve for k, r, b, _ in plans]
        )
        # Dense layers per member as [M, out, in] and [M, out, 1], to multiply [M, in, N].
        self.dense = [
            (
                np.stack([p[3][j][0].T for p in plans]),
                np.stack([p[3][j][1][:, np.newaxis] for p in plans]),
                relu,
            )
            for j, (_, _, relu) in enumerate(plans[0][3])
        ]
        self.last: tuple[np.ndarray, np.ndarray] | None = None
        if self.dense and not self.dense[-1][2]:
            # The mean over m of W_m a_m + b_m is [a_1 ... a_M] [W_1 ... W_M]^T / M + mean(b).
            w, b, _ = self.dense.pop()
            kernel = np.concatenate(list(w / np.float32(members)), axis=1).T
            self.last = (np.ascontiguousarray(kernel), b[:, :, 0].mean(axis=0, dtype=np.float32))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if len(x) <= NUMPY_BLOCK:
            return self._block(x)
        return np.concatenate(
            [self._block(x[i : i + NUMPY_BLOCK]) for i in range(0, len(x), NUMPY_BLOCK)]
        )

    def _block(self, x: np.ndarray) -> np.ndarray:
        given, steps, features = x.shape
        n = -(-given // NUMPY_LANES) * NUMPY_LANES  # the padded width (see NUMPY_LANES)
        members, rows, width = self.step.shape
        u = self.units
        # Step t reads xh[t]: x_t (the same for every member), h_{t-1} (written by step t-1), 1.
        xh = np.empty((steps, members, width, n), np.float32)
        xh[:, :, :features, :given] = x.transpose(1, 2, 0)[:, np.newaxis]
        xh[:, :, :-1, given:] = 0.0  # the padding's inputs and states
        xh[:, :, -1] = 1.0
        xh[0, :, features:-1] = 0.0
        # The products run n wide; the element-wise work only on the given windows' columns.
        wide = np.empty((members, rows, n), np.float32) if n != given else None
        zc = np.empty((members, rows + u, given), np.float32)  # gates o, i, f, g; cell state c
        zc[:, rows:] = 0.0
        z, sigmoid, o, c = zc[:, :rows], zc[:, : 3 * u], zc[:, :u], zc[:, rows:]
        i_f, g_c, i_g, f_c = (
            zc[:, u : 3 * u],
            zc[:, 3 * u :],
            zc[:, u : 2 * u],
            zc[:, 2 * u : rows - u],
        )
        tanh_c = np.empty((members, u, given), np.float32)
        h = np.zeros((members, u, n), np.float32)
        with np.errstate(over="ignore"):  # a huge input's sum overflows: tanh saturates it
            for t in range(steps):
                if wide is None:
                    np.matmul(self.step, xh[t], out=z)
                else:
                    np.matmul(self.step, xh[t], out=wide)
                    z[...] = wide[:, :, :given]
                np.tanh(z, out=z)
                sigmoid *= 0.5
                sigmoid += 0.5
                np.multiply(i_f, g_c, out=i_f)  # [i * g, f * c]
                np.add(i_g, f_c, out=c)
                np.tanh(c, out=tanh_c)
                state = xh[t + 1, :, features:-1] if t + 1 < steps else h
                np.multiply(o, tanh_c, out=state[:, :, :given])
        out = h
        for w, b, relu in self.dense:
            out = np.matmul(w, out)
            out += b
            if relu:
                np.maximum(out, 0, out=out)
        if self.last is None:
            mean = np.asarray(np.mean(out, axis=0, dtype=np.float32))
            return np.ascontiguousarray(mean.T[:given])
        kernel, bias = self.last
        result: np.ndarray = out.reshape(members * out.shape[1], n).T @ kernel
        result += bias
        return result[:given]


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
