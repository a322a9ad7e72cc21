"""Version 1.1.0's corrections, each against 1.0.0's behaviour, on both databases.

1.1.0 is a draft until every correction of PATHWAY.md "Version 1.1.0" is in it: these
tests open episodes on it as a review installation does (``CAREPATH_PATHWAY_DRAFTS=1``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

import pathways
from cli.main import app
from engine.episode import iso
from engine.errors import InvalidEvent
from engine.events import parse_opening
from engine.settings import DRAFTS_ENV, PathwayDefaults
from models.history import timeline_page
from models.repository import EpisodeRepository
from models.tables import AuditEntry

NOW = datetime(2026, 1, 19, 10, tzinfo=UTC)
OPENING = {"patient": {"ref": "P-11", "age": 50}, "onset": "2026-01-05"}
VISIT = {"type": "assessment", "data": {"vas_leg": 5, "odi": 30}}


@pytest.fixture(autouse=True)
def drafts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DRAFTS_ENV, "1")


def opened(engine: Engine, version: str) -> tuple[EpisodeRepository, str]:
    repo = EpisodeRepository(engine, PathwayDefaults())
    view = repo.open(parse_opening({**OPENING, "pathway_version": version}), NOW)
    assert view["pathway"]["version"] == version
    return repo, str(view["id"])


def audit_rows(engine: Engine, episode: str) -> list[Any]:
    with engine.connect() as connection:
        query = select(AuditEntry).where(AuditEntry.episode_id == episode).order_by(AuditEntry.seq)
        return list(connection.execute(query).mappings())


def test_ep_final_an_event_on_a_closed_episode_is_a_refusal_on_record(db_engine: Engine) -> None:
    repo, episode = opened(db_engine, "1.1.0")
    repo.apply(episode, {"type": "close", "data": {"reason": "moved away"}}, NOW)
    step, view = repo.apply(episode, VISIT, NOW + timedelta(days=1))
    assert not step.accepted
    assert step.rules == ["EP-FINAL"]
    assert not step.override_possible
    assert "the episode is closed" in (step.reason or "")
    assert view["status"] == "closed"
    last = audit_rows(db_engine, episode)[-1]
    assert (last["type"], last["accepted"], last["rules"]) == ("assessment", False, ["EP-FINAL"])
    assert last["pathway_version"] == "1.1.0"


def test_ep_final_on_1_0_0_stays_invalid_input_and_writes_nothing(db_engine: Engine) -> None:
    repo, episode = opened(db_engine, "1.0.0")
    repo.apply(episode, {"type": "resolve", "data": {"reason": "recovered"}}, NOW)
    rows = len(audit_rows(db_engine, episode))
    with pytest.raises(InvalidEvent, match="the episode is resolved"):
        repo.apply(episode, VISIT, NOW + timedelta(days=1))
    assert len(audit_rows(db_engine, episode)) == rows


def test_ep_final_an_active_episode_on_1_1_0_still_takes_events(db_engine: Engine) -> None:
    repo, episode = opened(db_engine, "1.1.0")
    step, _ = repo.apply(episode, VISIT, NOW + timedelta(days=1))
    assert step.accepted
    assert "EP-FINAL" not in step.rules


def test_ep_final_a_simulation_shows_the_refused_step(tmp_path: Path) -> None:
    scenario = tmp_path / "closed.yaml"
    scenario.write_text(
        'patient: {ref: "sim-1"}\nonset: 2026-01-05\npathway_version: "1.1.0"\nsteps:\n'
        '  - {at: "day 10", event: {type: close, data: {reason: "moved away"}}}\n'
        '  - {at: "day 12", event: {type: assessment, data: {vas_leg: 4, odi: 30}}}\n'
    )
    ran = CliRunner().invoke(app, ["simulate", str(scenario)])
    assert ran.exit_code == 0, ran.output
    last = json.loads(ran.stdout)["timeline"][-1]
    assert (last["type"], last["accepted"], last["rules"]) == ("assessment", False, ["EP-FINAL"])


def opened_at(
    engine: Engine, version: str, onset_days_ago: int, **patient: Any
) -> tuple[EpisodeRepository, str]:
    """An episode on ``version``, its onset ``onset_days_ago`` days before NOW, enrolled at
    NOW, the patient with the flags in ``patient``."""
    onset = (NOW - timedelta(days=onset_days_ago)).date().isoformat()
    repo = EpisodeRepository(engine, PathwayDefaults())
    opening = {"patient": {"ref": "P-12", "age": 50, **patient}, "onset": onset,
               "enrolled_at": NOW.isoformat(), "pathway_version": version}  # fmt: skip
    return repo, str(repo.open(parse_opening(opening), NOW)["id"])


def visit(vas_leg: int) -> dict[str, Any]:
    return {"type": "assessment", "data": {"vas_leg": vas_leg, "odi": 40}}


def mri(levels: list[str], findings: list[str]) -> dict[str, Any]:
    data = {"modality": "mri", "levels": levels, "findings": findings,
            "correlates_clinically": True}  # fmt: skip
    return {"type": "result", "data": data}


OVERRIDE = "documented failure of six weeks of supervised physiotherapy"
INJECTION = {"type": "order", "data": {"kind": "esi", "image_guided": True,
                                       "override_reason": OVERRIDE}}  # fmt: skip


@pytest.mark.parametrize(
    ("version", "level", "suggested"),
    [("1.0.0", "L2-L3", True), ("1.1.0", "L2-L3", False),
     ("1.0.0", "L5-S1", True), ("1.1.0", "L5-S1", True)],
)  # fmt: skip
def test_esi_tf_level_the_transforaminal_suggestion_only_below_l3(
    db_engine: Engine, version: str, level: str, suggested: bool
) -> None:
    repo, episode = opened_at(db_engine, version, onset_days_ago=50)  # subacute
    repo.apply(episode, mri([level], ["herniation"]), NOW)
    step, _ = repo.apply(episode, INJECTION, NOW + timedelta(hours=1))
    assert step.accepted, step.reason
    assert ("ESI-TF" in step.rules) is suggested


@pytest.mark.parametrize(
    ("version", "later_vas", "indicated"),
    [("1.0.0", 6, True), ("1.1.0", 6, False), ("1.0.0", 8, True), ("1.1.0", 8, True)],
)
def test_img_3m_mri_on_file_no_imaging_indication_once_an_mri_is_on_file_unless_worsening(
    db_engine: Engine, version: str, later_vas: int, indicated: bool
) -> None:
    repo, episode = opened_at(db_engine, version, onset_days_ago=100)  # past three months
    repo.apply(episode, visit(6), NOW)
    repo.apply(episode, mri(["L5-S1"], ["herniation"]), NOW + timedelta(hours=1))
    step, _ = repo.apply(episode, visit(later_vas), NOW + timedelta(days=7))  # 8: worsening
    assert ("IMG-3M" in step.rules) is indicated


def test_img_3m_mri_on_file_without_an_mri_the_indication_stays_on_1_1_0(
    db_engine: Engine,
) -> None:
    repo, episode = opened_at(db_engine, "1.1.0", onset_days_ago=100)
    repo.apply(episode, visit(6), NOW)
    step, _ = repo.apply(episode, visit(6), NOW + timedelta(days=7))
    assert "IMG-3M" in step.rules


@pytest.mark.parametrize(
    ("version", "after_vas", "shown"),
    [("1.0.0", 3, {"REHAB-MDT"}), ("1.1.0", 3, {"REHAB-MDT"}),
     ("1.0.0", 8, {"REHAB-MDT", "REF-3M"}), ("1.1.0", 8, {"REF-3M"})],
)  # fmt: skip
def test_rehab_mdt_relief_rehabilitation_only_while_the_intervention_gives_relief(
    db_engine: Engine, version: str, after_vas: int, shown: set[str]
) -> None:
    repo, episode = opened_at(db_engine, version, onset_days_ago=50)
    repo.apply(episode, visit(8), NOW)
    repo.apply(episode, mri(["L5-S1"], ["herniation"]), NOW + timedelta(hours=1))
    injected = {"type": "procedure", "data": {"kind": "esi", "approach": "transforaminal",
                "level": "L5-S1", "target_confirmed": True, "image_guided": True,
                "override_reason": OVERRIDE}}  # fmt: skip
    step, view = repo.apply(episode, injected, NOW + timedelta(days=1))
    assert step.accepted, step.reason
    assert view["management"] == "rehabilitation"
    _, view = repo.apply(episode, visit(after_vas), NOW + timedelta(days=15))
    recommended = {r["rule"] for r in view["recommendations"]}
    assert recommended & {"REHAB-MDT", "REF-3M"} == shown


@pytest.mark.parametrize(
    ("version", "contraindications", "warned"),
    [("1.0.0", ["poorly controlled diabetes"], False),
     ("1.1.0", ["poorly controlled diabetes"], True), ("1.1.0", [], False)],
)  # fmt: skip
def test_med_steroid_warn_a_documented_contraindication_is_a_warning_on_record(
    db_engine: Engine, version: str, contraindications: list[str], warned: bool
) -> None:
    repo, episode = opened_at(db_engine, version, onset_days_ago=10)
    course = {"type": "treatment", "data": {"kind": "oral_steroid",
              "contraindications": contraindications}}  # fmt: skip
    step, _ = repo.apply(episode, course, NOW)
    assert step.accepted
    assert "MED-STEROID" in step.rules
    reason = step.reason or ""
    assert ("warning (MED-STEROID)" in reason) is warned
    assert ("poorly controlled diabetes" in reason) is warned
    assert audit_rows(db_engine, episode)[-1]["reason"] == step.reason


@pytest.mark.parametrize(("version", "kept"), [("1.0.0", False), ("1.1.0", True)])
def test_later_care_plans_keep_the_acute_plans_lasting_advice(
    db_engine: Engine, version: str, kept: bool
) -> None:
    repo, episode = opened_at(db_engine, version, onset_days_ago=50)
    view = repo.view(episode)
    [subacute] = [r for r in view["recommendations"] if r["rule"] == "PH-SUBACUTE"]
    assert ("Keep moving; no bed rest" in subacute["text"]) is kept
    assert "Neurodynamic" in subacute["text"]


def recorded(repo: EpisodeRepository, episode: str, event: dict[str, Any], at: datetime) -> Any:
    step, _ = repo.apply(episode, event, at)
    return step


@pytest.mark.parametrize(
    ("version", "days_after_trauma", "override", "accepted"),
    [("1.0.0", 10, False, True), ("1.1.0", 10, False, False), ("1.1.0", 10, True, True),
     ("1.1.0", 32, False, True)],
)  # fmt: skip
def test_img_plexus_trauma_plexus_mri_waits_a_month_after_trauma(
    db_engine: Engine, version: str, days_after_trauma: int, override: bool, accepted: bool
) -> None:
    repo, episode = opened_at(db_engine, version, onset_days_ago=50)
    repo.apply(episode, {"type": "red_flag", "data": {"kind": "trauma", "note": "fall"}}, NOW)
    order: dict[str, Any] = {"kind": "mri_plexus"}
    if override:
        order["override_reason"] = "neurology asks for it now: suspected root avulsion"
    at = NOW + timedelta(days=days_after_trauma)
    step = recorded(repo, episode, {"type": "order", "data": order}, at)
    assert step.accepted is accepted, step.reason
    if not accepted:
        assert step.rules[0] == "IMG-PLEXUS-TRAUMA"
        assert step.override_possible
        assert step.eligible_from.isoformat() == "2026-02-19"  # 2026-01-19 + 1 month
        assert "eligible from 2026-02-19" in step.reason


SURGERY_EVENT = {"type": "procedure", "data": {"kind": "discectomy", "level": "L5-S1"}}


@pytest.mark.parametrize(
    ("version", "red_flag", "refused"),
    [("1.0.0", False, []), ("1.1.0", False, ["SURG-ELECTIVE", "REF-BPS"]),
     ("1.1.0", True, [])],
)  # fmt: skip
def test_surg_elective_elective_surgery_needs_failed_care_and_a_biopsychosocial_assessment(
    db_engine: Engine, version: str, red_flag: bool, refused: list[str]
) -> None:
    repo, episode = opened_at(db_engine, version, onset_days_ago=50)
    repo.apply(episode, mri(["L5-S1"], ["herniation"]), NOW)
    if red_flag:
        flag = {"type": "red_flag", "data": {"kind": "progressive_deficit", "note": "foot drop"}}
        repo.apply(episode, flag, NOW + timedelta(hours=1))
    step = recorded(repo, episode, SURGERY_EVENT, NOW + timedelta(days=1))
    assert step.accepted is not refused, step.reason
    if refused:
        assert step.rules[: len(refused)] == refused
        assert step.override_possible


def injected(repo: EpisodeRepository, episode: str, at: datetime) -> None:
    esi = {"type": "procedure", "data": {"kind": "esi", "approach": "transforaminal",
           "level": "L5-S1", "target_confirmed": True, "image_guided": True,
           "override_reason": OVERRIDE}}  # fmt: skip
    assert recorded(repo, episode, esi, at).accepted


PRF = {"type": "procedure", "data": {"kind": "prf", "level": "L5-S1"}}


@pytest.mark.parametrize(("version", "accepted"), [("1.0.0", True), ("1.1.0", False)])
def test_prf_drg_pulsed_radiofrequency_is_refused_before_the_chronic_phase(
    db_engine: Engine, version: str, accepted: bool
) -> None:
    repo, episode = opened_at(db_engine, version, onset_days_ago=50)  # subacute
    step = recorded(repo, episode, PRF, NOW)
    assert step.accepted is accepted
    if not accepted:
        assert step.rules == ["PRF-DRG"]
        assert "the chronic phase" in step.reason


@pytest.mark.parametrize("version", ["1.0.0", "1.1.0"])
def test_prf_drg_chronic_pain_unchanged_after_an_injection_brings_it_up_and_allows_it(
    db_engine: Engine, version: str
) -> None:
    repo, episode = opened_at(db_engine, version, onset_days_ago=100)  # chronic
    repo.apply(episode, visit(6), NOW)
    repo.apply(episode, mri(["L5-S1"], ["herniation"]), NOW + timedelta(hours=1))
    injected(repo, episode, NOW + timedelta(days=1))
    _, view = repo.apply(episode, visit(6), NOW + timedelta(days=20))  # unchanged
    shown = {r["rule"] for r in view["recommendations"]}
    assert ("PRF-DRG" in shown) is (version == "1.1.0")
    assert recorded(repo, episode, PRF, NOW + timedelta(days=21)).accepted


SCS = {"type": "procedure", "data": {"kind": "scs"}}


@pytest.mark.parametrize(("version", "accepted"), [("1.0.0", True), ("1.1.0", False)])
def test_scs_postop_spinal_cord_stimulation_without_surgery_is_refused(
    db_engine: Engine, version: str, accepted: bool
) -> None:
    repo, episode = opened_at(db_engine, version, onset_days_ago=100)
    step = recorded(repo, episode, SCS, NOW)
    assert step.accepted is accepted
    if not accepted:
        assert step.rules == ["SCS-POSTOP"]


@pytest.mark.parametrize(
    ("version", "after_vas", "weeks", "shown"),
    [("1.1.0", 8, 5, True), ("1.1.0", 3, 5, False), ("1.1.0", 8, 2, False),
     ("1.0.0", 8, 5, False)],
)  # fmt: skip
def test_scs_postop_no_improvement_weeks_after_surgery_brings_it_up(
    db_engine: Engine, version: str, after_vas: int, weeks: int, shown: bool
) -> None:
    repo, episode = opened_at(db_engine, version, onset_days_ago=100)
    repo.apply(episode, visit(8), NOW)
    repo.apply(episode, mri(["L5-S1"], ["herniation"]), NOW + timedelta(hours=1))
    repo.apply(episode, {"type": "biopsychosocial_assessment", "data": {}}, NOW)
    surgery = {**SURGERY_EVENT, "data": {**SURGERY_EVENT["data"], "override_reason": OVERRIDE}}
    assert recorded(repo, episode, surgery, NOW + timedelta(days=1)).accepted
    at = NOW + timedelta(days=1, weeks=weeks)
    _, view = repo.apply(episode, visit(after_vas), at)
    assert ("SCS-POSTOP" in {r["rule"] for r in view["recommendations"]}) is shown
    assert recorded(repo, episode, SCS, at + timedelta(hours=1)).accepted


@pytest.mark.parametrize("version", ["1.0.0", "1.1.0"])
def test_surg_6w_posimg_shown_a_surgical_evaluation_is_recommended_naming_the_predictors(
    db_engine: Engine, version: str
) -> None:
    repo, episode = opened_at(db_engine, version, onset_days_ago=50)
    positive = {"type": "assessment", "data": {"vas_leg": 6, "odi": 40, "slr_positive": True}}
    repo.apply(episode, positive, NOW)
    repo.apply(episode, mri(["L5-S1"], ["herniation"]), NOW + timedelta(hours=1))
    _, view = repo.apply(episode, visit(6), NOW + timedelta(days=7))  # stable: failed care
    shown = {r["rule"]: r["text"] for r in view["recommendations"]}
    if version == "1.0.0":
        assert "SURG-6W-POSIMG" not in shown
    else:
        assert "Present here: a positive straight-leg raise." in shown["SURG-6W-POSIMG"]


@pytest.mark.parametrize(
    ("version", "onset_days_ago", "vas", "persisting"),
    [("1.0.0", 100, 6, False), ("1.1.0", 100, 6, True), ("1.1.0", 100, 3, False),
     ("1.1.0", 20, 6, False)],
)  # fmt: skip
def test_fu_response_no_baseline_a_late_first_visit_with_pain_is_persisting(
    db_engine: Engine, version: str, onset_days_ago: int, vas: int, persisting: bool
) -> None:
    repo, episode = opened_at(db_engine, version, onset_days_ago)
    step, view = repo.apply(episode, visit(vas), NOW + timedelta(hours=1))
    assert ("FU-RESPONSE" in step.rules) is persisting
    assert ("REF-3M" in step.rules) is persisting
    if persisting:  # three months from onset have passed: overdue at once
        [referral] = [d for d in view["due"] if d["key"] == "referral"]
        assert referral["rule"] == "REF-3M"
        assert referral["due_at"] == "2026-01-11T00:00:00Z"  # onset 2025-10-11 + 3 months
        assert referral["status"] in ("overdue", "escalated")
        assert view["referral"] == "overdue"
    else:
        assert view["referral"] == "not_indicated"


@pytest.mark.parametrize(
    ("version", "patient", "signs", "flag"),
    [("1.0.0", {"cancer_history": True}, {"night_pain": True}, None),
     ("1.1.0", {"cancer_history": True}, {"night_pain": True}, "malignancy"),
     ("1.1.0", {"cancer_history": True}, {"fever": True}, None),
     ("1.1.0", {"immunosuppression": True}, {"fever": True}, "infection"),
     ("1.0.0", {"immunosuppression": True}, {"fever": True}, None)],
)  # fmt: skip
def test_rf_markers_serious_combinations_raise_a_red_flag(
    db_engine: Engine, version: str, patient: dict[str, bool], signs: dict[str, bool],
    flag: str | None,
) -> None:  # fmt: skip
    repo, episode = opened_at(db_engine, version, 20, **patient)
    assessed = {"type": "assessment", "data": {"vas_leg": 5, "odi": 30, **signs}}
    step, view = repo.apply(episode, assessed, NOW + timedelta(hours=1))
    assert "RF-MARKERS" in step.rules
    if flag is None:
        assert view["red_flag"] is None
    else:
        assert view["red_flag"]["rule"] == "RF-SERIOUS"
        assert view["red_flag"]["kind"] == flag


@pytest.mark.parametrize("version", ["1.0.0", "1.1.0"])
def test_rf_markers_serious_an_early_imaging_refusal_names_the_markers(
    db_engine: Engine, version: str
) -> None:
    repo, episode = opened_at(db_engine, version, 20, osteoporosis=True)
    repo.apply(episode, visit(5), NOW + timedelta(hours=1))
    step = recorded(repo, episode, {"type": "order", "data": {"kind": "mri"}}, NOW)
    assert not step.accepted
    assert step.rules[0] == "IMG-NO-EARLY"
    if version == "1.0.0":
        assert "no red flag and no severe" in step.reason
    else:
        assert "RF-MARKERS present: osteoporosis" in step.reason
        assert "suspected malignancy or infection flag would lift this" in step.reason


@pytest.mark.parametrize(
    ("version", "dermatomes", "side", "plexus"),
    [("1.0.0", ["L5", "S1"], "left", True), ("1.1.0", ["L5", "S1"], "left", False),
     ("1.1.0", ["L4", "L5", "S1"], "left", True), ("1.1.0", ["L2", "L5", "S1"], "left", False),
     ("1.1.0", ["L4", "L5", "S1"], "both", False), ("1.0.0", ["L4", "L5", "S1"], "both", True)],
)  # fmt: skip
def test_sp_plexus_adjacent_plexopathy_needs_three_adjacent_dermatomes_on_one_side(
    db_engine: Engine, version: str, dermatomes: list[str], side: str, plexus: bool
) -> None:
    repo, episode = opened_at(db_engine, version, 20)
    data = {"vas_leg": 5, "odi": 30, "dermatomes": dermatomes, "leg_pain_side": side}
    step = recorded(repo, episode, {"type": "assessment", "data": data}, NOW)
    assert ("SP-PLEXUS" in step.rules) is plexus


@pytest.mark.parametrize(
    ("version", "rule", "due_days_after_visit"),
    [("1.0.0", "FU-3M", 90), ("1.1.0", "FU-ACTIVE", 28)],
)
def test_fu_active_12w_a_visit_before_week_12_books_its_review_one_interval_later(
    db_engine: Engine, version: str, rule: str, due_days_after_visit: int
) -> None:
    repo, episode = opened_at(db_engine, version, 60)  # enrolled on day 60
    at = NOW + timedelta(days=15)  # day 75: completes the first follow-up
    _, view = repo.apply(episode, visit(5), at)
    [review] = [d for d in view["due"] if d["key"].startswith("periodic_review")]
    assert review["rule"] == rule
    due = datetime.fromisoformat(review["due_at"]).date()
    assert abs((due - at.date()).days - due_days_after_visit) <= 2  # a 3-month interval


@pytest.mark.parametrize(("version", "completed"), [("1.0.0", True), ("1.1.0", False)])
def test_events_at_occurred_a_visit_before_the_review_window_does_not_complete_it(
    db_engine: Engine, version: str, completed: bool
) -> None:
    repo, episode = opened_at(db_engine, version, 30)  # the six-week review opens on day 42
    documented = NOW + timedelta(days=14)  # day 44: the review's window is open
    happened = (NOW + timedelta(days=10)).isoformat()  # day 40: it was not yet
    late = {**visit(5), "occurred_at": happened}
    repo.fire_due(documented)  # the worker has opened the review
    _, view = repo.apply(episode, late, documented)
    [review] = [d for d in view["due"] if d["key"] == "six_week_review"]
    assert (review["status"] == "done") is completed
    on_time = {**visit(5), "occurred_at": (NOW + timedelta(days=13)).isoformat()}  # day 43
    _, view = repo.apply(episode, on_time, documented + timedelta(hours=1))
    [review] = [d for d in view["due"] if d["key"] == "six_week_review"]
    assert review["status"] == "done"


RETENTION = {"urinary_retention": True}
CES_VISIT = {"type": "assessment", "data": {"vas_leg": 8, "odi": 60, "ces_screen": RETENTION}}
REFERRED = {"type": "referral_sent", "data": {"service": "spinal surgery", "urgency": "emergency"}}


@pytest.mark.parametrize(("version", "kept"), [("1.0.0", False), ("1.1.0", True)])
def test_rf_care_a_referral_made_under_a_red_flag_is_kept_when_it_clears(
    db_engine: Engine, version: str, kept: bool
) -> None:
    repo, episode = opened_at(db_engine, version, 20)
    _, view = repo.apply(episode, CES_VISIT, NOW)
    assert view["red_flag"]["rule"] == "RF-CES"
    _, view = repo.apply(episode, REFERRED, NOW + timedelta(hours=1))
    assert (view["referral"] == "referred") is kept
    assert view["red_flag"] is not None  # the flag still pre-empts routine care
    cleared = {"type": "red_flag_cleared", "data": {"kind": "ces", "note": "MRI clear"}}
    _, view = repo.apply(episode, cleared, NOW + timedelta(hours=5))
    assert view["red_flag"] is None
    assert view["referral"] == ("referred" if kept else "not_indicated")


@pytest.mark.parametrize(("version", "elective_shown"), [("1.0.0", True), ("1.1.0", False)])
def test_rf_care_an_emergency_surgical_referral_shows_no_elective_criteria(
    db_engine: Engine, version: str, elective_shown: bool
) -> None:
    repo, episode = opened_at(db_engine, version, 20)
    repo.apply(episode, CES_VISIT, NOW)
    order = {"type": "order", "data": {"kind": "surgical_referral"}}
    step = recorded(repo, episode, order, NOW + timedelta(hours=1))
    assert step.accepted, step.reason  # no biopsychosocial assessment needed either way
    assert ("SURG-CRIT" in step.rules) is elective_shown


@pytest.mark.parametrize(("version", "ends"), [("1.0.0", False), ("1.1.0", True)])
def test_rf_care_a_flag_from_findings_ends_after_its_operation_and_a_settled_visit(
    db_engine: Engine, version: str, ends: bool
) -> None:
    repo, episode = opened_at(db_engine, version, 20)
    repo.apply(episode, CES_VISIT, NOW)
    repo.apply(episode, mri(["L4-L5"], ["herniation"]), NOW + timedelta(hours=2))
    decompression = {"type": "procedure", "data": {"kind": "discectomy", "level": "L4-L5"}}
    assert recorded(repo, episode, decompression, NOW + timedelta(hours=4)).accepted
    step, view = repo.apply(episode, visit(4), NOW + timedelta(days=3))  # no CES signs now
    assert (view["red_flag"] is None) is ends
    [work_up] = [d for d in view["due"] if d["key"] == "ces_emergency"]
    assert (work_up["status"] == "done") is ends
    if ends:
        assert "RF-CES" in step.rules
        assert view["management"] == "rehabilitation"  # where the operation left care


@pytest.mark.parametrize(
    ("version", "kind", "named"),
    [("1.0.0", "xray", "XRAY not indicated"), ("1.1.0", "xray", "X-ray not indicated"),
     ("1.1.0", "xray_flexion_extension", "flexion-extension X-ray not indicated"),
     ("1.1.0", "mri_plexus", "plexus MRI not indicated")],
)  # fmt: skip
def test_order_names_a_refusal_names_the_order_in_words(
    db_engine: Engine, version: str, kind: str, named: str
) -> None:
    repo, episode = opened_at(db_engine, version, 20)
    step = recorded(repo, episode, {"type": "order", "data": {"kind": kind}}, NOW)
    assert not step.accepted
    assert step.reason.startswith(named), step.reason


@pytest.mark.parametrize("version", ["1.0.0", "1.1.0"])
def test_citations_a_recommendation_cites_as_its_version_does(
    db_engine: Engine, version: str
) -> None:
    repo, episode = opened_at(db_engine, version, onset_days_ago=50)
    view = repo.view(episode)
    definition = pathways.definition(pathways.LUMBOSACRAL_RADICULOPATHY, version)
    assert view["recommendations"]
    for shown in view["recommendations"]:
        citations = [str(c) for c in definition.rule(shown["rule"]).citations]
        assert shown["citations"] == citations
    [subacute] = [r for r in view["recommendations"] if r["rule"] == "PH-SUBACUTE"]
    first = subacute["citations"][0]
    if version == "1.1.0":  # the document's title, the statement, the references it gives
        assert first.startswith("S0, Treatment of Lumbosacral Radiculopathy: Between 6 and 12 ")
        assert first.endswith("[refs 4, 5, 6: not listed in the document]")
    else:
        assert first == "S0 (000_b802428f9beaff9b.txt): S0 reference 4 (not listed in the document)"


BLIND = {"type": "order", "data": {"kind": "esi", "image_guided": False}}


@pytest.mark.parametrize("reason", ["x", "a documented reason for a blind injection"])
def test_nonoverridable_first_a_blind_injection_is_refused_whatever_the_reason(
    db_engine: Engine, reason: str
) -> None:
    repo, episode = opened_at(db_engine, "1.1.0", onset_days_ago=60)
    sent = {**BLIND, "data": {**BLIND["data"], "override_reason": reason}}
    step = recorded(repo, episode, sent, NOW)
    assert (step.accepted, step.rules) == (False, ["ESI-GUIDED"])
    [row] = [r for r in audit_rows(db_engine, episode) if r["type"] == "order"]
    assert (row["accepted"], row["rules"]) == (False, ["ESI-GUIDED"])


def test_nonoverridable_first_on_1_0_0_a_short_reason_is_invalid_input_first(
    db_engine: Engine,
) -> None:
    repo, episode = opened_at(db_engine, "1.0.0", onset_days_ago=60)
    sent = {**BLIND, "data": {**BLIND["data"], "override_reason": "x"}}
    with pytest.raises(InvalidEvent) as info:
        repo.apply(episode, sent, NOW)
    assert info.value.field == "data.override_reason"
    assert [r["type"] for r in audit_rows(db_engine, episode)] == ["open"]  # nothing written


@pytest.mark.parametrize(
    "order", [{"kind": "mri"}, {"kind": "esi", "image_guided": True}]
)  # fmt: skip
def test_nonoverridable_first_where_an_override_could_count_the_reason_is_checked(
    db_engine: Engine, order: dict[str, Any]
) -> None:
    # An early MRI (IMG-NO-EARLY, overridable) and an injection nothing refuses after the
    # conservative window: a token reason is invalid input, and nothing is written.
    repo, episode = opened_at(db_engine, "1.1.0", onset_days_ago=10 if order["kind"] == "mri"
                              else 60)  # fmt: skip
    sent = {"type": "order", "data": {**order, "override_reason": "urgent"}}
    with pytest.raises(InvalidEvent) as info:
        repo.apply(episode, sent, NOW)
    assert info.value.field == "data.override_reason"
    assert "at least 10 characters" in info.value.reason
    assert [r["type"] for r in audit_rows(db_engine, episode)] == ["open"]


@pytest.mark.parametrize("version", ["1.0.0", "1.1.0"])
def test_events_at_occurred_the_timeline_is_in_the_order_things_happened_from_1_1_0(
    db_engine: Engine, version: str
) -> None:
    repo, episode = opened_at(db_engine, version, onset_days_ago=10)
    for hours in range(1, 6):
        repo.apply(episode, visit(6), NOW + timedelta(days=1, hours=hours))
    late = {**visit(5), "occurred_at": (NOW + timedelta(hours=2)).isoformat()}
    repo.apply(episode, late, NOW + timedelta(days=2))  # documented a day late
    view = repo.view_with_timeline(episode, steps=3)
    steps, cursor = list(view["timeline"]), view["timeline_next_cursor"]
    while cursor is not None:
        page, cursor = timeline_page(db_engine, episode, cursor, limit=2)
        steps += page
    assert len(steps) == 7  # the opening and six visits, each once
    happened = [(s["at"], s["seq"]) for s in steps]
    recorded = sorted(happened, key=lambda step: step[1], reverse=True)
    if version == "1.1.0":
        assert happened == sorted(happened, reverse=True)
        assert steps[-2]["at"] == iso(NOW + timedelta(hours=2))  # the late visit, after opening
    else:
        assert happened == recorded
        assert steps[0]["at"] == iso(NOW + timedelta(hours=2))  # the last recorded comes first
    first, _ = timeline_page(db_engine, episode, limit=3)
    assert first == view["timeline"]


@pytest.mark.parametrize(("version", "late_first"), [("1.0.0", False), ("1.1.0", True)])
def test_events_at_occurred_a_simulation_lists_a_late_visit_when_it_happened(
    tmp_path: Path, version: str, late_first: bool
) -> None:
    scenario = tmp_path / "late.yaml"
    scenario.write_text(
        f'patient: {{ref: "sim-2"}}\nonset: 2026-01-05\npathway_version: "{version}"\nsteps:\n'
        '  - {at: "day 10", event: {type: treatment, data: {kind: nsaid, start: 2026-01-15}}}\n'
        '  - {at: "day 12", event: {type: assessment, data: {vas_leg: 4, odi: 30},'
        ' occurred_at: "2026-01-14T09:00:00Z"}}\n'
    )
    ran = CliRunner().invoke(app, ["simulate", str(scenario)])
    assert ran.exit_code == 0, ran.output
    types = [entry["type"] for entry in json.loads(ran.stdout)["timeline"]]
    assert (types.index("assessment") < types.index("treatment")) is late_first
