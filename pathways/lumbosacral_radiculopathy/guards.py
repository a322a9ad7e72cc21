"""Guards on orders, procedures and treatments (PATHWAY.md, "Guards on orders").

Each check returns a :class:`Verdict`: refusals (with whether a documented override lifts
them, and the date time lifts them) and notes (warnings, advisories) that accompany an
accepted request. :mod:`.steps` turns a verdict into a refusal or an accepted step.
Whether an override lifts a refusal is the rule's strength in the pathway's definition
(``refuse`` or ``refuse_with_override``), never the guard's to say.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from engine.clinic_time import add_days, add_months, local_date
from engine.definition import Definition, Strength
from engine.episode import EpisodeState
from engine.settings import PathwayDefaults
from pathways import of_episode

IMAGING = ("mri", "ct", "xray", "xray_flexion_extension", "mri_plexus")
CROSS_SECTIONAL = ("mri", "ct")
SURGICAL_FINDINGS = ("instability", "spondylolisthesis", "severe_stenosis")
FUSION_PROCEDURES = ("fusion",)
NEURO_DRUGS = ("gabapentin", "pregabalin", "tca")
FIRST_LINE_ANALGESICS = ("nsaid", "acetaminophen")


@dataclass
class Check:
    rule: str
    reason: str
    override: bool = False
    eligible_from: date | None = None


@dataclass
class Verdict:
    """What the guards found, under the rules of ``pathway`` (the episode's version)."""

    pathway: Definition
    refusals: list[Check] = field(default_factory=list)
    notes: list[Check] = field(default_factory=list)
    warnings: list[Check] = field(default_factory=list)

    def refuse(self, rule_id: str, reason: str, eligible_from: date | None = None) -> None:
        """Refuse by ``rule_id``, which must be a refusing rule; its strength says whether
        an override is possible."""
        strength = self.pathway.rule(rule_id).strength
        if not strength.refuses:
            raise ValueError(f"{rule_id} is a {strength.value} rule: it cannot refuse")
        self.refusals.append(Check(rule_id, reason, strength.overridable, eligible_from))

    def note(self, rule: str, reason: str) -> None:
        self.notes.append(Check(rule, reason))

    def warn(self, rule_id: str, reason: str) -> None:
        """Accept, with a warning said in the step's reason and kept in its audit row;
        ``rule_id`` must be a warning rule."""
        strength = self.pathway.rule(rule_id).strength
        if strength is not Strength.WARN:
            raise ValueError(f"{rule_id} is a {strength.value} rule: it cannot warn")
        self.warnings.append(Check(rule_id, reason))


def window_end(state: EpisodeState, defaults: PathwayDefaults) -> date:
    """The first day after the conservative window (onset + 42 days by default)."""
    return add_days(state.onset, defaults.conservative_window_days)


def day_of_episode(state: EpisodeState, now: datetime) -> int:
    return (local_date(now, state.tz) - state.onset).days


def red_flag_active(state: EpisodeState) -> bool:
    return state.facts.get("red_flag") is not None


def conservative_care_failed(facts: dict[str, Any]) -> bool:
    return facts.get("response") in ("stable", "worsening")


def adequate_physio_gaps(
    facts: dict[str, Any], today: date, defaults: PathwayDefaults
) -> list[str]:
    """CONS-ADEQUATE: what is missing from the documented formal, supervised physiotherapy."""
    formal = [t for t in facts.get("treatments", []) if t["kind"] == "physio_formal"]
    if not formal:
        home = any(t["kind"] == "physio_home" for t in facts.get("treatments", []))
        return [
            "no formal supervised physiotherapy documented"
            + (" (home exercises do not count)" if home else "")
        ]
    gaps = []
    days = 0
    for course in formal:
        if not course.get("start"):
            gaps.append("a physiotherapy course has no start date")
            continue
        end = date.fromisoformat(course["end"]) if course.get("end") else today
        days += max(0, (min(end, today) - date.fromisoformat(course["start"])).days)
    if days < defaults.adequate_physio_days:
        gaps.append(f"{days} of {defaults.adequate_physio_days} days of formal physiotherapy")
    if not all(course.get("adherence") for course in formal):
        gaps.append("adherence not documented")
    elif all(course["adherence"] == "poor" for course in formal):
        gaps.append("adherence poor")
    return gaps


def is_candidate(facts: dict[str, Any], data: dict[str, Any]) -> bool:
    candidacy = facts.get("candidacy", {})
    return bool(
        candidacy.get("surgical_candidate")
        or candidacy.get("injection_candidate")
        or data.get("candidate_for")
    )


def correlating_result(facts: dict[str, Any], level: str | None) -> bool:
    """IMG-CORRELATE: an imaging result whose level matches the clinical level."""
    for result in facts.get("results", []):
        if result.get("correlates_clinically") and (
            level is None or level in result.get("levels", [])
        ):
            return True
    return False


def _early_window(
    verdict: Verdict,
    state: EpisodeState,
    now: datetime,
    defaults: PathwayDefaults,
    rule: str,
    what: str,
) -> bool:
    """Refuse ``what`` inside the conservative window unless a red flag or REF-2W-SEVERE."""
    if red_flag_active(state) or state.facts.get("severe_disabling"):
        return False
    if local_date(now, state.tz) >= window_end(state, defaults):
        return False
    eligible = window_end(state, defaults)
    verdict.refuse(
        rule,
        f"{what} not indicated: day {day_of_episode(state, now)} of the "
        f"{defaults.conservative_window_days}-day conservative window, "
        f"{_no_red_flag(verdict, state)} and no severe disabling pain; "
        f"eligible from {eligible.isoformat()}",
        eligible_from=eligible,
    )
    return True


def _no_red_flag(verdict: Verdict, state: EpisodeState) -> str:
    """ "no red flag", or from 1.1.0 (RF-MARKERS-SERIOUS), with markers on record, which
    ones and what would lift the refusal."""
    markers = state.facts.get("markers") or []
    if not markers or not verdict.pathway.corrects("RF-MARKERS-SERIOUS"):
        return "no red flag"
    named = ", ".join(m.replace("_", " ") for m in markers)
    return (
        f"no red flag raised (RF-MARKERS present: {named}; a clinician's suspected "
        "malignancy or infection flag would lift this)"
    )


def failed_adequate_care(
    verdict: Verdict,
    state: EpisodeState,
    now: datetime,
    defaults: PathwayDefaults,
    rule: str,
    what: str,
) -> None:
    gaps = adequate_physio_gaps(state.facts, local_date(now, state.tz), defaults)
    if not conservative_care_failed(state.facts):
        gaps.insert(0, "no documented failure of conservative care (FU-RESPONSE)")
    if gaps:
        verdict.refuse(
            rule,
            f"{what} needs failed adequate conservative care (CONS-ADEQUATE, the stricter "
            f"standard of S2): {'; '.join(gaps)}",
        )


def check_order(
    state: EpisodeState, data: dict[str, Any], now: datetime, defaults: PathwayDefaults
) -> Verdict:
    verdict = Verdict(of_episode(state))
    kind = data["kind"]
    if kind in IMAGING:
        _check_imaging(verdict, state, data, now, defaults)
    elif kind == "esi":
        _check_injection(verdict, state, data, now, defaults, ordering=True)
    elif kind == "surgical_referral":
        _check_surgical_referral(verdict, state, defaults)
    elif kind == "emg_ncs" and _has_result(state, "emg_ncs"):
        # A first study needs no comment; a repeat is what the rule is about.
        verdict.note("NCS-CHRONIC", "an EMG/NCS is on file: repeat only on clinical deterioration")
    return verdict


def _has_result(state: EpisodeState, modality: str) -> bool:
    return any(r.get("modality") == modality for r in state.facts.get("results", []))


def _check_imaging(
    verdict: Verdict,
    state: EpisodeState,
    data: dict[str, Any],
    now: datetime,
    defaults: PathwayDefaults,
) -> None:
    kind = data["kind"]
    label = _order_name(verdict, kind)
    if red_flag_active(state):
        verdict.note(state.facts["red_flag"]["rule"], "red flag: urgent imaging indicated")
    elif state.facts.get("severe_disabling") and day_of_episode(state, now) < (
        defaults.conservative_window_days
    ):
        verdict.note("REF-2W-SEVERE", "severe disabling pain waives the six-week wait")
    elif not _early_window(verdict, state, now, defaults, "IMG-NO-EARLY", label) and (
        kind in CROSS_SECTIONAL
    ):
        three_months = add_months(state.onset, verdict.pathway.timing("persisting_pain_months"))
        if (
            local_date(now, state.tz) >= three_months
            and conservative_care_failed(state.facts)
            and imaging_indicated_at_3_months(state)
        ):
            verdict.note("IMG-3M", "radicular pain persisting beyond 3 months")
        else:
            failed_adequate_care(verdict, state, now, defaults, "IMG-6W", label)
            if not is_candidate(state.facts, data):
                verdict.refuse("IMG-6W", f"{label} only for a candidate for surgery or injection")
    if (
        kind in CROSS_SECTIONAL
        and data.get("ordered_by") == "primary_care"
        and not (_specialist_involved(state))
    ):
        verdict.note(
            "ORD-SPECIALIST", f"{label} ordered from primary care without specialist input"
        )
    if kind in ("ct", "xray") and not state.facts.get("results"):
        verdict.note("IMG-FIRST", "MRI without contrast is the preferred first modality")
    if kind == "xray_flexion_extension":
        verdict.note("IMG-FLEX", "flexion-extension views when instability is suspected")
    if kind == "mri_plexus":
        verdict.note("SP-PLEXUS", "plexus MRI; after trauma wait about a month")


# Orders as a clinician names them (from 1.1.0, ORDER-NAMES; 1.0.0 printed the codes).
ORDER_NAMES = {
    "mri": "MRI", "ct": "CT", "xray": "X-ray", "xray_flexion_extension": "flexion-extension X-ray",
    "mri_plexus": "plexus MRI",
}  # fmt: skip


def _order_name(verdict: Verdict, kind: str) -> str:
    if verdict.pathway.corrects("ORDER-NAMES"):
        return ORDER_NAMES[kind]
    return "MRI" if kind.startswith("mri") else kind.upper().replace("_", " ")


def _specialist_involved(state: EpisodeState) -> bool:
    return state.referral in ("referred", "seen") or state.management in (
        "specialist",
        "shared_care",
    )


def _check_injection(
    verdict: Verdict,
    state: EpisodeState,
    data: dict[str, Any],
    now: datetime,
    defaults: PathwayDefaults,
    *,
    ordering: bool,
) -> None:
    if data.get("image_guided") is False:
        verdict.refuse("ESI-GUIDED", "blind epidural injection: image guidance is required")
        return
    already_ordered = any(o["kind"] == "esi" for o in state.facts.get("orders", []))
    if ordering or not already_ordered:
        if not _early_window(
            verdict, state, now, defaults, "ESI-6W", "Epidural injection"
        ) and not (red_flag_active(state) or state.facts.get("severe_disabling")):
            failed_adequate_care(verdict, state, now, defaults, "ESI-6W", "Epidural injection")
        if not correlating_result(state.facts, data.get("level")):
            verdict.refuse(
                "IMG-CORRELATE",
                "no imaging result whose level correlates with the clinical level "
                "(disc abnormalities are common without symptoms)",
            )
    if ordering and data.get("ordered_by") == "primary_care":
        verdict.note(
            "ORD-SPECIALIST", "intervention ordered by a clinician who cannot interpret the images"
        )
    if state.phase == "subacute" and _herniation_at_level(state, None):
        verdict.note(
            "ESI-TF", "transforaminal approach suggested for a contained herniation below L3"
        )


def _has_finding(facts: dict[str, Any], finding: str) -> bool:
    return any(finding in r.get("findings", []) for r in facts.get("results", []))


def below_l3(level: str) -> bool:
    """A level under the third lumbar: L4, L4-L5, L5, L5-S1, S1 and lower."""
    return level[:2] in ("L4", "L5") or level.startswith("S")


def _herniation_at_level(state: EpisodeState, level: str | None) -> bool:
    """ESI-TF: a herniation on imaging; from 1.1.0 (ESI-TF-LEVEL) at a level below L3
    (the procedure's own level when it names one)."""
    results = [r for r in state.facts.get("results", []) if "herniation" in r.get("findings", [])]
    if not of_episode(state).corrects("ESI-TF-LEVEL"):
        return bool(results)
    if level is not None:
        return below_l3(level)
    return any(below_l3(lv) for r in results for lv in r.get("levels", []))


def imaging_indicated_at_3_months(state: EpisodeState) -> bool:
    """IMG-3M: from 1.1.0 (IMG-3M-MRI-ON-FILE) no longer once an MRI result is on file,
    unless the episode is worsening."""
    if not of_episode(state).corrects("IMG-3M-MRI-ON-FILE"):
        return True
    facts = state.facts
    mri_on_file = any(r.get("modality") == "mri" for r in facts.get("results", []))
    return not mri_on_file or facts.get("response") == "worsening"


def _check_surgical_referral(
    verdict: Verdict, state: EpisodeState, defaults: PathwayDefaults
) -> None:
    facts = state.facts
    if not red_flag_active(state) and not facts.get("bps_done"):
        verdict.refuse(
            "REF-BPS", "no biopsychosocial assessment documented before surgical referral"
        )
    unmet = []
    if not conservative_care_failed(facts):
        unmet.append("failed conservative care")
    last = facts.get("last_assessment") or {}
    if int(last.get("odi", 0)) < defaults.significant_odi:
        unmet.append(f"significant functional impairment (ODI >= {defaults.significant_odi})")
    if not correlating_result(facts, None):
        unmet.append("MRI correlating with the clinical level")
    if not facts.get("candidacy", {}).get("medically_fit"):
        unmet.append("medically fit for surgery")
    if not any(_has_finding(facts, f) for f in SURGICAL_FINDINGS):
        unmet.append("instability, spondylolisthesis or severe stenosis on imaging")
    # From 1.1.0 (RF-CARE) a referral under a red flag is an emergency one: the elective
    # criteria are not shown.
    emergency = red_flag_active(state) and verdict.pathway.corrects("RF-CARE")
    if unmet and not emergency:
        verdict.note("SURG-CRIT", "criteria not yet documented: " + ", ".join(unmet))
    if _has_finding(facts, "herniation") and conservative_care_failed(facts):
        verdict.note("SURG-6W-POSIMG", "positive imaging after failed conservative care")


def check_procedure(
    state: EpisodeState, data: dict[str, Any], now: datetime, defaults: PathwayDefaults
) -> Verdict:
    verdict = Verdict(of_episode(state))
    kind = data["kind"]
    if kind == "esi":
        _check_injection(verdict, state, data, now, defaults, ordering=False)
        if not verdict.refusals and not data.get("target_confirmed"):
            verdict.refuse(
                "ESI-CONFIRM", "the record must state the target was confirmed on imaging"
            )
        if (
            data.get("approach")
            and data["approach"] != "transforaminal"
            and state.phase == "subacute"
            and (
                not of_episode(state).corrects("ESI-TF-LEVEL")
                or (data.get("level") is not None and below_l3(data["level"]))
            )
        ):
            verdict.note(
                "ESI-TF", "transforaminal approach is suggested below L3 in the subacute phase"
            )
    elif kind in ("discectomy", "fusion"):
        if not correlating_result(state.facts, data.get("level")):
            verdict.refuse(
                "IMG-CORRELATE", "surgery needs imaging that correlates with the clinical level"
            )
        if kind == "fusion" and not data.get("fusion_indication"):
            verdict.refuse(
                "SURG-NO-FUSION",
                "fusion is not for a routine disc herniation: document chronic axial pain, "
                "manual labour, severe degeneration or instability",
            )
        if kind == "discectomy":
            verdict.note("SURG-DISC", "discectomy without fusion for an isolated herniation")
        verdict.note("REHAB-MDT", "rehabilitate with physiotherapy and the MDT during relief")
    elif kind == "prf":
        verdict.note(
            "PRF-DRG", "pulsed radiofrequency at the DRG for refractory chronic radiculopathy"
        )
    elif kind == "scs":
        verdict.note("SCS-POSTOP", "spinal cord stimulation when symptoms persist after surgery")
    return verdict


def check_treatment(
    state: EpisodeState, data: dict[str, Any], defaults: PathwayDefaults
) -> Verdict:
    verdict = Verdict(of_episode(state))
    kind = data["kind"]
    earlier = {t["kind"] for t in state.facts.get("treatments", [])}
    if kind == "opioid":
        if not earlier & set(FIRST_LINE_ANALGESICS):
            verdict.note("MED-OPIOID", "opioid as first-line treatment: NSAID first")
        if data.get("start") and data.get("end"):
            days = (date.fromisoformat(data["end"]) - date.fromisoformat(data["start"])).days
            if days > defaults.opioid_limit_days:
                verdict.note(
                    "MED-OPIOID", f"{days} days exceeds the {defaults.opioid_limit_days}-day limit"
                )
        if not any(n.rule == "MED-OPIOID" for n in verdict.notes):
            verdict.note("MED-OPIOID", "short-term only: review booked at the limit")
    elif kind in NEURO_DRUGS:
        verdict.note("MED-NEURO", "conflicting evidence for neuropathic agents")
    elif kind == "oral_steroid":
        contraindications = data.get("contraindications") or []
        if contraindications and verdict.pathway.corrects("MED-STEROID-WARN"):
            verdict.warn(
                "MED-STEROID",
                "oral corticosteroid despite a documented contraindication: "
                + ", ".join(contraindications),
            )
        else:
            verdict.note("MED-STEROID", "short course only if not contraindicated")
    elif kind == "physio_home":
        verdict.note("CONS-ADEQUATE", "home exercises do not count as formal physiotherapy")
    elif kind == "pelvic_floor_physio":
        verdict.note("SP-PELVIC", "pelvic floor physiotherapy")
    elif kind in ("cbt", "mdt_rehab"):
        verdict.note("REHAB-MDT", "multidisciplinary rehabilitation with CBT")
    return verdict
