"""Where reminders go: a webhook and e-mail, behind one small interface.

A reminder names the patient by reference, the due item, its new status, its dates and
the rule; never clinical free text. Each carries an idempotency key, the same on every
retry, so a receiver that saw it once can drop a repeat.

Stored values never reach a header, a subject or a line of a mail's body as they are:
control characters (CR, LF and the rest of C0 and C1) and lone surrogates are written as
escapes (:func:`printable`), so a patient reference with a line break cannot forge a
header or a line. (The webhook's JSON body escapes them itself.)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Protocol

from engine.errors import CarepathError

SIGNATURE_HEADER = "X-Carepath-Signature"
TIMESTAMP_HEADER = "X-Carepath-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"


_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def printable(value: object) -> str:
    """``value`` as text with control characters and lone surrogates escaped
    (``"P\r\nX"`` becomes ``P\\r\\nX``): safe in a header, a subject or a line."""
    return _UNSAFE.sub(_escape, str(value))


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = {"\r": "\\r", "\n": "\\n", "\t": "\\t"}.get(char)
    if named:
        return named
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


class DeliveryFailed(Exception):
    """A channel could not hand the reminder over; the reason is kept on the delivery row."""


class ChannelSettingError(CarepathError):
    """A channel is half configured: the variable is named."""

    def __init__(self, variable: str, reason: str) -> None:
        self.variable = variable
        self.reason = reason
        super().__init__(f"{variable}: {reason}")


@dataclass(frozen=True)
class Reminder:
    """What goes out for one change of a due item's status: the item, how pressing it is,
    the clinic's time zone its times are shown in, where its mail goes (the coordinator and
    those covering them; none known: the clinic's mailbox) and its link on the episode's
    page (None without ``CAREPATH_BASE_URL``)."""

    idempotency_key: str
    episode_id: str
    patient_ref: str
    task_key: str
    rule: str
    status: str
    due_at: datetime
    escalate_at: datetime | None
    owner: str | None
    severity: str = "routine"
    time_zone: str = "UTC"
    addresses: tuple[str, ...] = ()
    link: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The webhook's body: the item and its link, without anyone's address."""
        body = asdict(self)
        del body["addresses"]
        body["due_at"] = self.due_at.isoformat()
        body["escalate_at"] = self.escalate_at.isoformat() if self.escalate_at else None
        return body


class Channel(Protocol):
    """A way to reach coordinators. ``deliver`` raises :class:`DeliveryFailed`."""

    name: str

    def deliver(self, reminder: Reminder) -> None: ...


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256 of ``timestamp.body`` under the shared secret.

    The timestamp is signed with the body so a captured request cannot be replayed later
    with a fresh timestamp; the receiver recomputes it and compares in constant time.
    """
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookChannel:
    """POSTs the reminder as JSON, signed (:func:`signature`), with its idempotency key.

    Any 2xx answer is a delivery; anything else, or no answer, is a failure to retry.
    """

    name = "webhook"

    def __init__(
        self,
        url: str,
        secret: str,
        timeout: float = 5.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.clock = clock or _unix_time

    def deliver(self, reminder: Reminder) -> None:
        body = json.dumps(reminder.as_json(), sort_keys=True).encode()
        timestamp = str(int(self.clock()))
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                IDEMPOTENCY_HEADER: printable(reminder.idempotency_key),
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: signature(self.secret, timestamp, body),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                status = answer.status
        except urllib.error.HTTPError as exc:
            raise DeliveryFailed(f"HTTP {exc.code} from {self.url}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DeliveryFailed(f"{self.url} unreachable: {reason}") from None
        if not 200 <= status < 300:
            raise DeliveryFailed(f"HTTP {status} from {self.url}")


class EmailChannel:
    """Mail over SMTP: each coordinator's reminders to their own address, a digest per
    sweep, and what needs action now on its own (:mod:`schedulers.mail`); ``recipient`` is
    the clinic's mailbox, for reminders with no address of their own."""

    name = "email"
    batches = True  # a sweep's reminders are handed over together: see deliver_batch

    def __init__(
        self, host: str, port: int, sender: str, recipient: str, timeout: float = 10.0
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.recipient = recipient
        self.timeout = timeout

    def deliver_batch(self, reminders: Sequence[Reminder]) -> list[str | None]:
        """Send a sweep's reminders; for each, None when sent, else why not."""
        from schedulers.mail import send_all

        return send_all(self.host, self.port, self.timeout, self.sender, self.recipient,
                        reminders)  # fmt: skip

    def deliver(self, reminder: Reminder) -> None:
        [error] = self.deliver_batch([reminder])
        if error is not None:
            raise DeliveryFailed(error)


def channels_from_env(env: Mapping[str, str] | None = None) -> list[Channel]:
    """The channels the environment configures (none is fine: reminders wait).

    ``CAREPATH_WEBHOOK_URL`` with ``CAREPATH_WEBHOOK_SECRET``; ``CAREPATH_SMTP_HOST`` with
    ``CAREPATH_SMTP_FROM`` and ``CAREPATH_SMTP_TO`` (``CAREPATH_SMTP_PORT``, default 25).

    Raises:
        ChannelSettingError: a channel is half configured; names the missing variable.
    """
    env = os.environ if env is None else env
    channels: list[Channel] = []
    if url := env.get("CAREPATH_WEBHOOK_URL"):
        if not url.startswith(("http://", "https://")):
            raise ChannelSettingError("CAREPATH_WEBHOOK_URL", f"not an http(s) URL: {url!r}")
        secret = env.get("CAREPATH_WEBHOOK_SECRET")
        if not secret:
            raise ChannelSettingError(
                "CAREPATH_WEBHOOK_SECRET", "required with CAREPATH_WEBHOOK_URL (signs each call)"
            )
        channels.append(WebhookChannel(url, secret))
    if host := env.get("CAREPATH_SMTP_HOST"):
        for variable in ("CAREPATH_SMTP_FROM", "CAREPATH_SMTP_TO"):
            if not env.get(variable):
                raise ChannelSettingError(variable, "required with CAREPATH_SMTP_HOST")
        port = env.get("CAREPATH_SMTP_PORT", "25")
        if not port.isdigit():
            raise ChannelSettingError("CAREPATH_SMTP_PORT", f"not a port number: {port!r}")
        channels.append(
            EmailChannel(host, int(port), env["CAREPATH_SMTP_FROM"], env["CAREPATH_SMTP_TO"])
        )
    return channels


def _unix_time() -> float:
    return datetime.now().timestamp()
