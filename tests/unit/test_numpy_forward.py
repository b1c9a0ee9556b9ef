"""The NumPy forward pass, without TensorFlow: what `forward_from_weights` answers for the
`numpy_weights` artifact (flat names "member/layer/...", the format of every logged version)
equals a plain float64 LSTM written from Keras's equations, for every architecture the artifact
can hold. (Against the TensorFlow graph itself: tests/integration/test_runtimes.py.)"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model_wrapper.model.runtime import NUMPY_BLOCK, forward_from_weights

SEQ_LEN, N_FEATURES = 12, 18


def member_weights(
    rng: np.random.Generator, units: int, dense: list[tuple[int, bool]]
) -> dict[str, np.ndarray]:
    """One member's arrays as `numpy_weights` names them; `dense` is (width, relu) per layer."""
    weights = {
        "lstm/kernel": rng.normal(0, 0.3, (N_FEATURES, 4 * units)),
        "lstm/recurrent": rng.normal(0, 0.3, (units, 4 * units)),
        "lstm/bias": rng.normal(0, 0.3, 4 * units),
    }
    width = units
    for j, (out, relu) in enumerate(dense):
        weights |= {
            f"dense{j}/kernel": rng.normal(0, 0.3, (width, out)),
            f"dense{j}/bias": rng.normal(0, 0.3, out),
            f"dense{j}/relu": np.asarray(relu),
        }
        width = out
    return {k: v.astype(np.float32) if v.dtype != bool else v for k, v in weights.items()}


def artifact(*members: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {f"{m}/{name}": a for m, member in enumerate(members) for name, a in member.items()}


def reference(weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Keras's LSTM (gates input, forget, cell, output; sigmoid and tanh) and Dense layers in
    float64, one member at a time, then their mean."""

    def sigmoid(z: np.ndarray) -> np.ndarray:
        return np.asarray(1.0 / (1.0 + np.exp(-z)))

    outputs = []
    for m in sorted({int(name.split("/")[0]) for name in weights}):
        w = {k.split("/", 1)[1]: v for k, v in weights.items() if k.startswith(f"{m}/")}
        kernel, recurrent, bias = (
            w[f"lstm/{k}"].astype(np.float64) for k in ("kernel", "recurrent", "bias")
        )
        units = recurrent.shape[0]
        h = np.zeros((len(x), units))
        c = np.zeros_like(h)
        for t in range(x.shape[1]):
            z = x[:, t].astype(np.float64) @ kernel + h @ recurrent + bias
            i, f, g, o = (z[:, k * units : (k + 1) * units] for k in range(4))
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
        out = h
        j = 0
        while f"dense{j}/kernel" in w:
            out = out @ w[f"dense{j}/kernel"].astype(np.float64) + w[f"dense{j}/bias"]
            if w[f"dense{j}/relu"]:
                out = np.maximum(out, 0.0)
            j += 1
        outputs.append(out)
    return np.asarray(np.mean(outputs, axis=0))


ARCHITECTURES: dict[str, list[tuple[int, list[tuple[int, bool]]]]] = {
    # (units, dense layers) per member
    "the project's network": [(32, [(16, True), (3, False)])],
    "an ensemble of three": [(32, [(16, True), (3, False)])] * 3,
    "members of different widths": [(8, [(16, True), (3, False)]), (12, [(4, True), (3, False)])],
    "a relu output": [(8, [(3, True)])] * 2,
    "the LSTM alone": [(6, [])] * 2,
    "one linear layer": [(5, [(1, False)])],
}


def windows(n: int, seed: int = 0) -> np.ndarray:
    """Inputs of the size the scaled features have (most within a few units of 0)."""
    return np.random.default_rng(seed).normal(0, 1.5, (n, SEQ_LEN, N_FEATURES)).astype(np.float32)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_the_forward_pass_is_keras_lstm_arithmetic(name: str) -> None:
    rng = np.random.default_rng(len(name))
    weights = artifact(*(member_weights(rng, u, d) for u, d in ARCHITECTURES[name]))
    forward = forward_from_weights(weights)
    for n in (0, 1, 3, 64, NUMPY_BLOCK + 44):  # the last runs in blocks
        x = windows(n)
        got = forward(x)
        assert got.dtype == np.float32 and got.shape == reference(weights, x).shape
        np.testing.assert_allclose(got, reference(weights, x), rtol=1e-5, atol=1e-6)


def test_any_memory_layout_of_the_windows_gives_the_same_answers() -> None:
    """The forecaster hands over slices of `scale_windows`'s [T, F, N]-ordered answer; any other
    order (C, Fortran, a strided slice) answers the same."""
    rng = np.random.default_rng(1)
    forward = forward_from_weights(
        artifact(*(member_weights(rng, 16, [(8, True), (3, False)]),) * 3)
    )
    x = windows(50)
    expected = forward(x)
    layouts = {
        "[T, F, N]": np.ascontiguousarray(x.transpose(1, 2, 0)).transpose(2, 0, 1),
        "Fortran": np.asfortranarray(x),
        "every other window": np.repeat(x, 2, axis=0)[::2],
        "float64": x.astype(np.float64),
    }
    for name, other in layouts.items():
        np.testing.assert_array_equal(forward(other), expected, err_msg=name)


def test_the_logged_artifact_file_loads_as_it_always_has(tmp_path: Path) -> None:
    """Versions already in registries hold `numpy_weights.npz` as `np.savez` wrote it; the
    forecaster reads it with `np.load` into a dict and the re-layout happens at load."""
    rng = np.random.default_rng(2)
    weights: dict[str, Any] = artifact(*(member_weights(rng, 32, [(16, True), (3, False)]),) * 3)
    np.savez(tmp_path / "numpy_weights.npz", **weights)
    with np.load(tmp_path / "numpy_weights.npz", allow_pickle=False) as arrays:
        forward = forward_from_weights(dict(arrays))
    x = windows(16)
    np.testing.assert_allclose(forward(x), reference(weights, x), rtol=1e-5, atol=1e-6)


def test_threads_sharing_a_version_get_their_own_answers() -> None:
    """A gateway runs a lone window on its event loop while the model thread runs a batch: the
    forward pass keeps no state between calls."""
    rng = np.random.default_rng(3)
    forward: Any = forward_from_weights(artifact(member_weights(rng, 32, [(16, True), (3, False)])))
    inputs = [windows(n, seed=n) for n in (1, 7, 64, 300)]
    expected = [forward(x) for x in inputs]
    failures: list[int] = []

    def run(k: int) -> None:
        for _ in range(30):
            if not np.array_equal(forward(inputs[k]), expected[k]):
                failures.append(k)

    threads = [threading.Thread(target=run, args=(k % len(inputs),)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_a_windows_forecast_does_not_depend_on_its_batch(name: str) -> None:
    """Bit for bit: a window alone, among a few, at any place of a block or of a batch of several
    blocks gets the same forecast, so that what a client gets never depends on the traffic its
    window was batched with (a shadow, a replay or a second gateway can compare exactly)."""
    rng = np.random.default_rng(len(name))
    forward = forward_from_weights(
        artifact(*(member_weights(rng, u, d) for u, d in ARCHITECTURES[name]))
    )
    x = windows(NUMPY_BLOCK + 70, seed=3)
    whole = forward(x)
    for start, stop in ((0, 1), (5, 8), (17, 40), (0, 70), (NUMPY_BLOCK - 3, NUMPY_BLOCK + 9)):
        np.testing.assert_array_equal(forward(x[start:stop]), whole[start:stop])
    np.testing.assert_array_equal(forward(x[::-1])[::-1], whole)
