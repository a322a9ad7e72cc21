"""Coordinator reminders: one per change of a due item's status, delivered once per channel,
retried until delivered, visible while failing."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from prometheus_client import generate_latest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from cli.main import app
from engine.clinic_time import FakeClock
from engine.events import parse_opening
from engine.settings import PathwayDefaults
from models.db import make_engine
from models.repository import EpisodeRepository
from models.tables import Reminder, ReminderDelivery
from schedulers.channels import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ChannelSettingError,
    EmailChannel,
    WebhookChannel,
    channels_from_env,
    signature,
)
from schedulers.reminders import Backoff, deliver_due, delivery_status
from schedulers.worker import Worker

ENROLLED = datetime(2026, 3, 2, 9, tzinfo=UTC)
SECRET = "coordinators-shared-secret"


def open_episode(engine: Engine, ref: str, enrolled: datetime = ENROLLED) -> str:
    opening = parse_opening(
        {
            "patient": {"ref": ref, "age": 50},
            "onset": (enrolled - timedelta(days=2)).date().isoformat(),
            "enrolled_at": enrolled.isoformat(),
            "coordinator": "nurse.jones",
        }
    )
    return str(EpisodeRepository(engine, PathwayDefaults()).open(opening, enrolled)["id"])


def reminders(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(select(Reminder).order_by(Reminder.id)))


def sweep_to(engine: Engine, when: datetime) -> None:
    Worker(EpisodeRepository(engine, PathwayDefaults()), FakeClock(when)).sweep()


def test_a_reminder_is_written_with_each_announced_change_of_status(engine: Engine) -> None:
    open_episode(engine, "P-1")
    assert reminders(engine) == []  # "upcoming" is not announced
    for day in range(1, 36):  # a sweep a day: the first follow-up opens, lapses, escalates
        sweep_to(engine, ENROLLED + timedelta(days=day))
    rows = reminders(engine)
    changes = [(r.task_key, r.task_status) for r in rows]
    assert changes[:3] == [
        ("first_follow_up", "due"),
        ("first_follow_up", "overdue"),
        ("first_follow_up", "escalated"),
    ]
    assert len(set(changes)) == len(changes)  # each change once
    first = rows[0]
    assert (first.patient_ref, first.owner) == ("P-1", "nurse.jones")
    assert first.rule.startswith("FU-")
    # Sweeping the same day again changes nothing and tells nothing new.
    sweep_to(engine, ENROLLED + timedelta(days=35))
    assert len(reminders(engine)) == len(rows)


def test_after_downtime_the_coordinator_hears_the_current_status_only(engine: Engine) -> None:
    open_episode(engine, "P-1")
    sweep_to(engine, ENROLLED + timedelta(days=30))  # the worker was down for a month
    changes = [(r.task_key, r.task_status) for r in reminders(engine)]
    assert changes == [("first_follow_up", "overdue")]


class Receiver(BaseHTTPRequestHandler):
    """A coordinator system's webhook: fails the first ``failures`` calls."""

    failures = 0
    calls: list[dict[str, Any]] = []
    accepted: dict[str, dict[str, Any]] = {}

    def do_POST(self) -> None:  # noqa: N802 - the http.server interface
        body = self.rfile.read(int(self.headers["Content-Length"]))
        call = {"headers": dict(self.headers), "body": body}
        type(self).calls.append(call)
        if len(self.calls) <= self.failures:
            self.send_response(500)
        else:
            key = self.headers[IDEMPOTENCY_HEADER]
            type(self).accepted.setdefault(key, json.loads(body))
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[Receiver]]]:
    handler = type("FlakyReceiver", (Receiver,), {"failures": 2, "calls": [], "accepted": {}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/reminders", handler
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_webhook_that_fails_twice_gets_each_reminder_exactly_once(
    engine: Engine, receiver: tuple[str, type[Receiver]]
) -> None:
    url, handler = receiver
    open_episode(engine, "P-2")
    sweep_to(engine, ENROLLED + timedelta(days=20))
    wanted = len(reminders(engine))
    assert wanted >= 1
    channel = WebhookChannel(url, SECRET)
    clock = ENROLLED + timedelta(days=20)
    backoff = Backoff(base=timedelta(seconds=30))

    first = deliver_due(engine, [channel], clock, limit=1)
    assert first == {("webhook", "failed"): 1}
    status = delivery_status(engine)
    failing = next(d for d in status if d["attempts"] == 1)
    assert failing["status"] == "retrying"
    assert "HTTP 500" in failing["last_error"]
    # Not due again before its backoff.
    assert deliver_due(engine, [channel], clock + timedelta(seconds=29), limit=1) == {}
    deliver_due(engine, [channel], clock + timedelta(seconds=30), limit=1, backoff=backoff)
    deliver_due(engine, [channel], clock + timedelta(hours=2), backoff=backoff)

    assert len(handler.accepted) == wanted  # each reminder delivered, once
    keys = [call["headers"][IDEMPOTENCY_HEADER] for call in handler.calls]
    assert keys[0] == keys[1] == keys[2]  # the retried reminder kept its key
    for call in handler.calls:
        headers = call["headers"]
        expected = signature(SECRET, headers[TIMESTAMP_HEADER], call["body"])
        assert headers[SIGNATURE_HEADER] == expected
    body = next(iter(handler.accepted.values()))
    assert set(body) == {
        "idempotency_key", "episode_id", "patient_ref", "task_key", "rule", "status",
        "due_at", "escalate_at", "owner", "severity", "time_zone", "link",
    }  # fmt: skip
    assert body["link"] is None  # no base URL given: no link (see tests/schedulers/test_mail.py)
    with engine.connect() as connection:
        sent = connection.execute(select(ReminderDelivery)).all()
    assert {d.status for d in sent} == {"sent"}
    assert sorted(d.attempts for d in sent)[-1] == 3
    # Nothing is left to send: another sweep sends nothing.
    assert deliver_due(engine, [channel], clock + timedelta(hours=3)) == {}
    assert len(handler.calls) == wanted + 2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(envelope.content)
        return "250 OK"


def test_mail_waits_for_a_server_that_is_down_then_arrives_once(engine: Engine) -> None:
    open_episode(engine, "P-3")
    sweep_to(engine, ENROLLED + timedelta(days=20))
    wanted = len(reminders(engine))
    port = free_port()
    channel = EmailChannel("127.0.0.1", port, "carepath@clinic.test", "coordinators@clinic.test")
    now = ENROLLED + timedelta(days=20)

    assert deliver_due(engine, [channel], now) == {("email", "failed"): wanted}
    status = delivery_status(engine)
    assert all(d["status"] == "retrying" for d in status)
    assert all(f"127.0.0.1:{port}" in d["last_error"] for d in status)

    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        assert deliver_due(engine, [channel], now + timedelta(minutes=5)) == {
            ("email", "sent"): wanted
        }
        assert deliver_due(engine, [channel], now + timedelta(hours=5)) == {}
    finally:
        controller.stop()
    # nurse.jones has no address: the clinic's mailbox has the sweep's digest, once.
    [raw] = mailbox.messages
    mail = message_from_bytes(raw)
    assert mail["To"] == "coordinators@clinic.test"
    items = f"{wanted} item{'s' if wanted > 1 else ''}"
    assert mail["Subject"] == f"[carepath] Your worklist: {items} changed"
    text = mail.get_payload()
    assert "P-3" in text
    assert "FU-" in text


@pytest.mark.postgres
def test_two_workers_deliver_each_reminder_once(
    postgres_url: str, receiver: tuple[str, type[Receiver]]
) -> None:
    url, handler = receiver
    handler.failures = 0
    engine = make_engine(postgres_url, pool_size=4)
    try:
        for i in range(120):
            open_episode(engine, f"P-{i}")
        sweep_to(engine, ENROLLED + timedelta(days=30))
        with engine.connect() as connection:
            wanted = connection.scalar(select(func.count()).select_from(Reminder))
        assert wanted is not None
        assert wanted >= 100
        channel = WebhookChannel(url, SECRET)
        now = ENROLLED + timedelta(days=30)
        threads = [
            threading.Thread(target=deliver_due, args=(engine, [channel], now, 1000))
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        engine.dispose()
    keys = [call["headers"][IDEMPOTENCY_HEADER] for call in handler.calls]
    assert len(keys) == wanted
    assert len(set(keys)) == wanted


def test_a_half_configured_channel_is_named() -> None:
    with pytest.raises(ChannelSettingError, match="CAREPATH_WEBHOOK_SECRET"):
        channels_from_env({"CAREPATH_WEBHOOK_URL": "https://coordination.test/hook"})
    with pytest.raises(ChannelSettingError, match="CAREPATH_SMTP_TO"):
        channels_from_env({"CAREPATH_SMTP_HOST": "mail", "CAREPATH_SMTP_FROM": "a@b"})
    with pytest.raises(ChannelSettingError, match="CAREPATH_WEBHOOK_URL"):
        channels_from_env(
            {"CAREPATH_WEBHOOK_URL": "coordination.test", "CAREPATH_WEBHOOK_SECRET": "s"}
        )
    assert channels_from_env({}) == []
    names = [c.name for c in channels_from_env({
        "CAREPATH_WEBHOOK_URL": "https://coordination.test/hook",
        "CAREPATH_WEBHOOK_SECRET": "s",
        "CAREPATH_SMTP_HOST": "mail", "CAREPATH_SMTP_FROM": "a@b", "CAREPATH_SMTP_TO": "c@d",
    })]  # fmt: skip
    assert names == ["webhook", "email"]


def test_the_worker_refuses_to_start_with_a_half_configured_channel() -> None:
    result = CliRunner().invoke(
        app, ["worker", "--once"], env={"CAREPATH_WEBHOOK_URL": "https://coordination.test/h"}
    )
    assert result.exit_code == 2
    assert "CAREPATH_WEBHOOK_SECRET" in result.stderr


def test_the_worker_sends_what_its_sweep_announced(
    engine: Engine, receiver: tuple[str, type[Receiver]]
) -> None:
    url, handler = receiver
    handler.failures = 0
    open_episode(engine, "P-9")
    channel = WebhookChannel(url, SECRET)
    worker = Worker(
        EpisodeRepository(engine, PathwayDefaults()),
        FakeClock(ENROLLED + timedelta(days=20)),
        deliver=partial(deliver_due, engine, [channel]),
    )
    report = worker.sweep()
    assert report.deliveries == {("webhook", "sent"): 1}
    assert [body["task_key"] for body in handler.accepted.values()] == ["first_follow_up"]
    exposed = generate_latest(worker.metrics.registry).decode()
    assert 'carepath_reminder_deliveries_total{channel="webhook",outcome="sent"} 1.0' in exposed


def test_failing_deliveries_are_visible_from_the_command_line(engine: Engine, db_url: str) -> None:
    open_episode(engine, "P-7")
    sweep_to(engine, ENROLLED + timedelta(days=20))
    channel = EmailChannel("127.0.0.1", free_port(), "carepath@clinic.test", "c@clinic.test")
    deliver_due(engine, [channel], ENROLLED + timedelta(days=20))
    result = CliRunner().invoke(app, ["reminders"], env={"CAREPATH_DATABASE_URL": db_url})
    assert result.exit_code == 0, result.stderr
    (shown,) = json.loads(result.stdout)
    assert (shown["channel"], shown["status"], shown["attempts"]) == ("email", "retrying", 1)
    assert shown["patient_ref"] == "P-7"
    assert "SMTP 127.0.0.1" in shown["last_error"]
