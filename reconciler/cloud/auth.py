"""Authentication as ``httpx.Auth`` flows: AK/SK signing, a ready token, IAM password → token.

The flows touch the network only through the client they are attached to (the IAM token request
is yielded into the same ``httpx.Client``), so an injected transport covers them too. Credentials
come from the environment (``credentials_from_env``); no flow ever puts a secret in a log line,
a ``repr`` or an exception message.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx

from reconciler.cloud.errors import AuthFailure
from reconciler.cloud.signing import DATE_HEADER, format_sdk_date, sign
from reconciler.errors import ConfigurationError

# Headers that are the transport's business, not the request's: proxies and connection pools may
# add, drop or rewrite them, so signing them would make valid requests fail verification.
UNSIGNED_HEADERS = frozenset(
    {
        "authorization",
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "accept-encoding",
        "expect",
    }
)

Clock = Callable[[], float]


class AkSkAuth(httpx.Auth):
    """Sign each request with SDK-HMAC-SHA256, adding ``X-Sdk-Date`` (and project/token headers)."""

    requires_request_body = True

    def __init__(
        self,
        ak: str,
        sk: str,
        *,
        project_id: str | None = None,
        security_token: str | None = None,
        clock: Clock = time.time,
    ) -> None:
        if not ak or not sk:
            raise ConfigurationError("AK/SK authentication needs both an access key and a secret key")
        self.ak = ak
        self._sk = sk
        self._project_id = project_id
        self._security_token = security_token
        self._clock = clock

    def __repr__(self) -> str:
        return f"AkSkAuth(ak={self.ak!r}, sk='***')"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        moment = datetime.fromtimestamp(self._clock(), tz=UTC)
        request.headers[DATE_HEADER] = format_sdk_date(moment)
        if self._project_id:
            request.headers["X-Project-Id"] = self._project_id
        if self._security_token:
            request.headers["X-Security-Token"] = self._security_token
        to_sign = {k: v for k, v in request.headers.items() if k.lower() not in UNSIGNED_HEADERS}
        request.headers["Authorization"] = sign(
            request.method, str(request.url), to_sign, request.content, self.ak, self._sk
        )
        yield request


class TokenAuth(httpx.Auth):
    """Send a ready IAM token as ``X-Auth-Token``."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ConfigurationError("token authentication needs a non-empty token")
        self._token = token

    def __repr__(self) -> str:
        return "TokenAuth(token='***')"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["X-Auth-Token"] = self._token
        yield request


@dataclass(frozen=True)
class _CachedToken:
    value: str
    expires_at: float


class PasswordAuth(httpx.Auth):
    """Exchange an IAM user's password for a token (``POST /v3/auth/tokens``), cache it, and
    fetch a fresh one once when the service answers 401 (expired or revoked token)."""

    # Refresh a little before expiry so a long apply never sends a token that dies in flight.
    REFRESH_MARGIN_SECONDS = 300.0

    def __init__(
        self,
        iam_endpoint: str,
        *,
        user: str,
        password: str,
        domain: str,
        project_id: str,
        clock: Clock = time.time,
    ) -> None:
        missing = [n for n, v in (("user", user), ("password", password), ("domain", domain)) if not v]
        if missing:
            raise ConfigurationError(f"IAM password authentication needs: {', '.join(missing)}")
        self._token_url = iam_endpoint.rstrip("/") + "/v3/auth/tokens"
        self._user, self._password, self._domain = user, password, domain
        self._project_id = project_id
        self._clock = clock
        self._cached: _CachedToken | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PasswordAuth(user={self._user!r}, domain={self._domain!r}, password='***')"

    def _token_request(self) -> httpx.Request:
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": self._user,
                            "password": self._password,
                            "domain": {"name": self._domain},
                        }
                    },
                },
                "scope": {"project": {"id": self._project_id}},
            }
        }
        return httpx.Request(
            "POST",
            self._token_url,
            content=json.dumps(body).encode("utf-8"),
            headers={"Content-Type": "application/json;charset=utf8"},
        )

    def _usable_token(self) -> str | None:
        cached = self._cached
        if cached and cached.expires_at - self.REFRESH_MARGIN_SECONDS > self._clock():
            return cached.value
        return None

    def _accept_token(self, response: httpx.Response) -> str:
        token: str | None = response.headers.get("X-Subject-Token")
        if response.status_code not in (200, 201) or not token:
            raise AuthFailure(
                f"IAM refused the password of user {self._user!r} in domain {self._domain!r}",
                status=response.status_code,
                request_id=response.headers.get("X-Request-Id"),
            )
        self._cached = _CachedToken(token, self._expiry(response))
        return token

    def _expiry(self, response: httpx.Response) -> float:
        default = self._clock() + timedelta(hours=24).total_seconds()
        try:
            text = response.json()["token"]["expires_at"]
            return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        except (ValueError, KeyError, TypeError, AttributeError):
            return default

    def _fetch_token(self) -> Generator[httpx.Request, httpx.Response, str]:
        response = yield self._token_request()
        response.read()
        return self._accept_token(response)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        with self._lock:
            token = self._usable_token()
            if token is None:
                token = yield from self._fetch_token()
        request.headers["X-Auth-Token"] = token
        response = yield request
        if response.status_code == 401:
            with self._lock:
                if self._cached is None or self._cached.value == token:
                    self._cached = None
                    token = yield from self._fetch_token()
                else:
                    token = self._cached.value
            request.headers["X-Auth-Token"] = token
            yield request


AK_VARIABLES = (("HW_ACCESS_KEY", "HW_SECRET_KEY"), ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK"))
PASSWORD_VARIABLES = ("HW_USER_NAME", "HW_PASSWORD", "HW_DOMAIN_NAME")
TOKEN_VARIABLE = "HW_AUTH_TOKEN"


def _aksk_from_env(env: Mapping[str, str], project_id: str, clock: Clock) -> httpx.Auth | None:
    for ak_name, sk_name in AK_VARIABLES:
        ak, sk = env.get(ak_name, ""), env.get(sk_name, "")
        if ak and sk:
            return AkSkAuth(
                ak, sk, project_id=project_id, security_token=env.get("HW_SECURITY_TOKEN") or None, clock=clock
            )
        if ak or sk:
            have, lack = (ak_name, sk_name) if ak else (sk_name, ak_name)
            raise ConfigurationError(f"{have} is set but {lack} is missing")
    return None


def credentials_from_env(
    env: Mapping[str, str], *, project_id: str, iam_endpoint: str, clock: Clock = time.time
) -> httpx.Auth:
    """Build the auth flow from environment variables (README, Credentials), AK/SK first, then a token,
    then an IAM password. Raises ConfigurationError naming the missing variables."""
    aksk = _aksk_from_env(env, project_id, clock)
    if aksk is not None:
        return aksk
    if env.get(TOKEN_VARIABLE):
        return TokenAuth(env[TOKEN_VARIABLE])
    present = [name for name in PASSWORD_VARIABLES if env.get(name)]
    if present:
        missing = [name for name in PASSWORD_VARIABLES if not env.get(name)]
        if missing:
            raise ConfigurationError(
                f"IAM password login needs {', '.join(PASSWORD_VARIABLES)}; missing: {', '.join(missing)}"
            )
        user, password, domain = (env[name] for name in PASSWORD_VARIABLES)
        return PasswordAuth(
            iam_endpoint, user=user, password=password, domain=domain, project_id=project_id, clock=clock
        )
    raise ConfigurationError(
        "no credentials: set HW_ACCESS_KEY and HW_SECRET_KEY (or HUAWEICLOUD_SDK_AK and "
        "HUAWEICLOUD_SDK_SK), or HW_AUTH_TOKEN, or HW_USER_NAME, HW_PASSWORD and HW_DOMAIN_NAME"
    )
