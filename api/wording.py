"""The episode and its items in the words a coordinator uses, and times as the clinic reads
them: what the pages show in place of state ids and UTC instants."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

PHASES = {
    "acute": "Acute (under 6 weeks from onset)",
    "subacute": "Subacute (6 to 12 weeks)",
    "chronic": "Chronic (over 12 weeks)",
}
MANAGEMENT = {
    "conservative": "Conservative care",
    "review": "Six-week review",
    "imaging": "Imaging",
    "interventional": "Injection or other intervention",
    "specialist": "Specialist care",
    "rehabilitation": "Rehabilitation",
    "shared_care": "Shared care",
}
REFERRAL = {
    "not_indicated": "No referral needed",
    "due": "Referral due",
    "overdue": "Referral overdue",
    "referred": "Referred",
    "seen": "Seen by the specialist",
}
CONTACT_WORDS = {
    "reached": "reached",
    "no_answer": "no answer",
    "left_message": "left a message",
    "wrong_number": "wrong number",
}
RED_FLAGS = {
    "ces": "Cauda equina syndrome suspected",
    "progressive_deficit": "Progressive neurological deficit",
    "malignancy": "Possible cancer",
    "infection": "Possible infection",
    "fracture": "Possible fracture",
    "trauma": "Significant trauma",
}


def how_late(due_at: str, now: datetime) -> str:
    """``overdue by 2 d 3 h``, ``due in 45 min``: an item due at ``due_at`` (ISO 8601), as
    of ``now``, to the minute as the worklist counts."""
    late = now - datetime.fromisoformat(due_at)
    span = late if late >= timedelta(0) else -late
    days, rest = divmod(int(span.total_seconds() // 60), 24 * 60)
    hours, minutes = divmod(rest, 60)
    # Minutes matter only within the day: an item days late is late by days and hours.
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "",
             f"{minutes} min" if minutes and not days else ""]  # fmt: skip
    words = " ".join(part for part in parts if part) or "less than a minute"
    return f"overdue by {words}" if late >= timedelta(0) else f"due in {words}"


def clinic_time(instant: str, zone: str) -> str:
    """An instant as the clinic reads it, its zone named: ``Tue 20 Jan 04:00 CST``."""
    return datetime.fromisoformat(instant).astimezone(ZoneInfo(zone)).strftime("%a %d %b %H:%M %Z")


def standing(episode: dict[str, Any]) -> dict[str, str]:
    """Where the episode stands, in words (the view's phase, management and referral)."""
    return {
        "phase": PHASES.get(episode["phase"] or "", episode["phase"] or "ended"),
        "management": MANAGEMENT.get(episode["management"] or "", episode["management"] or "—"),
        "referral": REFERRAL.get(episode["referral"] or "", episode["referral"] or "—"),
    }
