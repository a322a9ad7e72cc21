"""The numbers PATHWAY.md marks **default**: ours, not the sources', and configurable.

A clinic changes them by building a :class:`PathwayDefaults` with other values (the command
line reads ``CAREPATH_DEFAULTS`` as a JSON object of field: value). Each field names the rule
it belongs to.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class PathwayDefaults:
    # RF-CES: the cauda equina emergency task is due this many hours after the flag.
    ces_task_hours: int = 6
    # Other red flags (RF-PROG, RF-SERIOUS): urgent work-up task due within this many hours.
    urgent_task_hours: int = 24
    # MED-OPIOID: short-term opioid limit in days; a review item falls due at the limit.
    opioid_limit_days: int = 14
    # FU-ELDERLY: age from which the shorter follow-up intervals apply.
    elderly_age: int = 65
    # FU-ACTIVE: periodic review interval during the first 12 weeks (weeks).
    periodic_review_weeks: int = 4
    # FU-ACTIVE for FU-ELDERLY and PRED-WORKCOMP (weeks).
    intensive_review_weeks: int = 2
    # FU-3M: review interval after 12 weeks (months).
    chronic_review_months: int = 3
    # FU-3M for FU-ELDERLY and PRED-WORKCOMP (weeks).
    intensive_chronic_review_weeks: int = 6
    # PRED-HIGH-VAS: baseline leg-pain VAS at or above this is "high".
    high_vas: int = 7
    # FU-RESPONSE: improvement thresholds.
    improve_vas_fraction: float = 0.30
    improve_vas_points: int = 2
    improve_odi_points: int = 10
    # FU-RESPONSE: worsening threshold on leg-pain VAS.
    worsen_vas_points: int = 2
    # Conservative window before imaging and injection (IMG-NO-EARLY, ESI-6W): days from onset.
    conservative_window_days: int = 42
    # CONS-ADEQUATE: formal supervised physiotherapy must last at least this many days.
    adequate_physio_days: int = 42
    # FU-6W: the six-week review item stays due for this many days before it is overdue.
    review_days_to_complete: int = 7
    # Review items (FU-ACTIVE, FU-3M, MED-OPIOID) open this many days before they fall due.
    review_window_days: int = 7
    # Escalation grace after a missed deadline: reviews, referrals, emergencies.
    escalate_review_days: int = 7
    escalate_referral_days: int = 2
    escalate_emergency_hours: int = 0
    # SURG-CRIT: "significant functional impairment" as an Oswestry score.
    significant_odi: int = 40
    # IMG-PLEXUS-TRAUMA (from 1.1.0): plexus MRI waits this many calendar months after a
    # recorded significant trauma (the source says "approximately 1 month").
    plexus_after_trauma_months: int = 1
    # SCS-POSTOP (from 1.1.0): leg pain not improving at an assessment this many weeks or
    # more after surgery brings up spinal cord stimulation.
    scs_after_surgery_weeks: int = 4
    # FU-RESPONSE (from 1.1.0): with no earlier visit to compare with, leg-pain VAS at or
    # above this, past the conservative window, counts as persisting.
    persisting_vas_without_baseline: int = 4
    # SP-PLEXUS (from 1.1.0): pain over at least this many adjacent dermatomes on one side.
    plexus_adjacent_dermatomes: int = 3

    @classmethod
    def from_env(cls) -> PathwayDefaults:
        """Read overrides from ``CAREPATH_DEFAULTS`` (a JSON object), if set."""
        raw = os.environ.get("CAREPATH_DEFAULTS")
        if not raw:
            return cls()
        return cls.from_mapping(json.loads(raw))

    @classmethod
    def from_mapping(cls, values: dict[str, object]) -> PathwayDefaults:
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown default(s): {', '.join(unknown)}")
        return replace(cls(), **values)  # type: ignore[arg-type]


DEFAULTS = PathwayDefaults()


DRAFTS_ENV = "CAREPATH_PATHWAY_DRAFTS"


OPENING_VERSION_ENV = "CAREPATH_PATHWAY_VERSION"


def chosen_opening_version() -> str | None:
    """The version a clinic has chosen for its new episodes (``CAREPATH_PATHWAY_VERSION``),
    e.g. while its governance group has not yet signed off the newest; None: the newest
    published."""
    return os.environ.get(OPENING_VERSION_ENV, "").strip() or None


def drafts_allowed() -> bool:
    """Whether episodes may open on a draft pathway version: only on an installation set
    up to review one (``CAREPATH_PATHWAY_DRAFTS=1``), never by default."""
    return os.environ.get(DRAFTS_ENV, "") in ("1", "true", "yes")
