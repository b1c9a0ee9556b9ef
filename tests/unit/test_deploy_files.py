"""deploy/ agrees with the code: probe paths are routes, one port everywhere, every variable the
manifests set is one the gateway reads and parses, and Kubernetes waits out the drain.

The image itself is not built here (no Docker engine on the build machines): the Dockerfile is
checked line by line."""

from __future__ import annotations

import ast
import base64
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

# Read outside Settings.from_environ: by gateway/ (or its next revision) and by the libraries the
# gateway drives.
READ_ELSEWHERE = {
    "LOG_FORMAT",  # log lines as "json" or "text"
    "MODEL_POLL_INTERVAL",  # seconds between registry polls
    "PROMETHEUS_MULTIPROC_DIR",  # prometheus-client, several workers
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",  # the MLflow client
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
}


# ---------------------------------------------------------------------------------------------
# Reading the files


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def docker(keyword: str) -> list[str]:
    return [args for k, args in dockerfile_instructions() if k == keyword]


def manifests() -> dict[str, dict[str, Any]]:
    """Every object under deploy/k8s/, by kind (one of each)."""
    by_kind: dict[str, dict[str, Any]] = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is None:
                continue
            assert doc["kind"] not in by_kind, f"two {doc['kind']} objects ({path.name})"
            by_kind[doc["kind"]] = doc
    return by_kind


@pytest.fixture(scope="module")
def k8s() -> dict[str, dict[str, Any]]:
    found = manifests()
    expected = {
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "PersistentVolumeClaim",
    }
    assert expected <= set(found), f"missing: {expected - set(found)}"
    return found


def container(k8s: dict[str, dict[str, Any]]) -> dict[str, Any]:
    containers = k8s["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def exposed_ports() -> list[int]:
    """The API's port, then the probes' (PROBE_PORT)."""
    (expose,) = docker("EXPOSE")
    return [int(port.split("/")[0]) for port in expose.split()]


def exposed_port() -> int:
    return exposed_ports()[0]


def image_env() -> dict[str, str]:
    env = {}
    for args in docker("ENV"):
        for pair in args.split():
            name, _, value = pair.partition("=")
            env[name] = value
    return env


def configmap_env(k8s: dict[str, dict[str, Any]]) -> dict[str, str]:
    return dict(k8s["ConfigMap"]["data"])


def secret_env(k8s: dict[str, dict[str, Any]]) -> dict[str, str]:
    secret = k8s["Secret"]
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    return {**data, **(secret.get("stringData") or {})}


class RecordingEnviron(Mapping[str, str]):
    """An environment that remembers every variable looked up in it."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.looked_up: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.looked_up.add(key)
        return self._values[key]

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.looked_up.add(key)
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def variables_the_code_reads() -> set[str]:
    environ = RecordingEnviron({})
    Settings.from_environ(environ)
    return environ.looked_up | READ_ELSEWHERE


# ---------------------------------------------------------------------------------------------
# Dockerfile


def test_dockerfile_runs_the_gateway_as_non_root_on_the_exposed_port() -> None:
    (base,) = docker("FROM")
    assert base == "python:3.11-slim"
    assert any(run.startswith("pip install") and run.split()[-1] == "." for run in docker("RUN"))
    users = docker("USER")
    assert users and users[-1] not in {"root", "0"}, "the gateway must not run as root"
    (cmd,) = docker("CMD")
    argv = json.loads(cmd)  # exec form: SIGTERM reaches python, not a shell
    assert argv[:3] == ["python", "-m", "gateway"]
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    assert int(argv[argv.index("--port") + 1]) == exposed_port() == 8000


def test_dockerfile_healthcheck_is_valid_python_hitting_health_on_the_port() -> None:
    (healthcheck,) = docker("HEALTHCHECK")
    exec_form = healthcheck[healthcheck.index("CMD") + len("CMD") :].strip()
    argv = json.loads(exec_form)
    assert argv[:2] == ["python", "-c"]
    code = argv[2]
    ast.parse(code)  # a syntax error would mark every container unhealthy
    assert "urllib.request" in code and "curl" not in healthcheck
    assert f"127.0.0.1:{image_env()['PROBE_PORT']}/health" in code


# ---------------------------------------------------------------------------------------------
# Routes and ports


def gateway_routes() -> dict[str, set[str]]:
    from gateway.app import create_app

    # Building the app acquires nothing (its lifespan does, and never runs here).
    app = create_app(Settings())
    return {
        route.path: set(getattr(route, "methods", None) or ())
        for route in app.routes
        if hasattr(route, "path")
    }


def test_probe_paths_are_get_routes_of_the_gateway(
    k8s: dict[str, dict[str, Any]],
) -> None:
    routes = gateway_routes()
    c = container(k8s)
    probes = {name: c[name]["httpGet"] for name in ("startupProbe", "livenessProbe")}
    assert probes["livenessProbe"]["path"] == "/health"
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    probes["readinessProbe"] = c["readinessProbe"]["httpGet"]
    for name, probe in probes.items():
        assert probe["path"] in routes, f"{name} probes {probe['path']}, not a gateway route"
        assert "GET" in routes[probe["path"]], f"{name}: {probe['path']} does not answer GET"


def test_the_api_port_and_the_probe_port_agree_everywhere(
    k8s: dict[str, dict[str, Any]],
) -> None:
    """The image, the pod, the probes and the Service: the API on one port, the probes on
    PROBE_PORT, which the Service never routes to."""
    api, probes = exposed_ports()
    assert int(image_env()["PROBE_PORT"]) == int(configmap_env(k8s)["PROBE_PORT"]) == probes
    c = container(k8s)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": api, "probes": probes}
    for name in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert ports[c[name]["httpGet"]["port"]] == probes, name
    (service_port,) = k8s["Service"]["spec"]["ports"]
    assert service_port["targetPort"] in (api, "http")


def test_service_hpa_and_pdb_point_at_the_deployment(k8s: dict[str, dict[str, Any]]) -> None:
    deployment = k8s["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    assert k8s["Service"]["spec"]["selector"].items() <= pod_labels.items()
    assert k8s["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector
    target = k8s["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    (metric,) = k8s["HorizontalPodAutoscaler"]["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    # Utilization is a share of the request: without a CPU request the HPA cannot scale.
    resources = container(k8s)["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"]
    assert resources["limits"]["memory"]


# ---------------------------------------------------------------------------------------------
# Environment


def test_the_deployment_takes_its_environment_from_the_configmap_and_secret(
    k8s: dict[str, dict[str, Any]],
) -> None:
    c = container(k8s)
    (env_from,) = c["envFrom"]
    assert env_from["configMapRef"]["name"] == k8s["ConfigMap"]["metadata"]["name"]
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in c["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert "GATEWAY_ADMIN_TOKEN" in refs
    for name, ref in refs.items():
        assert ref["name"] == k8s["Secret"]["metadata"]["name"], name
        assert ref["key"] in secret_env(k8s), f"{name} refers to a key the Secret lacks"


def test_every_variable_set_is_one_the_code_reads(k8s: dict[str, dict[str, Any]]) -> None:
    known = variables_the_code_reads()
    # The recorder must see the spec's variables, or this test would pass on nothing.
    assert {"MLFLOW_TRACKING_URI", "SEQ_LEN_REQUIRED", "GATEWAY_ADMIN_TOKEN"} <= known
    # POD_NAME only names the pod's own prediction log file (PREDICTION_LOG=...$(POD_NAME)...).
    container_env = {e["name"] for e in container(k8s)["env"]} - {"POD_NAME"}
    for source, names in (
        ("ConfigMap", set(configmap_env(k8s))),
        ("Secret", set(secret_env(k8s))),
        ("Deployment env", container_env),
    ):
        unknown = names - known
        assert not unknown, f"{source} sets variables nothing reads (typos?): {sorted(unknown)}"


def test_the_configmap_sets_the_operational_variables(k8s: dict[str, dict[str, Any]]) -> None:
    env = configmap_env(k8s)
    required = {
        "MLFLOW_TRACKING_URI",
        "REGISTERED_MODEL_NAME",
        "MODEL_ALIAS",
        "SEQ_LEN_REQUIRED",
        "N_FEATURES_REQUIRED",
        "MODEL_LOAD_RETRY_INTERVAL",
        "MODEL_LOAD_TIMEOUT",
        "CALLBACK_TIMEOUT",
        "MODEL_POLL_INTERVAL",
        "LOG_FORMAT",
        "SHUTDOWN_GRACE_SECONDS",
    }
    assert required <= set(env), f"missing: {sorted(required - set(env))}"
    assert all(isinstance(value, str) for value in env.values()), "ConfigMap values are strings"
    assert env["LOG_FORMAT"] in {"json", "text"}
    assert float(env["MODEL_POLL_INTERVAL"]) > 0
    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        if name in env:
            assert int(env[name]) >= 0, name  # MLflow parses them as integers


def test_the_manifests_values_pass_the_gateways_settings(k8s: dict[str, dict[str, Any]]) -> None:
    env = {**configmap_env(k8s), **secret_env(k8s)}
    for name, value in env.items():
        try:
            Settings.from_environ({name: value})
        except SettingsError as e:
            pytest.fail(f"{name}={value!r} would stop the gateway at start: {e}")
    settings = Settings.from_environ(env)
    assert settings.mlflow_tracking_uri == env["MLFLOW_TRACKING_URI"]
    assert settings.model_alias == env["MODEL_ALIAS"]
    assert settings.seq_len_required == int(env["SEQ_LEN_REQUIRED"])
    assert settings.shutdown_grace_seconds == float(env["SHUTDOWN_GRACE_SECONDS"])
    assert settings.admin_token, "the Deployment must require a token for /reload"


def test_kubernetes_waits_out_the_drain_before_killing(k8s: dict[str, dict[str, Any]]) -> None:
    grace = float(configmap_env(k8s)["SHUTDOWN_GRACE_SECONDS"])
    pod = k8s["Deployment"]["spec"]["template"]["spec"]
    pre_stop = container(k8s).get("lifecycle", {}).get("preStop", {})
    # The pod's grace period starts with preStop: its pause counts against the same budget.
    if "exec" in pre_stop:
        command = pre_stop["exec"]["command"]
        pause = float(command[1]) if command[0] == "sleep" else 0.0
    else:
        pause = float(pre_stop.get("sleep", {}).get("seconds", 0))
    assert pod["terminationGracePeriodSeconds"] > pause + grace


# ---------------------------------------------------------------------------------------------
# Live evidence: the prediction log on a shared volume, the scorecard and the guard


def live_objects() -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted((DEPLOY / "k8s" / "live").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            found[doc["kind"]] = doc
    assert set(found) == {"Deployment", "Service", "CronJob"}
    return found


def pod_of(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]
    return dict(spec["template"]["spec"])


@pytest.mark.parametrize(("kind", "module"), [("Deployment", "scorecard"), ("CronJob", "guard")])
def test_the_live_jobs_run_their_scripts_with_arguments_they_take(
    k8s: dict[str, dict[str, Any]], kind: str, module: str
) -> None:
    import importlib

    pod = pod_of(live_objects()[kind])
    (c,) = pod["containers"]
    assert c["command"][:3] == ["python", "-m", f"scripts.{module}"]
    # The script's own parser takes the arguments (it would exit 2 on an unknown one).
    parse = importlib.import_module(f"scripts.{module}").parser
    parse().parse_args(c["command"][3:])
    claim = k8s["PersistentVolumeClaim"]["metadata"]["name"]
    assert [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]] == [claim]
    (mount,) = c["volumeMounts"]
    log_dir = c["command"][c["command"].index("--log") + 1].rsplit("/", 1)[0]
    assert log_dir.startswith(mount["mountPath"]) and mount["readOnly"]
    ref = {e["name"]: e["valueFrom"]["configMapKeyRef"] for e in c["env"] if "valueFrom" in e}
    assert ref["MLFLOW_TRACKING_URI"]["name"] == k8s["ConfigMap"]["metadata"]["name"]


def test_every_gateway_pod_logs_to_its_own_file_where_the_live_jobs_read(
    k8s: dict[str, dict[str, Any]],
) -> None:
    c = container(k8s)
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    log = env["PREDICTION_LOG"]["value"]
    assert "$(POD_NAME)" in log  # one file per pod: no two writers
    (live,) = [m for m in c["volumeMounts"] if m["name"] == "live"]
    assert log.startswith(live["mountPath"] + "/")
    (scorecard,) = pod_of(live_objects()["Deployment"])["containers"]
    read = scorecard["command"][scorecard["command"].index("--log") + 1]
    assert read.rsplit("/", 1)[0] == log.rsplit("/", 1)[0]
    service = live_objects()["Service"]
    assert service["spec"]["ports"][0]["targetPort"] in ("metrics", 9108)
