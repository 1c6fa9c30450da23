"""Client-side pacing: the token bucket, retry delays, and the bound on concurrent calls."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.apply.engine import ApplyOptions
from reconciler.cloud.auth import AkSkAuth
from reconciler.cloud.client import WorkspaceClient
from reconciler.cloud.pacing import RateLimiter, RetryPolicy, parse_retry_after
from reconciler.cloud.transport import PacedTransport, operation_of
from reconciler.connect import paced
from reconciler.manifest import load_manifests
from reconciler.model import DesktopGroup, Image, Location, ManifestSet, Rollout, Selector, Settings
from reconciler.planner import PlanOptions
from reconciler.session import build_plan, state_transaction, utc_now
from reconciler.simulator import Simulator, load_fleet_data
from reconciler.state import LocalStateStore


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.now += seconds


def test_calls_are_spread_evenly_at_the_configured_rate() -> None:
    fake = FakeTime()
    limiter = RateLimiter(60, clock=fake.clock, sleep=fake.sleep)
    for _ in range(10):
        limiter.acquire()
    assert abs(fake.now - 9.0) < 1e-9  # the first is free, then one per second


def test_a_burst_is_allowed_up_to_capacity_then_paced() -> None:
    fake = FakeTime()
    limiter = RateLimiter(120, burst=5, clock=fake.clock, sleep=fake.sleep)
    for _ in range(5):
        limiter.acquire()
    assert fake.slept == 0
    limiter.acquire()
    assert abs(fake.slept - 0.5) < 1e-9


def test_idle_time_refills_but_never_beyond_capacity() -> None:
    fake = FakeTime()
    limiter = RateLimiter(60, burst=2, clock=fake.clock, sleep=fake.sleep)
    fake.now = 3600.0
    for _ in range(3):
        limiter.acquire()
    assert abs(fake.slept - 1.0) < 1e-9


def test_threads_share_one_budget() -> None:
    limiter = RateLimiter(6000)  # 10 ms apart
    started = time.monotonic()
    threads = [threading.Thread(target=lambda: [limiter.acquire() for _ in range(15)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.monotonic() - started >= 0.58  # 60 calls, the first free


@given(attempt=st.integers(1, 12), seed=st.integers(0, 1000))
def test_backoff_grows_with_jitter_and_is_capped(attempt: int, seed: int) -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=30, rng=random.Random(seed))
    delay = policy.delay(attempt)
    ceiling = min(30, 0.5 * 2 ** (attempt - 1))
    assert ceiling / 2 <= delay <= ceiling


def test_retry_after_wins_but_is_capped() -> None:
    policy = RetryPolicy(max_delay=10)
    assert policy.delay(1, retry_after=3) == 3
    assert policy.delay(5, retry_after=99) == 10
    assert parse_retry_after("2") == 2.0 and parse_retry_after("soon") is None and parse_retry_after(None) is None


class ConcurrencyMeter(httpx.BaseTransport):
    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.current = self.peak = 0
        self.lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.current += 1
            self.peak = max(self.peak, self.current)
        try:
            return self.inner.handle_request(request)
        finally:
            with self.lock:
                self.current -= 1


def test_apply_never_runs_more_calls_at_once_than_allowed(tmp_path: Path) -> None:
    project = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
    sim = Simulator(load_fleet_data({
        "project_id": project, "credentials": [{"ak": "AK", "sk": "SK"}],
        "images": [{"id": "img-old", "type": "private"}, {"id": "img-new", "type": "private"}],
        "generate": [{"count": 40, "name_prefix": "pc-", "image_id": "img-old", "tags": {"dept": "a"}}],
        "behaviour": {"latency_seconds": 0.02, "job_seconds": 0.1},
    }))
    meter = ConcurrencyMeter(sim.transport())
    group = DesktopGroup("a", Image("img-new", "private"), Rollout(batch_size=2), selector=Selector(tags=(("dept", "a"),)),
                         source=Location("a.yaml", 1))
    manifests = ManifestSet(Settings(project, endpoint="http://127.0.0.1"), (group,))
    client = WorkspaceClient("http://127.0.0.1", project, AkSkAuth("AK", "SK", project_id=project), transport=meter)
    with client, state_transaction(LocalStateStore(tmp_path / "state.json")) as session:
        planned = build_plan(manifests, session.snap, client, PlanOptions(now=utc_now()), utc_now())
        result = session.execute(planned.plan, client, ApplyOptions(max_concurrent_calls=3, poll_interval=0.05), lambda e: None)
    assert len(result.submitted) == 40
    assert meter.peak == 3


def test_a_429_holds_every_caller_back_and_slows_the_pace() -> None:
    fake = FakeTime()
    limiter = RateLimiter(60, clock=fake.clock, sleep=fake.sleep)
    limiter.acquire()
    assert limiter.throttled(retry_after=5) == 5
    limiter.acquire()  # the hold applies to whoever calls next
    assert fake.now >= 5
    assert abs(limiter.interval - 1.1) < 0.01  # a tenth slower...
    for _ in range(300):
        limiter.acquire()
    assert limiter.interval == limiter.base_interval  # ...and back to the configured pace


def test_throttling_never_slows_below_half_the_configured_rate() -> None:
    limiter = RateLimiter(60, clock=FakeTime().clock, sleep=lambda s: None)
    for _ in range(50):
        limiter.throttled(None)
    assert limiter.interval == 2 * limiter.base_interval


# -- PacedTransport ------------------------------------------------------------------------------


class Answering(httpx.BaseTransport):
    """Answers every request with ``status`` and records the paths, in order."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.paths: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        status = self.statuses.pop(0) if self.statuses else 200
        headers = {"Retry-After": "7"} if status == 429 else {}
        return httpx.Response(status, headers=headers, json={"error_code": "APIG.0308"} if status == 429 else {})


def paced_world(statuses: list[int], **per_minute: float) -> tuple[FakeTime, Answering, PacedTransport]:
    """A transport paced at 60 calls/min, and per operation as ``per_minute`` says, on fake time."""
    fake = FakeTime()
    inner = Answering(statuses)
    general = RateLimiter(60, clock=fake.clock, sleep=fake.sleep)
    own = {name: RateLimiter(rate, clock=fake.clock, sleep=fake.sleep) for name, rate in per_minute.items()}
    return fake, inner, PacedTransport(inner, general, per_operation=own)


def test_operations_are_told_apart_by_path_and_method() -> None:
    base = "https://ws.example.com/v2/p1"
    assert operation_of(httpx.Request("GET", f"{base}/desktops/detail?limit=10")) == "list"
    assert operation_of(httpx.Request("GET", f"{base}/desktops/d1")) == "list"
    assert operation_of(httpx.Request("POST", f"{base}/desktops/rebuild")) == "rebuild"
    assert operation_of(httpx.Request("GET", f"{base}/workspace-sub-jobs?job_id=j")) == "jobs"
    assert operation_of(httpx.Request("GET", f"{base}/workspace-jobs/j")) == "jobs"
    assert operation_of(httpx.Request("GET", f"{base}/images")) == "other"
    assert operation_of(httpx.Request("POST", "https://iam.example.com/v3/auth/tokens")) is None


def test_an_operation_with_its_own_limit_is_paced_apart_from_the_others() -> None:
    fake, _, transport = paced_world([], rebuild=6)  # one rebuild per 10 s
    with httpx.Client(transport=transport, base_url="https://ws.example.com") as client:
        client.post("/v2/p1/desktops/rebuild")
        client.post("/v2/p1/desktops/rebuild")
        assert fake.now == 10.0  # the rebuild bucket waited...
        client.get("/v2/p1/desktops/detail")
        client.get("/v2/p1/desktops/detail")
        assert fake.now == 11.0  # ...and listing, on the general bucket (1/s), had its own budget


def test_calls_to_other_services_are_not_paced() -> None:
    fake, inner, transport = paced_world([])
    with httpx.Client(transport=transport) as client:
        for _ in range(5):
            client.post("https://iam.example.com/v3/auth/tokens")
    assert fake.slept == 0 and len(inner.paths) == 5


def test_a_429_through_the_paced_transport_holds_the_retry_back() -> None:
    fake, inner, transport = paced_world([429])
    retry = RetryPolicy(sleep=lambda seconds: pytest.fail("the transport holds, the retry policy does not sleep"))
    client = WorkspaceClient("https://ws.example.com", "p1", httpx.Auth(), transport=transport, retry=retry)
    with client:
        client.get_desktop("d1")
    assert len(inner.paths) == 2 and fake.slept >= 7  # Retry-After, enforced by the limiter


def test_unknown_operations_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown operations: lsit"):
        PacedTransport(Answering([]), None, per_operation={"lsit": RateLimiter(1)})


def test_burst_and_limits_from_the_settings_shape_the_transport(tmp_path: Path) -> None:
    (tmp_path / "settings.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: Settings\nspec:\n  project_id: 0a1b2c3d4e5f60718293a4b5c6d7e8f9\n"
        "  endpoint: https://ws.example.com\n  api: {rate_limit_per_minute: 600, burst: 5, limits: {rebuild: 60, list: 120}}\n"
    )
    settings = load_manifests([tmp_path]).settings
    assert settings.api.burst == 5 and settings.api.limits == (("list", 120.0), ("rebuild", 60.0))
    transport = paced(httpx.MockTransport(lambda request: httpx.Response(200)), settings)
    assert transport.limiter is not None and transport.limiter.base_interval == 0.1
    assert {name: limiter.base_interval for name, limiter in transport.per_operation.items()} == {"list": 0.5, "rebuild": 1.0}
    rebuild = httpx.Request("POST", "https://ws.example.com/v2/p/desktops/rebuild")
    assert transport.limiter_for(rebuild) is transport.per_operation["rebuild"]
    assert transport.limiter._capacity == 5  # noqa: SLF001 - the burst is the bucket's size
