"""Authentication: AK/SK signatures, IAM password tokens, key lockout and the open (no-auth) mode."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from reconciler.cloud.signing import format_sdk_date, sign
from reconciler.simulator import Simulator, load_fleet_data

P = "proj1"
AK, SK = "AKTEST0001", "sk-test-0001-very-secret"
USER = {"name": "ops", "password": "pa55-word", "domain": "acme"}
LIST = f"/v2/{P}/desktops/detail"


def fleet(**extra: Any) -> dict[str, Any]:
    return {
        "project_id": P,
        "credentials": [{"ak": AK, "sk": SK}, {"ak": "AKOTHER", "sk": "other-secret"}],
        "users": [USER],
        "images": [{"id": "img", "type": "gold"}],
        "desktops": [{"id": "d1", "name": "pc1", "image_id": "img"}],
        **extra,
    }


@pytest.fixture
def sim(fake_clock: Any) -> Simulator:
    return Simulator(load_fleet_data(fleet()), clock=fake_clock)


def raw(sim: Simulator) -> httpx.Client:
    return httpx.Client(transport=sim.transport(), base_url="http://127.0.0.1")


def signed_headers(method: str, url: str, when: float, body: bytes = b"", sk: str = SK,
                   extra: dict[str, str] | None = None) -> dict[str, str]:
    headers = {"Host": "127.0.0.1", "X-Sdk-Date": format_sdk_date(datetime.fromtimestamp(when, UTC)),
               "Content-Type": "application/json", **(extra or {})}
    headers["Authorization"] = sign(method, url, headers, body, AK, sk)
    return headers


def assert_401(response: httpx.Response, fragment: str) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error_code"] == "APIG.0301"
    assert fragment in response.json()["error_msg"]
    assert SK not in response.text and "other-secret" not in response.text


def test_signed_requests_pass(sim: Simulator, sim_client: Callable[..., httpx.Client]) -> None:
    client = sim_client(sim)
    assert client.get(LIST, params={"tag": "a=b c,d=é ü", "desktop_id": "d1"}).status_code == 200
    response = client.post(f"/v2/{P}/desktops/rebuild", json={"desktop_ids": ["d1"], "image_type": "gold", "image_id": "img"})
    assert response.status_code == 200
    # Paths are verified in their decoded form, re-encoded as the signer does (non-ASCII included).
    missing = client.get(f"/v2/{P}/desktops/d%C3%A9 %7E%25x")
    assert (missing.status_code, missing.json()["error_code"]) == (404, "WKS.00010404")
    assert "dé ~%x" in missing.json()["error_msg"]


def test_wrong_secret_key_is_401(sim: Simulator, sim_client: Callable[..., httpx.Client]) -> None:
    assert_401(sim_client(sim, sign_with=(AK, "not-the-key")).get(LIST), "the signature does not match")


def test_unknown_access_key_is_401(sim: Simulator, sim_client: Callable[..., httpx.Client]) -> None:
    assert_401(sim_client(sim, sign_with=("AKNOBODY", SK)).get(LIST), "the access key AKNOBODY does not exist")


@pytest.mark.parametrize("skew", [-901, 901])
def test_skewed_dates_are_401(sim: Simulator, fake_clock: Any, skew: int) -> None:
    url = f"http://127.0.0.1{LIST}"
    response = raw(sim).get(LIST, headers=signed_headers("GET", url, fake_clock() + skew))
    assert_401(response, "the server clock (at most 900 s allowed)")


def test_dates_within_fifteen_minutes_pass(sim: Simulator, fake_clock: Any) -> None:
    url = f"http://127.0.0.1{LIST}"
    assert raw(sim).get(LIST, headers=signed_headers("GET", url, fake_clock() - 899)).status_code == 200


def test_missing_credentials_and_headers(sim: Simulator, fake_clock: Any) -> None:
    client, url = raw(sim), f"http://127.0.0.1{LIST}"
    assert_401(client.get(LIST), "the request carries no credentials")
    headers = signed_headers("GET", url, fake_clock())
    del headers["X-Sdk-Date"]
    assert_401(client.get(LIST, headers=headers), "the X-Sdk-Date header is missing")
    assert_401(client.get(LIST, headers={"Authorization": "Basic abc"}), "the Authorization header is not")
    headers = signed_headers("GET", url, fake_clock(), extra={"X-Extra": "1"})
    del headers["X-Extra"]
    assert_401(client.get(LIST, headers=headers), "the signed header 'x-extra' is missing")
    date = format_sdk_date(datetime.fromtimestamp(fake_clock(), UTC))
    unsigned_date = {"X-Sdk-Date": date, "Authorization": f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=host, Signature=00"}
    assert_401(client.get(LIST, headers=unsigned_date), "the X-Sdk-Date header must be signed")


def test_tampering_with_query_or_body_breaks_the_signature(sim: Simulator, fake_clock: Any) -> None:
    client = raw(sim)
    url = f"http://127.0.0.1{LIST}?limit=1"
    assert_401(client.get(f"{LIST}?limit=2", headers=signed_headers("GET", url, fake_clock())), "does not match")
    rebuild = f"http://127.0.0.1/v2/{P}/desktops/rebuild"
    headers = signed_headers("POST", rebuild, fake_clock(), body=b'{"a":1}')
    assert_401(client.post(f"/v2/{P}/desktops/rebuild", headers=headers, content=b'{"a":2}'), "does not match")


def test_project_header_must_match_the_path(sim: Simulator, fake_clock: Any) -> None:
    url = f"http://127.0.0.1{LIST}"
    headers = signed_headers("GET", url, fake_clock(), extra={"X-Project-Id": "someone-else"})
    assert_401(raw(sim).get(LIST, headers=headers), "X-Project-Id header (someone-else) does not match")


def test_consecutive_signature_failures_lock_the_key(sim: Simulator, fake_clock: Any,
                                                     sim_client: Callable[..., httpx.Client]) -> None:
    bad, good = sim_client(sim, sign_with=(AK, "wrong")), sim_client(sim)
    for _ in range(5):
        assert_401(bad.get(LIST), "does not match")
    assert_401(good.get(LIST), "is locked for 300 more seconds")
    assert sim_client(sim, sign_with=("AKOTHER", "other-secret")).get(LIST).status_code == 200
    fake_clock.advance(300)
    assert good.get(LIST).status_code == 200


def test_a_success_resets_the_failure_count(sim: Simulator, sim_client: Callable[..., httpx.Client]) -> None:
    bad, good = sim_client(sim, sign_with=(AK, "wrong")), sim_client(sim)
    for _ in range(4):
        bad.get(LIST)
    assert good.get(LIST).status_code == 200
    for _ in range(4):
        bad.get(LIST)
    assert good.get(LIST).status_code == 200


def token_request(password: str = USER["password"], project: dict[str, str] | None = None) -> dict[str, Any]:
    scope = {"scope": {"project": project or {"id": P}}} if project != {} else {}
    user = {"name": USER["name"], "password": password, "domain": {"name": USER["domain"]}}
    return {"auth": {"identity": {"methods": ["password"], "password": {"user": user}}, **scope}}


def test_iam_password_token_flow(sim: Simulator, fake_clock: Any) -> None:
    client = raw(sim)
    response = client.post("/v3/auth/tokens", json=token_request())
    assert response.status_code == 201
    token = response.headers["X-Subject-Token"]
    body = response.json()["token"]
    assert body["expires_at"] == "2027-01-16T08:00:00.000000Z" and body["project"]["id"] == P
    assert body["user"]["name"] == "ops" and USER["password"] not in response.text
    assert client.get(LIST, headers={"X-Auth-Token": token}).status_code == 200
    fake_clock.advance(24 * 3600)
    assert_401(client.get(LIST, headers={"X-Auth-Token": token}), "the X-Auth-Token expired at")


def test_iam_refusals_use_the_iam_error_shape(sim: Simulator) -> None:
    client = raw(sim)
    wrong = client.post("/v3/auth/tokens", json=token_request(password="nope"))
    assert wrong.status_code == 401
    assert wrong.json() == {"error": {"code": 401, "message": "The username or password is wrong.", "title": "Unauthorized"}}
    other_project = client.post("/v3/auth/tokens", json=token_request(project={"id": "elsewhere"}))
    assert other_project.status_code == 401
    malformed = client.post("/v3/auth/tokens", json={"auth": {"identity": {"methods": ["token"]}}})
    assert malformed.status_code == 400 and "password" in malformed.json()["error"]["message"]
    assert client.get("/v3/auth/tokens").status_code == 405


def test_unscoped_and_foreign_tokens_are_refused(sim: Simulator) -> None:
    client = raw(sim)
    unscoped = client.post("/v3/auth/tokens", json=token_request(project={})).headers["X-Subject-Token"]
    assert_401(client.get(LIST, headers={"X-Auth-Token": unscoped}), "not scoped to a project")
    assert_401(client.get(LIST, headers={"X-Auth-Token": "MIIforged"}), "was not issued by this service")


def test_a_project_name_scope_is_accepted(sim: Simulator) -> None:
    client = raw(sim)
    token = client.post("/v3/auth/tokens", json=token_request(project={"name": "cn-north-4"})).headers["X-Subject-Token"]
    assert client.get(LIST, headers={"X-Auth-Token": token}).status_code == 200


def test_open_fleet_needs_no_authentication(fake_clock: Any) -> None:
    open_fleet = fleet(credentials=[], users=[])
    sim = Simulator(load_fleet_data(open_fleet), clock=fake_clock)
    assert not sim.auth_required and sim.credentials is None
    assert raw(sim).get(LIST).status_code == 200
    assert raw(sim).get(LIST, headers={"Authorization": "garbage"}).status_code == 200
