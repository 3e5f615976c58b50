"""Access control: bearer tokens for inference and for management, and opt-in CORS.

Policy (issue 4): inference is open unless an inference token is configured; management (load,
unload, index) is refused unless a management token is configured *and* presented. A missing or
wrong token answers 401 with `WWW-Authenticate: Bearer` (RFC 6750); management with no token
configured answers 403, since no credential could succeed. Tokens are held as `SecretStr` (repr
`'**********'`), compared with `secrets.compare_digest`, and never put in a message or a log.

Local management (issue 12): so that train-then-load works on a developer's machine without a restart,
a request from the machine itself may use the management API without the token when
`auth.local_management` allows it. By default that is only while the server binds to a loopback
address, where every client is local anyway; on a network interface (containers, 0.0.0.0) management
stays closed. "From the machine itself" means all three: the peer is 127.0.0.0/8 or ::1, the Host header
names a loopback host (a DNS-rebinding page gets its own name there), and no `Origin` header (browsers
send one on every cross-site or scripted POST; curl, tritonclient and scripts do not), so a web page in
the developer's browser cannot load or unload models. A reverse proxy on the same host makes remote
clients look local: set `AXON_AUTH__LOCAL_MANAGEMENT=false` behind one.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Awaitable, Callable, Sequence

from fastapi import FastAPI, Request, Security
from fastapi.middleware.cors import CORSMiddleware
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

# The refusals belong to the service's one error hierarchy; re-exported for the auth callers.
from service.errors import AuthError, Forbidden, Unauthorized

REALM = "axon"
AuthDependency = Callable[..., Awaitable[None]]
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive), else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def token_matches(presented: str | None, expected: SecretStr) -> bool:
    """Constant-time comparison of a presented token with the configured one."""
    if presented is None:
        return False
    # bytes, not str: compare_digest refuses non-ASCII str, and a client controls this value
    return secrets.compare_digest(presented.encode("utf-8"), expected.get_secret_value().encode("utf-8"))


def check_inference(authorization: str | None, token: SecretStr | None) -> None:
    """Allow inference when no inference token is configured, else demand it (Unauthorized)."""
    if token is None:
        return
    _demand(authorization, token, "inference")


def check_management(authorization: str | None, token: SecretStr | None, local: bool = False) -> None:
    """Allow management only with a configured management token, presented (Forbidden / Unauthorized)."""
    if token is None:
        if local:
            raise Forbidden(
                "the management API is open only to requests from this machine (no management token is configured)"
            )
        raise Forbidden("the management API is disabled: no management token is configured")
    _demand(authorization, token, "management")


def inference_dependency(token: SecretStr | str | None) -> AuthDependency:
    """A FastAPI dependency enforcing `check_inference` with this token (None: open)."""
    secret = _secret(token)
    scheme = HTTPBearer(auto_error=False, scheme_name="InferenceToken")

    async def require_inference_token(credentials: HTTPAuthorizationCredentials | None = Security(scheme)) -> None:
        check_inference(_header(credentials), secret)

    return require_inference_token


def is_loopback(host: str | None) -> bool:
    """Whether an address or host name is the machine itself (127.0.0.0/8, ::1, localhost)."""
    if not host:
        return False
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def local_management_allowed(setting: bool | None, bind_host: str) -> bool:
    """The effective `local_management`: as set, or (None) on only while the server binds to loopback."""
    return is_loopback(bind_host) if setting is None else setting


def is_local_request(request: Request) -> bool:
    """A request from this machine that no browser page sent: loopback peer, loopback Host, no Origin."""
    peer = request.client.host if request.client else None
    host = request.headers.get("host", "")
    # "[::1]:8000" -> "[::1]", "localhost:8000" -> "localhost"
    name = host.rpartition("]")[0] + "]" if host.startswith("[") else host.partition(":")[0]
    return is_loopback(peer) and is_loopback(name) and "origin" not in request.headers


def management_dependency(token: SecretStr | str | None, local: bool = False) -> AuthDependency:
    """A FastAPI dependency enforcing `check_management` with this token (None: refused), `local`: loopback exempt."""
    secret = _secret(token)
    scheme = HTTPBearer(auto_error=False, scheme_name="ManagementToken")

    async def require_management_token(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Security(scheme)
    ) -> None:
        if local and is_local_request(request):
            return
        check_management(_header(credentials), secret, local)

    return require_management_token


def add_cors(app: FastAPI, origins: Sequence[str]) -> None:
    """Allow browsers from `origins` (none: CORS stays off), exposing the headers V2 clients read."""
    if not origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(origins),
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "Inference-Header-Content-Length", "X-Request-ID"],
        expose_headers=["Inference-Header-Content-Length", "X-Request-ID", "Retry-After"],
        # Bearer tokens travel in a header the page sets itself; cookies are never needed.
        allow_credentials=False,
    )


def _demand(authorization: str | None, token: SecretStr, purpose: str) -> None:
    presented = bearer_token(authorization)
    if presented is None:
        raise Unauthorized(
            f"the {purpose} API needs an 'Authorization: Bearer <token>' header",
            headers={"WWW-Authenticate": f'Bearer realm="{REALM}"'},
        )
    if not token_matches(presented, token):
        raise Unauthorized(
            f"the {purpose} token is not valid",
            headers={"WWW-Authenticate": f'Bearer realm="{REALM}", error="invalid_token"'},
        )


def _secret(token: SecretStr | str | None) -> SecretStr | None:
    if token is None:
        return None
    secret = token if isinstance(token, SecretStr) else SecretStr(token)
    value = secret.get_secret_value()
    if not value.strip():
        # An empty token would silently mean "open" or "nobody": refuse the configuration instead.
        raise ValueError("an empty token is configured; unset it to disable the check")
    if value != value.strip():
        # Clients cannot send surrounding whitespace in a header, so such a token could never match.
        raise ValueError("the configured token has leading or trailing whitespace")
    return secret


def _header(credentials: HTTPAuthorizationCredentials | None) -> str | None:
    return None if credentials is None else f"{credentials.scheme} {credentials.credentials}"


__all__ = [
    "AuthError",
    "Forbidden",
    "Unauthorized",
    "add_cors",
    "bearer_token",
    "check_inference",
    "check_management",
    "inference_dependency",
    "is_local_request",
    "is_loopback",
    "local_management_allowed",
    "management_dependency",
    "token_matches",
]
