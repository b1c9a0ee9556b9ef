"""deploy/monitoring: the alert rules pass `promtool check rules` and their own `promtool test
rules`; the dashboard's queries are valid PromQL (checked by promtool as recording rules); and
every metric and label name the rules and the dashboard use is one the gateway exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import ROOT, LiveGateway, real_windows, require_debian_tool
from tests.receiver import run_receiver

MONITORING = ROOT / "deploy" / "monitoring"
# Added by Prometheus itself: the scrape's own series and the target labels.
PROMETHEUS_SERIES = {"up"}
TARGET_LABELS = {"job", "instance"}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
}


def promtool(*args: str, cwd: Path = MONITORING) -> str:
    binary = require_debian_tool("promtool", "prometheus")
    done = subprocess.run(
        [binary, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def rule_exprs() -> list[str]:
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    return dict(json.loads((MONITORING / "grafana-dashboard.json").read_text()))


def dashboard_exprs() -> list[str]:
    return [t["expr"] for panel in dashboard()["panels"] for t in panel["targets"]]


def test_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    assert "SUCCESS: 8 rules found" in promtool("check", "rules", "alerts.yml")
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yml")
    names = {
        rule["alert"]
        for group in yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    }
    assert {
        "GatewayNoModelLoaded",
        "GatewayReloadFailures",
        "GatewayRegistryPollFailures",
        "GatewayRegistryUnreachable",
        "GatewayHigh5xxRatio",
        "GatewayCallbackFailureRatio",
        "GatewayPredictLatencyP99High",
    } <= names


def test_live_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    """The rules on the scorecard's gauges (their names: tests/e2e/test_live_evidence.py)."""
    assert "SUCCESS: 3 rules found" in promtool("check", "rules", "live_alerts.yml")
    assert "SUCCESS" in promtool("test", "rules", "live_alerts_test.yml")


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    # Grafana's $__rate_interval becomes a plain range so that promtool can parse the query.
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": e.replace("$__rate_interval", "5m")}
                    for i, e in enumerate(dashboard_exprs())
                ],
            }
        ]
    }
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump(rules))
    assert "SUCCESS" in promtool("check", "rules", "dashboard.yml", cwd=tmp_path)


def test_the_dashboard_shows_what_operators_asked_for() -> None:
    exprs = " ".join(dashboard_exprs())
    for metric in (
        "gateway_requests_total",  # requests by status
        "gateway_request_duration_seconds_bucket",  # latency quantiles
        "gateway_batch_size_bucket",  # batch sizes
        "gateway_model_info",  # served alias and version
        "gateway_reloads_total",
        "gateway_callbacks_total",
        "gateway_batch_queue_depth",
    ):
        assert metric in exprs, metric
    board = dashboard()
    assert {t["name"] for t in board["templating"]["list"]} == {"datasource"}
    assert all(p["datasource"]["uid"] == "${datasource}" for p in board["panels"])


def test_every_metric_and_label_used_is_one_the_gateway_exports(
    live_gateway: LiveGateway,
) -> None:
    # Traffic first, so that labelled families have samples whose label names can be read.
    window = real_windows(1)[0].tolist()
    with run_receiver("ok") as receiver:
        httpx.post(f"{live_gateway.url}/predict", json={"X": window, "callback_url": receiver.url})
    text = httpx.get(f"{live_gateway.url}/metrics", timeout=10).text
    exported: dict[str, set[str] | None] = {}  # sample name -> its label names (None: unseen)
    for family in text_string_to_metric_families(text):
        for suffix in SUFFIXES.get(family.type, ("",)):
            exported.setdefault(family.name + suffix, None)
        for sample in family.samples:
            seen = exported.get(sample.name) or set()
            exported[sample.name] = seen | set(sample.labels)
    used = 0
    for expr in rule_exprs() + dashboard_exprs():
        names = set(re.findall(r"\b(gateway_[a-z0-9_]+|up)\b(?!\s*\()", expr))
        assert names, f"no metric in {expr!r}"
        for name in names - PROMETHEUS_SERIES:
            assert name in exported, f"{name} (in {expr!r}) is not exported by the gateway"
            used += 1
        for name, selector in re.findall(r"\b(gateway_[a-z0-9_]+)\{([^}]*)\}", expr):
            labels = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector)) - TARGET_LABELS
            known = exported[name]
            if known is not None:
                assert labels <= known, f"{name} has labels {sorted(known)}, {expr!r} uses {labels}"
    assert used >= 20
