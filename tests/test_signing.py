"""SDK-HMAC-SHA256 signing: the shared vectors, and agreement with the official SDK signer."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.cloud.signing import SigningError, canonical_uri, parse_authorization, sign

VECTORS = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "aksk-signing-vectors.json"
LOCAL_VECTORS = Path(__file__).parent / "fixtures" / "aksk-signing-vectors.json"


def _vectors() -> list[dict]:
    path = VECTORS if VECTORS.exists() else LOCAL_VECTORS
    return json.loads(path.read_text())["vectors"]


def _url(host: str, path: str, query: list[list[str]]) -> str:
    encoded = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query)
    return f"https://{host}{path}" + (f"?{encoded}" if encoded else "")


@pytest.mark.parametrize("vector", _vectors(), ids=lambda v: v["name"])
def test_reproduces_official_vector(vector: dict) -> None:
    url = _url(vector["host"], vector["path"], vector["query"])
    got = sign(vector["method"], url, vector["headers"], vector["body"], vector["ak"], vector["sk"])
    assert got == vector["expected_authorization"]


def test_vector_query_order_does_not_matter() -> None:
    vector = next(v for v in _vectors() if len(v["query"]) > 2)
    url = _url(vector["host"], vector["path"], list(reversed(vector["query"])))
    got = sign(vector["method"], url, vector["headers"], vector["body"], vector["ak"], vector["sk"])
    assert got == vector["expected_authorization"]


def test_host_from_url_is_signed_unless_given() -> None:
    headers = {"X-Sdk-Date": "20261127T101500Z"}
    implicit = sign("GET", "https://example.com:8443/v2/p/x", headers, b"", "AK", "SK")
    explicit = sign("GET", "https://other/v2/p/x", {**headers, "Host": "example.com:8443"}, b"", "AK", "SK")
    assert implicit == explicit
    assert "SignedHeaders=host;x-sdk-date" in implicit


def test_sign_requires_a_date_and_keys() -> None:
    with pytest.raises(SigningError):
        sign("GET", "https://h/p", {}, b"", "AK", "SK")
    with pytest.raises(SigningError):
        sign("GET", "https://h/p", {"X-Sdk-Date": "20261127T101500Z"}, b"", "AK", "")


def test_signature_depends_on_secret_key_and_body() -> None:
    headers = {"X-Sdk-Date": "20261127T101500Z", "Content-Type": "application/json"}
    base = sign("POST", "https://h/v2/p/desktops/rebuild", headers, b"{}", "AK", "SK")
    assert base != sign("POST", "https://h/v2/p/desktops/rebuild", headers, b"{}", "AK", "SK2")
    assert base != sign("POST", "https://h/v2/p/desktops/rebuild", headers, b"{ }", "AK", "SK")


def test_parse_authorization_round_trip() -> None:
    value = sign("GET", "https://h/a", {"X-Sdk-Date": "20261127T101500Z"}, b"", "AK1", "SK")
    ak, names, signature = parse_authorization(value)  # type: ignore[misc]
    assert (ak, names, len(signature)) == ("AK1", ["host", "x-sdk-date"], 64)
    assert parse_authorization("Bearer abc") is None


def test_canonical_uri_always_ends_with_slash_and_reencodes() -> None:
    assert canonical_uri("/v2/p/desktops") == "/v2/p/desktops/"
    assert canonical_uri("/a%20b/c~d/") == "/a%20b/c~d/"
    assert canonical_uri("/caf%C3%A9") == "/caf%C3%A9/"


# --- agreement with the official signer ------------------------------------------------------

signer_module = pytest.importorskip("huaweicloudsdkcore.signer.signer")
from huaweicloudsdkcore.auth.credentials import BasicCredentials  # noqa: E402
from huaweicloudsdkcore.sdk_request import SdkRequest  # noqa: E402

# Reserved characters, percent, space, tilde, slash, equals, ampersand, plus and non-ASCII.
TRICKY = st.text(alphabet=st.sampled_from(list("aZ09-._~ /%=&+?#:@!$'()*,;[]\"") + ["é", "中", "\u00a0"]), max_size=12)
SAFE_SETS = st.sampled_from(["", "~", "/~", "~:@!$'()*,;+"])
HOSTS = st.sampled_from(["workspace.cn-north-4.myhuaweicloud.com", "127.0.0.1:8080", "[::1]:9000", "example.com"])
HEADER_SETS = st.sampled_from(
    [
        {},
        {"Content-Type": "application/json"},
        {"Content-Type": "application/json;charset=UTF-8", "User-Agent": "reconciler-test"},
        {"X-Project-Id": "0a1b2c3d4e5f60718293a4b5c6d7e8f9", "X-Security-Token": "tok en"},
        {"content-type": "application/json", "x-custom": "  padded value  ", "X_Underscored": "skipped"},
        {"Content-Type": "text/plain", "X-Sdk-Content-Sha256": "UNSIGNED-PAYLOAD"},
        {"Host": "override.example.com", "Accept": "*/*"},
    ]
)
DATES = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31))


def _official(method, host, resource_path, pairs, headers, body, ak, sk) -> str:
    request = SdkRequest(
        method=method,
        schema="https",
        host=host,
        resource_path=resource_path,
        query_params=list(pairs),
        header_params=dict(headers),
        body=body,
    )
    return signer_module.Signer(BasicCredentials(ak, sk)).sign(request).header_params["Authorization"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    host=HOSTS,
    segments=st.lists(TRICKY, min_size=1, max_size=4),
    trailing_slash=st.booleans(),
    pairs=st.lists(st.tuples(TRICKY, TRICKY), max_size=6),
    repeat=st.booleans(),
    safe=SAFE_SETS,
    order=st.randoms(use_true_random=False),
    headers=HEADER_SETS,
    body=st.one_of(st.just(""), st.text(max_size=40), st.binary(max_size=40).map(lambda b: b.hex())),
    when=DATES,
    ak=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=20),
    sk=st.text(min_size=1, max_size=40).filter(lambda s: "\x00" not in s),
)
def test_agrees_with_official_signer(
    method, host, segments, trailing_slash, pairs, repeat, safe, order, headers, body, when, ak, sk
) -> None:
    if repeat and pairs:
        pairs = pairs + [(pairs[0][0], pairs[-1][1])]  # a repeated key with another value
    resource_path = "/" + "/".join(quote(s, safe="~") for s in segments) + ("/" if trailing_slash else "")
    all_headers = {**headers, "X-Sdk-Date": when.strftime("%Y%m%dT%H%M%SZ")}
    # Our signer sees the URL as it would arrive: pairs in any order, encoded in any valid way.
    shuffled = list(pairs)
    order.shuffle(shuffled)
    query = "&".join(f"{quote(k, safe=safe)}={quote(v, safe=safe)}" for k, v in shuffled)
    url = f"https://{host}{resource_path}" + (f"?{query}" if query else "")

    expected = _official(method, host, resource_path, pairs, all_headers, body, ak, sk)
    assert sign(method, url, all_headers, body, ak, sk) == expected
    assert sign(method, url, all_headers, body.encode("utf-8"), ak, sk) == expected


def test_agrees_with_official_signer_on_utc_now() -> None:
    now = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    headers = {"Content-Type": "application/json", "X-Sdk-Date": now}
    expected = _official("GET", "h.example", "/v2/p/desktops/detail", [("limit", "500")], headers, "", "AK", "SK")
    assert sign("GET", "https://h.example/v2/p/desktops/detail?limit=500", headers, b"", "AK", "SK") == expected
