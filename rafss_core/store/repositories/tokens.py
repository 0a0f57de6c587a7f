"""API bearer tokens: only the SHA-256 of a token is stored."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from rafss_core.store.enums import Role
from rafss_core.store.models import ApiToken


def add_token(session: Session, *, name: str, role: Role, token_sha256: str,
              created_by: str) -> ApiToken:
    token = ApiToken(name=name, role=role, token_sha256=token_sha256, created_by=created_by)
    session.add(token)
    session.flush()
    return token


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.execute(sa.select(ApiToken).order_by(ApiToken.id)).scalars())


def active_token_by_hash(session: Session, token_sha256: str) -> ApiToken | None:
    """The unrevoked token with this hash; marks it used."""
    token = session.execute(sa.select(ApiToken).where(
        ApiToken.token_sha256 == token_sha256, ApiToken.revoked_at.is_(None))
    ).scalar_one_or_none()
    if token is not None:
        token.last_used_at = sa.func.now()  # type: ignore[assignment]
    return token


def revoke_token(session: Session, token_id: int) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None:
        raise LookupError(f"no token with id {token_id}; see `rafss tokens list`")
    if token.revoked_at is None:
        token.revoked_at = sa.func.now()  # type: ignore[assignment]
        session.flush()
    return token


def token_by_hash(session: Session, token_sha256: str) -> ApiToken | None:
    """The token with this hash, revoked or not."""
    return session.execute(sa.select(ApiToken).where(ApiToken.token_sha256 == token_sha256)
                           ).scalar_one_or_none()
