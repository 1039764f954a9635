"""The shipped Prometheus alert rules and Grafana dashboard: they parse, use only metrics servekit
exports, and the alerts fire on the series they are meant for (checked with the real promtool)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from servekit.monitoring.metrics import metrics
from tests.support import system_tool

ASSETS = Path(__file__).parents[2] / "src" / "servekit" / "monitoring" / "assets"
DOCS = Path(__file__).parents[2] / "docs" / "monitoring.md"
METRIC_NAME = re.compile(r"\b(servekit_[a-z_]+)")
SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")


def promtool() -> str:
    return system_tool("promtool", "`make test` installs it: Debian package prometheus")


def exported_names() -> set[str]:
    names = set()
    for collector in list(metrics().registry._collector_to_names):
        for family in collector.describe() if hasattr(collector, "describe") else []:
            names.add(family.name)
    for family in metrics().registry.collect():
        names.add(family.name)
    return {n for n in names if n.startswith("servekit_")}


def base_name(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def dashboard_queries() -> list[str]:
    dashboard = json.loads((ASSETS / "grafana-dashboard.json").read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(queries) >= 10
    return queries


def test_alert_rules_pass_promtool() -> None:
    result = subprocess.run([promtool(), "check", "rules", str(ASSETS / "alerts.yml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each panel query (Grafana's variables replaced) as a recording rule."""
    rules = [
        {"record": f"dashboard:query{i}", "expr": q.replace("$__rate_interval", "5m").replace("$model", ".*")}
        for i, q in enumerate(dashboard_queries())
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_and_alerts_use_only_exported_metrics_and_docs_name_them_all() -> None:
    exported = exported_names()
    assert {"servekit_requests", "servekit_request_duration_seconds", "servekit_drift_score"} <= exported
    used = set(METRIC_NAME.findall("\n".join(dashboard_queries()) + (ASSETS / "alerts.yml").read_text()))
    assert {base_name(n) for n in used} <= exported
    documented = DOCS.read_text()
    missing = [name for name in sorted(exported) if name not in documented]
    assert not missing, f"docs/monitoring.md does not describe {missing}"


ALERT_TESTS = """
rule_files: [alerts.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'servekit_requests_total{model="iris",status="500"}'
        values: '0+30x30'
      - series: 'servekit_requests_total{model="iris",status="200"}'
        values: '0+30x30'
      - series: 'servekit_requests_total{model="wine",status="200"}'
        values: '0+60x30'
      - series: 'servekit_drift_detected{model="iris",version="3",feature="petal_width"}'
        values: '0 0 1x30'
      - series: 'servekit_drift_detected{model="iris",version="3",feature="sepal_width"}'
        values: '0x30'
    alert_rule_test:
      - eval_time: 20m
        alertname: ServekitHighErrorRate
        exp_alerts:
          - exp_labels: {severity: page, model: iris}
            exp_annotations:
              summary: "servekit model iris: 50% of requests fail"
              description: "Over 5% of requests failed (5xx) for 5 minutes; see the server log."
      - eval_time: 20m
        alertname: ServekitDriftDetected
        exp_alerts:
          - exp_labels: {severity: warn, model: iris, version: "3", feature: petal_width}
            exp_annotations:
              summary: "servekit model iris: input drift on feature petal_width"
              description: "Live inputs no longer look like the training data. Run `servekit drift iris --since 24h`."
      - eval_time: 10m
        alertname: ServekitDriftDetected
        exp_alerts: []
"""


def test_alerts_fire_on_the_series_they_watch_and_stay_quiet_otherwise(tmp_path: Path) -> None:
    shutil.copy(ASSETS / "alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "alerts_test.yml").write_text(ALERT_TESTS)
    result = subprocess.run(
        [promtool(), "test", "rules", "alerts_test.yml"], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
