"""The HTTP floor: the least a Python server must do per /predict, under the gateway's uvicorn.

Its POST endpoint reads and parses the same 12x18 JSON body (orjson, as the gateway does) and
returns a constant JSON: no validation, no numpy, no model. Whatever the gateway costs above this
is its own work.

    python -m benchmarks.floor_app --host 127.0.0.1 --port 8001
"""

from __future__ import annotations

import argparse

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ANSWER = orjson.dumps({"pred_btc_close_next": 0.0, "posted_to_callback": False})


async def predict(request: Request) -> Response:
    payload = orjson.loads(await request.body())
    if type(payload) is not dict or "X" not in payload:
        return Response(b'{"detail":"X is required"}', 400, media_type="application/json")
    return Response(ANSWER, media_type="application/json")


async def health(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


def create_app() -> Starlette:
    return Starlette(
        routes=[Route("/predict", predict, methods=["POST"]), Route("/health", health)]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor_app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    # The same uvicorn.run arguments as gateway/__main__.py, so only the app differs.
    uvicorn.run(
        create_app(),
        host=args.host,
        port=args.port,
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
