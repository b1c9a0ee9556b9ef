"""`python -m gateway [--host H] [--port P]`: the gateway under uvicorn, settings from the
environment (see README)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import math
import os
import resource
import signal
import sys
from typing import Any

import uvicorn

from gateway.app import create_app
from gateway.http_limits import PROBE_MAX_CONNECTIONS, HttpLimits, protocol_with
from gateway.metrics import Metrics
from gateway.process import prepare_process
from gateway.settings import Settings, SettingsError


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_environ(os.environ)
    except SettingsError as e:
        sys.exit(f"gateway: bad setting: {e}")
    prepare_process(settings, args.log_level)
    if settings.admin_token is None and not _is_loopback(args.host):
        logging.getLogger("gateway").warning(
            "listening on %s with POST /reload open to anyone who can reach it: "
            "set GATEWAY_ADMIN_TOKEN to require a bearer token",
            args.host,
        )
    _warn_if_files_run_short(settings)
    # uvicorn drains in-flight requests on SIGTERM/SIGINT, then re-raises the signal with the
    # handlers it found: make those a clean exit, so a graceful stop exits 0 (no traceback).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    metrics = Metrics()
    config = uvicorn.Config(
        create_app(settings, metrics=metrics),
        host=args.host,
        port=args.port,
        **server_options(settings, metrics, args.log_level),
    )
    sockets = [config.bind_socket()]
    if settings.probe_port is not None:
        # The probes' listener: the same server and app, its own connections (http_limits).
        probes = uvicorn.Config(config.app, host=args.host, port=settings.probe_port)
        sockets.append(probes.bind_socket())
    uvicorn.Server(config).run(sockets=sockets)


def server_options(settings: Settings, metrics: Metrics, log_level: str = "info") -> dict[str, Any]:
    """uvicorn's options for a gateway whose app reports to `metrics` (tests run their
    in-process servers with the same)."""
    return {
        "log_level": log_level,
        "log_config": None,  # keep the handlers configure_logging installed (JSON or text)
        "access_log": False,  # the gateway writes its own line per request (gateway.access)
        "timeout_graceful_shutdown": math.ceil(settings.shutdown_grace_seconds),
        "http": protocol_with(
            HttpLimits(
                idle_timeout=settings.http_idle_timeout,
                read_timeout=settings.http_read_timeout,
                write_timeout=settings.http_write_timeout,
                max_header_bytes=settings.http_max_header_bytes,
                max_connections=settings.http_max_connections,
                max_pipeline=settings.http_max_pipeline,
                probe_port=settings.probe_port,
            ),
            metrics,
            settings.access_log,
        ),
        # uvicorn's keep-alive timer, which the protocol also arms for a new connection.
        "timeout_keep_alive": settings.http_idle_timeout,
    }


def _warn_if_files_run_short(settings: Settings) -> None:
    # Client connections, callback connections and the process's own files share one limit:
    # if it is lower than the caps allow, the process fails before the caps protect it.
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    probes = PROBE_MAX_CONNECTIONS if settings.probe_port is not None else 0
    needed = settings.http_max_connections + settings.callback_max_connections + probes + 64
    if soft != resource.RLIM_INFINITY and soft < needed:
        logging.getLogger("gateway").warning(
            "the open-file limit (%d) is lower than HTTP_MAX_CONNECTIONS + "
            "CALLBACK_MAX_CONNECTIONS + the probe listener's + 64 (%d): lower "
            "HTTP_MAX_CONNECTIONS or raise ulimit -n",
            soft,
            needed,
        )


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


if __name__ == "__main__":
    main()
