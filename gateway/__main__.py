"""`python -m gateway [--host H] [--port P]`: the gateway under uvicorn, settings from the
environment (see README)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import math
import os
import signal
import sys

import uvicorn

from gateway.app import create_app, prepare_process
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
    # uvicorn drains in-flight requests on SIGTERM/SIGINT, then re-raises the signal with the
    # handlers it found: make those a clean exit, so a graceful stop exits 0 (no traceback).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        log_config=None,  # keep the handlers configure_logging installed (JSON or text)
        access_log=False,  # the gateway writes its own line per request (gateway.access)
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_seconds),
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
