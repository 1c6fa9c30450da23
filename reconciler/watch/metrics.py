"""The Prometheus metrics of ``reconciler watch``, in a registry of their own. No I/O (the HTTP
server renders them).

Gauges describe the last cycle (set afresh each time, so a group that left the manifests
leaves the metrics); counters add up over the process's life.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from reconciler.watch.status import CycleReport, FleetStatus

# Workspace API paths (after /v2/{project_id}/) and the names the official SDK gives them.
API_NAMES = (
    ("POST", re.compile(r"^desktops/rebuild$"), "rebuild"),
    ("GET", re.compile(r"^desktops/detail$"), "list_desktops"),
    ("GET", re.compile(r"^desktops/[^/]+$"), "show_desktop"),
    ("GET", re.compile(r"^workspace-jobs/[^/]+$"), "show_job"),
    ("GET", re.compile(r"^workspace-sub-jobs$"), "list_sub_jobs"),
    ("GET", re.compile(r"^images$"), "list_images"),
    ("GET", re.compile(r"^market-images$"), "list_market_images"),
)
# No `*_created` series: they double the output and no alert or dashboard reads them.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

CYCLE_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


def api_name(method: str, path: str) -> str | None:
    """``list_desktops`` for ``GET /v2/{project}/desktops/detail``; None for calls outside the
    Workspace API (IAM tokens)."""
    parts = path.split("/", 3)
    if len(parts) < 4 or parts[1] != "v2":
        return None
    for wanted, pattern, name in API_NAMES:
        if method == wanted and pattern.match(parts[3]):
            return name
    return "other"


class FleetCollector(Collector):
    """The gauges of the last plan, read from one ``FleetStatus`` value: a scrape during an
    update sees the old cycle or the new one, never half of each."""

    def __init__(self) -> None:
        self.fleet = FleetStatus()

    def collect(self) -> Iterator[Metric]:
        fleet = self.fleet
        desktops = GaugeMetricFamily("reconciler_desktops", "Managed desktops by group and status, as of the last plan.",
                                     labels=["group", "status"])
        for group in fleet.groups:
            for status, count in group.counts.items():
                desktops.add_metric([group.name, status], count)
        changes = GaugeMetricFamily("reconciler_plan_changes", "Changes in the last plan.", labels=["group", "action", "reason"])
        for (group_name, action, reason), count in sorted(fleet.plan_changes.items()):
            changes.add_metric([group_name, action, reason], count)
        jobs = GaugeMetricFamily("reconciler_rebuild_jobs", "Rebuild jobs recorded in the state, by status.", labels=["status"])
        for status, count in sorted(fleet.job_counts.items()):
            jobs.add_metric([status], count)
        return iter((desktops, changes, jobs))


class WatchMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.fleet_gauges = FleetCollector()
        r.register(self.fleet_gauges)
        self.cycle_duration = Histogram("reconciler_cycle_duration_seconds", "How long a watch cycle took.",
                                        buckets=CYCLE_BUCKETS, registry=r)
        self.last_cycle = Gauge("reconciler_last_cycle_timestamp_seconds", "When the last cycle finished (Unix time).", registry=r)
        self.last_success = Gauge("reconciler_last_cycle_success", "1 if the last cycle succeeded, else 0.", registry=r)
        self.cycles = Counter("reconciler_cycles_total", "Watch cycles run, by outcome.", ["outcome"], registry=r)
        for outcome in ("success", "failed"):  # both series exist from the start: increase() sees the first failure
            self.cycles.labels(outcome)
        self.submitted = Counter("reconciler_rebuilds_submitted_total", "Desktops whose rebuild this process submitted.",
                                 ["group"], registry=r)
        self.api_calls = Counter("reconciler_api_calls_total", "Workspace API responses, by API and HTTP status.",
                                 ["api", "code"], registry=r)
        self.lock_busy = Counter("reconciler_lock_busy_total", "Cycles that skipped applying because another run held the lock.",
                                 registry=r)
        self.notifications_failed = Counter("reconciler_notifications_failed_total", "Notifications given up after retries.",
                                            registry=r)

    def count_response(self, response: httpx.Response) -> None:
        """An httpx response hook for the Workspace client."""
        name = api_name(response.request.method, urlsplit(str(response.request.url)).path)
        if name is not None:
            self.api_calls.labels(name, str(response.status_code)).inc()

    def fleet(self, fleet: FleetStatus) -> None:
        self.fleet_gauges.fleet = fleet

    def cycle(self, report: CycleReport, finished_at: float) -> None:
        self.cycle_duration.observe(report.duration_seconds)
        self.last_cycle.set(finished_at)
        self.last_success.set(1 if report.ok else 0)
        self.cycles.labels("success" if report.ok else "failed").inc()
        if report.lock_busy:
            self.lock_busy.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
