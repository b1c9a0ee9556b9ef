"""The live gateway's /openapi.json: valid, the served version's contract and input example,
and its /predict example a window the served model answers."""

from __future__ import annotations

from pathlib import Path

import httpx
import mlflow
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from gateway.contract import version_contract
from gateway.openapi import openapi_document
from gateway.settings import Settings
from model_wrapper.model.contract import input_contract
from model_wrapper.model.features import FEATURE_NAMES, N_FEATURES
from tests.helpers import MODEL_NAME, SEQ_LEN, LiveGateway

# What a version of this wrapper declares: the document /openapi.json serves once it is served.
DECLARED = version_contract({"input_contract": input_contract(SEQ_LEN, N_FEATURES, FEATURE_NAMES)})


def test_the_live_document_and_its_predict_example(
    live_gateway: LiveGateway, tmp_path: Path
) -> None:
    live = httpx.get(f"{live_gateway.url}/openapi.json").json()
    validate(live)
    # The served version's contract, as the gateway enforces it, and its logged input example.
    local = mlflow.artifacts.download_artifacts(
        f"models:/{MODEL_NAME}@staging", dst_path=str(tmp_path)
    )
    logged = mlflow.models.Model.load(local).load_input_example(local)[0].tolist()
    settings = Settings(admin_token=live_gateway.admin_token)
    assert live == openapi_document(settings, DECLARED, logged)
    health = httpx.get(f"{live_gateway.url}/health").json()
    assert health["model_runtime"] == "numpy"
    validator = Draft202012Validator(
        {**live["components"]["schemas"]["Health"], "components": live["components"]}
    )
    assert not list(validator.iter_errors(health))
    assert live["paths"]["/reload"]["post"]["security"] == [{"adminToken": []}]
    example = live["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    # The example Swagger UI's "Try it out" sends is a window the served model answers.
    r = httpx.post(f"{live_gateway.url}/predict", json=example["example"], timeout=30)
    assert r.status_code == 200, r.text
    response_schema = live["paths"]["/predict"]["post"]["responses"]["200"]["content"][
        "application/json"
    ]["schema"]
    validator = Draft202012Validator({**response_schema, "components": live["components"]})
    assert not list(validator.iter_errors(r.json()))
