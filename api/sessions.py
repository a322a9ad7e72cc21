"""The coordinator page's sessions: the browser holds a random id, the server everything else.

Signing in with an API token opens a session; the cookie names the session, never the
token. A session ends at sign-out, as soon as its token is revoked (checked on every
request, whatever the token cache remembers), after ``idle`` without a request, and at its
absolute limit however busy it is. Our defaults: 30 minutes idle, 12 hours in all (one
clinic shift). Only the SHA-256 of a session id is stored: the id is 256 random bits, so
the database alone cannot be used to sign in.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Engine, Table, delete, insert, or_, select, update

from api.tokens import TOKENS, Principal, digest
from engine.clinic_time import Clock
from models.db import read_only
from models.tables import WebSession

SESSIONS = cast(Table, WebSession.__table__)
SESSION_COOKIE = "carepath_session"
# Before sign-in there is no session to bind the sign-in form to: this cookie stands in.
SIGNIN_COOKIE = "carepath_signin"
IDLE_DEFAULT = timedelta(minutes=30)
ABSOLUTE_DEFAULT = timedelta(hours=12)
# A session's last use is written at most once a minute, not on every page and drawing it
# serves; its idle limit is therefore counted from up to a minute before its last request.
TOUCH_EVERY = timedelta(minutes=1)
# Rows of ended and expired sessions are kept this long (who was signed in, and when).
KEEP_ENDED = timedelta(days=1)


@dataclass(frozen=True)
class SessionPolicy:
    """How long a page session lasts: ``idle`` without a request, ``absolute`` in all."""

    idle: timedelta = IDLE_DEFAULT
    absolute: timedelta = ABSOLUTE_DEFAULT

    def __post_init__(self) -> None:
        if self.idle <= timedelta(0) or self.absolute <= timedelta(0):
            raise ValueError("session limits must be positive")
        if self.idle > self.absolute:
            raise ValueError("the idle limit must not exceed the absolute limit")


class Sessions:
    """Open, look up and end page sessions, with expiry read from ``clock``."""

    def __init__(self, engine: Engine, clock: Clock, policy: SessionPolicy | None = None) -> None:
        self.engine = engine
        self.clock = clock
        self.policy = policy or SessionPolicy()

    def start(self, who: Principal) -> str:
        """A new session for ``who``; returns its id, for the cookie (shown this once)."""
        session_id = secrets.token_urlsafe(32)
        now = self.clock.now()
        with self.engine.begin() as connection:
            gone = now - KEEP_ENDED
            connection.execute(
                delete(SESSIONS).where(
                    or_(SESSIONS.c.expires_at < gone, SESSIONS.c.ended_at < gone)
                )
            )
            connection.execute(
                insert(SESSIONS).values(
                    session_hash=digest(session_id),
                    token_id=who.token_id,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=now + self.policy.absolute,
                )
            )
        return session_id

    def resolve(self, session_id: str) -> Principal | None:
        """The principal of a live session, or None when it ended, expired or never was."""
        now = self.clock.now()
        with read_only(self.engine, single_statement=True) as connection:
            row = connection.execute(
                select(
                    SESSIONS.c.id, SESSIONS.c.last_seen_at, SESSIONS.c.expires_at,
                    TOKENS.c.id.label("token_id"), TOKENS.c.role, TOKENS.c.subject,
                )  # fmt: skip
                .join(TOKENS, TOKENS.c.id == SESSIONS.c.token_id)
                .where(
                    SESSIONS.c.session_hash == digest(session_id),
                    SESSIONS.c.ended_at.is_(None),
                    # Read here on every request: a revoked token ends its sessions at once.
                    TOKENS.c.revoked_at.is_(None),
                )
            ).first()
        if row is None or not self._live(row.last_seen_at, row.expires_at, now):
            return None
        if now - row.last_seen_at >= TOUCH_EVERY:
            with self.engine.begin() as connection:
                connection.execute(
                    update(SESSIONS)
                    .where(SESSIONS.c.id == row.id, SESSIONS.c.last_seen_at < now)
                    .values(last_seen_at=now)
                )
        return Principal(row.role, row.subject, row.token_id)

    def end(self, session_id: str) -> None:
        """End a session (sign-out); ending an ended or unknown one does nothing."""
        with self.engine.begin() as connection:
            connection.execute(
                update(SESSIONS)
                .where(SESSIONS.c.session_hash == digest(session_id), SESSIONS.c.ended_at.is_(None))
                .values(ended_at=self.clock.now())
            )

    def _live(self, last_seen: datetime, expires: datetime, now: datetime) -> bool:
        return now < expires and now - last_seen < self.policy.idle
