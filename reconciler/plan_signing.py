"""Signed plans: an HMAC-SHA256 over a plan document's canonical content, made with the secret
``RECONCILER_PLAN_KEY``, so that ``apply PLANFILE`` applies only plans made by a holder of the key.

The plan's checksum (``sha256:`` of the same content) catches accidents; anyone can recompute
it after editing a plan. The signature needs the key. The key itself is never written, printed or
put into an exception: only its id, the first 8 hex digits of its SHA-256, which names the key
without revealing it. Pure functions; the CLI reads the environment.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.errors import ReconcilerError

KEY_VARIABLE = "RECONCILER_PLAN_KEY"
MIN_KEY_BYTES = 32
ALGORITHM = "HMAC-SHA256"
UNSIGNED_KEYS = frozenset({"checksum", "signature"})  # what the checksum and signature do not cover


class PlanKeyError(ReconcilerError):
    """RECONCILER_PLAN_KEY is set but cannot be a signing key."""


class PlanSignatureError(ReconcilerError):
    """A plan that is not signed with the key in use."""


@dataclass(frozen=True)
class PlanKey:
    """The signing key. ``repr`` shows the id only, so the key cannot leak through a log line."""

    secret: bytes
    key_id: str

    def __repr__(self) -> str:
        return f"PlanKey(key_id={self.key_id!r})"


def key_id(secret: bytes) -> str:
    return hashlib.sha256(secret).hexdigest()[:8]


def plan_key(environ: Mapping[str, str]) -> PlanKey | None:
    """The key from ``RECONCILER_PLAN_KEY``; None when unset. Set but empty counts as set: a CI
    secret that is missing expands to an empty string, and must not turn signing off unnoticed."""
    value = environ.get(KEY_VARIABLE)
    if value is None:
        return None
    secret = value.encode("utf-8")
    if len(secret) < MIN_KEY_BYTES:
        length = "empty" if not secret else f"{len(secret)} bytes long"
        raise PlanKeyError(
            f"{KEY_VARIABLE} is {length}; a plan key needs at least {MIN_KEY_BYTES} bytes "
            "(make one with: openssl rand -hex 32)"
        )
    return PlanKey(secret, key_id(secret))


def canonical(document: Mapping[str, Any]) -> bytes:
    """The bytes the checksum and the signature cover: every key but those two, sorted, compact."""
    body = {k: v for k, v in document.items() if k not in UNSIGNED_KEYS}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _mac(key: PlanKey, document: Mapping[str, Any]) -> str:
    return hmac.new(key.secret, canonical(document), hashlib.sha256).hexdigest()


def signature(key: PlanKey, document: Mapping[str, Any]) -> dict[str, str]:
    """The ``signature`` member for ``document``."""
    return {"alg": ALGORITHM, "key_id": key.key_id, "value": _mac(key, document)}


def signed_by(document: Mapping[str, Any]) -> str | None:
    """The key id a document says it is signed with (not verified), or None when unsigned."""
    member = document.get("signature")
    if not isinstance(member, dict):
        return None
    found = member.get("key_id")
    return found if isinstance(found, str) else "?"


def verify(key: PlanKey, document: Mapping[str, Any], source: str) -> None:
    """Refuse a document that is not signed with ``key`` (missing, another key, or altered)."""
    refused = f"{source} is not signed with this {KEY_VARIABLE}"
    member = document.get("signature")
    if not isinstance(member, dict):
        raise PlanSignatureError(f"{refused}: it carries no signature")
    if member.get("alg") != ALGORITHM:
        raise PlanSignatureError(f"{refused}: its signature algorithm is {member.get('alg')!r}, not {ALGORITHM}")
    if member.get("key_id") != key.key_id:
        raise PlanSignatureError(f"{refused}: it was signed with key {member.get('key_id')}, this key is {key.key_id}")
    value = member.get("value")
    if not isinstance(value, str) or not hmac.compare_digest(value.encode("ascii", "replace"), _mac(key, document).encode("ascii")):
        raise PlanSignatureError(f"{refused}: the signature does not match its content (the plan was altered)")
