"""Deliveries at the edges: a stored patient reference with a line break goes out encoded
on every channel, and a delivery that keeps failing, for any reason, waits its turn, becomes
an incident, and never holds up the others."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from email import message_from_bytes
from email.policy import default
from http.server import ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import Engine, select, update

from models.incidents import DELIVERY_INCIDENT_AFTER, list_incidents
from models.tables import Episode, Reminder, ReminderDelivery
from schedulers.channels import EmailChannel, WebhookChannel
from schedulers.reminders import deliver_due
from tests.schedulers.test_reminders import (
    ENROLLED,
    SECRET,
    Mailbox,
    Receiver,
    free_port,
    open_episode,
    sweep_to,
)

FORGED = "P\r\nBEGIN:VEVENT\r\nSUMMARY:forged\r\nEND:VEVENT"
NOW = ENROLLED + timedelta(days=20)


@pytest.fixture
def webhook() -> Iterator[tuple[str, type[Receiver]]]:
    handler = type("Receiver", (Receiver,), {"failures": 0, "calls": [], "accepted": {}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/reminders", handler
    server.shutdown()
    server.server_close()
    thread.join()


def episodes_with_reminders(engine: Engine, count: int) -> list[str]:
    ids = [open_episode(engine, f"P-{i}") for i in range(count)]
    return ids


def test_a_patient_reference_with_a_line_break_arrives_encoded_and_the_rest_once(
    engine: Engine, webhook: tuple[str, type[Receiver]]
) -> None:
    url, handler = webhook
    ids = episodes_with_reminders(engine, 18)
    # Stored as an attacker with database access (or an old release) would have it.
    with engine.begin() as connection:
        connection.execute(update(Episode).where(Episode.id == ids[5]).values(patient_ref=FORGED))
    sweep_to(engine, NOW)
    with engine.connect() as connection:
        refs = connection.scalars(select(Reminder.patient_ref)).all()
    assert len(refs) == 18
    assert FORGED in refs
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        channels = [
            WebhookChannel(url, SECRET),
            EmailChannel("127.0.0.1", port, "carepath@clinic.test", "coordinators@clinic.test"),
        ]
        sent = deliver_due(engine, channels, NOW)
        assert sent == {("webhook", "sent"): 18, ("email", "sent"): 18}
        assert deliver_due(engine, channels, NOW + timedelta(hours=2)) == {}
    finally:
        controller.stop()

    assert len(handler.calls) == 18  # each reminder once
    bodies = [json.loads(call["body"]) for call in handler.calls]
    assert sorted(b["patient_ref"] for b in bodies) == sorted(refs)  # JSON carries it escaped
    assert all("\r" not in value and "\n" not in value
               for call in handler.calls for value in call["headers"].values())  # fmt: skip
    # One digest (nobody has an address: the clinic's mailbox); the forged reference is in
    # its body, escaped, and never in a header.
    [raw] = mailbox.messages
    mail = message_from_bytes(raw, policy=default)
    assert "BEGIN:VEVENT" not in str(mail["Subject"])
    assert not any(line.startswith(b"BEGIN:VEVENT") for line in raw.splitlines())
    assert "Patient:     P\\r\\nBEGIN:VEVENT" in mail.get_content()
    with engine.connect() as connection:
        assert set(connection.scalars(select(ReminderDelivery.status))) == {"sent"}


class Picky:
    """A channel whose building of one reminder raises, whatever it is given."""

    name = "memory"

    def __init__(self, refused: str) -> None:
        self.refused = refused
        self.sent: list[Any] = []

    def deliver(self, reminder: Any) -> None:
        if reminder.patient_ref == self.refused:
            raise ValueError("Header values may not contain linefeed or carriage return")
        self.sent.append(reminder.patient_ref)


def test_a_delivery_that_keeps_failing_is_an_incident_and_never_blocks_the_others(
    engine: Engine,
) -> None:
    episodes_with_reminders(engine, 4)
    sweep_to(engine, NOW)
    channel = Picky("P-0")
    now = NOW
    outcome = deliver_due(engine, [channel], now)
    assert outcome == {("memory", "failed"): 1, ("memory", "sent"): 3}
    assert sorted(channel.sent) == ["P-1", "P-2", "P-3"]
    # New reminders keep going out while the first keeps failing, oldest first or not.
    episodes_with_reminders(engine, 1)  # P-0 again: refused too
    open_episode(engine, "P-new", ENROLLED + timedelta(days=1))
    for attempt in range(2, DELIVERY_INCIDENT_AFTER + 1):
        now += timedelta(hours=2)  # past every backoff
        sweep_to(engine, now)
        deliver_due(engine, [channel], now)
        assert list_incidents(engine) == [] or attempt == DELIVERY_INCIDENT_AFTER
    assert "P-new" in channel.sent
    with engine.connect() as connection:
        failing = connection.execute(
            select(ReminderDelivery).where(ReminderDelivery.status == "retrying")
        ).all()
    assert {d.attempts for d in failing} <= {DELIVERY_INCIDENT_AFTER, DELIVERY_INCIDENT_AFTER - 1}
    error = "ValueError: Header values may not contain linefeed"
    assert all(error in d.last_error for d in failing)
    incidents = list_incidents(engine)
    assert [i["kind"] for i in incidents] == ["delivery"]
    (incident,) = incidents
    assert incident["attempts"] == DELIVERY_INCIDENT_AFTER
    assert incident["delivery_id"] == min(d.id for d in failing)
    # Repaired: it goes out at its next attempt and its incident is resolved.
    channel.refused = "nobody"
    deliver_due(engine, [channel], now + timedelta(hours=2))
    assert list_incidents(engine) == []
    (closed,) = list_incidents(engine, include_resolved=True)
    assert closed["resolution"] == "retried"
    assert datetime.fromisoformat(closed["resolved_at"]) == now + timedelta(hours=2)
