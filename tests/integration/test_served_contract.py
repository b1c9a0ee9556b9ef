"""The gateway serves a version through the contract it declares: real versions in a real
registry, loaded by the real RegistrySource. A version of this wrapper runs its unchecked fast path
(the gateway has enforced the same rules); one that declares nothing, or whose wrapper has no
fast path, still serves through its pyfunc's own checks; the answers are the pyfunc's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from gateway.contract import (
    ContractUnreadable,
    read_contract,
    serving,
    shape_contract,
    version_contract,
)
from gateway.errors import ReloadFailed
from gateway.registry_source import RegistrySource, as_forecasts
from gateway.settings import Settings
from model_wrapper.model.contract import input_contract
from model_wrapper.model.features import FEATURE_NAMES, N_FEATURES
from model_wrapper.registry.publish import (
    signature,
)
from tests.helpers import (
    MODEL_NAME,
    SEQ_LEN,
    Registry,
    TrainedVersions,
    real_windows,
    relog_version,
)

CLOSE = FEATURE_NAMES.index("close")
LEGACY_ALIAS = "no_contract"


def checked_predict(pyfunc: Any) -> Any:
    return lambda x: as_forecasts(pyfunc.predict(x.astype(np.float32)))


@pytest.fixture(scope="module")
def staging(trained: TrainedVersions) -> mlflow.pyfunc.PyFuncModel:
    return mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{trained.staging}")


@pytest.fixture(scope="module")
def legacy_version(
    registry: Registry, trained: TrainedVersions, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """The staging network and scaler logged as versions were before they declared a contract:
    metadata with the shape and names only."""
    local = Path(
        mlflow.artifacts.download_artifacts(
            f"models:/{MODEL_NAME}/{trained.staging}",
            dst_path=str(tmp_path_factory.mktemp("legacy")),
        )
    )
    parts = local / "artifacts"
    meta = json.loads((parts / "metadata.json").read_text())
    del meta["input_contract"]
    (parts / "metadata.json").write_text(json.dumps(meta))
    version = relog_version(parts, signature(), MODEL_NAME, meta)
    MlflowClient().set_registered_model_alias(MODEL_NAME, LEGACY_ALIAS, version)
    return version


def test_the_gateway_reads_the_contract_the_wrapper_declares(
    staging: mlflow.pyfunc.PyFuncModel,
) -> None:
    contract, set_aside = read_contract(staging.metadata.metadata)
    assert set_aside is None and contract.declared
    assert contract == version_contract(
        {"input_contract": input_contract(SEQ_LEN, N_FEATURES, FEATURE_NAMES)}
    )
    assert contract.feature_names == FEATURE_NAMES
    assert contract.mismatch("1", SEQ_LEN, N_FEATURES) is None
    assert contract.mismatch("1", 10, N_FEATURES) == (
        f"version 1 takes windows of {SEQ_LEN} x {N_FEATURES} (seq_len x n_features), this "
        f"gateway is configured for 10 x {N_FEATURES} (SEQ_LEN_REQUIRED x N_FEATURES_REQUIRED)"
    )


def test_a_declared_contract_serves_through_the_unchecked_path(
    staging: mlflow.pyfunc.PyFuncModel,
) -> None:
    wrapper = staging.unwrap_python_model()
    calls: list[int] = []
    fast = wrapper.forecast_unchecked

    def counted(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        return np.asarray(fast(x))

    contract, _ = read_contract(staging.metadata.metadata)
    wrapper.forecast_unchecked = counted
    try:
        how = serving(contract, staging, checked_predict(staging))
        x = real_windows(40)
        got = how.predict(x)
        assert calls == [40] and how.fast and how.runtime == "numpy"
        # The answers are the pyfunc's, whichever door.
        np.testing.assert_allclose(got, checked_predict(staging)(x), rtol=1e-5)
        # A batch that breaks the contract (checked against another version's before a swap)
        # goes through the pyfunc's own checks instead, which name the window.
        bad = x[:3].copy()
        bad[2, -1, CLOSE] = -1.0
        with pytest.raises(MlflowException, match=r"prices must be positive.*window 2"):
            how.predict(bad)
        assert calls == [40]
    finally:
        del wrapper.forecast_unchecked


class NoFastPath:
    """A pyfunc whose wrapper predates forecast_unchecked (a stand-in: serving() alone)."""

    def __init__(self) -> None:
        self.metadata = None

    def unwrap_python_model(self) -> object:
        return type("OldWrapper", (), {"backend": "xla"})()


def test_a_wrapper_without_the_fast_path_is_served_through_its_predict() -> None:
    contract = version_contract(
        {"input_contract": input_contract(SEQ_LEN, N_FEATURES, FEATURE_NAMES)}
    )
    answers = np.ones((1, 3))
    how = serving(contract, NoFastPath(), lambda x: answers)
    assert (how.fast, how.runtime) == (False, "xla")
    assert how.predict(np.ones((1, SEQ_LEN, N_FEATURES))) is answers


def test_a_declaration_the_gateway_cannot_enforce_is_set_aside() -> None:
    declared = input_contract(SEQ_LEN, N_FEATURES, FEATURE_NAMES)
    declared["rules"].append({"features": [0], "multipleOf": 0.01, "message": "cents"})
    meta = {"seq_len": SEQ_LEN, "n_features": N_FEATURES, "input_contract": declared}
    with pytest.raises(ContractUnreadable, match=r"unknown keys \['multipleOf'\]"):
        version_contract(meta)
    contract, set_aside = read_contract(meta)
    assert contract == shape_contract(SEQ_LEN, N_FEATURES) and not contract.declared
    assert set_aside and "served through its pyfunc's own checks" in set_aside
    assert serving(contract, NoFastPath(), lambda x: x).fast is False


def test_the_source_serves_both_kinds_of_version(
    registry: Registry,
    trained: TrainedVersions,
    legacy_version: str,
    staging: mlflow.pyfunc.PyFuncModel,
    tmp_path: Path,
) -> None:
    source = RegistrySource(Settings(mlflow_tracking_uri=registry.uri), tmp_path)
    x = real_windows(8)
    expected = checked_predict(staging)(x)
    declared = source.load("staging", source.resolve("staging"))
    assert declared.contract is not None and declared.contract.declared
    assert declared.runtime == "numpy"
    np.testing.assert_allclose(declared.predict(x), expected, rtol=1e-5)

    legacy = source.load(LEGACY_ALIAS, source.resolve(LEGACY_ALIAS))
    assert legacy.version == legacy_version
    # The contract its shape implies, and its pyfunc's own checks behind it.
    assert legacy.contract == shape_contract(SEQ_LEN, N_FEATURES, FEATURE_NAMES)
    assert legacy.runtime == "numpy"
    np.testing.assert_allclose(legacy.predict(x), expected, rtol=1e-5)
    bad = x[:1].copy()
    bad[0, 0, CLOSE] = 0.0
    assert legacy.contract.refusal(bad[0]) is None
    with pytest.raises(MlflowException, match="prices must be positive"):
        legacy.predict(bad)

    other = RegistrySource(
        Settings(mlflow_tracking_uri=registry.uri, seq_len_required=10), tmp_path
    )
    with pytest.raises(ReloadFailed, match=f"takes windows of {SEQ_LEN} x {N_FEATURES}"):
        other.load("staging", other.resolve("staging"))
