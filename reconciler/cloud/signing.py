"""AK/SK request signing (SDK-HMAC-SHA256), as the official Huawei Cloud SDK computes it.

Pure functions, no I/O and no clock: the caller supplies ``X-Sdk-Date``. The same code signs
requests in the client and verifies them in the simulator, so the two cannot drift apart.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from urllib.parse import quote, unquote, urlsplit

ALGORITHM = "SDK-HMAC-SHA256"
DATE_HEADER = "X-Sdk-Date"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
CONTENT_SHA256_HEADER = "X-Sdk-Content-Sha256"
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()


class SigningError(ValueError):
    """The request cannot be signed (missing date, unparsable URL, empty key)."""


def format_sdk_date(moment: datetime) -> str:
    """``X-Sdk-Date`` value for an aware or naive-UTC datetime."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime(DATE_FORMAT)


def parse_sdk_date(value: str) -> datetime:
    """Parse an ``X-Sdk-Date`` value into an aware UTC datetime; ValueError when malformed."""
    return datetime.strptime(value, DATE_FORMAT).replace(tzinfo=UTC)


def _encode(text: str) -> str:
    # The SDK uses quote(safe="~"): unreserved characters and "~" stay, everything else,
    # "/" included, is percent-encoded from UTF-8.
    return quote(text, safe="~")


def canonical_uri(path: str) -> str:
    """Each segment of the *decoded* path re-encoded; always ends with ``/``."""
    encoded = "/".join(_encode(segment) for segment in unquote(path).split("/"))
    return encoded if encoded.endswith("/") else encoded + "/"


def query_pairs(raw_query: str) -> list[tuple[str, str]]:
    """Decode a raw query string into (key, value) pairs, keeping empty values and repeats.

    ``+`` is kept literally: the SDK never encodes a space as ``+``, so a ``+`` on the wire
    is a plus sign.
    """
    pairs = []
    for part in raw_query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        pairs.append((unquote(key), unquote(value)))
    return pairs


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """Pairs sorted by their decoded text (as the SDK sorts them), then encoded."""
    return "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(pairs))


def _header_lookup(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def _body_hash(headers: Mapping[str, str], body: bytes) -> str:
    if not body:
        return EMPTY_BODY_SHA256
    declared = _header_lookup(headers, CONTENT_SHA256_HEADER)
    return declared if declared else hashlib.sha256(body).hexdigest()


def signed_header_names(headers: Mapping[str, str]) -> list[str]:
    """Every header name without ``_``, lower-cased and sorted."""
    return sorted({name.lower() for name in headers if "_" not in name})


def canonical_request(
    method: str, url: str, headers: Mapping[str, str], body: bytes | str
) -> tuple[str, list[str]]:
    """The canonical request text and the signed header names, for a complete header set."""
    parts = urlsplit(url)
    raw_body = body.encode("utf-8") if isinstance(body, str) else body
    names = signed_header_names(headers)
    values = {name.lower(): str(value).strip() for name, value in headers.items()}
    header_block = "".join(f"{name}:{values[name]}\n" for name in names)
    text = "\n".join(
        [
            method.upper(),
            canonical_uri(parts.path or "/"),
            canonical_query(query_pairs(parts.query)),
            header_block,
            ";".join(names),
            _body_hash(headers, raw_body),
        ]
    )
    return text, names


def _with_host(url: str, headers: Mapping[str, str]) -> dict[str, str]:
    complete = dict(headers)
    if _header_lookup(complete, "Host") is None:
        host = urlsplit(url).netloc.rpartition("@")[2]
        if not host:
            raise SigningError(f"cannot sign a URL without a host: {url!r}")
        complete["Host"] = host
    return complete


def sign(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | str,
    ak: str,
    sk: str,
) -> str:
    """Return the ``Authorization`` header value for a request.

    Every header given is signed (names containing ``_`` excepted, as in the SDK), ``Host`` is
    added from the URL when absent, and the request's ``X-Sdk-Date`` header is required: the
    caller owns the clock.
    """
    if not ak or not sk:
        raise SigningError("both an access key and a secret key are required")
    complete = _with_host(url, headers)
    date = _header_lookup(complete, DATE_HEADER)
    if date is None:
        raise SigningError(f"the request has no {DATE_HEADER} header")
    text, names = canonical_request(method, url, complete, body)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    string_to_sign = f"{ALGORITHM}\n{date}\n{digest}"
    signature = hmac.new(sk.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256)
    return f"{ALGORITHM} Access={ak}, SignedHeaders={';'.join(names)}, Signature={signature.hexdigest()}"


def parse_authorization(value: str) -> tuple[str, list[str], str] | None:
    """Split an SDK-HMAC-SHA256 ``Authorization`` value into (ak, signed headers, signature).

    Returns None when the value is not of that form.
    """
    prefix = ALGORITHM + " "
    if not value.startswith(prefix):
        return None
    fields: dict[str, str] = {}
    for item in value[len(prefix):].split(","):
        key, sep, val = item.strip().partition("=")
        if not sep:
            return None
        fields[key] = val
    try:
        return fields["Access"], fields["SignedHeaders"].split(";"), fields["Signature"]
    except KeyError:
        return None
