"""Bearer tokens: created once and shown once, stored as SHA-256, revocable.

A token is 256 random bits, so a plain SHA-256 is enough to keep it unrecoverable from the
database (a slow password hash guards guessable secrets, which these are not).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Engine, Table, insert, select, update

from models.db import read_only
from models.tables import TOKEN_ROLES, ApiToken

TOKENS = cast(Table, ApiToken.__table__)
PREFIX = "cp_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's role, and the subject every event is recorded under."""

    role: str
    subject: str
    token_id: int


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(engine: Engine, role: str, subject: str, now: datetime) -> tuple[int, str]:
    """A new token for ``role`` acting as ``subject``; returns its id and the token itself.

    Raises:
        ValueError: an unknown role, or an empty subject.
    """
    if role not in TOKEN_ROLES:
        raise ValueError(f"role must be one of {', '.join(TOKEN_ROLES)}, not {role!r}")
    if not subject.strip():
        raise ValueError("subject must not be empty")
    token = PREFIX + secrets.token_urlsafe(32)
    with engine.begin() as connection:
        token_id = connection.execute(
            insert(TOKENS)
            .values(token_hash=digest(token), role=role, subject=subject, created_at=now)
            .returning(TOKENS.c.id)
        ).scalar_one()
    return int(token_id), token


def revoke_token(engine: Engine, token_id: int, now: datetime) -> bool:
    """Revoke a token by its id; False when there is no such live token."""
    with engine.begin() as connection:
        result = connection.execute(
            update(TOKENS)
            .where(TOKENS.c.id == token_id, TOKENS.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
    return bool(result.rowcount)


def principal_for(engine: Engine, token: str) -> Principal | None:
    """The live token's principal, or None for an unknown or revoked token."""
    with read_only(engine) as connection:
        row = connection.execute(
            select(TOKENS.c.id, TOKENS.c.role, TOKENS.c.subject).where(
                TOKENS.c.token_hash == digest(token), TOKENS.c.revoked_at.is_(None)
            )
        ).first()
    return None if row is None else Principal(row.role, row.subject, row.id)
