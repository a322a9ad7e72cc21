"""One-time sign-in links: a person opens a link and signs in, nobody pastes a token.

An administrator makes one with the token (``carepath token create --role coordinator
--sign-in-link``) and hands the link over. Opening it shows a sign-in button (a link
previewer or a mail scanner that only fetches the page uses nothing); pressing it opens a
page session as the token's holder, under the session rules of every sign-in. A link
works once, for :data:`VALID` by default (our default: a day, long enough to reach the
person, short enough not to lie about in a mailbox), and only while its token is live.
Only the SHA-256 of its code is kept.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Engine, Table, insert, select, update

from api.tokens import TOKENS, Principal, digest
from models.tables import SignInLink

LINKS = cast(Table, SignInLink.__table__)
VALID = timedelta(hours=24)
PATH = "/signin/link/"


def create_link(engine: Engine, token_id: int, now: datetime, valid: timedelta = VALID) -> str:
    """A new link's code for the token ``token_id``, usable once before ``now + valid``.

    Raises:
        ValueError: ``valid`` is not positive.
    """
    if valid <= timedelta(0):
        raise ValueError("a sign-in link must be valid for some time")
    code = secrets.token_urlsafe(32)
    with engine.begin() as connection:
        connection.execute(
            insert(LINKS).values(
                code_hash=digest(code), token_id=token_id, created_at=now, expires_at=now + valid
            )  # fmt: skip
        )
    return code


def redeem(engine: Engine, code: str, now: datetime) -> Principal | None:
    """Use the link ``code``: its token's principal, or None when the link is unknown,
    used, expired or its token revoked. Marking it used and reading its token is one
    transaction: two browsers pressing at once open one session between them."""
    with engine.begin() as connection:
        token_id = connection.execute(
            update(LINKS)
            .where(
                LINKS.c.code_hash == digest(code),
                LINKS.c.used_at.is_(None),
                LINKS.c.expires_at > now,
            )  # fmt: skip
            .values(used_at=now)
            .returning(LINKS.c.token_id)
        ).scalar_one_or_none()
        if token_id is None:
            return None
        row = connection.execute(
            select(TOKENS.c.id, TOKENS.c.role, TOKENS.c.subject).where(
                TOKENS.c.id == token_id, TOKENS.c.revoked_at.is_(None)
            )
        ).first()
    return None if row is None else Principal(row.role, row.subject, row.id)
