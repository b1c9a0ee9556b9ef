"""The files around the code agree with it: conda.yaml and pyproject pins, MLproject entry
points, and the settings' defaults with the spec."""

from __future__ import annotations

import importlib.util
import ipaddress
import re
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from gateway.settings import Settings, SettingsError
from tests.helpers import Outcome

ROOT = Path(__file__).resolve().parents[1]


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
    }
    assert set(entry_points["train"]["parameters"]) == {
        "data",
        "epochs",
        "seq_len",
        "ensemble",
        "alias",
        "tolerance",
        "registered_model_name",
    }
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
    option. (`mlflow run` itself runs in tests/test_tracking.py.)"""
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


def test_settings_defaults_are_the_specs() -> None:
    s = Settings.from_environ({})
    assert (s.mlflow_tracking_uri, s.registered_model_name, s.model_alias) == (
        "http://127.0.0.1:5000",
        "BTC_LSTM_Production",
        "staging",
    )
    assert (s.seq_len_required, s.n_features_required) == (12, 18)
    assert (s.model_load_retry_interval, s.model_load_timeout, s.callback_timeout) == (5, 300, 5)
    assert (s.max_batch_size, s.max_batch_wait_ms, s.max_body_bytes) == (64, 0, 256 * 1024)
    assert s.admin_token is None and s.callback_secret is None


def test_settings_read_every_variable() -> None:
    s = Settings.from_environ(
        {
            "MLFLOW_TRACKING_URI": "http://registry:5000",
            "REGISTERED_MODEL_NAME": "M",
            "MODEL_ALIAS": "Production",
            "SEQ_LEN_REQUIRED": "10",
            "N_FEATURES_REQUIRED": "7",
            "MODEL_LOAD_RETRY_INTERVAL": "0.5",
            "MODEL_LOAD_TIMEOUT": "0",
            "CALLBACK_TIMEOUT": "2.5",
            "CALLBACK_SECRET": "whsec_abc",
            "CALLBACK_ALLOWED_NETWORKS": "10.0.0.0/8",
            "MAX_BATCH_SIZE": "8",
            "MAX_BATCH_WAIT_MS": "2",
            "MAX_BODY_BYTES": "4096",
            "GATEWAY_ADMIN_TOKEN": "t",
            "SHUTDOWN_GRACE_SECONDS": "3",
        }
    )
    assert s == Settings(
        mlflow_tracking_uri="http://registry:5000",
        registered_model_name="M",
        model_alias="Production",
        seq_len_required=10,
        n_features_required=7,
        model_load_retry_interval=0.5,
        model_load_timeout=0.0,
        callback_timeout=2.5,
        callback_secret="whsec_abc",
        callback_allowed_networks=(ipaddress.ip_network("10.0.0.0/8"),),
        max_batch_size=8,
        max_batch_wait_ms=2.0,
        max_body_bytes=4096,
        admin_token="t",
        shutdown_grace_seconds=3.0,
    )


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"SEQ_LEN_REQUIRED": "1.5"}, "SEQ_LEN_REQUIRED must be an integer"),
        ({"SEQ_LEN_REQUIRED": "0"}, "SEQ_LEN_REQUIRED must be at least 1"),
        ({"MAX_BATCH_SIZE": "-1"}, "MAX_BATCH_SIZE must be at least 1"),
        ({"MODEL_LOAD_TIMEOUT": "-5"}, "MODEL_LOAD_TIMEOUT must be a finite number 0 or more"),
        ({"MODEL_LOAD_TIMEOUT": "nan"}, "MODEL_LOAD_TIMEOUT must be a finite number"),
        ({"CALLBACK_TIMEOUT": "inf"}, "CALLBACK_TIMEOUT must be a finite number"),
        ({"MODEL_ALIAS": "  "}, "MODEL_ALIAS must not be empty"),
        ({"MAX_BODY_BYTES": "10"}, "MAX_BODY_BYTES must be at least 1024"),
        ({"CALLBACK_ALLOWED_NETWORKS": "127.0.0.1/33"}, "CALLBACK_ALLOWED_NETWORKS must be"),
    ],
)
def test_bad_settings_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_environ(environ)


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
