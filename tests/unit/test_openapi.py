"""The OpenAPI document is complete and valid: openapi-spec-validator passes it, every route of
the app is in it with an operationId, POST /reload carries the bearer scheme, and every body and
answer has an example that its own schema accepts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from starlette.routing import Route

from gateway.app import create_app
from gateway.contract import version_contract
from gateway.errors import PREDICT_PREFIX
from gateway.openapi import openapi_document
from gateway.settings import Settings
from model_wrapper.model.contract import input_contract
from model_wrapper.model.features import FEATURE_NAMES, N_FEATURES
from tests.helpers import SEQ_LEN

# What a version of this wrapper declares: the document /openapi.json serves once it is served.
DECLARED = version_contract({"input_contract": input_contract(SEQ_LEN, N_FEATURES, FEATURE_NAMES)})

# Routes that serve the document itself or its viewer, not the API.
NOT_API = {
    "/openapi.json",
    "/docs",
    "/docs/init.js",
    *(
        f"/docs/assets/{name}"
        for name in ("swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png")
    ),
}


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def examples(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """(where, schema, example) for every request and response body, callbacks included."""
    for path, method, operation in operations(doc):
        bodies = [("request", operation.get("requestBody", {}))]
        bodies += [(status, answer) for status, answer in operation["responses"].items()]
        for callback in operation.get("callbacks", {}).values():
            for item in callback.values():
                bodies.append(("callback", item["post"]["requestBody"]))
        for what, body in bodies:
            for media_type, content in body.get("content", {}).items():
                yield (
                    f"{method} {path} {what} {media_type}",
                    content["schema"],
                    content.get("example"),
                )


@pytest.mark.parametrize(
    "environ",
    [{}, {"GATEWAY_ADMIN_TOKEN": "t"}, {"SEQ_LEN_REQUIRED": "30", "N_FEATURES_REQUIRED": "5"}],
    ids=["default", "admin-token", "other-shape"],
)
def test_the_document_passes_the_openapi_validator(environ: dict[str, str]) -> None:
    doc = openapi_document(Settings.from_environ(environ))
    assert doc["openapi"].startswith("3.1")
    validate(doc)  # raises OpenAPIValidationError naming the first problem


def test_x_is_documented_by_the_served_versions_contract() -> None:
    doc = openapi_document(Settings(), DECLARED)
    validate(doc)
    x = doc["components"]["schemas"]["PredictPayload"]["properties"]["X"]
    assert (x["minItems"], x["maxItems"]) == (SEQ_LEN, SEQ_LEN)
    columns = {column["title"]: column for column in x["items"]["prefixItems"]}
    assert list(columns) == list(FEATURE_NAMES) and x["items"]["items"] is False
    assert columns["close"]["exclusiveMinimum"] == 0 and "minimum" not in columns["close"]
    assert columns["volume"]["minimum"] == 0
    limit = columns["rsi_14"]["maximum"]
    assert columns["rsi_14"]["minimum"] == -limit and limit == float(np.finfo(np.float32).max)
    # Before a version is served: the rule the shape implies, for every value alike.
    shape_only = openapi_document(Settings())["components"]["schemas"]["PredictPayload"]
    assert shape_only["properties"]["X"]["items"]["items"] == {
        "type": "number",
        "minimum": -limit,
        "maximum": limit,
    }
    # The 400 example is the gateway's own refusal, with the spec's prefix from errors.py.
    example = doc["paths"]["/predict"]["post"]["responses"]["400"]["content"]["application/json"]
    assert example["example"]["detail"] == (
        PREDICT_PREFIX + f"X has the wrong shape: expected [{SEQ_LEN}, {N_FEATURES}] "
        "(SEQ_LEN_REQUIRED x N_FEATURES_REQUIRED), got 3 rows"
    )


def test_every_route_is_documented_with_an_operation_id() -> None:
    app = create_app(Settings())
    routes = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route) and route.path not in NOT_API
        for method in route.methods or ()
        if method != "HEAD"
    }
    doc = openapi_document(Settings())
    documented = {(path, method) for path, method, _ in operations(doc)}
    assert documented == routes
    assert {path for path, _ in routes} == {
        "/health", "/ready", "/predict", "/reload", "/metrics",
        # The Open Inference Protocol (KServe V2) beside the spec's API.
        "/v2/health/live", "/v2/health/ready", "/v2/models/{name}", "/v2/models/{name}/ready",
        "/v2/models/{name}/infer",
    }  # fmt: skip
    ids = [operation["operationId"] for _, _, operation in operations(doc)]
    assert len(ids) == len(set(ids)) == len(routes)


def test_reload_requires_the_bearer_scheme_when_a_token_is_set() -> None:
    with_token = openapi_document(Settings(admin_token="t"))
    assert with_token["components"]["securitySchemes"]["adminToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": with_token["components"]["securitySchemes"]["adminToken"]["description"],
    }
    assert with_token["paths"]["/reload"]["post"]["security"] == [{"adminToken": []}]
    assert "401" in with_token["paths"]["/reload"]["post"]["responses"]
    # Without a token /reload is open: the scheme is offered, and no auth (`{}`) also passes.
    open_reload = openapi_document(Settings())["paths"]["/reload"]["post"]["security"]
    assert open_reload == [{"adminToken": []}, {}]
    # The other routes never ask for a token.
    for path, _, operation in operations(with_token):
        if path != "/reload":
            assert "security" not in operation


@pytest.mark.parametrize("declared", [False, True], ids=["shape-only", "declared"])
def test_every_body_and_answer_has_an_example_its_schema_accepts(declared: bool) -> None:
    doc = openapi_document(Settings(), DECLARED if declared else None)
    seen = 0
    for where, schema, example in examples(doc):
        assert example is not None, f"{where} has no example"
        # The document's schemas are JSON Schema 2020-12; refs resolve against the document.
        validator = Draft202012Validator({**schema, "components": doc["components"]})
        errors = [e.message for e in validator.iter_errors(example)]
        assert not errors, (where, errors)
        seen += 1
    assert seen >= 15
