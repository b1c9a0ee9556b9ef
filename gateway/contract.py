"""The window contract a served version declares, enforced before a window joins a batch.

The wrapper writes its input rules into the logged model's metadata (`input_contract`: the
window's shape, the feature names, and value rules by feature: model_wrapper/model/contract.py);
the gateway reads them from the MLmodel file, without importing the wrapper, and holds every
window to exactly those rules. So one bad window never reaches a batch, and the model's own
checks need not run again on the serving path.

A version logged before the declaration gets the contract its shape implies: finite values
within float32. Its pyfunc still checks the rest itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FLOAT32_MAX = float(np.finfo(np.float32).max)
CONTRACT_FORMAT = 1  # the declaration's layout this gateway reads
_DOUBLE_MAX = float(np.finfo(np.float64).max)
_BOUNDS = frozenset(("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"))
_RULE_KEYS = _BOUNDS | {"features", "message"}


class ContractUnreadable(ValueError):
    """A declaration this gateway cannot enforce exactly (malformed, or rules it does not know)."""


@dataclass(frozen=True)
class Rule:
    """Values of `features` must be finite and within the bounds (JSON Schema's keywords)."""

    features: tuple[int, ...]
    message: str  # what the rule says, e.g. "prices must be positive"
    bounds: tuple[tuple[str, float], ...] = ()

    def limits(self) -> tuple[float, float]:
        """Inclusive float64 limits: an exclusive bound is the next double inside it, so that
        `low <= x <= high` holds exactly when the rule does (NaN and infinities fail)."""
        low, high = -_DOUBLE_MAX, _DOUBLE_MAX
        for keyword, value in self.bounds:
            if keyword == "minimum":
                low = max(low, value)
            elif keyword == "exclusiveMinimum":
                low = max(low, float(np.nextafter(value, np.inf)))
            elif keyword == "maximum":
                high = min(high, value)
            else:
                high = min(high, float(np.nextafter(value, -np.inf)))
        return low, high


@dataclass(frozen=True)
class WindowContract:
    seq_len: int
    n_features: int
    feature_names: tuple[str, ...]
    rules: tuple[Rule, ...]
    declared: bool  # False: implied by the shape of a version that declares no contract
    # Per-feature limits of every rule at once, for one bulk test of a valid window.
    _low: np.ndarray = field(init=False, compare=False, repr=False)
    _high: np.ndarray = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        low = np.full(self.n_features, -_DOUBLE_MAX)
        high = np.full(self.n_features, _DOUBLE_MAX)
        for rule in self.rules:
            rule_low, rule_high = rule.limits()
            columns = list(rule.features)
            low[columns] = np.maximum(low[columns], rule_low)
            high[columns] = np.minimum(high[columns], rule_high)
        object.__setattr__(self, "_low", low)
        object.__setattr__(self, "_high", high)

    @property
    def close_column(self) -> int | None:
        """Where the window's close is, when the version names its features."""
        names = self.feature_names
        return names.index("close") if "close" in names else None

    def refusal(self, window: np.ndarray) -> str | None:
        """Why a float64 [T, F] window breaks the contract (the first rule broken, at its first
        place), or None when it keeps it."""
        if self.keeps(window):
            return None
        for rule in self.rules:
            low, high = rule.limits()
            columns = list(rule.features)
            part = window[:, columns]
            bad = ~((part >= low) & (part <= high))
            if bad.any():
                i, k = (int(n) for n in np.argwhere(bad)[0])
                j = columns[k]
                return (
                    f"X[{i}][{j}] is out of range: {rule.message}, got {window[i, j]:g} "
                    f"for feature '{self.feature_names[j]}'"
                )
        raise AssertionError("a value broke the joint limits but no single rule")

    def keeps(self, windows: np.ndarray) -> bool:
        """Whether float64 windows ([T, F] or [N, T, F]) keep every rule: one bulk test."""
        return bool(((windows >= self._low) & (windows <= self._high)).all())

    def mismatch(self, version: str, seq_len: int, n_features: int) -> str | None:
        """Why a gateway configured for seq_len x n_features cannot serve this version."""
        if (self.seq_len, self.n_features) == (seq_len, n_features):
            return None
        return (
            f"version {version} takes windows of {self.seq_len} x {self.n_features} "
            f"(seq_len x n_features), this gateway is configured for {seq_len} x {n_features} "
            "(SEQ_LEN_REQUIRED x N_FEATURES_REQUIRED)"
        )

    def row_schema(self) -> dict[str, Any]:
        """JSON Schema of one row of X (one time step): a number per feature, within the
        contract's bounds, named by feature when the version declared them."""
        columns = [self._feature_schema(j) for j in range(self.n_features)]
        if not self.declared and all(column == columns[0] for column in columns):
            items: dict[str, Any] = {"items": columns[0]}
        else:
            items = {"prefixItems": columns, "items": False}
        return {"type": "array", "minItems": self.n_features, "maxItems": self.n_features, **items}

    def _feature_schema(self, j: int) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "number"}
        if self.declared:
            schema["title"] = self.feature_names[j]
        lower: tuple[float, bool] | None = None  # (value, exclusive): the tightest bound
        upper: tuple[float, bool] | None = None
        for rule in self.rules:
            if j not in rule.features:
                continue
            for keyword, value in rule.bounds:
                exclusive = keyword.startswith("exclusive")
                if keyword.endswith("inimum"):
                    if lower is None or (value, exclusive) > lower:
                        lower = (value, exclusive)
                elif upper is None or (-value, exclusive) > (-upper[0], upper[1]):
                    upper = (value, exclusive)
        if lower is not None:
            schema["exclusiveMinimum" if lower[1] else "minimum"] = lower[0]
        if upper is not None:
            schema["exclusiveMaximum" if upper[1] else "maximum"] = upper[0]
        return schema


def shape_contract(
    seq_len: int, n_features: int, feature_names: tuple[str, ...] | None = None
) -> WindowContract:
    """The contract a shape alone implies: finite numbers within float32, which the network
    computes in. For versions that declare none, and before any version is served."""
    names = feature_names or tuple(f"feature {j}" for j in range(n_features))
    within_float32 = Rule(
        tuple(range(n_features)),
        f"|value| must be at most {FLOAT32_MAX:g} (float32)",
        (("minimum", -FLOAT32_MAX), ("maximum", FLOAT32_MAX)),
    )
    return WindowContract(seq_len, n_features, names, (within_float32,), declared=False)


def version_contract(metadata: Mapping[str, Any] | None) -> WindowContract:
    """The contract a version's MLmodel metadata declares, or the one its shape implies.

    Raises ContractUnreadable for a declaration this gateway cannot enforce exactly, and
    ValueError for a version that records no shape at all.
    """
    meta = metadata or {}
    declared = meta.get("input_contract")
    if declared is not None:
        return _read_declaration(declared)
    try:
        seq_len, n_features = int(meta["seq_len"]), int(meta["n_features"])
    except (KeyError, TypeError, ValueError):
        raise ValueError("its metadata records no window shape (seq_len, n_features)") from None
    names = meta.get("feature_names")
    if not (isinstance(names, list) and len(names) == n_features):
        names = None
    return shape_contract(seq_len, n_features, tuple(map(str, names)) if names else None)


def _read_declaration(declared: Any) -> WindowContract:
    try:
        if declared["format"] != CONTRACT_FORMAT:
            raise ContractUnreadable(
                f"input_contract format {declared['format']!r}, this gateway reads "
                f"{CONTRACT_FORMAT}"
            )
        batch, seq_len, n_features = (int(n) for n in declared["shape"])
        names = tuple(str(name) for name in declared["feature_names"])
        if batch != -1 or seq_len < 1 or n_features < 1 or len(names) != n_features:
            raise ContractUnreadable(f"input_contract shape {declared['shape']!r}")
        if declared["dtype"] != "float32":
            raise ContractUnreadable(f"input_contract dtype {declared['dtype']!r}")
        return WindowContract(
            seq_len,
            n_features,
            names,
            tuple(_read_rule(rule, n_features) for rule in declared["rules"]),
            declared=True,
        )
    except ContractUnreadable:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise ContractUnreadable(f"input_contract is malformed ({type(e).__name__}: {e})") from None


def _read_rule(rule: Mapping[str, Any], n_features: int) -> Rule:
    unknown = sorted(set(rule) - _RULE_KEYS)
    if unknown:
        raise ContractUnreadable(f"input_contract rule with unknown keys {unknown}")
    features = tuple(int(j) for j in rule["features"])
    if any(not 0 <= j < n_features for j in features):
        raise ContractUnreadable(f"input_contract rule names features outside 0..{n_features - 1}")
    bounds = tuple((key, float(rule[key])) for key in sorted(_BOUNDS & set(rule)))
    return Rule(features, str(rule["message"]), bounds)


@dataclass(frozen=True)
class Serving:
    """How the gateway calls a loaded version."""

    contract: WindowContract  # what every window is held to before it joins a batch
    predict: Callable[[np.ndarray], np.ndarray]  # float64 [N, T, F] -> [N, 3] forecasts
    runtime: str | None  # what runs the network ("numpy", "xla", "graph"), if the version says
    fast: bool  # True: the wrapper's unchecked path; False: the pyfunc's predict, checks and all


def read_contract(metadata: Mapping[str, Any] | None) -> tuple[WindowContract, str | None]:
    """The contract to hold a version's windows to, and why its declaration was set aside (a
    declaration this gateway cannot read exactly: the shape's contract serves, and the
    version's pyfunc checks every window itself). ValueError for a version with no shape."""
    try:
        return version_contract(metadata), None
    except ContractUnreadable as e:
        rest = {k: v for k, v in (metadata or {}).items() if k != "input_contract"}
        return version_contract(rest), f"{e}: served through its pyfunc's own checks"


def serving(
    contract: WindowContract, pyfunc: Any, checked: Callable[[np.ndarray], np.ndarray]
) -> Serving:
    """The cheapest way to call a loaded pyfunc whose windows keep `contract`.

    `checked` is the pyfunc's own predict, made to answer [N, 3]. When the version declares its
    contract and its wrapper offers `forecast_unchecked` (no DataFrame, no second check), that
    serves instead; a batch that somehow breaks the contract (windows checked against the
    version served before a swap) still goes through `checked`, whose refusals name the window.
    """
    try:
        python_model = pyfunc.unwrap_python_model()
    except Exception:  # not a PythonModel flavor: nothing to unwrap
        python_model = None
    backend = getattr(python_model, "backend", None)
    runtime = backend if isinstance(backend, str) else None
    fast = getattr(python_model, "forecast_unchecked", None)
    if not (contract.declared and callable(fast)):
        return Serving(contract, checked, runtime, fast=False)

    def predict(x: np.ndarray) -> np.ndarray:
        if contract.keeps(x):
            return np.asarray(fast(x), dtype=np.float64)
        return checked(x)

    return Serving(contract, predict, runtime, fast=True)
