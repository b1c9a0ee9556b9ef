"""Request bodies -> checked values, before anything reaches the model.

Validation runs per request so that one malformed request never joins (and poisons) a batch:
a window is held to the served version's own contract (gateway/contract.py) here, so the model
never refuses one. Messages say what was expected and what came, without echoing the input back.
"""

from __future__ import annotations

import gc
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import orjson

from gateway.aliases import alias_refusal
from gateway.contract import WindowContract

_MAX_URL_LENGTH = 2048
_NUMBER_TYPES = frozenset((float, int))
# orjson writes integers from -2**63 to 2**64 - 1 and at most this many levels of nesting; it
# reads a longer integer as a float, so an integer literal must be caught before that.
MAX_METADATA_DEPTH = 254
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONGEST_64_BIT = b"0" * 19  # -2**63 - 1 has 19 digits, 2**64 has 20


class InvalidRequest(ValueError):
    """The reason a body was refused; the route adds the spec's prefix."""


@dataclass(frozen=True)
class PredictRequest:
    x: np.ndarray  # [T, F] float64, within the served version's contract
    callback_url: str | None
    # Checked and serialized once, at parse time: the callback carries these bytes as they are.
    metadata: orjson.Fragment | None
    # metadata.candle_time, the time of the window's last candle, as ISO 8601 UTC; None when
    # absent or unreadable (metadata is the client's: it is never refused for it).
    candle_time: str | None = None


def parse_json(body: bytes) -> Any:
    # orjson is strict JSON: it refuses NaN, Infinity, numbers that overflow a double
    # (1e999) and nesting deeper than 1024, all with a JSONDecodeError.
    try:
        with _collector_paused():
            return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InvalidRequest(f"body is not valid JSON ({e})") from None


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No garbage collection while a body becomes Python objects.

    A parsed JSON document holds no reference cycles, so the collector has nothing to find in
    it; left on, it walks the new containers again and again while a large one is built (most
    of the cost of a body of many small arrays). Reference counting still frees it all.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _kind(value: Any) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def parse_predict(body: bytes, contract: WindowContract) -> PredictRequest:
    payload = parse_json(body)
    if type(payload) is not dict:
        raise InvalidRequest(f"body must be a JSON object with X, got {_kind(payload)}")
    if "X" not in payload:
        raise InvalidRequest(
            f"X is required: expected {contract.seq_len} rows of {contract.n_features} numbers"
        )
    metadata = payload.get("metadata")
    return PredictRequest(
        x=parse_window(payload["X"], contract),
        callback_url=parse_callback_url(payload.get("callback_url")),
        metadata=parse_metadata(metadata, body),
        candle_time=candle_time(metadata.get("candle_time")) if type(metadata) is dict else None,
    )


def candle_time(value: Any) -> str | None:
    """An ISO 8601 time or epoch seconds as ISO 8601 UTC (seconds), else None."""
    try:
        if type(value) is str:
            when = datetime.fromisoformat(value)
            when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
        elif type(value) in _NUMBER_TYPES and math.isfinite(value):
            when = datetime.fromtimestamp(value, UTC)
        else:
            return None
    except (ValueError, OverflowError, OSError):
        return None
    return when.isoformat()


def parse_window(rows: Any, contract: WindowContract) -> np.ndarray:
    seq_len, n_features = contract.seq_len, contract.n_features
    expected = f"expected {seq_len} rows of {n_features} numbers"
    if type(rows) is not list:
        raise InvalidRequest(f"X must be an array of arrays: {expected}, got {_kind(rows)}")
    if len(rows) != seq_len:
        raise InvalidRequest(
            f"X has the wrong shape: expected [{seq_len}, {n_features}] "
            f"(SEQ_LEN_REQUIRED x N_FEATURES_REQUIRED), got {len(rows)} rows"
        )
    # The common case is checked in bulk (this runs on the event loop for every request);
    # the loops that name the first bad place run only when the bulk check fails.
    if not all(type(row) is list and len(row) == n_features for row in rows):
        for i, row in enumerate(rows):
            if type(row) is not list:
                raise InvalidRequest(
                    f"X[{i}] must be an array of {n_features} numbers, got {_kind(row)}"
                )
            if len(row) != n_features:
                raise InvalidRequest(
                    f"X has the wrong shape: expected [{seq_len}, {n_features}], "
                    f"row X[{i}] has {len(row)} values"
                )
    # `type(v)` (not isinstance) so that true/false, which are ints in Python, are refused.
    if not set(map(type, chain.from_iterable(rows))) <= _NUMBER_TYPES:
        for i, row in enumerate(rows):
            for j, v in enumerate(row):
                if type(v) not in _NUMBER_TYPES:
                    raise InvalidRequest(f"X[{i}][{j}] must be a number, got {_kind(v)}")
    try:
        window = np.array(rows, dtype=np.float64)
    except OverflowError:
        raise InvalidRequest("X holds an integer too large for a float") from None
    # Float64, as JSON has it: the contract's rules (float32 range, positive prices, ...) are
    # about these values, and the model reads them as they are.
    refusal = contract.refusal(window)
    if refusal is not None:
        raise InvalidRequest(refusal)
    return window


def parse_callback_url(url: Any) -> str | None:
    if url is None:
        return None
    if type(url) is not str:
        raise InvalidRequest(f"callback_url must be a string URL, got {_kind(url)}")
    if len(url) > _MAX_URL_LENGTH:
        raise InvalidRequest(f"callback_url is longer than {_MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise InvalidRequest("callback_url is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidRequest(
            "callback_url must be an absolute http:// or https:// URL with a host, "
            f"got scheme {parts.scheme or 'none'!r} and host {host or 'none'!r}"
        )
    return url


def parse_metadata(metadata: Any, body: bytes) -> orjson.Fragment | None:
    """The metadata as JSON, ready to send: in C, in time linear in the body."""
    if metadata is None:
        return None
    if type(metadata) is not dict:
        raise InvalidRequest(f"metadata must be a JSON object, got {_kind(metadata)}")
    # orjson refuses NaN, Infinity and 1e999 when it reads the body, so every number here is
    # finite; what remains is what the callback could not carry as sent.
    if _may_hold_a_long_integer(body):
        # Rare: read again with the stdlib, which keeps integers exact, so that one beyond
        # 64 bits is refused instead of reaching the receiver as a float.
        try:
            with _collector_paused():
                metadata = json.loads(body)["metadata"]
        except (ValueError, RecursionError):  # ValueError: over 4300 digits
            raise InvalidRequest(_INTEGER_RANGE) from None
    try:
        return orjson.Fragment(orjson.dumps(metadata))
    except orjson.JSONEncodeError as e:
        if "Integer" in str(e):
            raise InvalidRequest(_INTEGER_RANGE) from None
        raise InvalidRequest(
            f"metadata is nested too deeply: at most {MAX_METADATA_DEPTH} levels of objects "
            "and arrays"
        ) from None


_INTEGER_RANGE = "metadata holds an integer out of range: integers must be from -2**63 to 2**64-1"


def _may_hold_a_long_integer(body: bytes) -> bool:
    """Whether the body has a run of 19 or more digits (anywhere, strings included)."""
    return _LONGEST_64_BIT in body.translate(_DIGITS_AS_ZERO)


def parse_reload(body: bytes) -> str | None:
    """The alias asked for, or None for the configured default. Empty body and {} mean None."""
    if not body.strip():
        return None
    payload = parse_json(body)
    if type(payload) is not dict:
        raise InvalidRequest(
            f'body must be a JSON object like {{"alias": "Production"}}, got {_kind(payload)}'
        )
    alias = payload.get("alias")
    if alias is None:
        return None
    if type(alias) is not str or not alias.strip():
        got = "an empty string" if type(alias) is str else _kind(alias)
        raise InvalidRequest(f"alias must be a non-empty string, got {got}")
    refusal = alias_refusal(alias)
    if refusal is not None:
        raise InvalidRequest(refusal)
    return alias
