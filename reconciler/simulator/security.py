"""Authentication of simulated API calls: AK/SK signatures, IAM tokens and key lockout.

No I/O. Signatures are verified by re-signing the request with ``reconciler.cloud.signing.sign``
(the client's own signer), over exactly the headers the caller listed in ``SignedHeaders``.
Secrets (SK, passwords, tokens) never appear in error messages.
"""

from __future__ import annotations

import hmac
import math
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from reconciler.cloud.signing import DATE_HEADER, SigningError, parse_authorization, parse_sdk_date, sign
from reconciler.simulator.spec import Behaviour, Credential, User
from reconciler.simulator.wsgi import ApiError, Request

UNAUTHORIZED = "APIG.0301"
MAX_SKEW_SECONDS = 15 * 60
TOKEN_SECONDS = 24 * 3600


def unauthorized(message: str) -> ApiError:
    return ApiError(401, UNAUTHORIZED, message)


def iam_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Token:
    user: str
    domain: str
    project_id: str | None
    issued_at: float
    expires_at: float


class Authenticator:
    """Decides whether a /v2 call may proceed, and issues IAM tokens."""

    def __init__(self, project_id: str, credentials: tuple[Credential, ...], users: tuple[User, ...]) -> None:
        self.project_id = project_id
        self._secrets = {c.ak: c.sk for c in credentials}
        self._users = {(u.domain, u.name): u for u in users}
        self.tokens: dict[str, Token] = {}
        # ak -> [consecutive failures, locked until (epoch seconds)]
        self.failures: dict[str, list[float]] = {}
        self.issued = 0

    @property
    def required(self) -> bool:
        """A fleet without credentials and users runs an open (unauthenticated) cloud."""
        return bool(self._secrets or self._users)

    # --- /v2 calls -----------------------------------------------------------------------------

    def authenticate(self, request: Request, now: float, behaviour: Behaviour, project_id: str) -> str:
        """The caller's identity (``ak:...``, ``user:...`` or ``anonymous``); 401 ApiError otherwise."""
        if not self.required:
            return "anonymous"
        authorization = request.header("authorization")
        if authorization:
            identity = self._verify_signature(request, authorization, now, behaviour)
            header_project = request.header("x-project-id")
            if header_project is not None and header_project != project_id:
                raise unauthorized(f"the X-Project-Id header ({header_project}) does not match the project in the path")
            return identity
        token = request.header("x-auth-token")
        if token:
            return self._verify_token(token, now)
        raise unauthorized(
            "the request carries no credentials: sign it with AK/SK (SDK-HMAC-SHA256 Authorization "
            "header) or send an IAM token in X-Auth-Token"
        )

    def _verify_token(self, value: str, now: float) -> str:
        token = self.tokens.get(value)
        if token is None:
            raise unauthorized("the X-Auth-Token was not issued by this service (or was revoked)")
        if token.expires_at <= now:
            raise unauthorized(f"the X-Auth-Token expired at {iam_time(token.expires_at)}")
        if token.project_id is None:
            raise unauthorized("the X-Auth-Token is not scoped to a project; request a project-scoped token")
        return f"user:{token.domain}/{token.user}"

    def _verify_signature(self, request: Request, value: str, now: float, behaviour: Behaviour) -> str:
        parsed = parse_authorization(value)
        if parsed is None:
            raise unauthorized(
                "the Authorization header is not 'SDK-HMAC-SHA256 Access=AK, SignedHeaders=h1;h2, Signature=HEX'"
            )
        ak, signed, signature = parsed
        sk = self._secrets.get(ak)
        if sk is None:
            raise unauthorized(f"the access key {ak} does not exist")
        self._check_lock(ak, now)
        try:
            self._check_signature(request, ak, sk, signed, signature, now)
        except ApiError:
            self._record_failure(ak, now, behaviour)
            raise
        self.failures.pop(ak, None)
        return f"ak:{ak}"

    def _check_signature(
        self, request: Request, ak: str, sk: str, signed: list[str], signature: str, now: float
    ) -> None:
        self._check_date(request, signed, now)
        if "host" not in signed:
            raise unauthorized("SignedHeaders must include host")
        headers = {}
        for name in signed:
            header = request.header(name)
            if header is None:
                raise unauthorized(f"the signed header {name!r} is missing from the request")
            headers[name] = header
        try:
            expected = parse_authorization(sign(request.method, request.signing_url(), headers, request.body, ak, sk))
        except SigningError as exc:
            raise unauthorized(f"the request cannot be verified: {exc}") from None
        assert expected is not None
        if expected[1] != signed or not hmac.compare_digest(expected[2], signature):
            raise unauthorized(
                "the signature does not match: check the secret key and that method, path, query, "
                "signed headers and body are signed exactly as sent"
            )

    @staticmethod
    def _check_date(request: Request, signed: list[str], now: float) -> None:
        date = request.header(DATE_HEADER)
        if date is None:
            raise unauthorized(f"the {DATE_HEADER} header is missing")
        if DATE_HEADER.lower() not in signed:
            raise unauthorized(f"the {DATE_HEADER} header must be signed")
        try:
            moment = parse_sdk_date(date).timestamp()
        except ValueError:
            raise unauthorized(f"the {DATE_HEADER} header {date!r} is not of the form YYYYMMDDTHHMMSSZ") from None
        skew = moment - now
        if abs(skew) > MAX_SKEW_SECONDS:
            direction = "ahead of" if skew > 0 else "behind"
            raise unauthorized(
                f"the {DATE_HEADER} {date} is {int(abs(skew))} s {direction} the server clock "
                f"(at most {MAX_SKEW_SECONDS} s allowed)"
            )

    def _check_lock(self, ak: str, now: float) -> None:
        entry = self.failures.get(ak)
        if entry is not None and entry[1] > now:
            raise unauthorized(
                f"the access key {ak} is locked for {math.ceil(entry[1] - now)} more seconds after "
                "too many consecutive signature failures"
            )

    def _record_failure(self, ak: str, now: float, behaviour: Behaviour) -> None:
        limit = behaviour.auth_lockout_failures
        if limit <= 0:
            return
        count = self.failures.get(ak, [0, 0.0])[0] + 1
        self.failures[ak] = [0, now + behaviour.auth_lockout_seconds] if count >= limit else [count, 0.0]

    # --- IAM -----------------------------------------------------------------------------------

    def issue_token(self, body: Any, now: float, seed: int) -> tuple[str, dict[str, Any]]:
        """Check a password-method token request; the new token and the response body."""
        user, project_id = self._password_identity(body)
        self.tokens = {k: t for k, t in self.tokens.items() if t.expires_at > now}
        self.issued += 1
        names = (f"{self.project_id}:{seed}:token:{self.issued}:{part}" for part in ("a", "b"))
        value = "MIIsim" + "".join(uuid.uuid5(uuid.NAMESPACE_URL, name).hex for name in names)
        token = Token(user.name, user.domain, project_id, now, now + TOKEN_SECONDS)
        self.tokens[value] = token
        return value, self._token_body(token)

    def _password_identity(self, body: Any) -> tuple[User, str | None]:
        def bad(message: str) -> ApiError:
            return ApiError(400, "IAM.0001", message, iam=True)

        identity = _dig(body, "auth", "identity")
        if not isinstance(identity, dict) or "password" not in (identity.get("methods") or []):
            raise bad("auth.identity.methods must include 'password' (the only method the simulator offers)")
        user = _dig(identity, "password", "user")
        name, password = _dig(user, "name"), _dig(user, "password")
        domain = _dig(user, "domain", "name")
        if not all(isinstance(v, str) and v for v in (name, password, domain)):
            raise bad("auth.identity.password.user needs name, password and domain.name")
        known = self._users.get((domain, name))
        if known is None or not hmac.compare_digest(known.password.encode(), password.encode()):
            raise ApiError(401, "IAM.0004", "The username or password is wrong.", iam=True)
        return known, self._scope(body)

    def _scope(self, body: Any) -> str | None:
        project = _dig(body, "auth", "scope", "project")
        if not isinstance(project, dict):
            return None
        if "id" in project and project["id"] != self.project_id:
            raise ApiError(401, "IAM.0006", f"the project {project['id']} is not accessible to this user", iam=True)
        # Project names are region names (cn-north-4 ...); the simulator has one project, so any name.
        return self.project_id

    def _token_body(self, token: Token) -> dict[str, Any]:
        domain = {"name": token.domain, "id": uuid.uuid5(uuid.NAMESPACE_URL, f"domain:{token.domain}").hex}
        body: dict[str, Any] = {
            "expires_at": iam_time(token.expires_at),
            "issued_at": iam_time(token.issued_at),
            "methods": ["password"],
            "user": {
                "name": token.user,
                "id": uuid.uuid5(uuid.NAMESPACE_URL, f"user:{token.domain}/{token.user}").hex,
                "domain": domain,
            },
            "catalog": [],
        }
        if token.project_id is not None:
            body["project"] = {"id": token.project_id, "name": "simulator", "domain": domain}
        return {"token": body}

    # --- persistence ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "tokens": {value: asdict(token) for value, token in self.tokens.items()},
            "failures": {ak: list(entry) for ak, entry in self.failures.items()},
            "issued": self.issued,
        }

    def restore(self, data: dict[str, Any]) -> None:
        self.tokens = {value: Token(**token) for value, token in data["tokens"].items()}
        self.failures = {ak: list(entry) for ak, entry in data["failures"].items()}
        self.issued = data["issued"]


def _dig(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value
