"""The files around the code agree with it: conda.yaml and pyproject pins, MLproject entry
points, and the settings' defaults with the spec."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from model_wrapper.training.recipe import TrainConfig
from tests.helpers import Outcome

ROOT = Path(__file__).resolve().parents[2]


def test_conda_yaml_python_env_and_pyproject_name_the_same_pinned_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    conda = yaml.safe_load((ROOT / "conda.yaml").read_text())
    pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert sorted(pip) == sorted(project["dependencies"])
    assert all("==" in requirement for requirement in pip)
    assert "python=3.11" in conda["dependencies"]
    python_env = yaml.safe_load((ROOT / "python_env.yaml").read_text())
    assert sorted(python_env["dependencies"]) == sorted(project["dependencies"])
    assert python_env["python"] == "3.11"


def test_the_logged_models_requirements_match_the_pins() -> None:
    from model_wrapper.registry.publish import pip_requirements

    pins = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    assert set(pip_requirements()) <= pins


def test_mlproject_has_the_documented_entry_points() -> None:
    mlproject = yaml.safe_load((ROOT / "MLproject").read_text())
    entry_points = mlproject["entry_points"]
    assert set(entry_points) == {
        "train",
        "evaluate",
        "backtest",
        "promote",
        "wrap",
        "serve_pyfunc",
        "serve",
        "scorecard",
        "guard",
        "replay",
        "score",
    }
    # Every TrainConfig field a person tunes, and where to cut the data.
    assert set(entry_points["train"]["parameters"]) == {
        "data",
        "end",
        "epochs",
        "seq_len",
        "units",
        "ensemble",
        "learning_rate",
        "batch_size",
        "patience",
        "seed",
        "alias",
        "tolerance",
        "registered_model_name",
    }
    defaults = TrainConfig()
    for name in ("epochs", "seq_len", "units", "ensemble", "batch_size", "patience", "seed"):
        assert entry_points["train"]["parameters"][name]["default"] == str(getattr(defaults, name))
    assert float(entry_points["train"]["parameters"]["learning_rate"]["default"]) == (
        defaults.learning_rate
    )
    assert set(entry_points["score"]["parameters"]) == {"model", "data", "output", "spark_master"}
    assert {"data", "tolerance", "force"} <= set(entry_points["promote"]["parameters"])
    assert set(entry_points["evaluate"]["parameters"]) == {"model", "data", "baseline"}
    assert set(entry_points["wrap"]["parameters"]) == {
        "source",
        "registered_model_name",
        "alias",
        "data",
    }
    assert mlproject["conda_env"] == "conda.yaml"


MLPROJECT = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]


@pytest.mark.parametrize("entry_point", sorted(MLPROJECT))
def test_each_entry_points_command_is_what_its_script_takes(
    entry_point: str, run_cli: Callable[..., Outcome]
) -> None:
    """`mlflow run -e X` runs the command with the parameters put in: every parameter is used,
    every placeholder is a parameter, and the module's own parser (its --help) knows every
    option. (`mlflow run` itself runs in tests/e2e/test_tracking.py.)"""
    spec = MLPROJECT[entry_point]
    command = spec["command"]
    assert set(re.findall(r"\{(\w+)\}", command)) == set(spec.get("parameters", {}))
    words = command.split()
    assert words[:2] == ["python", "-m"]
    module = words[2]  # `python -m` runs a package's __main__
    is_package = importlib.util.find_spec(module).submodule_search_locations is not None
    help_text = run_cli(f"{module}.__main__" if is_package else module, "--help")
    assert help_text.returncode == 0, help_text.stderr
    for option in (word for word in words if word.startswith("--")):
        assert re.search(rf"{option}\b", help_text.stdout), f"{module} has no {option}"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("gateway.example", False),
    ],
)
def test_open_reload_is_warned_about_off_loopback(host: str, loopback: bool) -> None:
    """`python -m gateway` warns at start when /reload is open on a non-loopback address."""
    from gateway.__main__ import _is_loopback

    assert _is_loopback(host) is loopback
