"""What no database could store, and no date arithmetic survive, is refused at validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cli.simulate import simulate
from engine.errors import InvalidEvent
from engine.events import (
    EARLIEST_DATE,
    LATEST_DATE,
    check_opening_time,
    parse_event,
    parse_instant,
    parse_opening,
)
from engine.settings import PathwayDefaults
from pathways.lumbosacral_radiculopathy.steps import open_episode

NOW = datetime(2026, 1, 19, 10, tzinfo=UTC)


def refused(call: Any, *args: Any) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        call(*args)
    # Every reason can be sent as UTF-8 (no surrogate copied into it) and is short.
    caught.value.reason.encode("utf-8")
    assert len(caught.value.reason) < 300
    return caught.value


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"patient": {"ref": "P\ud800"}, "onset": "2026-01-05"}, "patient.ref"),
        ({"patient": {"ref": "P\x00"}, "onset": "2026-01-05"}, "patient.ref"),
        ({"patient": {"ref": "P", "\udc80x": True}, "onset": "2026-01-05"}, "patient"),
        ({"patient": {"ref": "P"}, "onset": "2026-01-05", "coordinator": "a\x00"},
         "coordinator"),
        ({"patient": {"ref": "P" * 129}, "onset": "2026-01-05"}, "patient.ref"),
        ({"patient": {"ref": "P"}, "onset": "2026-01-05", "coordinator": "c" * 129},
         "coordinator"),
        ({"patient": {"ref": "P"}, "onset": "9999-12-31"}, "onset"),
        ({"patient": {"ref": "P"}, "onset": "0001-01-01"}, "onset"),
        ({"patient": {"ref": "P"}, "onset": "2026-01-05", "enrolled_at": "9999-12-31T23:59:59Z"},
         "enrolled_at"),
        ({"patient": {"ref": "P"}, "onset": "2026-01-05",
          "enrolled_at": "0001-01-01T00:00:00+14:00"}, "enrolled_at"),
    ],
)  # fmt: skip
def test_an_opening_no_database_could_store_is_refused(payload: Any, field: str) -> None:
    assert refused(parse_opening, payload).field == field


def test_the_longest_reference_a_column_holds_is_accepted() -> None:
    assert parse_opening({"patient": {"ref": "P" * 128}, "onset": "2026-01-05"}).patient.ref


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"type": "red_flag", "data": {"kind": "ces", "note": "\ud83d"}}, "data.note"),
        ({"type": "treatment", "data": {"kind": "nsaid", "contraindications": ["ok", "\x00"]}},
         "data.contraindications.1"),
        ({"type": "treatment", "data": {"kind": "nsaid", "end": "9999-12-31"}}, "data.end"),
        ({"type": "assessment\ud800"}, "type"),
        ({"type": "resolve", "actor": "a" * 129}, "actor"),
        ({"type": "resolve", "occurred_at": "0001-01-01T00:00:00+14:00"}, "occurred_at"),
        ({"type": "resolve", "occurred_at": "9999-12-31T23:59:59+00:00"}, "occurred_at"),
    ],
)  # fmt: skip
def test_an_event_no_database_could_store_is_refused(payload: Any, field: str) -> None:
    assert refused(parse_event, payload).field == field


def test_valid_unicode_passes_untouched() -> None:
    event = parse_event({"type": "red_flag", "data": {"kind": "ces", "note": "Müller 😀 ✓"}})
    assert event.data.model_dump()["note"] == "Müller 😀 ✓"


@pytest.mark.parametrize(
    "text", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00", "1899-12-31T23:59:59Z"]
)
def test_an_instant_outside_the_calendar_we_keep_is_refused(text: str) -> None:
    error = refused(parse_instant, text, "since")
    assert error.field == "since"
    assert EARLIEST_DATE.isoformat() in error.reason


def test_an_instant_needs_its_offset() -> None:
    assert "offset" in refused(parse_instant, "2026-01-01T00:00:00", "until").reason
    assert "offset" in refused(parse_instant, "2026-01-01", "until").reason


def test_an_opening_may_not_lie_more_than_a_day_ahead_of_now() -> None:
    tomorrow = parse_opening({"patient": {"ref": "P"}, "onset": "2026-01-20",
                              "enrolled_at": "2026-01-20T10:00:00Z"})  # fmt: skip
    check_opening_time(tomorrow, NOW)
    later = parse_opening({"patient": {"ref": "P"}, "onset": "2026-01-21"})
    assert refused(check_opening_time, later, NOW).field == "onset"
    enrolled = parse_opening({"patient": {"ref": "P"}, "onset": "2026-01-05",
                              "enrolled_at": "2026-01-20T10:00:01Z"})  # fmt: skip
    assert refused(check_opening_time, enrolled, NOW).field == "enrolled_at"


def test_the_engine_computes_every_deadline_of_an_episode_at_the_bounds() -> None:
    """At the latest date accepted, every timer and due item of the pathway can still be
    computed: no date arithmetic overflows."""
    late = parse_opening({"patient": {"ref": "P"}, "onset": LATEST_DATE.isoformat()})
    enrolled = datetime.combine(LATEST_DATE, datetime.min.time(), tzinfo=UTC)
    step = open_episode(late, "e-late", enrolled + timedelta(hours=12), PathwayDefaults())
    assert max(t.due_at for t in step.timers).date() > LATEST_DATE
    early = parse_opening({"patient": {"ref": "P"}, "onset": EARLIEST_DATE.isoformat()})
    assert open_episode(early, "e-early", datetime(1900, 1, 2, tzinfo=UTC), PathwayDefaults())
    # A whole course near the last date accepted: every timer fires, into the year 3001.
    onset = LATEST_DATE - timedelta(days=30)
    course = simulate({
        "patient": {"ref": "P", "age": 50}, "onset": onset.isoformat(),
        "steps": [{"at": "day 20", "event": {"type": "assessment",
                                             "data": {"vas_leg": 8, "odi": 60}}}],
        "until": "day 400",
    })  # fmt: skip
    assert course["final"]["phase"] == "chronic"
    assert any(entry["trigger"] == "timer" for entry in course["timeline"])
