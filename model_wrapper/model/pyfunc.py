"""The models-from-code file of every version: MLflow runs it to load a version.

It loads the `model` package logged beside it (in the version's `code/model`, or this folder
when the file runs from the repository at log time) under a name of its own, so that two versions
in one process each run the code they were logged with: a plain import would give every version
the code the process happened to import first.
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from pathlib import Path
from types import ModuleType

import mlflow


def _forecaster_module() -> ModuleType:
    here = Path(__file__).resolve().parent
    logged = here / "code" / "model"
    folder = logged if (logged / "forecaster.py").exists() else here
    if not (folder / "forecaster.py").exists():
        raise RuntimeError(f"the model's code is missing: no model/forecaster.py in {here}/code")
    name = f"btc_lstm_model_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(
        name, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    return importlib.import_module(f"{name}.forecaster")


mlflow.models.set_model(_forecaster_module().LSTMForecaster())
