"""How pressing each due item is: the queue's order, and the grace every version has kept."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.episode import SEVERITIES
from engine.settings import PathwayDefaults
from pathways.lumbosacral_radiculopathy.urgency import urgency

DEFAULTS = PathwayDefaults()


def rank(rule: str, level: str | None = None) -> str:
    return SEVERITIES[urgency(rule, DEFAULTS, level).severity]


def test_an_emergency_outranks_an_urgent_flag_a_referral_a_review_and_a_follow_up() -> None:
    order = [rank("RF-CES"), rank("RF-PROG"), rank("REF-2W-SEVERE"), rank("MED-OPIOID"),
             rank("FU-FIRST")]  # fmt: skip
    assert order == ["emergency", "urgent", "referral", "review", "routine"]
    assert [SEVERITIES.index(s) for s in order] == sorted(SEVERITIES.index(s) for s in order)


def test_a_work_up_takes_its_flags_level() -> None:
    assert rank("RF-SERIOUS", "urgent") == "urgent"
    assert rank("RF-PROG", "emergency") == "emergency"


def test_the_grace_before_escalation_is_the_one_every_version_gave() -> None:
    assert urgency("RF-CES", DEFAULTS).grace == timedelta(hours=DEFAULTS.escalate_emergency_hours)
    for rule in ("REF-3M", "RF-PROG"):
        assert urgency(rule, DEFAULTS).grace == timedelta(days=DEFAULTS.escalate_referral_days)
    for rule in ("FU-6W", "FU-ACTIVE", "MED-OPIOID"):
        assert urgency(rule, DEFAULTS).grace == timedelta(days=DEFAULTS.escalate_review_days)


def test_a_rule_that_opens_no_item_has_no_urgency() -> None:
    with pytest.raises(KeyError):
        urgency("IMG-NO-EARLY", DEFAULTS)
