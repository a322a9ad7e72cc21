"""Tests of engine.events: validation of events and episode openings."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from engine.decision import decide_event, decide_opening
from engine.errors import InvalidEvent
from engine.events import (
    EVENT_TYPES,
    AssessmentData,
    BiopsychosocialData,
    CandidacyData,
    ClinicalEvent,
    CloseData,
    HandoverData,
    MotorSides,
    OrderData,
    ProcedureData,
    RedFlagClearedData,
    RedFlagConfirmedData,
    RedFlagData,
    ReferralSentData,
    ResolveData,
    ResultData,
    SharedDecisionData,
    SpecialistSeenData,
    TreatmentData,
    check_event_time,
    event_payload_json,
    parse_event,
    parse_opening,
)
from engine.settings import PathwayDefaults
from pathways.lumbosacral_radiculopathy.code import CODE

DEFAULTS = PathwayDefaults()
VALID: dict[str, dict[str, Any]] = {
    "assessment": {
        "vas_leg": 7,
        "odi": 44,
        "vas_back": 3,
        "motor": {"L3": 5, "L4": 5, "L5": {"left": 3, "right": 5}, "S1": {"left": 4}},
        "reflexes": {"knee": "normal", "ankle": "reduced"},
        "sensory_deficit": True,
        "slr_positive": True,
        "dermatomes": ["L5", "S1"],
        "leg_pain_side": "left",
        "radiates_below_knee": True,
        "neuropathic_quality": False,
        "neurogenic_claudication": False,
        "ces_screen": {"urinary_retention": False, "saddle_anaesthesia": False},
        "severe_disabling": False,
        "fever": False,
        "night_pain": False,
        "constant_pain_unrelieved": False,
        "weight_loss": False,
        "return_to_work": "modified duties",
        "walking_tolerance_m": 500,
    },
    "red_flag": {"kind": "ces", "note": "new urinary retention"},
    "red_flag_cleared": {"kind": "malignancy", "note": "bloods normal"},
    "red_flag_confirmed": {"kind": "infection"},
    "candidacy": {"surgical_candidate": True, "injection_candidate": False, "medically_fit": True},
    "shared_decision": {"preference": "injection", "note": "discussed risks"},
    "treatment": {
        "kind": "physio_formal",
        "start": "2026-01-10",
        "end": "2026-02-20",
        "adherence": "good",
        "contraindications": ["peptic ulcer"],
    },
    "order": {
        "kind": "esi",
        "image_guided": True,
        "candidate_for": ["injection"],
        "ordered_by": "specialist",
        "override_reason": "severe pain despite six weeks of physio",
        "level": "L5-S1",
    },
    "result": {
        "modality": "mri",
        "levels": ["L4-L5", "L5-S1", "S1"],
        "findings": ["herniation", "nerve_root_compression"],
        "correlates_clinically": True,
    },
    "biopsychosocial_assessment": {"note": "STarT Back medium risk"},
    "referral_sent": {"service": "spinal surgery", "urgency": "urgent", "note": "faxed"},
    "specialist_seen": {
        "service": "spinal surgery",
        "urgency": "routine",
        "outcome": "shared_care",
    },
    "procedure": {
        "kind": "esi",
        "approach": "transforaminal",
        "level": "L5",
        "target_confirmed": True,
        "image_guided": True,
    },
    "resolve": {"reason": "pain free, back at work"},
    "close": {"reason": "transferred"},
    "handover": {"from": "alex", "to": "sam", "note": "alex on leave"},
}

MODELS: dict[str, type[Any]] = {
    "assessment": AssessmentData,
    "red_flag": RedFlagData,
    "red_flag_cleared": RedFlagClearedData,
    "red_flag_confirmed": RedFlagConfirmedData,
    "candidacy": CandidacyData,
    "shared_decision": SharedDecisionData,
    "treatment": TreatmentData,
    "order": OrderData,
    "result": ResultData,
    "biopsychosocial_assessment": BiopsychosocialData,
    "referral_sent": ReferralSentData,
    "specialist_seen": SpecialistSeenData,
    "procedure": ProcedureData,
    "resolve": ResolveData,
    "close": CloseData,
    "handover": HandoverData,
}


def invalid(payload: dict[str, Any]) -> InvalidEvent:
    """Parse a payload that must be refused; return the error."""
    with pytest.raises(InvalidEvent) as info:
        parse_event(payload)
    return info.value


def assessment(**data: Any) -> dict[str, Any]:
    return {"type": "assessment", "data": {"vas_leg": 5, "odi": 30, **data}, "actor": "dr a"}


# ------------------------------------------------------------------------------------------
# event types


def test_event_types_cover_the_contract() -> None:
    assert set(EVENT_TYPES) == set(VALID)
    assert dict(EVENT_TYPES) == MODELS


@pytest.mark.parametrize("event_type", sorted(VALID))
def test_every_event_type_accepts_a_valid_example(event_type: str) -> None:
    event = parse_event({"type": event_type, "data": VALID[event_type], "actor": "dr a"})
    assert isinstance(event, ClinicalEvent)
    assert event.type == event_type
    assert isinstance(event.data, MODELS[event_type])
    assert event.actor == "dr a"
    assert event.occurred_at is None


@pytest.mark.parametrize("event_type", sorted(VALID))
def test_canonical_json_round_trips(event_type: str) -> None:
    event = parse_event({"type": event_type, "data": VALID[event_type]})
    payload = event_payload_json(event)
    assert payload["type"] == event_type
    assert payload["actor"] == "unknown"
    assert payload["occurred_at"] is None
    again = parse_event(payload)
    assert again.data == event.data
    assert event_payload_json(again) == payload


def test_assessment_values_are_kept() -> None:
    data = parse_event({"type": "assessment", "data": VALID["assessment"]}).data
    assert isinstance(data, AssessmentData)
    assert data.vas_leg == 7
    assert data.odi == 44
    assert data.motor is not None
    assert data.motor["L3"] == 5
    assert data.motor["L5"] == MotorSides(left=3, right=5)
    assert data.motor["S1"] == MotorSides(left=4, right=None)
    assert data.reflexes is not None
    assert data.reflexes.ankle == "reduced"
    assert data.ces_screen is not None
    assert data.ces_screen.incontinence is False
    assert data.dermatomes == ["L5", "S1"]


def test_minimal_assessment_leaves_optional_findings_unknown() -> None:
    data = parse_event({"type": "assessment", "data": {"vas_leg": 0, "odi": 100}}).data
    assert isinstance(data, AssessmentData)
    assert (data.vas_leg, data.odi) == (0, 100)
    assert data.slr_positive is None
    assert data.motor is None
    assert data.ces_screen is None


def test_treatment_dates_are_parsed() -> None:
    data = parse_event({"type": "treatment", "data": VALID["treatment"]}).data
    assert isinstance(data, TreatmentData)
    assert data.start == date(2026, 1, 10)
    assert data.end == date(2026, 2, 20)


def test_treatment_accepts_date_objects_from_yaml() -> None:
    event = parse_event({"type": "treatment", "data": {"kind": "nsaid", "start": date(2026, 1, 2)}})
    assert isinstance(event.data, TreatmentData)
    assert event.data.start == date(2026, 1, 2)
    assert event_payload_json(event)["data"] == {
        "kind": "nsaid",
        "start": "2026-01-02",
        "contraindications": [],
    }


def test_close_accepts_free_text_reason() -> None:
    data = parse_event({"type": "close", "data": {"reason": "moved abroad"}}).data
    assert isinstance(data, CloseData)
    assert data.reason == "moved abroad"


def test_missing_data_is_an_empty_object() -> None:
    event = parse_event({"type": "resolve"})
    assert isinstance(event.data, ResolveData)
    assert event.data.reason is None
    assert invalid({"type": "red_flag"}).field == "data.kind"


# ------------------------------------------------------------------------------------------
# refusals of event data


def test_vas_out_of_range_names_field_and_value() -> None:
    error = invalid(assessment(vas_leg=14))
    assert error.field == "data.vas_leg"
    assert "14" in error.reason
    assert error.reason == "must be between 0 and 10, got 14"
    assert str(error) == "data.vas_leg: must be between 0 and 10, got 14"


@pytest.mark.parametrize(
    ("data", "field", "fragment"),
    [
        ({"vas_leg": -1}, "data.vas_leg", "got -1"),
        ({"odi": 101}, "data.odi", "between 0 and 100, got 101"),
        ({"vas_back": 11}, "data.vas_back", "got 11"),
        ({"vas_leg": 7.5}, "data.vas_leg", "whole number, got 7.5"),
        ({"vas_leg": "7"}, "data.vas_leg", "whole number, got '7'"),
        ({"vas_leg": True}, "data.vas_leg", "whole number, got true"),
        ({"walking_tolerance_m": -5}, "data.walking_tolerance_m", "0 or more, got -5"),
        ({"slr_positive": "yes"}, "data.slr_positive", "true or false, got 'yes'"),
        ({"leg_pain_side": "up"}, "data.leg_pain_side", "'left', 'right' or 'both', got 'up'"),
        ({"reflexes": {"knee": "brisk"}}, "data.reflexes.knee", "got 'brisk'"),
        ({"reflexes": "normal"}, "data.reflexes", "must be an object"),
        ({"dermatomes": ["L5", "L6"]}, "data.dermatomes.1", "dermatome such as 'L5'"),
        ({"dermatomes": "L5"}, "data.dermatomes", "must be a list"),
        ({"ces_screen": {"incontinence": 1}}, "data.ces_screen.incontinence", "true or false"),
        ({"motor": {"L6": 4}}, "data.motor.L6", "'L3', 'L4', 'L5' or 'S1', got 'L6'"),
        ({"motor": {"L5": "4"}}, "data.motor.L5", "MRC grade 0-5"),
        ({"motor": {"L5": 6}}, "data.motor.L5", "between 0 and 5, got 6"),
        ({"motor": {"L5": {}}}, "data.motor.L5", "left or right"),
        ({"motor": {"S1": {"right": -1}}}, "data.motor.S1.right", "got -1"),
    ],
)
def test_assessment_refusals(data: dict[str, Any], field: str, fragment: str) -> None:
    error = invalid(assessment(**data))
    assert error.field == field
    assert fragment in error.reason


def test_motor_per_side_grade_above_five_is_refused() -> None:
    error = invalid(assessment(motor={"L5": {"left": 6, "right": 5}}))
    assert error.field == "data.motor.L5.left"
    assert error.reason == "must be between 0 and 5, got 6"


def test_required_assessment_fields() -> None:
    error = invalid({"type": "assessment", "data": {"odi": 20}})
    assert (error.field, error.reason) == ("data.vas_leg", "is required")
    error = invalid({"type": "assessment", "data": {"vas_leg": 2}})
    assert (error.field, error.reason) == ("data.odi", "is required")


def test_unknown_data_field_is_named() -> None:
    error = invalid(assessment(vas_legg=3))
    assert error.field == "data.vas_legg"
    assert "unknown field 'vas_legg'" in error.reason
    assert "vas_leg," in error.reason


def test_unknown_nested_field_is_named() -> None:
    error = invalid(assessment(motor={"L5": {"lft": 3}}))
    assert error.field == "data.motor.L5.lft"
    assert error.reason == "unknown field 'lft'; expected one of: left, right"
    error = invalid(assessment(ces_screen={"retention": True}))
    assert error.field == "data.ces_screen.retention"


def test_unknown_event_type() -> None:
    error = invalid({"type": "x-ray", "data": {}})
    assert error.field == "type"
    assert error.reason.startswith("unknown event type 'x-ray'; expected one of: assessment,")
    assert "close" in error.reason


def test_missing_event_type() -> None:
    error = invalid({"data": {}})
    assert error.field == "type"
    assert error.reason.startswith("is required")


def test_unknown_top_level_key_is_named() -> None:
    error = invalid({"type": "resolve", "occured_at": "2026-01-01T00:00:00Z"})
    assert error.field == "occured_at"


def test_data_must_be_an_object() -> None:
    error = invalid({"type": "resolve", "data": ["done"]})
    assert (error.field, error.reason) == ("data", "must be an object, got a list")


def test_esi_order_without_image_guided_is_refused() -> None:
    error = invalid({"type": "order", "data": {"kind": "esi"}})
    assert error.field == "data.image_guided"
    assert "esi" in error.reason
    assert "got" not in error.reason


def test_esi_order_blind_is_valid_input() -> None:
    data = parse_event({"type": "order", "data": {"kind": "esi", "image_guided": False}}).data
    assert isinstance(data, OrderData)
    assert data.image_guided is False


def test_non_esi_order_needs_no_image_guided() -> None:
    data = parse_event({"type": "order", "data": {"kind": "mri"}}).data
    assert isinstance(data, OrderData)
    assert data.image_guided is None
    assert data.candidate_for == []


@pytest.mark.parametrize("event_type", ["order", "procedure"])
@pytest.mark.parametrize("reason", ["", "   ", "urgent", "  too short  "])
def test_override_reason_must_be_documented(event_type: str, reason: str) -> None:
    # Checked in the step, first of all on 1.0.0 (from 1.1.0 after a refusal no override
    # lifts: tests/pathways/test_version_1_1_0.py).
    kind = "mri" if event_type == "order" else "fusion"
    event = parse_event({"type": event_type, "data": {"kind": kind, "override_reason": reason}})
    opening = parse_opening({"patient": {"ref": "P-1"}, "onset": "2026-01-05",
                             "pathway_version": "1.0.0"})  # fmt: skip
    now = datetime(2026, 1, 19, 10, tzinfo=UTC)
    opened = decide_opening(CODE, opening, "E-1", now, DEFAULTS, None).state
    with pytest.raises(InvalidEvent) as info:
        decide_event(CODE, opened, event, now, DEFAULTS)
    assert info.value.field == "data.override_reason"
    assert "at least 10 characters" in info.value.reason


def test_override_reason_is_stripped() -> None:
    data = parse_event(
        {"type": "order", "data": {"kind": "mri", "override_reason": "  foot drop suspected  "}}
    ).data
    assert isinstance(data, OrderData)
    assert data.override_reason == "foot drop suspected"


def test_treatment_end_before_start() -> None:
    error = invalid(
        {"type": "treatment", "data": {"kind": "nsaid", "start": "2026-02-01", "end": "2026-01-31"}}
    )
    assert error.field == "data.end"
    assert "2026-02-01" in error.reason
    assert "2026-01-31" in error.reason


@pytest.mark.parametrize("value", ["01/02/2026", "2026-02-01T10:00:00Z", 20260201])
def test_treatment_date_format(value: Any) -> None:
    error = invalid({"type": "treatment", "data": {"kind": "nsaid", "start": value}})
    assert error.field == "data.start"
    assert "YYYY-MM-DD" in error.reason


@pytest.mark.parametrize(
    ("event_type", "data", "field"),
    [
        ("treatment", {"kind": "yoga"}, "data.kind"),
        ("treatment", {"kind": "nsaid", "adherence": "excellent"}, "data.adherence"),
        ("order", {"kind": "pet"}, "data.kind"),
        ("order", {"kind": "mri", "candidate_for": ["physio"]}, "data.candidate_for.0"),
        ("order", {"kind": "mri", "ordered_by": "nurse"}, "data.ordered_by"),
        ("order", {"kind": "mri", "level": "L5/S1"}, "data.level"),
        ("result", {"levels": ["L5-S1"]}, "data.modality"),
        ("result", {"modality": "pet"}, "data.modality"),
        ("result", {"modality": "mri", "levels": ["disc 5"]}, "data.levels.0"),
        ("result", {"modality": "mri", "findings": ["tumour"]}, "data.findings.0"),
        ("red_flag", {"kind": "headache"}, "data.kind"),
        ("red_flag_cleared", {"kind": "ces", "severity": 3}, "data.severity"),
        ("shared_decision", {"preference": "acupuncture"}, "data.preference"),
        ("referral_sent", {"urgency": "asap"}, "data.urgency"),
        ("specialist_seen", {"outcome": "discharge"}, "data.outcome"),
        ("procedure", {"kind": "laminectomy"}, "data.kind"),
        ("procedure", {"kind": "esi", "approach": "caudal"}, "data.approach"),
        (
            "procedure",
            {"kind": "fusion", "fusion_indication": "herniation"},
            "data.fusion_indication",
        ),
        ("close", {"reason": ""}, "data.reason"),
        ("biopsychosocial_assessment", {"note": 3}, "data.note"),
    ],
)
def test_enumerations_and_types_are_closed(
    event_type: str, data: dict[str, Any], field: str
) -> None:
    assert invalid({"type": event_type, "data": data}).field == field


def test_candidacy_needs_at_least_one_field() -> None:
    error = invalid({"type": "candidacy", "data": {}})
    assert error.field == "data"
    assert "surgical_candidate" in error.reason
    data = parse_event({"type": "candidacy", "data": {"medically_fit": False}}).data
    assert isinstance(data, CandidacyData)
    assert data.medically_fit is False
    assert data.surgical_candidate is None


# ------------------------------------------------------------------------------------------
# actor and occurred_at


def test_actor_defaults_to_unknown_and_is_stripped() -> None:
    assert parse_event({"type": "resolve"}).actor == "unknown"
    assert parse_event({"type": "resolve", "actor": "  dr b "}).actor == "dr b"


@pytest.mark.parametrize("actor", ["", "  ", 7])
def test_actor_must_be_a_non_empty_string(actor: Any) -> None:
    assert invalid({"type": "resolve", "actor": actor}).field == "actor"


def test_occurred_at_is_converted_to_utc() -> None:
    event = parse_event({"type": "resolve", "occurred_at": "2026-03-01T09:30:00+01:00"})
    assert event.occurred_at == datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
    assert event.occurred_at is not None
    assert event.occurred_at.utcoffset() == timedelta(0)
    assert event_payload_json(event)["occurred_at"] == "2026-03-01T08:30:00+00:00"


def test_occurred_at_accepts_z_and_aware_datetimes() -> None:
    event = parse_event({"type": "resolve", "occurred_at": "2026-03-01T09:30:00Z"})
    assert event.occurred_at == datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    aware = datetime(2026, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=-5)))
    event = parse_event({"type": "resolve", "occurred_at": aware})
    assert event.occurred_at == datetime(2026, 3, 1, 14, 30, tzinfo=UTC)


@pytest.mark.parametrize("value", ["2026-03-01T09:30:00", datetime(2026, 3, 1, 9, 30)])
def test_naive_occurred_at_is_refused(value: Any) -> None:
    error = invalid({"type": "resolve", "occurred_at": value})
    assert error.field == "occurred_at"
    assert error.reason.startswith("needs a UTC offset")
    assert str(error).startswith("occurred_at: needs a UTC offset")


@pytest.mark.parametrize("value", ["yesterday", 1767225600, "2026-13-01T00:00:00Z"])
def test_garbled_occurred_at_is_refused(value: Any) -> None:
    error = invalid({"type": "resolve", "occurred_at": value})
    assert error.field == "occurred_at"
    assert "ISO 8601" in error.reason


LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_check_event_time_accepts_onset_day_and_now() -> None:
    check_event_time(datetime(2026, 1, 5, 0, 0, tzinfo=UTC), date(2026, 1, 5), NOW, LONDON)
    check_event_time(NOW, date(2026, 1, 5), NOW, LONDON)


def test_check_event_time_before_onset() -> None:
    with pytest.raises(InvalidEvent) as info:
        check_event_time(datetime(2026, 1, 4, 23, 59, tzinfo=UTC), date(2026, 1, 5), NOW, LONDON)
    assert info.value.field == "occurred_at"
    assert "before symptom onset" in info.value.reason
    assert "2026-01-05" in info.value.reason
    assert "2026-01-04" in info.value.reason


def test_check_event_time_uses_the_clinic_date() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    # 20:00 UTC on the 4th is already the 5th in Tokyo: allowed there, not in London.
    instant = datetime(2026, 1, 4, 20, 0, tzinfo=UTC)
    check_event_time(instant, date(2026, 1, 5), NOW, tokyo)
    with pytest.raises(InvalidEvent):
        check_event_time(instant, date(2026, 1, 5), NOW, LONDON)


def test_check_event_time_in_the_future() -> None:
    later = NOW + timedelta(seconds=1)
    with pytest.raises(InvalidEvent) as info:
        check_event_time(later, date(2026, 1, 5), NOW, LONDON)
    assert info.value.field == "occurred_at"
    assert "future" in info.value.reason
    assert later.isoformat() in info.value.reason
    assert NOW.isoformat() in info.value.reason


# ------------------------------------------------------------------------------------------
# opening an episode


def opening(**extra: Any) -> dict[str, Any]:
    return {"patient": {"ref": "p-1"}, "onset": "2026-01-05", **extra}


def test_opening_full() -> None:
    result = parse_opening(
        {
            "patient": {
                "ref": "sim-1",
                "age": 52,
                "sex": "female",
                "prior_lbp": True,
                "cancer_history": True,
            },
            "onset": "2026-01-05",
            "enrolled_at": "2026-01-19T09:00:00+01:00",
            "coordinator": "sam",
            "clinic_timezone": "Europe/Paris",
        }
    )
    assert result.patient.ref == "sim-1"
    assert result.patient.age == 52
    assert result.patient.sex == "female"
    assert result.patient.prior_lbp is True
    assert result.patient.cancer_history is True
    assert result.patient.workers_comp is False
    assert result.onset == date(2026, 1, 5)
    assert result.enrolled_at == datetime(2026, 1, 19, 8, 0, tzinfo=UTC)
    assert result.coordinator == "sam"
    assert result.clinic_timezone == "Europe/Paris"


def test_opening_defaults() -> None:
    result = parse_opening(opening())
    assert result.enrolled_at is None
    assert result.coordinator is None
    assert result.clinic_timezone == "UTC"
    assert result.patient.age is None


def test_opening_accepts_yaml_values() -> None:
    result = parse_opening(
        opening(onset=date(2026, 1, 5), enrolled_at=datetime(2026, 1, 5, 8, tzinfo=UTC))
    )
    assert result.onset == date(2026, 1, 5)
    assert result.enrolled_at == datetime(2026, 1, 5, 8, tzinfo=UTC)


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "../etc/passwd"])
def test_opening_bad_timezone(zone: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_opening(opening(clinic_timezone=zone))
    assert info.value.field == "clinic_timezone"
    assert "IANA" in info.value.reason


def test_opening_enrolled_before_onset() -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_opening(opening(enrolled_at="2026-01-04T10:00:00Z"))
    assert info.value.field == "enrolled_at"
    assert "2026-01-05" in info.value.reason


def test_opening_enrolment_compares_clinic_dates() -> None:
    # 23:30 UTC on the 4th is 00:30 on the 5th in Berlin.
    result = parse_opening(
        opening(enrolled_at="2026-01-04T23:30:00Z", clinic_timezone="Europe/Berlin")
    )
    assert result.enrolled_at == datetime(2026, 1, 4, 23, 30, tzinfo=UTC)
    with pytest.raises(InvalidEvent) as info:
        parse_opening(opening(enrolled_at="2026-01-04T23:30:00Z"))
    assert info.value.field == "enrolled_at"


def test_opening_naive_enrolled_at() -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_opening(opening(enrolled_at="2026-01-06T10:00:00"))
    assert info.value.field == "enrolled_at"
    assert info.value.reason.startswith("needs a UTC offset")


@pytest.mark.parametrize(
    ("payload", "field", "fragment"),
    [
        ({"patient": {}, "onset": "2026-01-05"}, "patient.ref", "is required"),
        ({"patient": {"ref": "  "}, "onset": "2026-01-05"}, "patient.ref", "blank"),
        ({"onset": "2026-01-05"}, "patient", "is required"),
        ({"patient": {"ref": "p"}}, "onset", "is required"),
        ({"patient": {"ref": "p"}, "onset": "05/01/2026"}, "onset", "YYYY-MM-DD"),
        ({"patient": {"ref": "p", "age": 121}, "onset": "2026-01-05"}, "patient.age", "got 121"),
        ({"patient": {"ref": "p", "sex": "f"}, "onset": "2026-01-05"}, "patient.sex", "got 'f'"),
        (
            {"patient": {"ref": "p", "smoker": True}, "onset": "2026-01-05"},
            "patient.smoker",
            "unknown",
        ),
        (
            {"patient": {"ref": "p", "osteoporosis": "no"}, "onset": "2026-01-05"},
            "patient.osteoporosis",
            "true or false",
        ),
        ({"patient": {"ref": "p"}, "onset": "2026-01-05", "steps": []}, "steps", "unknown"),
        (
            {"patient": {"ref": "p"}, "onset": "2026-01-05", "coordinator": ""},
            "coordinator",
            "blank",
        ),
    ],
)
def test_opening_refusals(payload: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_opening(payload)
    assert info.value.field == field
    assert fragment in info.value.reason
