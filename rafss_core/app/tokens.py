"""Use cases: API bearer tokens (create, list, revoke, authenticate).

A token is 32 random bytes (URL-safe base64, prefixed ``rafss_``); only its SHA-256 is stored,
so a stolen database does not give API access. A token is shown once, when created.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from rafss_core.app.context import App
from rafss_core.app.views import TokenView
from rafss_core.store.enums import Role
from rafss_core.store.repositories import audit
from rafss_core.store.repositories import tokens as repo

PREFIX = "rafss_"


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _view(t: object) -> TokenView:
    return TokenView(t.id, t.name, str(t.role), t.created_by, t.created_at,  # type: ignore[attr-defined]
                     t.last_used_at, t.revoked_at is not None)  # type: ignore[attr-defined]


def create_token(app: App, actor: str, *, role: str, name: str | None = None,
                 token: str | None = None) -> tuple[TokenView, str]:
    """A new token with ``role``; returns its view and the token itself (shown once).

    ``token`` registers a token made elsewhere (e.g. a Kubernetes Secret) instead of a new
    random one; registering the same token again changes nothing.

    Raises:
        ValueError: unknown role, a bad name, or a given token that is too weak.
    """
    try:
        wanted = Role(role)
    except ValueError:
        raise ValueError(f"unknown role {role!r}; use admin, reviewer or viewer") from None
    name = name or f"{wanted.value}-{secrets.token_hex(3)}"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}", name):
        raise ValueError(f"token name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-'")
    if token is not None:
        if not token.startswith(PREFIX) or len(token) < len(PREFIX) + 32:
            raise ValueError(f"a given token must start with {PREFIX!r} and carry at least 32 "
                             "random characters (e.g. rafss_$(openssl rand -base64 32))")
        with app.sessions() as s:
            existing = repo.token_by_hash(s, token_sha256(token))
            if existing is not None and existing.revoked_at is not None:
                raise ValueError("this token was revoked; put a new one in its place (e.g. "
                                 "the Kubernetes Secret) and register that")
            if existing is not None:
                return _view(existing), token
    token = token or PREFIX + secrets.token_urlsafe(32)
    with app.sessions.begin() as s:
        row = repo.add_token(s, name=name, role=wanted, token_sha256=token_sha256(token),
                             created_by=actor)
        audit(s, actor=actor, action="token.create", object_type="api_token",
              object_id=row.id, details={"name": name, "role": wanted.value})
        s.refresh(row)
        return _view(row), token


def list_tokens(app: App) -> list[TokenView]:
    with app.sessions() as s:
        return [_view(t) for t in repo.list_tokens(s)]


def revoke_token(app: App, actor: str, token_id: int) -> TokenView:
    """Revoke a token: it is refused (401) from the next request on.

    Raises:
        LookupError: no such token.
    """
    with app.sessions.begin() as s:
        row = repo.revoke_token(s, token_id)
        audit(s, actor=actor, action="token.revoke", object_type="api_token",
              object_id=token_id, details={"name": row.name})
        s.flush()
        s.refresh(row)
        return _view(row)


def authenticate(app: App, token: str) -> TokenView | None:
    """The active token's view, or None (unknown, malformed or revoked)."""
    if not token.startswith(PREFIX) or len(token) > 128:
        return None
    with app.sessions.begin() as s:
        row = repo.active_token_by_hash(s, token_sha256(token))
        if row is None:
            return None
        return _view(row)
