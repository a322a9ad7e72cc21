"""Validation of everything that enters the engine: clinical events and episode openings.

Each event type of the contract (CONTRACT.md section 2) has one pydantic model for its ``data``.
The models are strict: an unknown field is an error naming it, numbers must be whole numbers in
range, yes/no fields must be JSON booleans and enumerations are closed. Any problem is raised
as :class:`~engine.errors.InvalidEvent` whose ``field`` is the dotted path of the first bad
field (``data.vas_leg``, ``data.motor.L5.left``, ``patient.age``, ``occurred_at``) and whose
``reason`` says what is wrong in words, quoting the value received.

This module is pure: it reads no clock and touches no database. Whether an event time lies
between onset and now is checked by :func:`check_event_time`, and whether an opening's dates
lie no later than a day after now by :func:`check_opening_time`, given the current instant.

Every input is held to what both databases can store, so SQLite keeps exactly what
PostgreSQL would: no text anywhere in a payload may hold a NUL character or a lone
surrogate (which no UTF-8 column can store), identifiers are no longer than their columns
(``patient.ref`` and ``coordinator`` 128 characters, ``clinic_timezone`` 64, ``actor`` 128),
and dates and instants lie between :data:`EARLIEST_DATE` and :data:`LATEST_DATE`, far
enough inside the calendar's range that no date arithmetic of the engine can overflow.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Strict,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from engine.errors import InvalidEvent

_M = TypeVar("_M", bound=BaseModel)

__all__ = [
    "EVENT_TYPES",
    "AssessmentData",
    "BiopsychosocialData",
    "CandidacyData",
    "CesScreen",
    "ClinicalEvent",
    "CloseData",
    "HandoverData",
    "MotorSides",
    "Opening",
    "OrderData",
    "PatientIn",
    "ProcedureData",
    "RedFlagClearedData",
    "RedFlagConfirmedData",
    "RedFlagData",
    "ReferralSentData",
    "Reflexes",
    "ResolveData",
    "ResultData",
    "SharedDecisionData",
    "SpecialistSeenData",
    "TreatmentData",
    "check_event_time",
    "check_opening_time",
    "event_payload_json",
    "parse_instant",
    "parse_event",
    "parse_opening",
]

# --------------------------------------------------------------------------------------------
# Enumerations (closed vocabularies of the contract)

RedFlagKind = Literal["ces", "progressive_deficit", "malignancy", "infection", "fracture", "trauma"]
Preference = Literal["conservative", "injection", "surgery"]
TreatmentKind = Literal[
    "physio_formal",
    "physio_home",
    "pelvic_floor_physio",
    "nsaid",
    "acetaminophen",
    "muscle_relaxant",
    "opioid",
    "gabapentin",
    "pregabalin",
    "tca",
    "oral_steroid",
    "cbt",
    "mdt_rehab",
]
Adherence = Literal["good", "partial", "poor"]
OrderKind = Literal[
    "mri",
    "ct",
    "xray",
    "xray_flexion_extension",
    "mri_plexus",
    "emg_ncs",
    "esi",
    "specialist_referral",
    "surgical_referral",
]
CandidateFor = Literal["surgery", "injection"]
OrderedBy = Literal["primary_care", "specialist"]
Modality = Literal["mri", "ct", "xray", "xray_flexion_extension", "mri_plexus", "emg_ncs"]
Finding = Literal[
    "herniation",
    "stenosis",
    "severe_stenosis",
    "instability",
    "spondylolisthesis",
    "chronic_reinnervation",
    "active_denervation",
    "nerve_root_compression",
    "degeneration",
    "normal",
]
Urgency = Literal["routine", "urgent", "emergency"]
SpecialistOutcome = Literal["surgery", "injection", "conservative", "shared_care"]
ProcedureKind = Literal["esi", "discectomy", "fusion", "prf", "scs"]
Approach = Literal["transforaminal", "interlaminar", "selective_nerve_root"]
FusionIndication = Literal[
    "chronic_axial_pain", "manual_labourer", "severe_degeneration", "instability"
]
ReflexGrade = Literal["normal", "reduced", "absent"]
Side = Literal["left", "right", "both"]
MotorRoot = Literal["L3", "L4", "L5", "S1"]
Sex = Literal["female", "male", "other", "unknown"]

#: Close reasons the pathway knows; any other non-empty text is accepted as well.
CLOSE_REASONS: tuple[str, ...] = ("withdrawn", "transferred", "lost_to_follow_up", "other")

DERMATOME_PATTERN = r"^(L[1-5]|S[1-5])$"
LEVEL_PATTERN = r"^(L[1-5]|S[1-5])(-(L[1-5]|S[1-5]))?$"
_PATTERN_NAMES = {
    DERMATOME_PATTERN: "a dermatome such as 'L5' or 'S1'",
    LEVEL_PATTERN: "a spinal level such as 'L4-L5', 'L5-S1' or 'L5'",
}
_MIN_OVERRIDE_REASON = 10
# The calendar an input may name (our default bounds): the engine adds at most a few years
# to a date, so nothing it computes from these can leave the calendar's range.
EARLIEST_DATE = date(1900, 1, 1)
LATEST_DATE = date(2999, 12, 31)
# How far after now an opening may name onset or enrolment (clocks differ a little; a
# date in the future is a typing error).
OPENING_LEAD = timedelta(days=1)
# The widths of the columns an identifier is stored in (models/tables.py).
REF_LENGTH = 128
NAME_LENGTH = 128
ZONE_LENGTH = 64
VERSION_LENGTH = 16  # the episode's pathway_version column

# --------------------------------------------------------------------------------------------
# Field types


def _between(low: int, high: int | None) -> Callable[[int], int]:
    """An after-validator refusing integers outside ``[low, high]`` (no upper bound if None)."""

    def check(value: int) -> int:
        if value < low or (high is not None and value > high):
            if high is None:
                raise PydanticCustomError(
                    "out_of_range",
                    "must be {low} or more, got {value}",
                    {"low": low, "value": value},
                )
            raise PydanticCustomError(
                "out_of_range",
                "must be between {low} and {high}, got {value}",
                {"low": low, "high": high, "value": value},
            )
        return value

    return check


def _parse_date(value: Any) -> Any:
    """Accept a ``date`` or a ``YYYY-MM-DD`` string between :data:`EARLIEST_DATE` and
    :data:`LATEST_DATE`; refuse datetimes, numbers and the rest."""
    if isinstance(value, datetime):
        raise PydanticCustomError("date_type", "must be a date (YYYY-MM-DD), not a date-time")
    day: date | None = value if isinstance(value, date) else None
    if isinstance(value, str):
        with suppress(ValueError):
            day = date.fromisoformat(value.strip())
    if day is None:
        raise PydanticCustomError("date_type", "must be a date (YYYY-MM-DD)")
    if not EARLIEST_DATE <= day <= LATEST_DATE:
        raise PydanticCustomError(
            "date_range",
            "must be between {low} and {high}, got {value}",
            {"low": EARLIEST_DATE.isoformat(), "high": LATEST_DATE.isoformat(),
             "value": day.isoformat()},
        )  # fmt: skip
    return day


def _at_most(length: int) -> Callable[[str], str]:
    """An after-validator refusing text longer than the column that stores it."""

    def check(value: str) -> str:
        if len(value) > length:
            raise PydanticCustomError(
                "too_long",
                "must be at most {length} characters, got {actual}",
                {"length": length, "actual": len(value)},
            )
        return value

    return check


def _non_blank(value: str) -> str:
    stripped = value.strip()
    if not stripped:
        raise PydanticCustomError("blank", "must not be blank")
    return stripped


def check_override_reason(reason: str | None) -> None:
    """An override reason's own check: a documented reason, not a token word. Made in the
    step, not at parsing: from 1.1.0 (NONOVERRIDABLE-FIRST) a refusal no override lifts is
    reported first, whatever reason was sent (the lumbosacral pathway's
    ``handlers.settle``).

    Raises:
        InvalidEvent: naming ``data.override_reason``.
    """
    if reason is not None and len(reason) < _MIN_OVERRIDE_REASON:
        raise InvalidEvent(
            "data.override_reason",
            f"must be a documented reason of at least {_MIN_OVERRIDE_REASON} characters",
        )


def _motor_kind(value: Any) -> str | None:
    """Discriminate a motor entry: a single MRC grade or a per-side object."""
    if isinstance(value, Mapping | MotorSides):
        return "sides"
    if isinstance(value, int) and not isinstance(value, bool):
        return "grade"
    return None


def _bounded(low: int, high: int | None) -> tuple[Any, ...]:
    """Validator and JSON-schema metadata for an integer in ``[low, high]``."""
    schema: dict[str, Any] = {"minimum": low}
    if high is not None:
        schema["maximum"] = high
    return AfterValidator(_between(low, high)), Field(json_schema_extra=schema)


_MRC = _bounded(0, 5)
_VAS = _bounded(0, 10)
_ODI = _bounded(0, 100)
_AGE = _bounded(0, 120)
_METRES = _bounded(0, None)
Mrc = Annotated[int, Strict(), _MRC[0], _MRC[1]]
Vas = Annotated[int, Strict(), _VAS[0], _VAS[1]]
Odi = Annotated[int, Strict(), _ODI[0], _ODI[1]]
Age = Annotated[int, Strict(), _AGE[0], _AGE[1]]
Metres = Annotated[int, Strict(), _METRES[0], _METRES[1]]
Flag = Annotated[bool, Strict()]
Text = Annotated[str, Strict()]
NonBlank = Annotated[str, Strict(), AfterValidator(_non_blank)]
PatientRef = Annotated[NonBlank, AfterValidator(_at_most(REF_LENGTH)),
                       Field(json_schema_extra={"maxLength": REF_LENGTH})]  # fmt: skip
Name = Annotated[NonBlank, AfterValidator(_at_most(NAME_LENGTH)),
                 Field(json_schema_extra={"maxLength": NAME_LENGTH})]  # fmt: skip
# Stripped here, checked in the step (check_override_reason).
OverrideReason = Annotated[str, Strict(), AfterValidator(str.strip)]
Day = Annotated[date, BeforeValidator(_parse_date)]
Dermatome = Annotated[str, Strict(), Field(pattern=DERMATOME_PATTERN)]
Level = Annotated[str, Strict(), Field(pattern=LEVEL_PATTERN)]


class _Data(BaseModel):
    """Common configuration: unknown fields are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class MotorSides(_Data):
    """MRC grades (0-5) of one root's muscle on each side; at least one side is given."""

    left: Mrc | None = None
    right: Mrc | None = None

    @model_validator(mode="after")
    def _one_side(self) -> MotorSides:
        if self.left is None and self.right is None:
            raise PydanticCustomError("motor_sides", "needs a grade for left or right (or both)")
        return self


MotorValue = Annotated[
    Annotated[int, Strict(), _MRC[0], _MRC[1], Tag("grade")] | Annotated[MotorSides, Tag("sides")],
    Discriminator(
        _motor_kind,
        custom_error_type="motor_value",
        custom_error_message="must be an MRC grade 0-5 or an object {left, right}",
    ),
]
_UNION_TAGS = frozenset({"grade", "sides"})


class Reflexes(_Data):
    """Deep tendon reflexes: knee (L3-L4) and ankle (S1)."""

    knee: ReflexGrade | None = None
    ankle: ReflexGrade | None = None


class CesScreen(_Data):
    """Cauda equina screen; an item not mentioned is taken as absent."""

    urinary_retention: Flag = False
    incontinence: Flag = False
    bowel_dysfunction: Flag = False
    saddle_anaesthesia: Flag = False
    bilateral_weakness: Flag = False


# --------------------------------------------------------------------------------------------
# Event data models


class AssessmentData(_Data):
    """A follow-up visit's findings (FU-CONTENT); only ``vas_leg`` and ``odi`` are required.

    ``motor`` maps a root (L3, L4, L5, S1) to one MRC grade 0-5 or to ``{left, right}`` grades.
    Optional yes/no findings left out are unknown (``None``), not negative.
    """

    vas_leg: Vas
    odi: Odi
    vas_back: Vas | None = None
    motor: dict[MotorRoot, MotorValue] | None = None
    reflexes: Reflexes | None = None
    sensory_deficit: Flag | None = None
    slr_positive: Flag | None = None
    dermatomes: list[Dermatome] | None = None
    leg_pain_side: Side | None = None
    radiates_below_knee: Flag | None = None
    neuropathic_quality: Flag | None = None
    neurogenic_claudication: Flag | None = None
    ces_screen: CesScreen | None = None
    severe_disabling: Flag | None = None
    fever: Flag | None = None
    night_pain: Flag | None = None
    constant_pain_unrelieved: Flag | None = None
    weight_loss: Flag | None = None
    return_to_work: Text | None = None
    walking_tolerance_m: Metres | None = None


class RedFlagData(_Data):
    """A red flag suspected by a clinician."""

    kind: RedFlagKind
    note: Text | None = None


class RedFlagClearedData(_Data):
    """A suspected red flag ruled out."""

    kind: RedFlagKind
    note: Text | None = None


class RedFlagConfirmedData(_Data):
    """A suspected red flag confirmed."""

    kind: RedFlagKind
    note: Text | None = None


class CandidacyData(_Data):
    """Candidacy for surgery or injection and fitness for it; at least one field is given."""

    surgical_candidate: Flag | None = None
    injection_candidate: Flag | None = None
    medically_fit: Flag | None = None

    @model_validator(mode="after")
    def _something_given(self) -> CandidacyData:
        if (
            self.surgical_candidate is None
            and self.injection_candidate is None
            and self.medically_fit is None
        ):
            raise PydanticCustomError(
                "candidacy_empty",
                "needs at least one of surgical_candidate, injection_candidate, medically_fit",
            )
        return self


class SharedDecisionData(_Data):
    """The patient's preference after shared decision-making."""

    preference: Preference
    note: Text | None = None


class TreatmentData(_Data):
    """A conservative treatment given; ``end`` may not be before ``start``."""

    kind: TreatmentKind
    start: Day | None = None
    end: Day | None = None
    adherence: Adherence | None = None
    contraindications: list[Text] = Field(default_factory=list)

    @field_validator("end")
    @classmethod
    def _end_after_start(cls, end: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("start")
        if end is not None and isinstance(start, date) and end < start:
            raise PydanticCustomError(
                "end_before_start",
                "must not be before start ({start}), got {end}",
                {"start": start.isoformat(), "end": end.isoformat()},
            )
        return end


class OrderData(_Data):
    """An order: imaging, electrodiagnostics, an injection or a referral.

    ``image_guided`` is required for an epidural steroid injection (``kind`` ``esi``).
    ``override_reason`` documents why a guideline refusal is overridden.
    """

    kind: OrderKind
    image_guided: Flag | None = Field(default=None, validate_default=True)
    candidate_for: list[CandidateFor] = Field(default_factory=list)
    ordered_by: OrderedBy | None = None
    override_reason: OverrideReason | None = None
    level: Level | None = None

    @field_validator("image_guided")
    @classmethod
    def _esi_needs_guidance(cls, image_guided: bool | None, info: ValidationInfo) -> bool | None:
        if image_guided is None and info.data.get("kind") == "esi":
            raise PydanticCustomError(
                "esi_image_guided",
                "is required for an epidural steroid injection (kind 'esi'): true or false",
            )
        return image_guided


class ResultData(_Data):
    """The result of an imaging or electrodiagnostic study."""

    modality: Modality
    levels: list[Level] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    correlates_clinically: Flag | None = None


class BiopsychosocialData(_Data):
    """A documented biopsychosocial assessment (REF-BPS)."""

    note: Text | None = None


class ReferralSentData(_Data):
    """A referral sent to a service."""

    service: NonBlank | None = None
    urgency: Urgency | None = None
    note: Text | None = None


class SpecialistSeenData(_Data):
    """The patient seen by a specialist, with the plan agreed."""

    service: NonBlank | None = None
    urgency: Urgency | None = None
    note: Text | None = None
    outcome: SpecialistOutcome | None = None


class ProcedureData(_Data):
    """A procedure performed (injection, surgery, neuromodulation)."""

    kind: ProcedureKind
    approach: Approach | None = None
    level: Level | None = None
    target_confirmed: Flag | None = None
    image_guided: Flag | None = None
    fusion_indication: FusionIndication | None = None
    override_reason: OverrideReason | None = None


class ResolveData(_Data):
    """The episode resolved; ``reason`` is free text."""

    reason: NonBlank | None = None


class HandoverData(_Data):
    """The episode handed from one coordinator to another; left out or None, ``from`` or
    ``to`` is nobody (the care team's unassigned queue). ``from`` is who the caller saw in
    charge: a handover from someone no longer in charge is refused, so two people claiming
    the same patient cannot both have it."""

    from_: Name | None = Field(default=None, alias="from")
    to: Name | None = None
    note: Text | None = None


class CloseData(_Data):
    """The episode closed without resolution.

    ``reason`` is usually one of ``withdrawn``, ``transferred``, ``lost_to_follow_up`` or
    ``other`` (see :data:`CLOSE_REASONS`), but any non-empty text is accepted.
    """

    reason: NonBlank | None = None


EVENT_TYPES: Mapping[str, type[BaseModel]] = MappingProxyType(
    {
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
)

# --------------------------------------------------------------------------------------------
# Turning pydantic errors into InvalidEvent


def _show(value: Any) -> str:
    """A short rendering of a received value for an error message."""
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    text = repr(value.isoformat()) if isinstance(value, date | datetime) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated`` and ``Optional`` from a type; pick the model member of a union."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
            continue
        if origin is Union or type(annotation).__name__ == "UnionType":
            members = [_unwrap(a) for a in get_args(annotation) if a is not type(None)]
            models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
            if models:
                return models[0]
            return members[0] if len(members) == 1 else annotation
        return annotation


def _model_at(root: type[BaseModel], loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model class found by following ``loc`` from ``root``, if the path leads to one."""
    current: Any = root
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        elif get_origin(current) is list:
            current = get_args(current)[0]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


_TYPE_MESSAGES = {
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
    "list_type": "must be a list",
}


def _translate(
    error: Mapping[str, Any], root: type[BaseModel], prefix: str, whole: str
) -> InvalidEvent:
    """Turn one pydantic error into an :class:`InvalidEvent` naming the field."""
    loc = tuple(part for part in error["loc"] if part not in _UNION_TAGS)
    kind: str = error["type"]
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    value = error.get("input")
    is_key = bool(loc) and loc[-1] == "[key]"
    if is_key:
        loc = loc[:-1]
    path = ".".join(str(part) for part in loc)
    field = f"{prefix}.{path}" if prefix and path else (path or whole)

    if kind == "missing":
        return InvalidEvent(field, "is required")
    if kind == "extra_forbidden":
        parent = _model_at(root, loc[:-1])
        reason = f"unknown field {str(loc[-1])!r}" if loc else "unknown field"
        if parent is not None:
            reason += "; expected one of: " + ", ".join(parent.model_fields)
        return InvalidEvent(field, reason)
    if kind == "literal_error":
        reason = f"must be one of {ctx.get('expected', '?')}"
        if is_key:
            reason = "key " + reason
    elif kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        reason = f"must be {_PATTERN_NAMES.get(pattern, f'text matching {pattern}')}"
    elif kind in _TYPE_MESSAGES:
        reason = _TYPE_MESSAGES[kind]
    else:
        message = str(error.get("msg", "is invalid"))
        reason = message[:1].lower() + message[1:]
    shows_value = kind in _TYPE_MESSAGES or not (value is None or isinstance(value, Mapping))
    if ", got " not in reason and shows_value:
        reason += f", got {_show(value)}"
    return InvalidEvent(field, reason)


def _validate(model: type[_M], data: Any, prefix: str, whole: str) -> _M:
    """Validate ``data`` with ``model``; raise the first error as :class:`InvalidEvent`.

    Args:
        model: the pydantic model.
        data: the input.
        prefix: prepended to every error path (``"data"`` for event data, ``""`` for none).
        whole: the field named by an error about the input as a whole.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise _translate(errors[0], model, prefix, whole) from None


# --------------------------------------------------------------------------------------------
# Text that no database could store


def _plain_ascii(payload: Any) -> bool:
    """Whether every string in a payload, keys included, is ASCII without NUL: the common
    case, screened without building a single field path (it runs on every event)."""
    pending = [payload]
    while pending:
        value = pending.pop()
        kind = type(value)
        if kind is str:
            if not value.isascii() or "\x00" in value:
                return False
        elif kind is dict:
            for key, item in value.items():
                if type(key) is str and (not key.isascii() or "\x00" in key):
                    return False
                pending.append(item)
        elif kind is list or kind is tuple:
            pending.extend(value)
        elif kind not in _SCALARS and isinstance(value, Mapping | list | tuple):
            return False  # another container: let the full walk look
    return True


_SCALARS = frozenset({int, float, bool, type(None)})


def check_payload_text(payload: Any) -> None:
    """Refuse a NUL character or a lone surrogate anywhere in a payload, naming the field.

    PostgreSQL refuses both (text and JSONB hold neither) and UTF-8 cannot encode a lone
    surrogate (JSON's ``"\\ud800"``); SQLite would store the first and fail on the second.
    """
    if not _plain_ascii(payload):
        _check_text(payload, "")


def _check_text(value: Any, path: str) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidEvent(path or "body", "must not contain a NUL character")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                bad = ascii(value[exc.start : exc.end])
                raise InvalidEvent(
                    path or "body", f"must be valid Unicode text, got a lone surrogate {bad}"
                ) from None
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str):
                try:
                    _check_text(key, path)
                except InvalidEvent:
                    raise InvalidEvent(
                        path or "body", f"has a field name that is not valid text: {ascii(key)}"
                    ) from None
            _check_text(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_text(item, f"{path}.{index}" if path else str(index))


# --------------------------------------------------------------------------------------------
# Instants


def parse_instant(value: Any, field: str) -> datetime:
    """An aware datetime, converted to UTC, from a datetime or an ISO 8601 string with
    offset, between :data:`EARLIEST_DATE` and :data:`LATEST_DATE`.

    Raises:
        InvalidEvent: on ``field``: not a time, no offset, or out of range.
    """
    if isinstance(value, datetime):
        instant = value
    elif isinstance(value, str):
        try:
            instant = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidEvent(
                field, f"must be an ISO 8601 time with offset, got {_show(value)}"
            ) from None
    else:
        raise InvalidEvent(field, f"must be an ISO 8601 time with offset, got {_show(value)}")
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise InvalidEvent(field, f"needs a UTC offset (e.g. 'Z' or '+01:00'), got {_show(value)}")
    try:
        utc = instant.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+14:00 is in year 0 in UTC
        utc = None
    if utc is None or not EARLIEST_DATE <= utc.date() <= LATEST_DATE:
        raise InvalidEvent(
            field,
            f"must be between {EARLIEST_DATE.isoformat()} and {LATEST_DATE.isoformat()}, "
            f"got {_show(value)}",
        )
    return utc


_parse_instant = parse_instant


# --------------------------------------------------------------------------------------------
# Events


@dataclass(frozen=True)
class ClinicalEvent:
    """A validated event, ready for the engine.

    Attributes:
        type: the event type, a key of :data:`EVENT_TYPES`.
        data: the validated data, an instance of ``EVENT_TYPES[type]``.
        actor: who reports the event (``"unknown"`` when not given).
        occurred_at: when it happened, in UTC; ``None`` means "now" (the caller's clock).
    """

    type: str
    data: BaseModel
    actor: str
    occurred_at: datetime | None


_EVENT_KEYS = ("type", "data", "actor", "occurred_at")


def parse_event(payload: Mapping[str, Any]) -> ClinicalEvent:
    """Validate an event payload ``{"type", "data", "actor", "occurred_at"?}``.

    Args:
        payload: the event as received (parsed JSON or YAML). ``data`` may be absent (taken
            as ``{}``), ``actor`` defaults to ``"unknown"``, ``occurred_at`` is an ISO 8601
            string with offset or an aware datetime.

    Returns:
        The validated event, with ``occurred_at`` in UTC (or ``None`` when not given).

    Raises:
        InvalidEvent: naming the first bad field (``type``, ``data.<path>``, ``actor``,
            ``occurred_at`` or an unknown top-level key).
    """
    if not isinstance(payload, Mapping):
        raise InvalidEvent("event", f"must be an object, got {_show(payload)}")
    check_payload_text(payload)
    for key in payload:
        if key not in _EVENT_KEYS:
            raise InvalidEvent(
                str(key), f"unknown field {str(key)!r}; expected one of: {', '.join(_EVENT_KEYS)}"
            )
    expected = ", ".join(EVENT_TYPES)
    event_type = payload.get("type")
    if event_type is None:
        raise InvalidEvent("type", f"is required; expected one of: {expected}")
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        raise InvalidEvent(
            "type", f"unknown event type {_show(event_type)}; expected one of: {expected}"
        )

    data = payload.get("data")
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise InvalidEvent("data", f"must be an object, got {_show(data)}")
    model = _validate(EVENT_TYPES[event_type], dict(data), "data", "data")

    actor = payload.get("actor")
    if actor is None:
        actor = "unknown"
    elif not isinstance(actor, str) or not actor.strip():
        raise InvalidEvent("actor", f"must be a non-empty string, got {_show(actor)}")
    elif len(actor.strip()) > NAME_LENGTH:
        raise InvalidEvent(
            "actor", f"must be at most {NAME_LENGTH} characters, got {len(actor.strip())}"
        )
    else:
        actor = actor.strip()

    raw_time = payload.get("occurred_at")
    occurred_at = None if raw_time is None else _parse_instant(raw_time, "occurred_at")
    return ClinicalEvent(
        type=event_type,
        data=model,
        actor=actor,
        occurred_at=occurred_at,
    )


def check_event_time(occurred_at: datetime, onset: date, now: datetime, tz: ZoneInfo) -> None:
    """Refuse an event time before symptom onset or after the current instant.

    Args:
        occurred_at: when the event happened (aware).
        onset: the episode's symptom onset date (a clinic-calendar date).
        now: the current instant (aware); no tolerance is allowed past it.
        tz: the clinic's time zone, in which ``occurred_at`` is compared with ``onset``.

    Raises:
        InvalidEvent: on field ``occurred_at``.
    """
    instant = _parse_instant(occurred_at, "occurred_at")
    current = _parse_instant(now, "now")
    local_day = instant.astimezone(tz).date()
    if local_day < onset:
        raise InvalidEvent(
            "occurred_at",
            f"is before symptom onset: {instant.isoformat()} is {local_day.isoformat()} "
            f"in {tz.key}, onset is {onset.isoformat()}",
        )
    if instant > current:
        raise InvalidEvent(
            "occurred_at",
            f"is in the future: {instant.isoformat()} is after now ({current.isoformat()})",
        )


def event_payload_json(ev: ClinicalEvent) -> dict[str, Any]:
    """The canonical JSON-able form of a validated event (for storage and hashing).

    Args:
        ev: a validated event.

    Returns:
        ``{"type", "data", "actor", "occurred_at"}`` with ``data`` dumped in JSON mode without
        unset optional fields and ``occurred_at`` an ISO 8601 UTC string or ``None``.
    """
    return {
        "type": ev.type,
        "data": ev.data.model_dump(mode="json", exclude_none=True, by_alias=True),
        "actor": ev.actor,
        "occurred_at": None if ev.occurred_at is None else ev.occurred_at.isoformat(),
    }


# --------------------------------------------------------------------------------------------
# Opening an episode


class PatientIn(_Data):
    """The patient fields given when an episode is opened."""

    ref: PatientRef
    age: Age | None = None
    sex: Sex | None = None
    prior_lbp: Flag = False
    workers_comp: Flag = False
    connective_tissue_disorder: Flag = False
    pelvic_floor_dysfunction: Flag = False
    osteoporosis: Flag = False
    immunosuppression: Flag = False
    cancer_history: Flag = False


def _check_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise PydanticCustomError(
            "time_zone", "must be an IANA time zone such as 'Europe/London'"
        ) from None
    return name


def _instant_or_none(value: Any) -> Any:
    if value is None:
        return None
    try:
        return _parse_instant(value, "enrolled_at")
    except InvalidEvent as exc:
        raise PydanticCustomError("instant", "{reason}", {"reason": exc.reason}) from None


class _OpeningIn(_Data):
    patient: PatientIn
    onset: Day
    enrolled_at: Annotated[datetime | None, BeforeValidator(_instant_or_none)] = None
    coordinator: Name | None = None
    team: Name | None = None
    clinic_timezone: Annotated[
        str, Strict(), AfterValidator(_at_most(ZONE_LENGTH)), AfterValidator(_check_zone)
    ] = "UTC"
    pathway_version: Annotated[str, Strict(), AfterValidator(_at_most(VERSION_LENGTH))] | None = (
        None
    )


@dataclass(frozen=True)
class Opening:
    """A validated request to open an episode.

    Attributes:
        patient: the patient fields.
        onset: the symptom onset date.
        enrolled_at: the enrolment instant in UTC; ``None`` means "now" (the caller decides).
        coordinator: the coordinator in charge, if named.
        team: the care team whose episodes it is among, if named (its coordinators see it,
            and its unassigned queue holds it while nobody is in charge).
        clinic_timezone: the IANA name of the clinic's time zone (default ``"UTC"``).
        pathway_version: the pathway version asked for, None for the clinic's choice (which
            version it may be is the registry's to say: :func:`pathways.opening_for`).
    """

    patient: PatientIn
    onset: date
    enrolled_at: datetime | None
    coordinator: str | None
    clinic_timezone: str
    pathway_version: str | None
    team: str | None = None


def parse_opening(payload: Mapping[str, Any]) -> Opening:
    """Validate a request to open an episode.

    Args:
        payload: ``{"patient": {...}, "onset", "enrolled_at"?, "coordinator"?, "team"?,
            "clinic_timezone"?, "pathway_version"?}``.

    Returns:
        The validated opening, ``enrolled_at`` converted to UTC.

    Raises:
        InvalidEvent: naming the first bad field (``patient.ref``, ``onset``,
            ``clinic_timezone``, ``pathway_version`` when it is not a published version,
            ...), or ``enrolled_at`` when enrolment falls on a clinic date before onset.
    """
    if not isinstance(payload, Mapping):
        raise InvalidEvent("opening", f"must be an object, got {_show(payload)}")
    check_payload_text(payload)
    parsed = _validate(_OpeningIn, dict(payload), "", "opening")
    if parsed.enrolled_at is not None:
        tz = ZoneInfo(parsed.clinic_timezone)
        local_day = parsed.enrolled_at.astimezone(tz).date()
        if local_day < parsed.onset:
            raise InvalidEvent(
                "enrolled_at",
                f"is before symptom onset: {parsed.enrolled_at.isoformat()} is "
                f"{local_day.isoformat()} in {parsed.clinic_timezone}, "
                f"onset is {parsed.onset.isoformat()}",
            )
    return Opening(
        patient=parsed.patient,
        onset=parsed.onset,
        enrolled_at=parsed.enrolled_at,
        coordinator=parsed.coordinator,
        clinic_timezone=parsed.clinic_timezone,
        pathway_version=parsed.pathway_version,
        team=parsed.team,
    )


def check_opening_time(opening: Opening, now: datetime) -> None:
    """Refuse an onset date or enrolment instant more than :data:`OPENING_LEAD` (a day)
    after ``now``: a patient is enrolled for symptoms they have, not ones to come.

    Raises:
        InvalidEvent: on field ``onset`` or ``enrolled_at``.
    """
    latest = now + OPENING_LEAD
    tz = ZoneInfo(opening.clinic_timezone)
    if opening.onset > latest.astimezone(tz).date():
        raise InvalidEvent(
            "onset",
            f"must not be more than a day after now ({now.isoformat()}), "
            f"got {opening.onset.isoformat()}",
        )
    if opening.enrolled_at is not None and opening.enrolled_at > latest:
        raise InvalidEvent(
            "enrolled_at",
            f"must not be more than a day after now ({now.isoformat()}), "
            f"got {opening.enrolled_at.isoformat()}",
        )
