"""The one parser of registry model URIs: models:/NAME/N and models:/NAME@alias."""

from __future__ import annotations

import re
from dataclasses import dataclass

_MODEL_URI = re.compile(r"models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w\-]+))")


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str | None  # exactly one of version and alias is set
    alias: str | None


def parse_model_uri(uri: str) -> ModelRef | None:
    """The registered model and version or alias a models:/ URI names; None for any other URI
    (runs:/..., a path)."""
    match = _MODEL_URI.fullmatch(uri)
    if match is None:
        return None
    return ModelRef(match["name"], match["version"], match["alias"])


def resolve_version(uri: str) -> tuple[str, str]:
    """(name, version) of the registered version a models:/ URI names now (an alias is looked
    up: it may move later). UsageError for any other URI; MlflowException for unknown names."""
    from mlflow import MlflowClient

    from model_wrapper.errors import UsageError

    ref = parse_model_uri(uri)
    if ref is None:
        raise UsageError(
            f"expected a registered version, models:/NAME/N or models:/NAME@alias; got {uri!r}"
        )
    client = MlflowClient()
    if ref.alias is not None:
        return ref.name, str(client.get_model_version_by_alias(ref.name, ref.alias).version)
    return ref.name, str(client.get_model_version(ref.name, str(ref.version)).version)
