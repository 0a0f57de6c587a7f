"""Bearer-token authentication and role checks (MONAI Label's ``Depends(RBAC(role))``).

A request authenticates with ``Authorization: Bearer <token>``; the web UI sends the same
token in an HttpOnly, SameSite=Strict session cookie set by its login form, and every form it
posts carries a CSRF token derived from the session (see :func:`csrf_token`). Roles nest:
admin > reviewer > viewer. No token, an unknown or a revoked one: 401. Too low a role: 403.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from rafss_core.app import App
from rafss_core.app.tokens import authenticate
from rafss_core.app.views import TokenView
from rafss_core.store.enums import Role

SESSION_COOKIE = "rafss_session"
# declares the bearer scheme in openapi.json (clients and fuzzers see which routes need it);
# a missing or malformed header is not an error here: the session cookie may carry the token
BEARER = HTTPBearer(auto_error=False, description="`rafss tokens create --role ROLE`")


def get_app(request: Request) -> App:
    return request.app.state.rafss


def _token(request: Request, bearer: HTTPAuthorizationCredentials | None
           ) -> tuple[str | None, bool]:
    if bearer is not None:
        return bearer.credentials.strip(), False
    cookie = request.cookies.get(SESSION_COOKIE)
    return (cookie, True) if cookie else (None, False)


def csrf_token(session_token: str) -> str:
    """The CSRF token of a UI session: an HMAC of the session token (never the token)."""
    return hmac.new(session_token.encode(), b"rafss-csrf", hashlib.sha256).hexdigest()


def current_principal(request: Request, app: App = Depends(get_app),
                      bearer: HTTPAuthorizationCredentials | None = Depends(BEARER)
                      ) -> TokenView:
    token, from_cookie = _token(request, bearer)
    if not token:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a bearer token is required: create "
                            "one with `rafss tokens create --role viewer`",
                            headers={"WWW-Authenticate": "Bearer"})
    principal = authenticate(app, token)
    if principal is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "the token is unknown or revoked",
                            headers={"WWW-Authenticate": "Bearer"})
    request.state.session_token = token if from_cookie else None
    return principal


class RBAC:
    """``Depends(RBAC("reviewer"))``: the caller's token must have at least that role."""

    def __init__(self, role: str) -> None:
        self.role = Role(role)

    def __call__(self, request: Request,
                 principal: TokenView = Depends(current_principal)) -> TokenView:
        if Role(principal.role).rank < self.role.rank:
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"this needs the {self.role.value} role; the token "
                                f"{principal.name!r} is {principal.role}")
        session_token = getattr(request.state, "session_token", None)
        if session_token and request.method not in ("GET", "HEAD", "OPTIONS"):
            # a cookie-authenticated write must prove it came from our own page
            sent = request.headers.get("x-csrf-token") or getattr(request.state, "form_csrf",
                                                                   None)
            if not sent or not hmac.compare_digest(sent, csrf_token(session_token)):
                raise HTTPException(status.HTTP_403_FORBIDDEN, "CSRF token missing or wrong: "
                                    "reload the page and try again")
        return principal


def actor(principal: TokenView) -> str:
    return f"token:{principal.name}"
