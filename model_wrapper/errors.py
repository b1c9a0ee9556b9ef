"""Usage errors: what a person got wrong (data, a name, missing evidence), as opposed to a bug.

The command lines turn a UsageError into one line on stderr and exit 2; anything else is a bug
and keeps its traceback (exit 1).
"""

from __future__ import annotations


class UsageError(Exception):
    """Bad data, an unknown model, alias or version, missing evidence: one line says which."""
