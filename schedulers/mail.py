"""E-mail a coordinator can work from: a digest per coordinator per sweep, and an immediate
mail for an emergency, an urgent red flag or an escalation.

Each reminder goes to its coordinator's address (the team directory: ``carepath team add
--email``) and to the colleagues covering them; one nobody's, or whose people have no
address, goes to the clinic's mailbox (``CAREPATH_SMTP_TO``), so that none goes nowhere.
What needs action now is one mail each, marked high priority; the rest of a sweep's
reminders are one digest per address. Every mail lists each item with its patient
reference, its deadline in the clinic's time with the zone named, and a link to it on the
episode's page (``CAREPATH_BASE_URL``). Subjects say how many and how pressing, never a
patient reference or a clinical term: they show on lock screens and in mail logs.
"""

from __future__ import annotations

import hashlib
import smtplib
from collections.abc import Sequence
from datetime import datetime
from email.message import EmailMessage
from zoneinfo import ZoneInfo

from schedulers.channels import IDEMPOTENCY_HEADER, Reminder, printable

# Sent on their own, at once, marked high priority.
IMMEDIATE_SEVERITIES = ("emergency", "urgent")
PRIORITY_HEADERS = {"Importance": "high", "X-Priority": "1 (Highest)", "Priority": "urgent"}


def needs_action_now(reminder: Reminder) -> bool:
    """An emergency's or urgent red flag's change, or an escalation; not an item cancelled
    (a red flag cleared): that is news for the digest, not an alarm."""
    if reminder.status == "cancelled":
        return False
    return reminder.severity in IMMEDIATE_SEVERITIES or reminder.status == "escalated"


def subject_of(reminders: Sequence[Reminder]) -> str:
    """How many and how pressing, in words that name no patient and no condition."""
    if len(reminders) == 1 and needs_action_now(reminders[0]):
        only = reminders[0]
        if only.severity in IMMEDIATE_SEVERITIES:
            return f"[carepath] Act now: an {only.severity} item on your worklist"
        return "[carepath] Act now: an item on your worklist is past its deadline"
    count = len(reminders)
    return f"[carepath] Your worklist: {count} item{'' if count == 1 else 's'} changed"


def clinic_time(when: datetime, zone: str) -> str:
    """``2026-02-05 09:00 (America/Chicago)``."""
    return f"{when.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M} ({zone})"


def body_of(reminders: Sequence[Reminder]) -> str:
    lines = []
    for reminder in reminders:
        item = printable(reminder.task_key.replace("_", " "))
        lines += [
            f"{printable(reminder.severity).capitalize()} - {item} - "
            f"{printable(reminder.status)}",
            f"  Patient:     {printable(reminder.patient_ref)}",
            f"  Due:         {clinic_time(reminder.due_at, reminder.time_zone)}",
        ]
        if reminder.escalate_at is not None:
            when = clinic_time(reminder.escalate_at, reminder.time_zone)
            lines.append(f"  Escalates:   {when}")
        lines.append(f"  Rule:        {printable(reminder.rule)}")
        lines.append(f"  Coordinator: {printable(reminder.owner or 'unassigned')}")
        if reminder.link:
            lines.append(f"  Open:        {printable(reminder.link)}")
        lines.append("")
    return "\n".join(lines)


def message_for(
    reminders: Sequence[Reminder], sender: str, recipient: str
) -> EmailMessage:
    """One mail of ``reminders`` to ``recipient``; the same Message-ID on every retry of
    the same reminders, so that mail systems drop a repeat."""
    message = EmailMessage()
    message["From"] = printable(sender)
    message["To"] = printable(recipient)
    message["Subject"] = subject_of(reminders)
    keys = sorted(printable(r.idempotency_key) for r in reminders)
    digest = hashlib.sha256("\n".join([recipient, *keys]).encode()).hexdigest()[:32]
    message["Message-ID"] = f"<{digest}@carepath>"
    if len(keys) == 1:
        message[IDEMPOTENCY_HEADER] = keys[0]
    if any(needs_action_now(r) for r in reminders):
        for name, value in PRIORITY_HEADERS.items():
            message[name] = value
    message.set_content(body_of(reminders))
    return message


def mails_of(
    reminders: Sequence[Reminder], fallback: str
) -> list[tuple[str, list[int]]]:
    """Which mails the reminders make: each (recipient, indexes of its reminders), those
    that need action now one each, then a digest per recipient."""
    mails: list[tuple[str, list[int]]] = []
    digests: dict[str, list[int]] = {}
    for index, reminder in enumerate(reminders):
        for address in reminder.addresses or (fallback,):
            if needs_action_now(reminder):
                mails.append((address, [index]))
            else:
                digests.setdefault(address, []).append(index)
    return mails + sorted(digests.items())


def send_all(
    host: str, port: int, timeout: float, sender: str, fallback: str,
    reminders: Sequence[Reminder],
) -> list[str | None]:  # fmt: skip
    """Send the reminders' mails over one SMTP connection; for each reminder, None when
    every mail it is in went, else why one did not (it is tried again, with the others of
    its digest: the Message-ID lets the mailbox drop what arrived)."""
    errors: list[str | None] = [None] * len(reminders)
    planned = mails_of(reminders, fallback)
    sent = 0
    try:
        with smtplib.SMTP(host, port, timeout=timeout) as smtp:
            for recipient, indexes in planned:
                message = message_for([reminders[i] for i in indexes], sender, recipient)
                try:
                    smtp.send_message(message)
                except smtplib.SMTPServerDisconnected:
                    raise
                except smtplib.SMTPException as exc:  # this mail only: the others go on
                    for i in indexes:
                        errors[i] = f"SMTP {host}:{port} refused a mail to {recipient}: {exc}"
                sent += 1
    except (smtplib.SMTPException, OSError) as exc:
        # The connection failed or went: what was not sent yet is tried again.
        failure = f"SMTP {host}:{port}: {exc}"
        for _, indexes in planned[sent:]:
            for i in indexes:
                errors[i] = failure
    return errors
