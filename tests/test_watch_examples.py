"""examples/watch/ stays true to the code: the Settings block validates, the Kubernetes objects
run `reconciler watch` next to git-sync with credentials from a Secret, and the alert rules
only name metrics the watch exports."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from reconciler.manifest import load_manifests
from reconciler.watch.metrics import WatchMetrics
from reconciler.watch.status import FleetStatus, GroupStatus

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "watch"


def test_the_settings_example_validates() -> None:
    settings = load_manifests([str(EXAMPLES / "settings-notifications.yaml")]).settings
    assert [t.url_env for t in settings.notifications] == ["SLACK_WEBHOOK", "FEISHU_ROBOT", None]


def test_the_kubernetes_deployment_runs_watch_beside_git_sync() -> None:
    deployment, service = yaml.safe_load_all((EXAMPLES / "kubernetes.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    assert set(containers) == {"reconciler", "git-sync"}
    reconciler = containers["reconciler"]
    assert reconciler["args"][0] == "watch" and "--listen" in reconciler["args"]
    assert reconciler["envFrom"] == [{"secretRef": {"name": "reconciler-credentials"}}]
    assert {p["path"] for p in (reconciler["livenessProbe"]["httpGet"], reconciler["readinessProbe"]["httpGet"])} == {"/healthz", "/readyz"}
    assert service["kind"] == "Service" and service["spec"]["ports"][0]["port"] == 9108
    unit = (EXAMPLES / "reconciler-watch.service").read_text()
    assert re.search(r"^ExecStart=\S*reconciler watch ", unit, re.M) and "TimeoutStopSec=15" in unit


def test_the_alert_rules_name_only_exported_metrics() -> None:
    metrics = WatchMetrics()
    metrics.fleet(FleetStatus(groups=(GroupStatus("a", "img", {"current": 1}),), job_counts={"SUCCESS": 1},
                              plan_changes={("a", "rebuild", "drift"): 1}))
    exported = {s.name for f in text_string_to_metric_families(metrics.render().decode()) for s in f.samples}
    exported |= {f.name for f in text_string_to_metric_families(metrics.render().decode())}
    rules = yaml.safe_load((EXAMPLES / "prometheus-rules.yaml").read_text())["groups"][0]["rules"]
    named = {name for rule in rules for name in re.findall(r"reconciler_[a-z_]+", rule["expr"])}
    assert named and named <= exported, named - exported
