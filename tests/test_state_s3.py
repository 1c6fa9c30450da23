"""The s3 backend on a real S3 protocol server (moto's, in-process on 127.0.0.1): the
conformance suite, the conditional-write probe, the headers the server receives, credentials and
errors."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from harness.backends import S3_ENV, S3Server, s3_settings

from reconciler.model import S3Settings
from reconciler.state import BackendError, State, StateLocked
from reconciler.state.conformance import StateStoreConformance, sample_state
from reconciler.state.s3 import S3StateStore, credentials_from


def make_store(url: str, bucket: str, key: str = "acme-prod/state.json", env: dict[str, str] = S3_ENV) -> S3StateStore:
    return S3StateStore.from_settings(S3Settings(**s3_settings(url, bucket, key)), "acme-prod", env)


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.new_bucket()


class TestS3StateStore(StateStoreConformance):
    killed_holder_keeps_lock = True  # a lock object outlives its crashed holder

    @pytest.fixture
    def store_factory(self, s3_server: S3Server, bucket: str) -> Callable[[], S3StateStore]:
        return lambda: make_store(s3_server.url, bucket)

    @pytest.fixture
    def store_source(self, s3_server: S3Server, bucket: str) -> str:
        return (
            "from reconciler.model import S3Settings\nfrom reconciler.state.s3 import S3StateStore\n"
            f"store = S3StateStore.from_settings(S3Settings(**{s3_settings(s3_server.url, bucket)!r}), 'acme-prod', {S3_ENV!r})"
        )


def test_a_store_that_ignores_conditional_writes_is_refused(s3_server: S3Server, bucket: str) -> None:
    store = make_store(s3_server.ignoring.url, bucket)
    with pytest.raises(BackendError, match=r"^s3 state backend s3://.*ignores conditional writes.*Fix: use a store"):
        store.lock("apply")
    assert make_store(s3_server.url, bucket).lock_info() is None  # no lock object was left behind
    # The same bucket through an honest endpoint locks fine.
    honest = make_store(s3_server.url, bucket)
    honest.unlock(honest.lock("apply").id)


def test_requests_carry_no_aws_chunked_bodies_or_trailing_checksums(s3_server: S3Server, bucket: str) -> None:
    start = len(s3_server.recording.requests)
    store = make_store(s3_server.url, bucket)
    info = store.lock("apply")
    store.read()
    store.append({"type": "begin", "pad": "x" * 100_000})
    store.write(sample_state())
    store.discard()
    store.unlock(info.id)
    seen = [r for r in s3_server.recording.requests[start:] if bucket in r[1]]
    puts = [headers for method, _, headers in seen if method == "PUT"]
    assert len(puts) >= 6  # the probe's three, the lock, a journal record, the state
    for method, path, headers in seen:
        where = f"{method} {path}"
        assert "aws-chunked" not in headers.get("content-encoding", ""), where
        assert not headers.get("x-amz-content-sha256", "").startswith("STREAMING-"), where
        assert not {"x-amz-trailer", "x-amz-decoded-content-length", "x-amz-sdk-checksum-algorithm"} & set(headers), where
        assert not [h for h in headers if h.startswith("x-amz-checksum-")], where
        assert headers.get("authorization", "").startswith("AWS4-HMAC-SHA256 Credential=AKIATESTSTATE0000001/"), where
    assert any(h.get("if-none-match") == "*" for h in puts) and any("if-match" in h for h in puts)


def test_the_locked_message_names_holder_operation_and_age(s3_server: S3Server, bucket: str) -> None:
    holder = make_store(s3_server.url, bucket)
    info = holder.lock("apply")
    with pytest.raises(StateLocked) as caught:
        make_store(s3_server.url, bucket).lock("plan")
    message = str(caught.value)
    assert info.id in message and "operation apply" in message and info.who in message and " ago" in message
    holder.unlock(info.id)


def test_the_key_defaults_to_the_state_name(s3_server: S3Server, bucket: str) -> None:
    settings = S3Settings(**{**s3_settings(s3_server.url, bucket), "key": None})
    store = S3StateStore.from_settings(settings, "acme-prod", S3_ENV)
    assert store.key == "acme-prod/state.json" and store.location.startswith(f"s3://{bucket}/acme-prod/state.json")


def test_credentials_come_from_reconciler_then_huawei_variables() -> None:
    assert credentials_from({"RECONCILER_S3_ACCESS_KEY": "a", "RECONCILER_S3_SECRET_KEY": "b", "HW_ACCESS_KEY": "c", "HW_SECRET_KEY": "d"}) \
        == {"aws_access_key_id": "a", "aws_secret_access_key": "b"}
    assert credentials_from({"HW_ACCESS_KEY": "c", "HW_SECRET_KEY": "d", "HW_SECURITY_TOKEN": "t"}) \
        == {"aws_access_key_id": "c", "aws_secret_access_key": "d", "aws_session_token": "t"}
    assert credentials_from({}) == {}
    with pytest.raises(BackendError, match="RECONCILER_S3_ACCESS_KEY and RECONCILER_S3_SECRET_KEY must be set together"):
        credentials_from({"RECONCILER_S3_ACCESS_KEY": "a"})


def test_a_missing_bucket_is_one_clear_error(s3_server: S3Server) -> None:
    store = make_store(s3_server.url, "no-such-bucket-here")
    with pytest.raises(BackendError, match=r"^s3 state backend s3://no-such-bucket-here/.*reading the state failed.*Fix: create the bucket"):
        store.read()
    assert isinstance(State(), State)


def test_an_unreachable_endpoint_is_one_clear_error_without_the_secret() -> None:
    store = make_store("http://127.0.0.1:1", "some-bucket")
    with pytest.raises(BackendError) as caught:
        store.read()
    message = str(caught.value)
    assert message.startswith("s3 state backend s3://some-bucket/acme-prod/state.json at http://127.0.0.1:1: reading the state failed")
    assert "Fix: check spec.state.s3.endpoint" in message and S3_ENV["RECONCILER_S3_SECRET_KEY"] not in message


@pytest.mark.parametrize("code, fix", [
    ("InvalidAccessKeyId", "Fix: set RECONCILER_S3_ACCESS_KEY and RECONCILER_S3_SECRET_KEY (or HW_ACCESS_KEY and HW_SECRET_KEY)"),
    ("SignatureDoesNotMatch", "Fix: set RECONCILER_S3_ACCESS_KEY"),
    ("AccessDenied", "Fix: set RECONCILER_S3_ACCESS_KEY"),
    ("NoSuchBucket", "Fix: create the bucket state-x"),
    ("SlowDown", "Fix: see the store's message"),
])
def test_refusals_are_explained_with_their_fix(code: str, fix: str) -> None:
    """The store's answers as botocore reports them (moto's server does not check keys, so the
    refusals of a real store are built here as botocore would build them)."""
    from botocore.exceptions import ClientError

    store = make_store("http://127.0.0.1:1", "state-x")
    refusal = ClientError({"Error": {"Code": code, "Message": "refused"}, "ResponseMetadata": {"HTTPStatusCode": 403}}, "GetObject")
    message = store._explain("reading the state", refusal)
    assert message.startswith("s3 state backend s3://state-x/acme-prod/state.json at http://127.0.0.1:1: reading the state failed")
    assert fix in message and S3_ENV["RECONCILER_S3_SECRET_KEY"] not in message


def test_a_discard_is_one_write_and_a_discard_cut_short_hides_every_record(s3_server: S3Server, bucket: str) -> None:
    """Deleting the record objects one by one is not atomic: a run killed halfway would leave
    some records without their ``begin``, and the next run would fold them again over the newer
    state. The discard mark is written first and hides every record up to it."""
    store = make_store(s3_server.url, bucket)
    for n in range(5):
        store.append({"type": "begin" if n == 0 else "intent", "n": n})
    # The discard of a run killed right after writing its mark, before deleting any object:
    client = store._client
    client.put_object(Bucket=bucket, Key=store.discarded_key, Body=b'{"through": 5}')
    again = make_store(s3_server.url, bucket)
    assert again.replay() == [] and again.journal_digest() is None
    again.append({"type": "begin", "n": 6})  # numbered after the hidden ones, never reusing them
    assert make_store(s3_server.url, bucket).replay() == [{"type": "begin", "n": 6}]
    again.discard()
    listed = client.list_objects_v2(Bucket=bucket, Prefix=store.journal_prefix).get("Contents", [])
    assert listed == [] and make_store(s3_server.url, bucket).replay() == []
