"""`/docs`: Swagger UI for the live /openapi.json, every asset served by the gateway itself.

The assets come from the `swagger-ui-py` package (Swagger UI 5: 4.x shows a blank page for an
OpenAPI 3.1 document), and only the three the page uses are served (the package also holds the
Swagger Editor and source maps, up to 8 MB a file). The page's Content-Security-Policy only
allows this origin, so nothing is ever loaded from another host; Swagger UI's online validator
badge (which would call validator.swagger.io) is switched off.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

# Relative URLs, so the page also works when a proxy mounts the gateway under a path prefix.
_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - Swagger UI</title>
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script src="docs/init.js"></script>
</body>
</html>
"""

# A file, not an inline script: the policy below allows scripts from this origin only.
_INIT = """window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
});
"""

# What the page above loads from the package, by media type.
ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "favicon-32x32.png": "image/png",
}

# Swagger UI sets inline styles and draws some icons as data: URIs.
_POLICY = (
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'none'"
)


def swagger_ui_dir() -> Path:
    """The package's static folder, found without importing the package (its __init__ pulls in
    jinja2 and yaml for web frameworks this gateway does not use)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or spec.origin is None:
        raise RuntimeError("the swagger-ui-py package is not installed; /docs needs it")
    return Path(spec.origin).parent / "static"


def docs_routes(title: str) -> list[Route]:
    page = _PAGE.format(title=title).encode()
    headers = {"Content-Security-Policy": _POLICY, "X-Content-Type-Options": "nosniff"}

    async def docs(request: Request) -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=headers)

    async def init(request: Request) -> Response:
        return Response(_INIT, media_type="text/javascript", headers=headers)

    def asset(name: str, media_type: str) -> Route:
        path = swagger_ui_dir() / name

        async def serve(request: Request) -> Response:
            return FileResponse(path, media_type=media_type, headers=headers)

        return Route(f"/docs/assets/{name}", serve, methods=["GET"])

    return [
        Route("/docs", docs, methods=["GET"]),
        Route("/docs/init.js", init, methods=["GET"]),
        *(asset(name, media_type) for name, media_type in ASSETS.items()),
    ]
