"""WorkspaceClient against the simulator in-process: results, every error class, retries,
pagination and unknown outcomes."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import httpx
import pytest

from reconciler.cloud import errors
from reconciler.cloud.auth import AkSkAuth, PasswordAuth, TokenAuth, credentials_from_env
from reconciler.cloud.client import WorkspaceClient, validate_endpoint
from reconciler.cloud.models import RebuildRequest
from reconciler.cloud.pacing import RetryPolicy
from reconciler.errors import ConfigurationError
from reconciler.simulator import Simulator, load_fleet_data

P = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
AK, SK = "AKCLIENTTEST0001", "client-test-secret-key"


def fleet(desktops: int = 3, **behaviour: Any) -> dict[str, Any]:
    return {
        "project_id": P,
        "credentials": [{"ak": AK, "sk": SK}],
        "users": [{"name": "ops", "password": "ops-password-1", "domain": "acme"}],
        "images": [{"id": "img-old", "type": "private"}, {"id": "img-new", "type": "private", "os_type": "Windows", "name": "New"}],
        "desktops": [
            {"id": "d1", "name": "pc1", "image_id": "img-old", "tags": {"dept": "fin"}},
            {"id": "d2", "name": "pc2", "image_id": "img-old", "tags": {"dept": "fin"}, "task_status": "rebuilding"},
        ],
        "generate": [{"count": desktops, "name_prefix": "gen-", "image_id": "img-old", "tags": {"dept": "eng"}}],
        "behaviour": {"seed": 11, "job_seconds": 10, **behaviour},
    }


class Counting(httpx.BaseTransport):
    """Delegates to another transport and counts requests by (method, path)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.calls: Counter[tuple[str, str]] = Counter()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls[(request.method, request.url.path.split(P)[-1])] += 1
        self.requests.append(request)
        return self.inner.handle_request(request)


@pytest.fixture
def world(fake_clock):
    def build(desktops: int = 3, auth: httpx.Auth | None = None, inner: httpx.BaseTransport | None = None, **behaviour: Any):
        sim = Simulator(load_fleet_data(fleet(desktops, **behaviour)), clock=fake_clock, sleep=fake_clock.sleep)
        transport = Counting(inner or sim.transport())
        retry = RetryPolicy(max_attempts=4, base_delay=0.5, sleep=fake_clock.sleep, rng=random.Random(1))
        client = WorkspaceClient(
            "http://127.0.0.1:8080", P, auth or AkSkAuth(AK, SK, project_id=P, clock=fake_clock), transport=transport, retry=retry
        )
        admin = httpx.Client(transport=sim.transport(), base_url="http://127.0.0.1")
        return sim, client, transport, admin

    return build


def rebuild(*ids: str) -> RebuildRequest:
    return RebuildRequest(desktop_ids=ids, image_id="img-new", image_type="private", delay_time=0)


def rebuild_counts(admin: httpx.Client) -> dict[str, int]:
    return {d["id"]: d["rebuild_count"] for d in admin.get("/_simulator/desktops").json()["desktops"]}


# -- results and pagination ------------------------------------------------------------------


def test_iter_desktops_pages_lazily_through_the_fleet(world) -> None:
    _, client, transport, _ = world(desktops=1200)
    stream = client.iter_desktops(tag={"dept": "eng"})
    first = next(stream)
    assert transport.calls[("GET", "/desktops/detail")] == 1  # one page fetched for the first item
    rest = list(stream)
    assert len(rest) + 1 == 1200 and len({d.id for d in [first, *rest]}) == 1200
    assert transport.calls[("GET", "/desktops/detail")] == 3
    assert first.image_id == "img-old" and first.tag_map == {"dept": "eng"}


def test_filters_by_ids_and_reads_one_desktop(world) -> None:
    _, client, _, _ = world()
    assert sorted(d.id for d in client.iter_desktops(desktop_id=["d1", "d2"])) == ["d1", "d2"]
    desktop = client.get_desktop("d2")
    assert (desktop.name, desktop.is_rebuilding, desktop.image_id) == ("pc2", True, "img-old")


def test_rebuild_then_follow_the_job_to_success(world, fake_clock) -> None:
    _, client, _, admin = world()
    job_id = client.rebuild_desktops(rebuild("d1"))
    assert client.get_desktop("d1").is_rebuilding
    assert [s.status for s in client.iter_sub_jobs(job_id=job_id)] in (["WAITING"], ["RUNNING"])
    fake_clock.advance(11)
    subs = list(client.iter_sub_jobs(job_id=job_id, job_type="rebuildDesktops"))
    assert [(s.desktop_id, s.status, s.finished) for s in subs] == [("d1", "SUCCESS", True)]
    assert client.get_desktop("d1").image_id == "img-new"
    assert rebuild_counts(admin)["d1"] == 1


# -- error classes ---------------------------------------------------------------------------


def test_bad_request_carries_the_service_fields(world) -> None:
    _, client, _, _ = world()
    with pytest.raises(errors.BadRequest) as caught:
        client.rebuild_desktops(RebuildRequest(("d1",), "img-new", "silver"))
    assert caught.value.status == 400 and caught.value.error_code and "image_type" in (caught.value.error_msg or "")
    assert caught.value.request_id


def test_not_found_and_busy(world) -> None:
    _, client, transport, _ = world()
    with pytest.raises(errors.NotFound):
        client.get_desktop("nope")
    with pytest.raises(errors.NotFound):
        client.rebuild_desktops(rebuild("d1", "ghost"))
    with pytest.raises(errors.Busy) as caught:
        client.rebuild_desktops(rebuild("d1", "d2"))
    assert caught.value.error_code == "WKS.00010032"
    assert transport.calls[("POST", "/desktops/rebuild")] == 2  # client errors are never retried


def test_wrong_secret_is_an_auth_failure_without_retry_or_leak(world, fake_clock) -> None:
    _, client, transport, _ = world(auth=AkSkAuth(AK, "wrong-secret", project_id=P, clock=fake_clock))
    with pytest.raises(errors.AuthFailure) as caught:
        client.get_desktop("d1")
    assert caught.value.error_code == "APIG.0301" and "wrong-secret" not in str(caught.value)
    assert transport.calls[("GET", "/desktops/d1")] == 1


def test_throttling_is_retried_honouring_retry_after(world, fake_clock) -> None:
    _, client, transport, _ = world(rate_limit_per_minute=60, rate_limit_burst=1)
    client.get_desktop("d1")
    client.get_desktop("d1")  # bucket empty: 429, Retry-After, then success
    assert transport.calls[("GET", "/desktops/d1")] == 3
    assert fake_clock.slept and fake_clock.slept[-1] >= 1.0


def test_throttled_after_every_retry(world) -> None:
    _, client, transport, _ = world(throttle_rate=1.0)
    with pytest.raises(errors.Throttled):
        client.get_desktop("d1")
    assert transport.calls[("GET", "/desktops/d1")] == 4


def test_server_errors_on_reads_are_retried_then_reported(world, fake_clock) -> None:
    _, client, transport, _ = world(error_rate=1.0)
    with pytest.raises(errors.ServerError) as caught:
        client.get_desktop("d1")
    assert caught.value.status == 500 and transport.calls[("GET", "/desktops/d1")] == 4
    delays = fake_clock.slept
    assert len(delays) == 3 and delays[0] < delays[2]  # exponential backoff


def test_flaky_server_eventually_answers_a_read(world) -> None:
    _, client, transport, _ = world(error_rate=0.5)
    assert client.get_desktop("d1").id == "d1"


def test_a_server_error_on_a_rebuild_is_an_unknown_outcome(world) -> None:
    """A 500 does not say whether the job was created before the failure: never re-sent here."""
    _, client, transport, _ = world(error_rate=1.0)
    with pytest.raises(errors.UnknownOutcome) as caught:
        client.rebuild_desktops(rebuild("d1"))
    assert caught.value.status == 500 and transport.calls[("POST", "/desktops/rebuild")] == 1


def test_lost_answer_to_a_rebuild_is_unknown_and_never_resent(world) -> None:
    _, client, transport, admin = world(drop_after_rate=1.0)
    with pytest.raises(errors.UnknownOutcome):
        client.rebuild_desktops(rebuild("d1"))
    assert transport.calls[("POST", "/desktops/rebuild")] == 1
    assert rebuild_counts(admin)["d1"] == 1  # it was processed: only the live API can tell


def test_dropped_before_processing_is_still_unknown_for_a_rebuild(world) -> None:
    _, client, transport, admin = world(drop_before_rate=1.0)
    with pytest.raises(errors.UnknownOutcome):
        client.rebuild_desktops(rebuild("d1"))
    assert rebuild_counts(admin)["d1"] == 0 and transport.calls[("POST", "/desktops/rebuild")] == 1


def test_reads_are_retried_after_a_dropped_connection(world, fake_clock) -> None:
    sim = Simulator(load_fleet_data(fleet()), clock=fake_clock)
    _, client, _, _ = world(inner=FailFirst(sim.transport(), httpx.RemoteProtocolError("dropped"), count=2))
    assert client.get_desktop("d1").id == "d1"
    assert len(fake_clock.slept) == 2


class FailFirst(httpx.BaseTransport):
    """Fails the first ``count`` requests with ``error`` before they are sent, then delegates."""

    def __init__(self, inner: httpx.BaseTransport, error: Exception, count: int = 1) -> None:
        self.inner, self.error, self.count = inner, error, count

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.count > 0:
            self.count -= 1
            raise self.error
        return self.inner.handle_request(request)


def test_connection_refused_before_sending_is_retried_even_for_a_rebuild(world, fake_clock) -> None:
    sim = Simulator(load_fleet_data(fleet()), clock=fake_clock)
    _, client, _, _ = world(inner=FailFirst(sim.transport(), httpx.ConnectError("refused"), count=2))
    assert client.rebuild_desktops(rebuild("d1"))


def test_connection_never_established_is_reported(world, fake_clock) -> None:
    sim = Simulator(load_fleet_data(fleet()), clock=fake_clock)
    _, client, _, _ = world(inner=FailFirst(sim.transport(), httpx.ConnectError("refused"), count=99))
    with pytest.raises(errors.ConnectionFailed, match="cannot reach"):
        client.get_desktop("d1")


def answering(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(status, json=body, headers={"X-Request-Id": "req-42", **(headers or {})}))


@pytest.mark.parametrize(
    "status,body,error",
    [
        (403, {"error_code": "WKS.00010403", "error_msg": "no permission workspace:desktops:rebuild"}, errors.Forbidden),
        (200, {"error_code": "WKS.00010099", "error_msg": "quota exceeded"}, errors.OperationFailed),
        (200, {}, errors.UnknownOutcome),  # no job_id and no refusal: the job may exist
        (200, {"job_id": ["j-1"]}, errors.UnknownOutcome),
        (200, ["j-1"], errors.UnknownOutcome),
        (302, {}, errors.UnknownOutcome),  # a redirect does not say the call was refused
        (413, {}, errors.WorkspaceError),  # any 4xx does
        (504, {"errorCode": "APIG.0201", "errorMsg": "backend timeout"}, errors.UnknownOutcome),
        (502, {"code": "APIG.0202", "message": "bad gateway"}, errors.UnknownOutcome),
    ],
)
def test_answers_the_simulator_does_not_give(world, status, body, error) -> None:
    _, client, transport, _ = world(inner=answering(status, body))
    with pytest.raises(error) as caught:
        client.rebuild_desktops(rebuild("d1"))
    assert transport.calls[("POST", "/desktops/rebuild")] == 1
    assert caught.value.request_id == "req-42"
    assert isinstance(caught.value, errors.UnknownOutcome) == (error is errors.UnknownOutcome)
    if body and "error_code" in str(body) or status >= 500:
        assert caught.value.error_code


@pytest.mark.parametrize("content", [b"<html>502 Bad Gateway</html>", b'{"job_id": "j-1"', b"\xff\xfe", b""])
def test_a_200_to_a_rebuild_that_is_not_the_api_s_json_is_an_unknown_outcome(world, content: bytes) -> None:
    """A garbled answer does not prove the call was refused: the job may have been created."""
    garbled = httpx.MockTransport(lambda request: httpx.Response(200, content=content, headers={"X-Request-Id": "req-7"}))
    _, client, transport, _ = world(inner=garbled)
    with pytest.raises(errors.UnknownOutcome) as caught:
        client.rebuild_desktops(rebuild("d1"))
    assert caught.value.status == 200 and caught.value.request_id == "req-7"
    assert transport.calls[("POST", "/desktops/rebuild")] == 1


def test_gateway_timeout_on_a_read_is_retried(world) -> None:
    _, client, transport, _ = world(inner=answering(504, {"error_code": "APIG.0201", "error_msg": "timeout"}))
    with pytest.raises(errors.ServerError):
        client.get_desktop("d1")
    assert transport.calls[("GET", "/desktops/d1")] == 4


def test_ids_are_validated_before_they_reach_a_url(world) -> None:
    _, client, transport, _ = world()
    for bad in ("../admin", "a/b", "a b", "", "x,y"):
        with pytest.raises(errors.BadRequest, match="invalid"):
            client.get_desktop(bad)
    with pytest.raises(errors.BadRequest):
        client.rebuild_desktops(rebuild("d1", "d/2"))
    assert not transport.requests


# -- auth ------------------------------------------------------------------------------------


def test_aksk_signs_no_transport_headers(world) -> None:
    _, client, transport, _ = world()
    client.rebuild_desktops(rebuild("d1"))
    request = transport.requests[-1]
    signed = request.headers["Authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert {"host", "x-sdk-date", "x-project-id", "content-type"} <= set(signed)
    assert not {"connection", "content-length", "accept-encoding"} & set(signed)
    assert SK not in repr(AkSkAuth(AK, SK))


def test_ready_token(world, fake_clock) -> None:
    sim = Simulator(load_fleet_data(fleet()), clock=fake_clock)
    token = httpx.Client(transport=sim.transport()).post(
        "http://127.0.0.1/v3/auth/tokens",
        json={"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "ops", "password": "ops-password-1", "domain": {"name": "acme"}}}}, "scope": {"project": {"id": P}}}},
    ).headers["X-Subject-Token"]
    _, client, _, _ = world(auth=TokenAuth(token), inner=sim.transport())
    assert client.get_desktop("d1").id == "d1"
    _, bad, _, _ = world(auth=TokenAuth("not-a-token"))
    with pytest.raises(errors.AuthFailure):
        bad.get_desktop("d1")


def test_password_auth_caches_its_token_and_refreshes_once_after_expiry(world, fake_clock) -> None:
    auth = PasswordAuth("http://127.0.0.1:8080", user="ops", password="ops-password-1", domain="acme", project_id=P, clock=lambda: 0.0)
    _, client, transport, _ = world(auth=auth)
    client.get_desktop("d1")
    client.get_desktop("d1")
    assert transport.calls[("POST", "/v3/auth/tokens")] == 1
    fake_clock.advance(25 * 3600)  # the simulator's token expired; the auth's own clock did not notice
    client.get_desktop("d1")
    assert transport.calls[("POST", "/v3/auth/tokens")] == 2


def test_password_auth_reports_a_wrong_password_without_it(world) -> None:
    auth = PasswordAuth("http://127.0.0.1:8080", user="ops", password="hunter2-wrong", domain="acme", project_id=P)
    _, client, _, _ = world(auth=auth)
    with pytest.raises(errors.AuthFailure) as caught:
        client.get_desktop("d1")
    assert "hunter2" not in str(caught.value) and "'ops'" in str(caught.value)


@pytest.mark.parametrize(
    "env,kind",
    [
        ({"HW_ACCESS_KEY": "a", "HW_SECRET_KEY": "b"}, AkSkAuth),
        ({"HUAWEICLOUD_SDK_AK": "a", "HUAWEICLOUD_SDK_SK": "b"}, AkSkAuth),
        ({"HW_AUTH_TOKEN": "t"}, TokenAuth),
        ({"HW_USER_NAME": "u", "HW_PASSWORD": "p", "HW_DOMAIN_NAME": "d"}, PasswordAuth),
    ],
)
def test_credentials_from_env(env, kind) -> None:
    assert isinstance(credentials_from_env(env, project_id=P, iam_endpoint="https://iam.example"), kind)


@pytest.mark.parametrize(
    "env,message",
    [
        ({}, "no credentials: set HW_ACCESS_KEY and HW_SECRET_KEY"),
        ({"HW_ACCESS_KEY": "a"}, "HW_ACCESS_KEY is set but HW_SECRET_KEY is missing"),
        ({"HW_SECRET_KEY": "s3cr3t"}, "HW_SECRET_KEY is set but HW_ACCESS_KEY is missing"),
        ({"HW_USER_NAME": "u", "HW_PASSWORD": "pw"}, "missing: HW_DOMAIN_NAME"),
    ],
)
def test_missing_credentials_name_the_variables(env, message) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        credentials_from_env(env, project_id=P, iam_endpoint="https://iam.example")
    assert "s3cr3t" not in str(caught.value) and "pw" not in str(caught.value).split(":")[-1]


@pytest.mark.parametrize("endpoint", ["http://workspace.example.com", "ftp://x", "https://user:pw@host", "https://h/path", "not a url"])
def test_unsafe_endpoints_are_refused(endpoint) -> None:
    with pytest.raises(ConfigurationError):
        validate_endpoint(endpoint)


@pytest.mark.parametrize("endpoint", ["https://workspace.cn-north-4.myhuaweicloud.com", "http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9/"])
def test_safe_endpoints_are_accepted(endpoint) -> None:
    assert validate_endpoint(endpoint) == endpoint.rstrip("/")
