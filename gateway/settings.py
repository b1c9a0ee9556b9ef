"""Gateway settings, read once from an environment mapping into a frozen object."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from gateway.aliases import alias_refusal
from gateway.webhooks.policy import IPNetwork, parse_networks
from gateway.webhooks.signing import signing_key

_T = TypeVar("_T")


class SettingsError(ValueError):
    """A variable has a value the gateway cannot start with; the message names it."""


@dataclass(frozen=True)
class Settings:
    # The spec's five variables.
    mlflow_tracking_uri: str = "http://127.0.0.1:5000"
    registered_model_name: str = "BTC_LSTM_Production"
    model_alias: str = "staging"
    seq_len_required: int = 12
    n_features_required: int = 18
    # Start-up: retry every interval seconds, give up after timeout seconds (then /reload).
    model_load_retry_interval: float = 5.0
    model_load_timeout: float = 300.0
    # Callbacks: total budget per delivery, optional Standard Webhooks secret, allow-list.
    callback_timeout: float = 5.0
    callback_secret: str | None = None
    callback_allowed_networks: tuple[IPNetwork, ...] = ()
    # Batching: at most this many windows per model call; wait this long for more (0: never).
    max_batch_size: int = 64
    max_batch_wait_ms: float = 0.0
    # Versions kept loaded, so that switching between aliases costs a registry lookup, not a
    # load: at least the number of aliases /reload switches between.
    model_cache_size: int = 2
    # Room for long windows (README: MAX_BODY_BYTES), yet the worst body this size, one of tiny
    # arrays, parses in little time on the event loop (RELIABILITY.md has the figures).
    max_body_bytes: int = 256 * 1024
    # Bearer token that /reload requires when set; unset leaves /reload open.
    admin_token: str | None = None
    # Origins (scheme://host[:port]) besides the gateway's own whose browser POSTs are served.
    allowed_origins: frozenset[str] = frozenset()
    # Seconds uvicorn lets in-flight requests finish after SIGTERM.
    shutdown_grace_seconds: float = 10.0
    # Seconds between checks that the served alias still points at the served version (0: off).
    model_poll_interval: float = 30.0
    log_format: str = "text"  # or "json"
    access_log: bool = True  # one line per request
    # Prediction log (off when unset): a JSON line per answered prediction, rotated by size.
    # "{pid}" in the path becomes the process id (one file per uvicorn worker).
    prediction_log: str | None = None
    prediction_log_inputs: bool = False  # the whole X instead of its SHA-256
    prediction_log_max_bytes: int = 100 * 1024 * 1024
    prediction_log_backups: int = 5
    prediction_log_mode: int = 0o600  # permissions of a new prediction log file
    # Connection limits (gateway/http_limits.py) and the callback pool's share per receiver.
    http_idle_timeout: int = 5
    http_read_timeout: float = 30.0
    # Seconds a connection may go without its client reading what the gateway writes.
    http_write_timeout: float = 30.0
    http_max_pipeline: int = 8  # requests queued behind the one being answered, per connection
    http_max_header_bytes: int = 32 * 1024
    http_max_connections: int = 512
    # A second listener for liveness and readiness probes only, with connections of its own,
    # so that clients filling HTTP_MAX_CONNECTIONS cannot fail the probes (None: off).
    probe_port: int | None = None
    callback_max_connections: int = 100
    callback_max_connections_per_host: int = 16
    # A lone window runs on the event loop, not the model thread, while the served model's
    # measured cost for one window stays within this many milliseconds (0: always the thread).
    inline_predict_max_ms: float = 0.5

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        d = cls()
        r = _Reader(environ)
        return cls(
            mlflow_tracking_uri=r.text("MLFLOW_TRACKING_URI", d.mlflow_tracking_uri),
            registered_model_name=r.text("REGISTERED_MODEL_NAME", d.registered_model_name),
            model_alias=r.alias("MODEL_ALIAS", d.model_alias),
            seq_len_required=r.integer("SEQ_LEN_REQUIRED", d.seq_len_required, minimum=1),
            n_features_required=r.integer("N_FEATURES_REQUIRED", d.n_features_required, minimum=1),
            model_load_retry_interval=r.number(
                "MODEL_LOAD_RETRY_INTERVAL", d.model_load_retry_interval, positive=True
            ),
            model_load_timeout=r.number("MODEL_LOAD_TIMEOUT", d.model_load_timeout),
            callback_timeout=r.number("CALLBACK_TIMEOUT", d.callback_timeout, positive=True),
            callback_secret=_callback_secret(environ.get("CALLBACK_SECRET") or None),
            callback_allowed_networks=r.networks("CALLBACK_ALLOWED_NETWORKS"),
            max_batch_size=r.integer("MAX_BATCH_SIZE", d.max_batch_size, minimum=1),
            max_batch_wait_ms=r.number(
                "MAX_BATCH_WAIT_MS", d.max_batch_wait_ms, unit="milliseconds"
            ),
            inline_predict_max_ms=r.number(
                "INLINE_PREDICT_MAX_MS", d.inline_predict_max_ms, unit="milliseconds"
            ),
            model_cache_size=r.integer("MODEL_CACHE_SIZE", d.model_cache_size, minimum=1),
            max_body_bytes=r.integer("MAX_BODY_BYTES", d.max_body_bytes, minimum=1024),
            admin_token=_bearer_token(environ.get("GATEWAY_ADMIN_TOKEN") or None),
            allowed_origins=r.origins("ALLOWED_ORIGINS"),
            shutdown_grace_seconds=r.number("SHUTDOWN_GRACE_SECONDS", d.shutdown_grace_seconds),
            model_poll_interval=r.number("MODEL_POLL_INTERVAL", d.model_poll_interval),
            log_format=r.choice("LOG_FORMAT", d.log_format, ("text", "json")),
            access_log=r.choice("ACCESS_LOG", "true", ("true", "false")) == "true",
            prediction_log=environ.get("PREDICTION_LOG", "").strip() or None,
            prediction_log_inputs=r.choice("PREDICTION_LOG_INPUTS", "false", ("true", "false"))
            == "true",
            prediction_log_max_bytes=r.integer(
                "PREDICTION_LOG_MAX_BYTES", d.prediction_log_max_bytes, minimum=4096
            ),
            prediction_log_backups=r.integer(
                "PREDICTION_LOG_BACKUPS", d.prediction_log_backups, minimum=1
            ),
            prediction_log_mode=r.file_mode("PREDICTION_LOG_MODE", d.prediction_log_mode),
            http_idle_timeout=r.integer("HTTP_IDLE_TIMEOUT", d.http_idle_timeout, minimum=1),
            http_read_timeout=r.number("HTTP_READ_TIMEOUT", d.http_read_timeout, positive=True),
            http_write_timeout=r.number("HTTP_WRITE_TIMEOUT", d.http_write_timeout, positive=True),
            http_max_pipeline=r.integer("HTTP_MAX_PIPELINE", d.http_max_pipeline, minimum=0),
            http_max_header_bytes=r.integer(
                "HTTP_MAX_HEADER_BYTES", d.http_max_header_bytes, minimum=1024
            ),
            http_max_connections=r.integer(
                "HTTP_MAX_CONNECTIONS", d.http_max_connections, minimum=1
            ),
            probe_port=r.port("PROBE_PORT"),
            callback_max_connections=r.integer(
                "CALLBACK_MAX_CONNECTIONS", d.callback_max_connections, minimum=1
            ),
            callback_max_connections_per_host=r.integer(
                "CALLBACK_MAX_CONNECTIONS_PER_HOST", d.callback_max_connections_per_host, minimum=1
            ),
        )


# RFC 6750's b64token: what may follow "Bearer " in an Authorization header, ASCII only.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_ORIGIN = re.compile(r"https?://[^/?#@\s]+", re.IGNORECASE)


def _bearer_token(value: str | None) -> str | None:
    if value is not None and not _B64TOKEN.fullmatch(value):
        raise SettingsError(
            "GATEWAY_ADMIN_TOKEN must be a bearer token: ASCII letters, digits and -._~+/ "
            "(then optional '=' padding), with no spaces"
        )
    return value


def _callback_secret(value: str | None) -> str | None:
    if value is not None:
        try:
            signing_key(value)
        except ValueError as e:
            raise SettingsError(f"CALLBACK_SECRET: {e}") from None
    return value


@dataclass(frozen=True)
class _Reader:
    environ: Mapping[str, str]

    def text(self, name: str, default: str) -> str:
        value = self.environ.get(name, default).strip()
        if not value:
            raise SettingsError(f"{name} must not be empty")
        return value

    def alias(self, name: str, default: str) -> str:
        value = self.text(name, default)
        refusal = alias_refusal(value)
        if refusal:
            raise SettingsError(f"{name}: {refusal}")
        return value

    def origins(self, name: str) -> frozenset[str]:
        origins = frozenset(re.split(r"[\s,]+", self.environ.get(name, "").strip())) - {""}
        for origin in origins:
            if not _ORIGIN.fullmatch(origin):
                raise SettingsError(
                    f"{name} must be comma-separated origins such as https://gateway.example.com "
                    f"(scheme://host[:port], no path), got {origin!r}"
                )
        return frozenset(origin.lower() for origin in origins)

    def port(self, name: str) -> int | None:
        value = self._parsed(name, int, "a port number")
        if value is not None and not 1 <= value <= 65535:
            raise SettingsError(f"{name} must be a port from 1 to 65535, got {value}")
        return value

    def file_mode(self, name: str, default: int) -> int:
        value = self._parsed(name, lambda text: int(text, 8), "an octal file mode such as 600")
        if value is None:
            return default
        if not 0 <= value <= 0o777:
            raise SettingsError(f"{name} must be an octal file mode from 000 to 777")
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.environ.get(name, default).strip().lower()
        if value not in choices:
            raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value

    def networks(self, name: str) -> tuple[IPNetwork, ...]:
        try:
            return parse_networks(self.environ.get(name, ""))
        except ValueError as e:
            raise SettingsError(f"{name} must be comma-separated CIDRs: {e}") from None

    def integer(self, name: str, default: int, minimum: int) -> int:
        value = self._parsed(name, int, "an integer")
        if value is None:
            return default
        if value < minimum:
            raise SettingsError(f"{name} must be at least {minimum}, got {value}")
        return value

    def number(
        self, name: str, default: float, positive: bool = False, unit: str = "seconds"
    ) -> float:
        value = self._parsed(name, float, f"a number of {unit}")
        if value is None:
            return default
        if not value >= 0 or value == float("inf") or (positive and value == 0):
            bound = "greater than 0" if positive else "0 or more"
            raise SettingsError(
                f"{name} must be a finite number {bound}, got {self.environ[name]!r}"
            )
        return value

    def _parsed(self, name: str, parse: Callable[[str], _T], what: str) -> _T | None:
        """The variable read by `parse`, None when unset; SettingsError naming it otherwise."""
        raw = self.environ.get(name)
        if raw is None:
            return None
        try:
            return parse(raw.strip())
        except ValueError:
            raise SettingsError(f"{name} must be {what}, got {raw!r}") from None
