"""The gateway's settings: the spec's defaults, every variable read, a bad value stopping start-up
with a message that names it, and the declaration as the one source of the configuration table
(docs/configuration.md) and of the variables the Kubernetes ConfigMap may set."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.__main__ import main as gateway_main
from gateway.settings import Settings, SettingsError, declared, settings_table
from tests.helpers import ROOT


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
    ("name", "value", "message"),
    [
        ("SEQ_LEN_REQUIRED", "twelve", "SEQ_LEN_REQUIRED must be an integer, got 'twelve'"),
        ("N_FEATURES_REQUIRED", "-3", "N_FEATURES_REQUIRED must be at least 1, got -3"),
        ("MODEL_LOAD_RETRY_INTERVAL", "0", "MODEL_LOAD_RETRY_INTERVAL must be a finite number"),
        ("CALLBACK_TIMEOUT", "-1", "CALLBACK_TIMEOUT must be a finite number greater than 0"),
        ("MODEL_LOAD_TIMEOUT", "soon", "MODEL_LOAD_TIMEOUT must be a number of seconds"),
    ],
)
def test_a_bad_setting_stops_start_up_naming_the_variable(
    name: str, value: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m gateway`'s main() in this process: it exits before serving anything."""
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit:
        gateway_main(["--port", "1"])
    assert str(exit.value.code).startswith("gateway: bad setting: ")
    assert message in str(exit.value.code)


@pytest.mark.parametrize("token", ["café-token", "two words", "tab\there", "=leading"])
def test_an_admin_token_that_is_not_a_bearer_token_stops_start_up(
    token: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m gateway`'s main() in this process (tests/e2e/test_hardening.py runs one bad
    setting through a real process): it exits naming the variable, never quoting the token."""
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", token)
    with pytest.raises(SystemExit) as exit:
        gateway_main(["--port", "1"])
    said = str(exit.value.code) + "".join(capsys.readouterr())
    assert "GATEWAY_ADMIN_TOKEN must be a bearer token" in said
    assert token not in said


def test_the_configuration_page_holds_the_declared_table() -> None:
    """docs/configuration.md shows exactly `python -m gateway.settings`: no variable missing,
    renamed or with a stale default."""
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert settings_table() in page


def test_every_variable_is_declared_once() -> None:
    names = [env for env, _, _ in declared()]
    assert len(names) == len(set(names))
    assert all(doc for _, _, doc in declared())
