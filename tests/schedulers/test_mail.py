"""Mail through a real SMTP server: one digest per coordinator per sweep, an emergency at
once and marked high priority, cover copied in, nobody's items to the clinic's mailbox,
deadlines in the clinic's time with links, and no patient or clinical term in a subject."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import Engine

from engine.clinic_time import FakeClock
from engine.events import parse_opening
from engine.settings import PathwayDefaults
from models.repository import EpisodeRepository
from models.teams import add_member, set_cover
from schedulers.channels import EmailChannel
from schedulers.reminders import deliver_due
from schedulers.worker import Worker

ENROLLED = datetime(2026, 3, 2, 15, tzinfo=UTC)
CLINIC = "coordinators@clinic.test"
BASE = "https://carepath.clinic.example"
CHICAGO = "America/Chicago"


class Mailbox:
    def __init__(self) -> None:
        self.mails: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        mail = message_from_bytes(envelope.content, policy=default)
        assert isinstance(mail, EmailMessage)
        self.mails.append((list(envelope.rcpt_tos), mail))
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [mail for recipients, mail in self.mails if address in recipients]


@contextmanager
def serving(box: Mailbox) -> Iterator[EmailChannel]:
    """``box`` behind an SMTP server on a free port, and the channel that mails to it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield EmailChannel("127.0.0.1", port, "carepath@clinic.test", CLINIC)
    finally:
        controller.stop()


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, EmailChannel]]:
    box = Mailbox()
    with serving(box) as channel:
        yield box, channel


def enrol(engine: Engine, ref: str, coordinator: str | None, flag: bool = False) -> str:
    repo = EpisodeRepository(engine, PathwayDefaults())
    opening = parse_opening({"patient": {"ref": ref}, "onset": "2026-02-27",
                             "enrolled_at": ENROLLED.isoformat(), "coordinator": coordinator,
                             "clinic_timezone": CHICAGO})  # fmt: skip
    episode = str(repo.open(opening, ENROLLED)["id"])
    if flag:
        repo.apply(episode, {"type": "red_flag", "data": {"kind": "ces"}}, ENROLLED)
    return episode


def sweep(engine: Engine, when: datetime) -> None:
    Worker(EpisodeRepository(engine, PathwayDefaults()), FakeClock(when)).sweep()


# What a subject must never carry: the patients' references and the pathway's words.
CLINICAL = ("P-", "ces", "cauda", "equina", "red flag", "referral", "opioid", "follow", "review",
            "RF-", "FU-", "REF-", "MED-")  # fmt: skip


def test_each_coordinator_gets_one_digest_and_an_emergency_goes_at_once(
    engine: Engine, mailbox: tuple[Mailbox, EmailChannel]
) -> None:
    box, channel = mailbox
    add_member(engine, "spine-north", "alex", "alex@clinic.test", ENROLLED)
    add_member(engine, "spine-north", "sam", "sam@clinic.test", ENROLLED)
    for n in range(3):
        enrol(engine, f"P-a{n}", "alex")
    enrol(engine, "P-s0", "sam")
    enrol(engine, "P-flag", "alex", flag=True)
    enrol(engine, "P-nobody", None)
    when = ENROLLED + timedelta(days=20)
    sweep(engine, when)

    sent = deliver_due(engine, [channel], when, base_url=BASE)
    assert sent[("email", "failed")] == 0
    assert deliver_due(engine, [channel], when + timedelta(hours=1), base_url=BASE) == {}

    alex = box.to("alex@clinic.test")
    urgent = [m for m in alex if m["Importance"] == "high"]
    digests = [m for m in alex if m["Importance"] is None]
    assert len(digests) == 1  # every routine change of the sweep in one mail
    assert urgent  # the cauda equina work-up, on its own, at once
    for mail in urgent:
        assert mail["X-Priority"].startswith("1")
        assert mail["Subject"].startswith("[carepath] Act now")
        assert "P-flag" in mail.get_content()
    body = digests[0].get_content()
    assert all(ref in body for ref in ("P-a0", "P-a1", "P-a2"))
    assert "P-s0" not in body
    assert "Emergency" not in body  # that went on its own
    assert "(America/Chicago)" in body
    assert f"{BASE}/pages/episodes/" in body
    assert "#task-" in body
    assert len(box.to("sam@clinic.test")) == 1
    nobodys = box.to(CLINIC)
    assert nobodys
    assert all("P-nobody" in m.get_content() for m in nobodys)
    for _, mail in box.mails:
        subject = mail["Subject"]
        assert not any(word.lower() in subject.lower() for word in CLINICAL), subject


def test_a_covering_colleague_is_mailed_too_and_a_mail_server_down_sends_it_later(
    engine: Engine, mailbox: tuple[Mailbox, EmailChannel]
) -> None:
    box, channel = mailbox
    add_member(engine, "spine-north", "alex", "alex@clinic.test", ENROLLED)
    add_member(engine, "spine-north", "sam", "sam@clinic.test", ENROLLED)
    set_cover(engine, "alex", "sam", ENROLLED + timedelta(days=30), "admin", ENROLLED)
    enrol(engine, "P-a0", "alex")
    when = ENROLLED + timedelta(days=20)
    sweep(engine, when)
    down = EmailChannel("127.0.0.1", 9, "carepath@clinic.test", CLINIC, timeout=1)
    failed = deliver_due(engine, [down], when)
    assert failed[("email", "failed")] >= 1
    assert box.mails == []
    sent = deliver_due(engine, [channel], when + timedelta(minutes=5))
    assert sent[("email", "sent")] == failed[("email", "failed")]
    assert len(box.to("alex@clinic.test")) == 1
    assert len(box.to("sam@clinic.test")) == 1  # covering alex until day 30


def test_a_retried_mail_keeps_its_message_id(engine: Engine) -> None:
    from schedulers.channels import Reminder
    from schedulers.mail import message_for

    reminder = Reminder("k-1", "ep-1", "P-1", "first_follow_up", "FU-FIRST", "due",
                        ENROLLED, None, "alex", time_zone=CHICAGO)  # fmt: skip
    first, again = (message_for([reminder], "carepath@c", "alex@c") for _ in range(2))
    assert first["Message-ID"] == again["Message-ID"]
    assert message_for([reminder], "carepath@c", "sam@c")["Message-ID"] != first["Message-ID"]


def test_a_cancelled_emergency_is_news_not_an_alarm() -> None:
    from schedulers.channels import Reminder
    from schedulers.mail import needs_action_now

    def item(status: str, severity: str) -> Reminder:
        return Reminder("k", "ep", "P-1", "ces_emergency", "RF-CES", status, ENROLLED, None,
                        "alex", severity=severity)  # fmt: skip

    assert needs_action_now(item("due", "emergency"))
    assert needs_action_now(item("escalated", "routine"))
    assert not needs_action_now(item("cancelled", "emergency"))
    assert not needs_action_now(item("overdue", "routine"))


class Refusing(Mailbox):
    """A server that takes every mail but those to one address."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if "sam@clinic.test" in envelope.rcpt_tos:
            return "554 not today"
        return await super().handle_DATA(server, session, envelope)


def test_one_refused_mail_fails_only_its_own_reminders(engine: Engine) -> None:
    box = Refusing()
    add_member(engine, "spine-north", "alex", "alex@clinic.test", ENROLLED)
    add_member(engine, "spine-north", "sam", "sam@clinic.test", ENROLLED)
    enrol(engine, "P-a0", "alex")
    enrol(engine, "P-s0", "sam")
    when = ENROLLED + timedelta(days=20)
    sweep(engine, when)
    with serving(box) as channel:
        outcomes = deliver_due(engine, [channel], when)
    assert outcomes[("email", "sent")] >= 1
    assert outcomes[("email", "failed")] >= 1
    assert len(box.to("alex@clinic.test")) == 1
    assert box.to("sam@clinic.test") == []
