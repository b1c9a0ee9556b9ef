"""What the gateway takes as a registry alias: exactly what MLflow accepts as an alias name.

MLflow reads `latest` (in any casing) as "the newest version" and reserves `v<N>` for version
numbers; passed through, either would serve a version no promotion gate ever saw. Names are
also what MLflow allows when it sets an alias: word characters and dashes, at most 255.
"""

from __future__ import annotations

import re

# mlflow.utils.validation: _REGISTERED_MODEL_ALIAS_REGEX (without its `$`, which also matches
# before a final newline), MAX_REGISTERED_MODEL_ALIAS_LENGTH, the version-alias form.
_NAME = re.compile(r"[\w\-]{1,255}")
_VERSION_FORM = re.compile(r"[vV]\d+")
SHOWN = 64  # characters of a refused alias quoted in an error


def alias_refusal(alias: str) -> str | None:
    """Why `alias` is not an alias name the gateway serves, or None."""
    if not _NAME.fullmatch(alias):
        return (
            f"alias {shown(alias)} is not an alias name: expected 1 to 255 letters, digits, "
            "underscores or dashes"
        )
    if alias.lower() == "latest":
        return (
            f"alias {shown(alias)} is refused: MLflow reads it as the newest version, which no "
            "promotion gate has seen; name an alias"
        )
    if _VERSION_FORM.fullmatch(alias):
        return f"alias {shown(alias)} is refused: MLflow reserves v<N> for version numbers"
    return None


def shown(alias: str) -> str:
    """The alias quoted for a message, cut to SHOWN characters."""
    if len(alias) <= SHOWN:
        return repr(alias)
    return f"{alias[:SHOWN]!r}... ({len(alias)} characters)"
