"""Client-side pacing: the token bucket, retry delays, and the bound on concurrent calls."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import httpx
from hypothesis import given
from hypothesis import strategies as st

from reconciler.applier import ApplyOptions
from reconciler.cloud.auth import AkSkAuth
from reconciler.cloud.client import WorkspaceClient
from reconciler.cloud.pacing import RateLimiter, RetryPolicy, parse_retry_after
from reconciler.model import DesktopGroup, Image, Location, ManifestSet, Rollout, Selector, Settings
from reconciler.planner import PlanOptions
from reconciler.session import apply_session, build_plan, utc_now
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
    with client, apply_session(LocalStateStore(tmp_path / "state.json")) as session:
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
