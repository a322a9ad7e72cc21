"""Bearer tokens: created once and shown once, stored as SHA-256, revocable.

A token is 256 random bits, so a plain SHA-256 is enough to keep it unrecoverable from the
database (a slow password hash guards guessable secrets, which these are not).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Engine, Table, insert, select, update

from models.db import read_only
from models.tables import TOKEN_ROLES, ApiToken, WebSession

TOKENS = cast(Table, ApiToken.__table__)
WEB_SESSIONS = cast(Table, WebSession.__table__)
PREFIX = "cp_"
SUBJECT_LENGTH = 128  # the column's width


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
        ValueError: an unknown role, or an empty or too long subject.
    """
    if role not in TOKEN_ROLES:
        raise ValueError(f"role must be one of {', '.join(TOKEN_ROLES)}, not {role!r}")
    if not subject.strip():
        raise ValueError("subject must not be empty")
    if len(subject) > SUBJECT_LENGTH or "\x00" in subject:
        # What PostgreSQL's column refuses, SQLite is not let to keep either.
        raise ValueError(f"subject must be at most {SUBJECT_LENGTH} characters, without NUL")
    token = PREFIX + secrets.token_urlsafe(32)
    with engine.begin() as connection:
        token_id = connection.execute(
            insert(TOKENS)
            .values(token_hash=digest(token), role=role, subject=subject, created_at=now)
            .returning(TOKENS.c.id)
        ).scalar_one()
    return int(token_id), token


def revoke_token(engine: Engine, token_id: int, now: datetime) -> bool:
    """Revoke a token by its id, and end the page sessions it opened; False when there is
    no such live token."""
    with engine.begin() as connection:
        result = connection.execute(
            update(TOKENS)
            .where(TOKENS.c.id == token_id, TOKENS.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        connection.execute(
            update(WEB_SESSIONS)
            .where(WEB_SESSIONS.c.token_id == token_id, WEB_SESSIONS.c.ended_at.is_(None))
            .values(ended_at=now)
        )
    return bool(result.rowcount)


def principal_for(engine: Engine, token: str) -> Principal | None:
    """The live token's principal, or None for an unknown or revoked token."""
    with read_only(engine, single_statement=True) as connection:
        row = connection.execute(
            select(TOKENS.c.id, TOKENS.c.role, TOKENS.c.subject).where(
                TOKENS.c.token_hash == digest(token), TOKENS.c.revoked_at.is_(None)
            )
        ).first()
    return None if row is None else Principal(row.role, row.subject, row.id)


class Tokens:
    """Token checks for a running service, each live token remembered for ``cache_seconds``.

    Looking a token up costs a database round trip on every request; remembering a live one
    briefly saves it. The price is that a token revoked elsewhere (``carepath token
    revoke``) keeps working for API calls on a running service for at most
    ``cache_seconds``; the page sessions it opened end at once (:mod:`api.sessions`).
    Unknown and revoked tokens are never remembered, so a new token works at once. With
    ``cache_seconds`` 0 every request looks its token up.
    """

    MAX_REMEMBERED = 10_000

    def __init__(
        self,
        engine: Engine,
        cache_seconds: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if cache_seconds < 0:
            raise ValueError("cache_seconds must not be negative")
        self.engine = engine
        self.cache_seconds = cache_seconds
        self.monotonic = monotonic
        self._live: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def remembered(self, token: str) -> Principal | None:
        """The token's principal if it was found live within ``cache_seconds``."""
        if not self.cache_seconds:
            return None
        with self._lock:
            entry = self._live.get(digest(token))
        if entry is None or entry[0] <= self.monotonic():
            return None
        return entry[1]

    def principal(self, token: str) -> Principal | None:
        """The live token's principal, or None for an unknown or revoked token."""
        who = self.remembered(token)
        if who is not None:
            return who
        who = principal_for(self.engine, token)
        if who is not None and self.cache_seconds:
            with self._lock:
                if len(self._live) >= self.MAX_REMEMBERED:
                    self._live.clear()
                self._live[digest(token)] = (self.monotonic() + self.cache_seconds, who)
        return who
