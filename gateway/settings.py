"""Gateway settings: each declared once, below, with its variable, default, reader and meaning;
read once from an environment mapping into a frozen object.

The declaration is the one source: `from_environ` reads every field by it, and
docs/configuration.md's table is `settings_table()` (tests/unit/test_settings.py keeps the
two equal, and the Kubernetes ConfigMap's keys within the declared variables).
`python -m gateway.settings` prints the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from gateway._readers import SettingsError, _Reader
from gateway.webhooks.policy import IPNetwork

__all__ = ["Settings", "SettingsError", "declared", "settings_table"]


def setting(env: str, default: Any, read: str, doc: str, **options: Any) -> Any:
    """A field read from `env` by `_Reader.<read>(env, default, **options)`; `doc` is its line
    in the configuration table. (Typed Any so that a field keeps its own annotation.)"""
    return field(
        default=default, metadata={"env": env, "read": read, "doc": doc, "options": options}
    )


@dataclass(frozen=True)
class Settings:
    # The spec's five variables.
    mlflow_tracking_uri: str = setting(
        "MLFLOW_TRACKING_URI", "http://127.0.0.1:5000", "text", "tracking server and model registry"
    )
    registered_model_name: str = setting(
        "REGISTERED_MODEL_NAME", "BTC_LSTM_Production", "text", "registered model to serve"
    )
    model_alias: str = setting(
        "MODEL_ALIAS",
        "staging",
        "alias",
        "alias loaded at start and by an empty `/reload`; an alias name MLflow accepts, never "
        "`latest` or `v<N>`",
    )
    seq_len_required: int = setting(
        "SEQ_LEN_REQUIRED",
        12,
        "integer",
        "T: rows per window; a version trained for another T is refused",
        minimum=1,
    )
    n_features_required: int = setting(
        "N_FEATURES_REQUIRED", 18, "integer", "F: features per row", minimum=1
    )
    # Start-up: retry every interval seconds, give up after timeout seconds (then /reload).
    model_load_retry_interval: float = setting(
        "MODEL_LOAD_RETRY_INTERVAL",
        5.0,
        "number",
        "seconds between start-up load attempts",
        positive=True,
    )
    model_load_timeout: float = setting(
        "MODEL_LOAD_TIMEOUT",
        300.0,
        "number",
        "seconds of start-up attempts before giving up (the server keeps running)",
    )
    model_poll_interval: float = setting(
        "MODEL_POLL_INTERVAL",
        30.0,
        "number",
        "seconds between checks that the served alias still points at the served version (0: off)",
    )
    model_cache_size: int = setting(
        "MODEL_CACHE_SIZE",
        2,
        "integer",
        "loaded versions kept in memory: switching among that many aliases never reloads",
        minimum=1,
    )
    # The shadow alias: a second version forecasting what clients ask, after they are answered.
    shadow_alias: str | None = setting(
        "SHADOW_ALIAS",
        None,
        "optional_alias",
        "an alias (e.g. `challenger`) whose version also forecasts mirrored requests, after "
        "each answer and off its path, for the prediction log only (unset: off); loaded and "
        "followed like `MODEL_ALIAS`, and never able to change or delay an answer",
    )
    shadow_sample: float = setting(
        "SHADOW_SAMPLE",
        1.0,
        "fraction",
        "the share of predictions mirrored to the shadow, 0 to 1",
    )
    # Callbacks: total budget per delivery, optional Standard Webhooks secret, allow-list.
    callback_timeout: float = setting(
        "CALLBACK_TIMEOUT",
        5.0,
        "number",
        "total seconds per callback delivery, retries included",
        positive=True,
    )
    callback_secret: str | None = setting(
        "CALLBACK_SECRET",
        None,
        "callback_secret",
        "Standard Webhooks signing secret (`whsec_<base64>` or any other string); a `whsec_` "
        "secret that is not base64 stops start-up",
    )
    callback_allowed_networks: tuple[IPNetwork, ...] = setting(
        "CALLBACK_ALLOWED_NETWORKS",
        (),
        "networks",
        "comma-separated CIDRs callbacks may reach although private or loopback (`make run` "
        "sets `127.0.0.1/32`)",
    )
    callback_max_connections: int = setting(
        "CALLBACK_MAX_CONNECTIONS",
        100,
        "integer",
        "most callback connections open at once, all receivers together",
        minimum=1,
    )
    callback_max_connections_per_host: int = setting(
        "CALLBACK_MAX_CONNECTIONS_PER_HOST",
        16,
        "integer",
        "most of those one receiver (host and port) may hold: one slow receiver cannot "
        "starve the others",
        minimum=1,
    )
    # Batching: at most this many windows per model call; wait this long for more (0: never).
    max_batch_size: int = setting(
        "MAX_BATCH_SIZE", 64, "integer", "most windows coalesced into one model call", minimum=1
    )
    max_batch_wait_ms: float = setting(
        "MAX_BATCH_WAIT_MS",
        0.0,
        "number",
        "how long a batch waits for more requests (0: never waits)",
        unit="milliseconds",
    )
    # Measured in the gateway, a lone window of this project's network costs 0.45-0.65 ms of
    # CPU (more through the thread, which the hop adds to): a bound of 0.5 ms flipped a c=1
    # gateway between the two paths from one start to the next (p50 0.7 vs 1.5 ms).
    inline_predict_max_ms: float = setting(
        "INLINE_PREDICT_MAX_MS",
        1.0,
        "number",
        "a window whose request is the only one being handled, with the model idle, runs on "
        "the event loop instead of the model thread while the served version's measured CPU "
        "cost for one window (a moving average) stays within this (0: always the thread; also "
        "off when `MAX_BATCH_WAIT_MS` > 0)",
        unit="milliseconds",
    )
    # Room for long windows, yet the worst body this size, one of tiny arrays, parses in little
    # time on the event loop (RELIABILITY.md).
    max_body_bytes: int = setting(
        "MAX_BODY_BYTES",
        256 * 1024,
        "integer",
        "larger bodies get 413 without being read (a 12 x 18 window is about 5 KB, a 365 x 18 "
        "one about 130 KB)",
        minimum=1024,
    )
    # A bound on one request's model call and on its body, which is parsed on the event loop.
    infer_max_windows: int = setting(
        "INFER_MAX_WINDOWS",
        256,
        "integer",
        "most windows (N) in one `POST /v2/models/{name}/infer` (the Open Inference Protocol "
        "route, docs/api.md); more get 400. 256 keeps a request one short model call and its "
        "body quick to parse. That route's body limit follows from it: 32 bytes for each of "
        "the INFER_MAX_WINDOWS x T x F values plus 64 KiB (1.8 MB at 256 x 12 x 18), or "
        "`MAX_BODY_BYTES` if larger",
        minimum=1,
    )
    admin_token: str | None = setting(
        "GATEWAY_ADMIN_TOKEN",
        None,
        "bearer_token",
        "when set, `/reload` needs `Authorization: Bearer <token>` (else 401); an RFC 6750 "
        "bearer token (ASCII letters, digits, `-._~+/`, optional trailing `=`)",
    )
    allowed_origins: frozenset[str] = setting(
        "ALLOWED_ORIGINS",
        frozenset(),
        "origins",
        "comma-separated origins (`scheme://host[:port]`) besides the gateway's own whose "
        "browser POSTs are served (docs/api.md, cross-site requests)",
    )
    shutdown_grace_seconds: float = setting(
        "SHUTDOWN_GRACE_SECONDS",
        10.0,
        "number",
        "after SIGTERM, how long requests in flight may take to finish",
    )
    log_format: str = setting(
        "LOG_FORMAT",
        "text",
        "choice",
        "`json` for one JSON object per line",
        choices=("text", "json"),
    )
    access_log: bool = setting(
        "ACCESS_LOG", True, "flag", "one log line per request (`gateway.access`)"
    )
    # Prediction log (off when unset): a JSON line per forecast, rotated by size.
    prediction_log: str | None = setting(
        "PREDICTION_LOG",
        None,
        "optional_text",
        "path of the prediction log (off when unset); `{pid}` in it becomes the process id",
    )
    prediction_log_inputs: bool = setting(
        "PREDICTION_LOG_INPUTS", False, "flag", "`true` logs the whole `X` instead of its SHA-256"
    )
    prediction_log_max_bytes: int = setting(
        "PREDICTION_LOG_MAX_BYTES",
        100 * 1024 * 1024,
        "integer",
        "size at which the log rotates",
        minimum=4096,
    )
    prediction_log_backups: int = setting(
        "PREDICTION_LOG_BACKUPS",
        5,
        "integer",
        "rotated files kept (`path.1` ... `path.N`)",
        minimum=1,
    )
    prediction_log_mode: int = setting(
        "PREDICTION_LOG_MODE",
        0o600,
        "file_mode",
        "octal permissions of each new prediction log file (it holds clients' forecasts)",
    )
    # Connection limits (gateway/http_limits.py).
    http_idle_timeout: int = setting(
        "HTTP_IDLE_TIMEOUT",
        5,
        "integer",
        "whole seconds a connection may stay open without a request in progress (new, or "
        "between keep-alive requests)",
        minimum=1,
    )
    http_read_timeout: float = setting(
        "HTTP_READ_TIMEOUT",
        30.0,
        "number",
        "seconds from a request's first byte to the end of its body; a slower request gets "
        "408 and its connection is closed",
        positive=True,
    )
    http_write_timeout: float = setting(
        "HTTP_WRITE_TIMEOUT",
        30.0,
        "number",
        "seconds a connection may go without its client reading what the gateway writes (its "
        "buffers stay full); then it is cut off and counted",
        positive=True,
    )
    http_max_pipeline: int = setting(
        "HTTP_MAX_PIPELINE",
        8,
        "integer",
        "most pipelined requests queued on one connection behind the one being answered; a "
        "client that sends more has its connection closed",
        minimum=0,
    )
    http_max_header_bytes: int = setting(
        "HTTP_MAX_HEADER_BYTES",
        32 * 1024,
        "integer",
        "most bytes of a request line plus headers; more gets 431 and the connection is closed",
        minimum=1024,
    )
    http_max_connections: int = setting(
        "HTTP_MAX_CONNECTIONS",
        512,
        "integer",
        "most client connections open at once on the main port; the next one is answered 503 "
        "and closed. Keep it under `ulimit -n` minus `CALLBACK_MAX_CONNECTIONS` minus ~80 (the "
        "gateway warns at start if not)",
        minimum=1,
    )
    probe_port: int | None = setting(
        "PROBE_PORT",
        None,
        "port",
        "a second port, on the same host, serving `GET /health` and `/ready` only with 16 "
        "connections of its own: clients filling `HTTP_MAX_CONNECTIONS` cannot fail a probe "
        "pointed there",
    )

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        reader = _Reader(environ)
        return cls(**{f.name: _read(reader, f) for f in fields(cls)})


def _read(reader: _Reader, f: Any) -> Any:
    meta = f.metadata
    return getattr(reader, meta["read"])(meta["env"], f.default, **meta["options"])


def declared() -> list[tuple[str, str, str]]:
    """(variable, default as documented, meaning) of every setting, in declaration order."""
    return [
        (f.metadata["env"], _shown(f.default, f.metadata["read"]), f.metadata["doc"])
        for f in fields(Settings)
    ]


def settings_table() -> str:
    """The configuration table of docs/configuration.md, from the declaration."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{env}` | {default} | {doc} |" for env, default, doc in declared()]
    return "\n".join(rows) + "\n"


def _shown(default: Any, read: str) -> str:
    if default is None:
        return "unset"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if read == "file_mode":
        return f"`{default:o}`"
    if isinstance(default, tuple | frozenset):
        return "empty"
    if isinstance(default, float) and default.is_integer():
        return f"`{int(default)}`"
    return f"`{default}`"


if __name__ == "__main__":
    print(settings_table(), end="")
