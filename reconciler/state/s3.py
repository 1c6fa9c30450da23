"""The s3 backend: the state, its lock and its journal as objects in an S3-protocol bucket (Huawei
OBS, AWS S3, MinIO, …). Network I/O (boto3, the extra ``reconciler[s3]``).

- ``<key>`` holds the state. A write carries ``If-Match`` with the ETag this handle read (or
  ``If-None-Match: *`` when there was none): compare-and-swap, so a lost race changes nothing.
- ``<key>.lock`` is the lock: created with ``If-None-Match: *`` and holding the lock info, deleted
  with ``If-Match`` on its own ETag. Nothing deletes the lock of a run that crashed: it stays until
  ``force-unlock``, and the locked message shows holder, operation and age.
- ``<key>.journal/<seq>`` are the journal records, one object each, named by a zero-padded
  sequence and created with ``If-None-Match: *``; an object exists whole or not at all. A discard
  is one write of ``<key>.journal-discarded`` (``{"through": N}``: records up to N are gone); the
  objects are deleted after it, and any a killed run left behind stay hidden.
- Before its first lock a handle proves that the store honours conditional writes: a second create
  of a probe object must fail with 412. A store that ignores them would let two runs hold the lock
  at once, so it is refused.
- Requests carry no ``aws-chunked`` bodies and no trailing checksums (botocore's
  ``request_checksum_calculation`` and ``response_checksum_validation`` = ``when_required``):
  OBS rejects them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from reconciler.model import S3Settings
from reconciler.state.local import encode_state
from reconciler.state.state import State, StateError, state_from_json, state_to_json
from reconciler.state.store import BackendError, LockInfo, LockMismatch, StateConflict, StateLocked, StateStore

log = logging.getLogger(__name__)
LOCK_POLL_SECONDS = 0.5
SEQUENCE_DIGITS = 20
READERS = 8  # journal records fetched at once on replay
INSTALL_HINT = "pip install 'reconciler[s3]'"
CREDENTIALS_HINT = (
    "set RECONCILER_S3_ACCESS_KEY and RECONCILER_S3_SECRET_KEY (or HW_ACCESS_KEY and HW_SECRET_KEY) "
    "to keys allowed to read and write the bucket"
)
CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
CREDENTIAL_CODES = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken", "InvalidToken", "TokenRefreshRequired", "403"}
)
ABSENT, UNSEEN = "absent", "unseen"


def credentials_from(env: Mapping[str, str]) -> dict[str, str]:
    """boto3 session arguments: reconciler's own variables, else the Huawei Cloud AK/SK (OBS takes
    the same keys), else nothing (botocore's own chain: its variables, files, instance roles)."""
    for ak, sk, token in (
        ("RECONCILER_S3_ACCESS_KEY", "RECONCILER_S3_SECRET_KEY", "RECONCILER_S3_SESSION_TOKEN"),
        ("HW_ACCESS_KEY", "HW_SECRET_KEY", "HW_SECURITY_TOKEN"),
    ):
        if env.get(ak) or env.get(sk):
            if not (env.get(ak) and env.get(sk)):
                raise BackendError(f"s3 state backend: {ak} and {sk} must be set together. Fix: set both")
            found = {"aws_access_key_id": env[ak], "aws_secret_access_key": env[sk]}
            if env.get(token):
                found["aws_session_token"] = env[token]
            return found
    return {}


class S3StateStore(StateStore):
    def __init__(self, client: Any, bucket: str, key: str, endpoint: str | None) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        self._client = client
        self._client_errors = (ClientError, BotoCoreError)
        self.bucket, self.key = bucket, key
        self.lock_key, self.journal_prefix = f"{key}.lock", f"{key}.journal/"
        self.discarded_key = f"{key}.journal-discarded"
        self.location = f"s3://{bucket}/{key}" + (f" at {endpoint}" if endpoint else "")
        self._seen: str = UNSEEN  # ETag last read or written, ABSENT, or UNSEEN (nothing read yet)
        self._held: tuple[str, str] | None = None  # (lock id, lock object's ETag)
        self._probed = False
        self._next_seq: int | None = None

    @classmethod
    def from_settings(cls, settings: S3Settings, name: str, env: Mapping[str, str]) -> S3StateStore:
        if not settings.bucket:
            raise BackendError("s3 state backend: no bucket given. Fix: set spec.state.s3.bucket")
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise BackendError(f"the s3 state backend needs boto3: {INSTALL_HINT}") from None
        config = Config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": settings.addressing_style},
            retries={"mode": "standard", "max_attempts": 4},
            connect_timeout=10,
            read_timeout=60,
        )
        session = boto3.session.Session(**credentials_from(env))
        client = session.client("s3", endpoint_url=settings.endpoint, region_name=settings.region or "us-east-1", config=config)
        return cls(client, settings.bucket, settings.key or f"{name}/state.json", settings.endpoint)

    # -- errors --------------------------------------------------------------------------------

    @contextmanager
    def _failures(self, doing: str) -> Iterator[None]:
        """botocore's errors as one BackendError naming the backend, what failed and the fix."""
        try:
            yield
        except self._client_errors as exc:
            raise BackendError(self._explain(doing, exc)) from None

    def _explain(self, doing: str, exc: Exception) -> str:
        from botocore.exceptions import ClientError, NoCredentialsError

        code = _code(exc) if isinstance(exc, ClientError) else ""
        reason = " ".join(str(exc).split())
        if code == "NoSuchBucket":
            fix = f"create the bucket {self.bucket}, or fix spec.state.s3.bucket / endpoint / region"
        elif code in CREDENTIAL_CODES or isinstance(exc, NoCredentialsError):
            fix = CREDENTIALS_HINT
        elif not code:
            fix = "check spec.state.s3.endpoint and that the network reaches it"
        else:
            fix = "see the store's message"
        return f"s3 state backend {self.location}: {doing} failed: {reason}. Fix: {fix}"

    def _get(self, key: str, doing: str) -> tuple[bytes, str] | None:
        """An object's content and ETag, or None if there is no such object."""
        from botocore.exceptions import ClientError

        with self._failures(doing):
            try:
                answer = self._client.get_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _code(exc) in ("NoSuchKey", "404"):
                    return None
                raise
            return answer["Body"].read(), str(answer["ETag"])

    def _put(self, key: str, body: bytes, doing: str, **condition: str) -> str | None:
        """Create or replace an object under a condition; its new ETag, or None when the
        condition failed (412)."""
        from botocore.exceptions import ClientError

        with self._failures(doing):
            try:
                answer = self._client.put_object(
                    Bucket=self.bucket, Key=key, Body=body, ContentType="application/json", **condition
                )
            except ClientError as exc:
                if _code(exc) in CONFLICT_CODES:
                    return None
                raise
            return str(answer["ETag"])

    def _delete(self, key: str, etag: str, doing: str) -> bool:
        """Delete an object if it still has ``etag``; False if it changed meanwhile."""
        from botocore.exceptions import ClientError

        with self._failures(doing):
            try:
                self._client.delete_object(Bucket=self.bucket, Key=key, IfMatch=etag)
            except ClientError as exc:
                if _code(exc) in CONFLICT_CODES:
                    return False
                if _code(exc) in ("NoSuchKey", "404"):
                    return True  # gone already: nothing to delete
                if _code(exc) not in ("NotImplemented", "501"):
                    raise
                # A store without conditional deletes: check, then delete (a narrow window).
                current = self._get(key, doing)
                if current is None or current[1] != etag:
                    return current is None
                self._client.delete_object(Bucket=self.bucket, Key=key)
            return True

    # -- read / write --------------------------------------------------------------------------

    def read(self) -> State:
        found = self._get(self.key, "reading the state")
        if found is None:
            self._seen = ABSENT
            return State()
        body, self._seen = found
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise StateError(f"{self.location} is not valid JSON: {exc}") from None
        return state_from_json(data, self.location)

    def write(self, state: State) -> None:
        condition = {} if self._seen == UNSEEN else {"IfNoneMatch": "*"} if self._seen == ABSENT else {"IfMatch": self._seen}
        etag = self._put(self.key, encode_state(state_to_json(state)), "writing the state", **condition)
        if etag is None:
            raise StateConflict(self.location)
        self._seen = etag

    # -- lock ----------------------------------------------------------------------------------

    def _probe(self) -> None:
        """Refuse a store that ignores conditional writes: on it, two runs could both create
        the lock object and both believe they hold it."""
        if self._probed:
            return
        probe = f"{self.key}.probe/{uuid.uuid4()}"
        created = self._put(probe, b"{}", "probing conditional writes", IfNoneMatch="*")
        again = self._put(probe, b"{}", "probing conditional writes", IfNoneMatch="*")
        stale = self._put(probe, b"{}", "probing conditional writes", IfMatch='"00000000000000000000000000000000"')
        if created is not None:
            with self._failures("removing the probe object"):
                self._client.delete_object(Bucket=self.bucket, Key=probe)
        if created is None or again is not None or stale is not None:
            raise BackendError(
                f"s3 state backend {self.location}: the store ignores conditional writes "
                "(a second create with If-None-Match: * did not fail with 412), so its locks would not exclude "
                "anything and reconciler refuses it. Fix: use a store that honours If-None-Match and If-Match "
                "(Huawei OBS, AWS S3, MinIO), or the postgres backend"
            )
        self._probed = True

    def lock(self, operation: str, timeout: float = 0.0) -> LockInfo:
        self._probe()
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            info = LockInfo.new(operation)
            etag = self._put(self.lock_key, json.dumps(info.to_json()).encode("utf-8"), "taking the lock", IfNoneMatch="*")
            if etag is not None:
                self._held = (info.id, etag)
                return info
            if time.monotonic() >= deadline:
                raise StateLocked(self.lock_info(), self.location)
            time.sleep(LOCK_POLL_SECONDS)

    def _lock_object(self) -> tuple[LockInfo, str] | None:
        found = self._get(self.lock_key, "reading the lock")
        if found is None:
            return None
        body, etag = found
        try:
            return LockInfo.from_json(json.loads(body)), etag
        except (ValueError, KeyError, TypeError, AttributeError):
            # Not ours to interpret, but it blocks the lock: name it so force-unlock can remove it.
            return LockInfo("unreadable-lock-object", "?", "?", 0, "?", "?"), etag

    def lock_info(self) -> LockInfo | None:
        found = self._lock_object()
        return found[0] if found else None

    def unlock(self, lock_id: str) -> None:
        if self._held is None or self._held[0] != lock_id:
            raise LockMismatch(f"this run does not hold lock {lock_id} on {self.location}")
        etag, self._held = self._held[1], None
        if not self._delete(self.lock_key, etag, "releasing the lock"):
            # Broken with force-unlock and taken by another run: that lock is not ours to remove.
            # This run's writes were compare-and-swap, so nothing it did overwrote the other's.
            log.warning("the lock %s on %s was broken (force-unlock) and is held by another run now", lock_id, self.location)

    def force_unlock(self, lock_id: str) -> None:
        found = self._lock_object()
        if found is None:
            raise LockMismatch(f"the state at {self.location} is not locked")
        info, etag = found
        if info.id != lock_id:
            raise LockMismatch(f"the lock on {self.location} has ID {info.id}, not {lock_id}")
        if not self._delete(self.lock_key, etag, "breaking the lock"):
            raise LockMismatch(f"the lock on {self.location} changed meanwhile; look at it again")

    # -- journal -------------------------------------------------------------------------------

    def _seq(self, key: str) -> int:
        return int(key[len(self.journal_prefix):])

    def _discarded_through(self) -> int:
        """Records up to this sequence number were discarded (their objects may linger)."""
        found = self._get(self.discarded_key, "reading the journal")
        if found is None:
            return 0
        try:
            return int(json.loads(found[0])["through"])
        except (ValueError, KeyError, TypeError):
            raise StateError(f"{self.location}: {self.discarded_key} is unreadable; it must hold {{\"through\": N}}") from None

    def _journal_objects(self) -> tuple[int, list[dict[str, Any]]]:
        """The discard mark and the journal's live objects after it, in sequence order
        (zero-padded names sort as numbers)."""
        through = self._discarded_through()
        objects: list[dict[str, Any]] = []
        with self._failures("listing the journal"):
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.journal_prefix):
                objects += page.get("Contents", [])
        return through, sorted(objects, key=lambda o: str(o["Key"]))

    @staticmethod
    def _after(through: int, objects: list[dict[str, Any]], seq: Any) -> list[dict[str, Any]]:
        return [o for o in objects if seq(str(o["Key"])) > through]

    def append(self, record: Mapping[str, Any]) -> None:
        if self._next_seq is None:
            through, objects = self._journal_objects()
            self._next_seq = max([through, *(self._seq(str(o["Key"])) for o in objects)]) + 1
        body = json.dumps(record, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode("utf-8")
        name = f"{self.journal_prefix}{self._next_seq:0{SEQUENCE_DIGITS}d}"
        if self._put(name, body, "appending to the journal", IfNoneMatch="*") is None:
            raise StateError(f"{self.location}: journal record {self._next_seq} was written by another run at the same time")
        self._next_seq += 1

    def replay(self) -> list[dict[str, Any]]:
        through, objects = self._journal_objects()
        keys = [str(o["Key"]) for o in self._after(through, objects, self._seq)]
        with ThreadPoolExecutor(max_workers=READERS) as pool:
            bodies = list(pool.map(lambda k: self._get(k, "reading the journal"), keys))
        records = []
        for key, found in zip(keys, bodies, strict=True):
            if found is None:
                continue  # removed by a discard that raced this replay
            try:
                records.append(json.loads(found[0]))
            except ValueError:
                raise StateError(f"{self.location}: unreadable journal record {key}") from None
        return records

    def discard(self) -> None:
        """One PUT discards the journal: the mark says every record up to the newest is gone.
        Only then are the objects deleted, so a run killed while deleting them leaves records the
        mark hides (deleted by the next discard), never a journal cut anywhere else: folded
        again without their ``begin``, a journal's later records would undo newer state."""
        through, objects = self._journal_objects()
        if not objects:
            return
        newest = max(through, *(self._seq(str(o["Key"])) for o in objects))
        if newest > through:
            self._put(self.discarded_key, json.dumps({"through": newest}).encode("utf-8"), "discarding the journal")
        for listed in objects:
            with self._failures("removing the journal"):
                self._client.delete_object(Bucket=self.bucket, Key=listed["Key"])
        self._next_seq = newest + 1

    def journal_digest(self) -> str | None:
        through, objects = self._journal_objects()
        live = self._after(through, objects, self._seq)
        if not live:
            return None
        listing = "\n".join(f"{o['Key']} {o['ETag']} {o['Size']}" for o in live)
        return "sha256:" + hashlib.sha256(listing.encode("utf-8")).hexdigest()

    def close(self) -> None:
        self._client.close()


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
