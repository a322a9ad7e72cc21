"""How pressing each of the pathway's due items is: its severity in the coordinator's queue,
and its grace after the deadline before it escalates.

The queue ranks an emergency red flag above an urgent one, both above the referral
deadlines (REF-2W-SEVERE, REF-2W-DEFICIT, REF-3M), those above the medication and periodic
reviews (MED-OPIOID, FU-ACTIVE, FU-3M), and those above routine follow-up (FU-FIRST, FU-6W).
A red flag's work-up takes the flag's level: RF-PROG or RF-SERIOUS raised as an emergency
ranks with RF-CES. Versions 1.0.0 and 1.1.0 were published before the queue ranked by
severity, and their definitions name none; this is our default for them, keyed by rule ID
as the handlers are.

The grace is what every version has given since 1.0.0 (it changes no deadline):
``escalate_emergency_hours`` for RF-CES, ``escalate_referral_days`` for the referral
deadlines and the red flags' work-ups, ``escalate_review_days`` for the rest.
"""

from __future__ import annotations

from datetime import timedelta

from engine.due import Urgency
from engine.episode import SEVERITIES
from engine.settings import PathwayDefaults

SEVERITY_BY_RULE = {
    "RF-CES": "emergency",
    "RF-PROG": "urgent",
    "RF-SERIOUS": "urgent",
    "REF-2W-SEVERE": "referral",
    "REF-2W-DEFICIT": "referral",
    "REF-3M": "referral",
    "MED-OPIOID": "review",
    "FU-ACTIVE": "review",
    "FU-3M": "review",
    "FU-FIRST": "routine",
    "FU-6W": "routine",
}
EMERGENCY_GRACE_RULES = frozenset({"RF-CES"})
REFERRAL_GRACE_RULES = frozenset(
    {"REF-2W-SEVERE", "REF-2W-DEFICIT", "REF-3M", "RF-PROG", "RF-SERIOUS"}
)


def urgency(rule: str, defaults: PathwayDefaults, level: str | None = None) -> Urgency:
    """The urgency of an item ``rule`` opens (``level``: a red flag's, for its work-up).

    Raises:
        KeyError: ``rule`` opens no due item here (an item must never go unranked).
    """
    severity = "emergency" if level == "emergency" else SEVERITY_BY_RULE[rule]
    if rule in EMERGENCY_GRACE_RULES:
        grace = timedelta(hours=defaults.escalate_emergency_hours)
    elif rule in REFERRAL_GRACE_RULES:
        grace = timedelta(days=defaults.escalate_referral_days)
    else:
        grace = timedelta(days=defaults.escalate_review_days)
    return Urgency(SEVERITIES.index(severity), grace)
