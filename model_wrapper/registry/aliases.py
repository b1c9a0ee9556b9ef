"""Moving a registry alias, and remembering where it was: every move (train, promote, wrap,
guard) records the alias's previous holder on the new one, so a rollback knows where to go."""

from __future__ import annotations

from datetime import UTC, datetime

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException


def previous_holder_tag(alias: str) -> str:
    return f"previous_holder.{alias}"


def holder(name: str, alias: str) -> str | None:
    """The version `alias` points at, or None when the model has no such alias."""
    try:
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def move_alias(name: str, alias: str, version: str, moved_by: str) -> str | None:
    """Point `alias` at `version`; returns the previous holder (None if there was none), which
    the new holder's tag `previous_holder.<alias>` records ("none" for none), with when and by
    what (`moved_by`: train, promote, wrap, guard) in `alias_moved.<alias>`."""
    client = MlflowClient()
    previous = holder(name, alias)
    if previous == version:
        return previous
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    client.set_model_version_tag(name, version, previous_holder_tag(alias), previous or "none")
    client.set_model_version_tag(name, version, f"alias_moved.{alias}", f"{now} by {moved_by}")
    client.set_registered_model_alias(name, alias, version)
    return previous


def previous_holder(name: str, alias: str, version: str) -> str | None:
    """The version that held `alias` before `version` took it, as recorded; None if unknown."""
    tags = MlflowClient().get_model_version(name, version).tags or {}
    previous = tags.get(previous_holder_tag(alias))
    return previous if previous and previous != "none" else None
