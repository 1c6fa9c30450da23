"""Where the Workspace and IAM APIs live, and which endpoints and ids are safe to use. Pure: no
I/O, and no HTTP library, so offline commands (``validate``) stay light.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from reconciler.errors import ConfigurationError

# Desktop, job and project ids are UUID-like; anything else (``/``, ``?``, ``,``, spaces) must
# never reach a URL path or a comma-separated filter.
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,254}$")


def region_endpoint(region: str) -> str:
    return f"https://workspace.{region}.myhuaweicloud.com"


def iam_endpoint_for(region: str | None) -> str:
    return f"https://iam.{region}.myhuaweicloud.com" if region else "https://iam.myhuaweicloud.com"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def endpoint_host(endpoint: str) -> str:
    return urlsplit(endpoint).hostname or ""


def validate_endpoint(endpoint: str) -> str:
    """Return the endpoint without a trailing slash; https only, plain http for loopback."""
    try:
        url = urlsplit(endpoint)
        url.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise ConfigurationError(f"invalid endpoint {endpoint!r}: {exc}") from None
    if url.scheme not in ("https", "http") or not url.hostname or " " in endpoint:
        raise ConfigurationError(f"invalid endpoint {endpoint!r}: expected https://host[:port]")
    if url.scheme == "http" and not is_loopback(url.hostname):
        raise ConfigurationError(
            f"refusing plain http for {url.hostname}: use https (plain http is allowed only on loopback)"
        )
    if "@" in url.netloc or url.query or url.fragment or url.path not in ("", "/"):
        raise ConfigurationError(f"invalid endpoint {endpoint!r}: give only scheme, host and port")
    return endpoint.rstrip("/")
