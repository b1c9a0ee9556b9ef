"""/docs in a real headless Chromium (Debian's `chromium`, driven by Playwright through
`executable_path`; never a downloaded browser): Swagger UI lists the routes, "Try it out" on
POST /predict with the example body gets a 200, and nothing is loaded from another host.

DOCS_SCREENSHOTS=<dir> keeps the screenshots (the README's docs/swagger-ui*.png come from it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from playwright.sync_api import sync_playwright

from tests.helpers import LiveGateway, require_debian_tool

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def test_docs_page_and_assets_are_served_by_the_gateway(live_gateway: LiveGateway) -> None:
    page = httpx.get(f"{live_gateway.url}/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    bundle = httpx.get(f"{live_gateway.url}/docs/assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200
    # Swagger UI 4.x renders an OpenAPI 3.1 document as a blank page.
    version = bundle.text.split('PACKAGE_VERSION:"', 1)[1].split('"', 1)[0]
    assert int(version.split(".")[0]) >= 5, version


def test_swagger_ui_lists_the_routes_and_try_it_out_predicts(
    live_gateway: LiveGateway, tmp_path: Path
) -> None:
    chromium = require_debian_tool("chromium", "chromium")
    origin = live_gateway.url
    requested: list[str] = []
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("request", lambda r: requested.append(r.url))
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            # A Content-Security-Policy violation is reported as a console error.
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.goto(f"{origin}/docs")
            page.wait_for_selector(".opblock-summary-path", timeout=30_000)
            paths = set(page.locator(".opblock-summary-path").all_inner_texts())
            assert {"/health", "/predict", "/reload", "/ready", "/metrics"} <= paths

            predict = page.locator("#operations-default-predict")
            predict.locator(".opblock-summary").click()
            predict.get_by_role("button", name="Try it out").click()
            predict.get_by_role("button", name="Execute").click()
            status = predict.locator(".live-responses-table .response .response-col_status")
            status.first.wait_for(timeout=30_000)
            assert status.first.inner_text().strip() == "200"
            body = predict.locator(".live-responses-table .response-col_description pre").first
            assert '"pred_btc_close_next"' in body.inner_text()
            # The route list, and the answer "Try it out" got.
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(tmp_path / "swagger-ui.png"))
            answer = predict.locator(".live-responses-table").first
            answer.screenshot(path=str(tmp_path / "swagger-ui-try-it-out.png"))
        finally:
            browser.close()
    for shot in ("swagger-ui.png", "swagger-ui-try-it-out.png"):
        assert (tmp_path / shot).stat().st_size > 0
        if os.environ.get("DOCS_SCREENSHOTS"):
            shutil.copyfile(tmp_path / shot, Path(os.environ["DOCS_SCREENSHOTS"]) / shot)
    assert not problems, problems
    # Everything the page loaded came from the gateway (data: URIs are inline images).
    elsewhere = [
        url
        for url in requested
        if not url.startswith("data:") and urlsplit(url).netloc != urlsplit(origin).netloc
    ]
    assert requested and not elsewhere, elsewhere
