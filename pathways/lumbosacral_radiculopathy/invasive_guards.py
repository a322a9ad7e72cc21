"""Guards on invasive steps that version 1.1.0 adds (PATHWAY.md, "Version 1.1.0").

Elective surgery (SURG-ELECTIVE), pulsed radiofrequency (PRF-DRG) and spinal cord
stimulation (SCS-POSTOP) become refusals a clinician may override, as does plexus MRI within
a month of a recorded trauma (IMG-PLEXUS-TRAUMA). Each applies only to an episode whose
version includes its correction; :mod:`.handlers` runs them after the guards of
:mod:`.guards`, on the same verdict.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from engine.clinic_time import add_months, local_date
from engine.episode import EpisodeState
from engine.settings import PathwayDefaults
from pathways.lumbosacral_radiculopathy.guards import (
    Verdict,
    conservative_care_failed,
    correlating_result,
    failed_adequate_care,
    red_flag_active,
)

SURGERY = ("discectomy", "fusion")
INJECTIONS = ("esi",)
INTERVENTIONS = INJECTIONS + SURGERY  # what rehabilitation follows (REHAB-MDT)


def procedures_done(facts: dict[str, Any], kinds: tuple[str, ...]) -> list[str]:
    """When the recorded procedures of ``kinds`` were done (ISO instants, as recorded)."""
    return [p["at"] for p in facts.get("procedures", []) if p["kind"] in kinds]


def check_plexus_imaging(
    verdict: Verdict, state: EpisodeState, data: dict[str, Any], now: datetime,
    defaults: PathwayDefaults,
) -> None:  # fmt: skip
    """IMG-PLEXUS-TRAUMA: plexus MRI waits about a month after a recorded trauma, so that
    bleeding and swelling settle; a red flag does not lift this one."""
    trauma = state.facts.get("trauma_on")
    if (
        data["kind"] != "mri_plexus"
        or not trauma
        or not verdict.pathway.corrects("IMG-PLEXUS-TRAUMA")
    ):
        return
    allowed = add_months(date.fromisoformat(trauma), defaults.plexus_after_trauma_months)
    if local_date(now, state.tz) < allowed:
        verdict.refuse(
            "IMG-PLEXUS-TRAUMA",
            f"plexus MRI within {defaults.plexus_after_trauma_months} month(s) of the trauma "
            f"recorded on {trauma}; eligible from {allowed.isoformat()}",
            eligible_from=allowed,
        )


def check_invasive_procedure(
    verdict: Verdict, state: EpisodeState, data: dict[str, Any], now: datetime,
    defaults: PathwayDefaults,
) -> None:  # fmt: skip
    """SURG-ELECTIVE, PRF-DRG and SCS-POSTOP on a recorded procedure."""
    kind = data["kind"]
    if kind in SURGERY and verdict.pathway.corrects("SURG-ELECTIVE"):
        _elective_surgery(verdict, state, now, defaults)
    elif kind == "prf" and verdict.pathway.corrects("PRF-DRG-GUARD"):
        _pulsed_radiofrequency(verdict, state)
    elif kind == "scs" and verdict.pathway.corrects("SCS-POSTOP-GUARD") and not _had_surgery(state):
        verdict.refuse(
            "SCS-POSTOP", "spinal cord stimulation is for symptoms persisting after a "
            "spinal operation, and none is recorded",
        )  # fmt: skip


def _elective_surgery(
    verdict: Verdict, state: EpisodeState, now: datetime, defaults: PathwayDefaults
) -> None:
    # A red flag (a progressive deficit raises one) or severe disabling pain makes the
    # operation urgent rather than elective.
    if red_flag_active(state) or state.facts.get("severe_disabling"):
        return
    failed_adequate_care(verdict, state, now, defaults, "SURG-ELECTIVE", "Elective surgery")
    if not state.facts.get("bps_done"):
        verdict.refuse("REF-BPS", "no biopsychosocial assessment documented before surgery")
    if not correlating_result(state.facts, None):
        verdict.refuse("IMG-CORRELATE", "surgery needs imaging that correlates clinically")


def _pulsed_radiofrequency(verdict: Verdict, state: EpisodeState) -> None:
    gaps = []
    if state.phase != "chronic":
        gaps.append("the chronic phase")
    if not conservative_care_failed(state.facts):
        gaps.append("failed conservative care (FU-RESPONSE)")
    if not _had(state, INJECTIONS):
        gaps.append("an epidural injection that failed")
    if gaps:
        verdict.refuse(
            "PRF-DRG", "pulsed radiofrequency at the DRG is for chronic radiculopathy that "
            "other treatment has failed; missing: " + ", ".join(gaps),
        )  # fmt: skip


def _had(state: EpisodeState, kinds: tuple[str, ...]) -> bool:
    return bool(procedures_done(state.facts, kinds))


def _had_surgery(state: EpisodeState) -> bool:
    return _had(state, SURGERY)
