"""The layers keep to their rules (DESIGN.md): the gateway imports nothing from model_wrapper,
model_wrapper nothing from the gateway, and the model package, which travels inside every
version, nothing of this repository but itself, with TensorFlow and Keras only inside functions;
and no module grows past 300 lines."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT

# What a version may need where it is served: the standard library, NumPy, pandas and MLflow
# (TensorFlow and Keras as runtime fallbacks, imported lazily).
MODEL_MAY_IMPORT = {"numpy", "pandas", "mlflow"}
LAZY_ONLY = {"tensorflow", "keras"}


def imports(path: Path) -> Iterator[tuple[str, int, bool]]:
    """(module, line, at module level) for every import in a file; relative ones as '.x'."""
    tree = ast.parse(path.read_text(), str(path))
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, id(node) in top_level
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            yield module, node.lineno, id(node) in top_level


def files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize(
    ("package", "forbidden"), [("gateway", "model_wrapper"), ("model_wrapper", "gateway")]
)
def test_the_two_packages_never_import_each_other(package: str, forbidden: str) -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in files(package)
        for module, line, _ in imports(path)
        if module.split(".")[0] == forbidden
    ]
    assert found == []


def test_the_model_package_imports_only_itself_and_what_a_server_has() -> None:
    import sys

    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    found = []
    for path in files("model_wrapper/model"):
        for module, line, top in imports(path):
            root = module.split(".")[0]
            if module.startswith(".") or root in stdlib or root in MODEL_MAY_IMPORT:
                continue
            if root in LAZY_ONLY and not top:
                continue
            found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert found == []


MAX_LINES = 300
# The one exception: the gateway's settings, declared once with their docs (the configuration
# page is generated from it), read better whole.
LONG_BY_DESIGN = {"gateway/settings.py"}


def test_no_module_is_over_300_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for package in ("gateway", "model_wrapper", "scripts")
        for path in files(package)
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert {path: n for path, n in long.items() if path not in LONG_BY_DESIGN} == {}
