"""What the API answers, for its OpenAPI document: every body's shape, with an example.

The routes build their answers from the engine's views and return them as they are; these
models describe them (``responses=`` on each route) without re-validating every answer on
the way out. A test checks real answers against them, so the document cannot drift.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

EPISODE_ID = "583dab66-f42c-419e-bcac-4411bd0d0469"
HASH = "4824222657aba96412c72cbf7c1aa6e2d9aabf9c2b0b8b195c87c21f97a98fbb"
TaskStatus = Literal["upcoming", "due", "overdue", "escalated", "done", "cancelled"]
Severity = Literal["emergency", "urgent", "referral", "review", "routine"]  # engine.episode


def _example(example: dict[str, Any]) -> ConfigDict:
    # Unknown fields are refused so that the test holding real answers against these
    # models notices a field the document does not describe.
    return ConfigDict(extra="forbid", json_schema_extra={"examples": [example]})


class Pathway(BaseModel):
    model_config = _example({"id": "lumbosacral-radiculopathy", "version": "1.0.0"})
    id: str
    version: str


class RedFlag(BaseModel):
    """The red flag that pre-empts routine care, while it stands."""

    model_config = _example(
        {"rule": "RF-CES", "kind": "cauda_equina", "level": "emergency",
         "raised_at": "2026-01-27T10:00:00Z"}
    )  # fmt: skip
    rule: str = Field(description="RF-CES, RF-PROG, RF-CANCER, RF-INFECTION or RF-FRACTURE")
    kind: str
    level: Literal["emergency", "urgent"]
    raised_at: datetime


DUE_ITEM = {
    "key": "six_week_review",
    "rule": "FU-6W",
    "window_start": "2026-02-16T00:00:00Z",
    "due_at": "2026-02-23T00:00:00Z",
    "status": "upcoming",
}


class DueItem(BaseModel):
    """A coordinator's due item: open from ``window_start``, overdue after ``due_at``."""

    model_config = _example(DUE_ITEM)
    key: str
    rule: str
    window_start: datetime | None
    due_at: datetime
    status: TaskStatus


RECOMMENDATION = {
    "rule": "PH-ACUTE",
    "text": "From symptom onset until day 42 the episode is in the acute phase. …",
    "citations": ["S0 (000_b802428f9beaff9b.txt): S0 reference 1 (not listed in the document)"],
}


class Recommendation(BaseModel):
    model_config = _example(RECOMMENDATION)
    rule: str
    text: str
    citations: list[str]


CONFIGURATION = ["care", "phase", "acute", "track", "routine", "management", "conservative",
                 "referral", "not_indicated"]  # fmt: skip
# Where an episode stands: in the episode view, and in each step of its timeline.
STANDING = {
    "configuration": CONFIGURATION,
    "phase": "acute",
    "management": "conservative",
    "referral": "not_indicated",
    "red_flag": None,
    "due": [DUE_ITEM],
}
EPISODE = {
    "id": EPISODE_ID,
    "patient_ref": "P-17",
    "pathway": {"id": "lumbosacral-radiculopathy", "version": "1.0.0"},
    "status": "active",
    **STANDING,
    "risk_markers": ["PRED-PRIOR-LBP"],
    "recommendations": [RECOMMENDATION],
    "version": 2,
    "onset": "2026-01-05",
    "enrolled_at": "2026-01-06T09:00:00Z",
    "coordinator": "alex",
    "team": "spine-north",
}


class EpisodeView(BaseModel):
    """An episode as CONTRACT.md section 3 reports it. During a red flag, ``management``
    and ``referral`` show where routine care resumes."""

    model_config = _example(EPISODE)
    id: str
    patient_ref: str
    pathway: Pathway
    status: Literal["active", "resolved", "closed"]
    configuration: list[str] = Field(description="every active state of the statechart")
    phase: str | None = Field(description="acute, subacute or chronic")
    management: str | None
    referral: str | None
    red_flag: RedFlag | None
    due: list[DueItem] = Field(
        description="the open items and the last closed one of each kind, soonest first; "
        "every item, older closed ones included: GET /episodes/{id}/due"
    )
    risk_markers: list[str]
    recommendations: list[Recommendation]
    version: int = Field(description="for If-Match; also the ETag")
    onset: date
    enrolled_at: datetime
    coordinator: str | None
    team: str | None = Field(description="its care team, whose coordinators see it")


TIMELINE_STEP = {
    "seq": 7,
    "at": "2026-01-19T10:00:00Z",
    "trigger": "event",
    "type": "order",
    "actor": "dr-lee",
    "accepted": False,
    "rules": ["IMG-NO-EARLY"],
    "reason": "MRI not indicated: day 14 of the 42-day conservative window, no red flag and no "
    "severe disabling pain; eligible from 2026-02-16",
}


class TimelineStep(BaseModel):
    """One step of an episode, from its audit row: an event (accepted or refused), a timer
    that fired, or the opening. The row itself (``/audit/transitions``) has the rest."""

    model_config = _example(TIMELINE_STEP)
    seq: int = Field(description="the audit row's sequence number")
    at: datetime = Field(description="when it happened clinically (a timer: when it was due)")
    trigger: str = Field(description="open, event or timer")
    type: str = Field(description="the event's type, or the timer's (e.g. task:referral)")
    actor: str
    accepted: bool
    rules: list[str] = Field(description="every rule that acted: refusals, overrides, triggers")
    reason: str | None = Field(description="why refused, or the documented override")


class EpisodeRead(EpisodeView):
    """``GET /episodes/{id}``: the episode view, and the most recent steps of its
    timeline (10, our default), newest first."""

    model_config = _example(
        {**EPISODE, "timeline": [TIMELINE_STEP], "timeline_next_cursor": "Nw=="}
    )
    timeline: list[TimelineStep]
    timeline_next_cursor: str | None = Field(
        description="the steps before these: GET /episodes/{id}/timeline?cursor=; null: none"
    )


class TimelinePage(BaseModel):
    model_config = _example({"items": [TIMELINE_STEP], "next_cursor": "Nw=="})
    items: list[TimelineStep] = Field(description="newest first")
    next_cursor: str | None = Field(description="pass as cursor for the next page; null: the end")


DUE_RECORD = {**DUE_ITEM, "status": "done", "completed_at": "2026-02-20T10:00:00Z"}


class DueRecord(DueItem):
    """A due item of the episode's record, closed ones included."""

    model_config = _example(DUE_RECORD)
    completed_at: datetime | None = Field(description="when it was done or cancelled")


class DuePage(BaseModel):
    model_config = _example({"items": [DUE_RECORD], "next_cursor": None})
    items: list[DueRecord] = Field(description="newest first, in the order they were first set")
    next_cursor: str | None = Field(description="pass as cursor for the next page; null: the end")


TRANSITION = {
    "at": "2026-01-19T10:00:00Z",
    "trigger": "event",
    "type": "assessment",
    "accepted": True,
    "rules": ["FU-CONTENT", "FU-FIRST"],
    "reason": None,
    "override_possible": False,
    "eligible_from": None,
    **STANDING,
}


class Transition(BaseModel):
    """One step, as in the simulation's timeline (CONTRACT.md section 4)."""

    model_config = _example(TRANSITION)
    at: datetime
    trigger: Literal["event", "timer"]
    type: str
    accepted: bool
    rules: list[str] = Field(description="every rule that acted: refusals, overrides, triggers")
    reason: str | None
    override_possible: bool
    eligible_from: date | None
    configuration: list[str]
    phase: str | None
    management: str | None
    referral: str | None
    red_flag: RedFlag | None
    due: list[DueItem]


class EventAnswer(BaseModel):
    model_config = _example({"episode": EPISODE, "transition": TRANSITION})
    episode: EpisodeView
    transition: Transition


SUMMARY = {
    "id": EPISODE_ID,
    "patient_ref": "P-17",
    "status": "active",
    "phase": "subacute",
    "management": "review",
    "referral": "not_indicated",
    "red_flag": False,
    "coordinator": "alex",
    "team": "spine-north",
    "version": 3,
    "updated_at": "2026-03-20T10:00:00+00:00",
    "pathway_version": "1.0.0",
}


class EpisodeSummary(BaseModel):
    model_config = _example(SUMMARY)
    id: str
    patient_ref: str
    status: Literal["active", "resolved", "closed"]
    phase: str | None
    management: str | None
    referral: str | None
    red_flag: bool
    coordinator: str | None
    team: str | None
    version: int
    updated_at: datetime
    pathway_version: str = Field(description="the pathway version the episode runs on")


class EpisodePage(BaseModel):
    model_config = _example({"items": [SUMMARY], "next_cursor": None})
    items: list[EpisodeSummary]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null: the end")


WORKLIST_ITEM = {
    "task_id": 1,
    "episode_id": EPISODE_ID,
    "patient_ref": "P-17",
    "key": "first_follow_up",
    "rule": "FU-FIRST",
    "status": "overdue",
    "severity": "routine",
    "assignee": "alex",
    "team": "spine-north",
    "time_zone": "America/Chicago",
    "overdue_by": "P2DT6H",
    "due_in": None,
    "window_start": "2026-01-20T00:00:00-06:00",
    "due_at": "2026-02-03T00:00:00-06:00",
    "escalate_at": "2026-02-10T00:00:00-06:00",
    "acknowledged_at": None,
    "acknowledged_by": None,
    "acknowledged": False,
    "snoozed_until": None,
    "last_contact": None,
    "last_action": None,
}


class LastAction(BaseModel):
    """What a coordinator last did on an item other than a contact, with who and when."""

    kind: Literal["snooze", "done", "reopen"]
    said: str = Field(description="a snooze's reason, what came of it when done")
    by: str
    at: datetime
    until: datetime | None = Field(description="a snooze's end")


class WorklistItem(BaseModel):
    """An open due item; ``acknowledged`` holds while its status is the one acknowledged."""

    model_config = _example(WORKLIST_ITEM)
    task_id: int
    episode_id: str
    patient_ref: str
    key: str
    rule: str
    status: TaskStatus
    severity: Severity
    assignee: str | None
    team: str | None = Field(description="the episode's care team")
    time_zone: str = Field(description="the clinic's: every time of the item is given in it")
    overdue_by: str | None = Field(description="ISO 8601 duration past the deadline")
    due_in: str | None = Field(description="ISO 8601 duration until the deadline")
    window_start: datetime | None
    due_at: datetime
    escalate_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None = Field(description="who acknowledged it last")
    acknowledged: bool
    snoozed_until: datetime | None = Field(description="off the list until then (with_snoozed)")
    last_contact: LastContact | None
    last_action: LastAction | None = Field(description="its latest snooze, done or reopen")


class Worklist(BaseModel):
    model_config = _example(
        {"coordinator": "alex", "covering": [], "team": None,
         "as_of": "2026-02-05T09:00:00+00:00", "sort": "urgency",
         "items": [WORKLIST_ITEM], "next_cursor": None}
    )  # fmt: skip
    coordinator: str | None = Field(description="null: a team's list or an unassigned queue")
    covering: list[str] = Field(description="the colleagues' lists held in this one (cover)")
    team: str | None = Field(description="the care team whose list or queue this is")
    as_of: datetime
    sort: Literal["urgency", "due"]
    items: list[WorklistItem]
    next_cursor: str | None


def _words(text: str | None) -> str | None:
    """A coordinator's words, trimmed; blank is none (what both databases can store is
    checked before: :func:`engine.events.check_payload_text`)."""
    return None if text is None else text.strip() or None


ContactOutcome = Literal["reached", "no_answer", "left_message", "wrong_number"]


class LastContact(BaseModel):
    outcome: ContactOutcome
    note: str | None
    by: str
    at: datetime


class ContactIn(BaseModel):
    """A contact attempt on an item: its outcome, and a note (at most 1,000 characters)."""

    model_config = ConfigDict(extra="forbid")
    outcome: ContactOutcome
    note: str | None = Field(default=None, max_length=1000)

    @field_validator("note")
    @classmethod
    def _trimmed(cls, note: str | None) -> str | None:
        return _words(note)


class DoneIn(BaseModel):
    """What came of an item marked done, in words (required for an emergency, urgent or
    referral item), and a note."""

    model_config = ConfigDict(extra="forbid")
    outcome: str | None = Field(default=None, max_length=200)
    note: str | None = Field(default=None, max_length=1000)

    @field_validator("outcome", "note")
    @classmethod
    def _trimmed(cls, text: str | None) -> str | None:
        return _words(text)


class AssignIn(BaseModel):
    """Whom to hand the item's episode to (a coordinator of its team), and why."""

    model_config = ConfigDict(extra="forbid")
    to: str = Field(min_length=1, max_length=128)
    note: str | None = Field(default=None, max_length=1000)

    @field_validator("to")
    @classmethod
    def _named(cls, name: str) -> str:
        if not name.strip():
            raise ValueError("name a coordinator")
        return name.strip()

    @field_validator("note")
    @classmethod
    def _trimmed(cls, text: str | None) -> str | None:
        return _words(text)


class HandedOver(BaseModel):
    model_config = _example({"task_id": 1, "assignee": "sam", "episode": EPISODE})
    task_id: int
    assignee: str
    episode: EpisodeView


class Contacted(BaseModel):
    model_config = _example({"task_id": 1, "logged": True, "last_contact": {
        "outcome": "no_answer", "note": "rang twice", "by": "alex",
        "at": "2026-02-05T09:00:00+00:00"}})  # fmt: skip
    task_id: int
    logged: Literal[True]
    last_contact: LastContact


class Acknowledged(BaseModel):
    model_config = _example({"task_id": 1, "status": "overdue", "acknowledged": True})
    task_id: int
    status: TaskStatus
    acknowledged: bool


class Completed(BaseModel):
    model_config = _example({"task_id": 1, "status": "done", "episode": EPISODE})
    task_id: int
    status: Literal["done"]
    episode: EpisodeView


class SnoozeIn(BaseModel):
    """Until when the item leaves the list (an instant with its offset), and why."""

    model_config = ConfigDict(extra="forbid")
    until: AwareDatetime
    reason: str = Field(min_length=1, max_length=200)
    note: str | None = Field(default=None, max_length=1000)

    @field_validator("reason")
    @classmethod
    def _said(cls, reason: str) -> str:
        if not reason.strip():
            raise ValueError("say why the item waits")
        return reason.strip()

    @field_validator("note")
    @classmethod
    def _trimmed(cls, text: str | None) -> str | None:
        return _words(text)


class Snoozed(BaseModel):
    model_config = _example({"task_id": 1, "status": "due",
                             "snoozed_until": "2026-02-05T15:00:00-06:00"})  # fmt: skip
    task_id: int
    status: TaskStatus
    snoozed_until: datetime = Field(description="in the clinic's time zone")


class ReopenIn(BaseModel):
    """Why an item marked done is taken back."""

    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(default=None, max_length=200)

    @field_validator("reason")
    @classmethod
    def _trimmed(cls, text: str | None) -> str | None:
        return _words(text)


class Reopened(BaseModel):
    model_config = _example({"task_id": 1, "status": "overdue", "episode": EPISODE})
    task_id: int
    status: TaskStatus
    episode: EpisodeView


class AcknowledgeIn(BaseModel):
    """The items seen, up to 100 at once: all are acknowledged, or none."""

    model_config = ConfigDict(extra="forbid")
    task_ids: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] = Field(min_length=1,
                                                                     max_length=100)


class AcknowledgedMany(BaseModel):
    model_config = _example({"acknowledged": [1, 2]})
    acknowledged: list[int]


AUDIT_ROW = {
    "seq": 1,
    "episode_id": EPISODE_ID,
    "trigger": "open",
    "type": "open",
    "actor": "alex",
    "occurred_at": "2026-01-06T09:00:00+00:00",
    "recorded_at": "2026-01-06T09:00:02+00:00",
    "accepted": True,
    "configuration_before": [],
    "configuration_after": CONFIGURATION,
    "rules": ["PH-ACUTE", "FU-FIRST", "FU-6W"],
    "reason": None,
    "payload_digest": "97caf56c494d0302032d6a9540affd6efa184bb73273283e6cd50bcb26270395",
    "pathway_id": "lumbosacral-radiculopathy",
    "pathway_version": "1.0.0",
    "prev_hash": "0" * 64,
    "hash": HASH,
    "seal": "9d3c4e1f0b8a7d6c5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d",
}


class AuditRow(BaseModel):
    """One step in the hash chain: ``hash`` covers this row and ``prev_hash``."""

    model_config = _example(AUDIT_ROW)
    seq: int
    episode_id: str | None
    trigger: str = Field(description="open, event, timer or task")
    type: str
    actor: str
    occurred_at: datetime
    recorded_at: datetime
    accepted: bool
    configuration_before: list[str]
    configuration_after: list[str]
    rules: list[str]
    reason: str | None = Field(description="why refused, or the documented override")
    payload_digest: str
    pathway_id: str
    pathway_version: str
    prev_hash: str
    hash: str
    seal: str | None = Field(
        description="HMAC-SHA256 over hash with a key derived from the audit key; null when "
        "the row was written without the key"
    )


class AuditPage(BaseModel):
    model_config = _example({"items": [AUDIT_ROW], "next_cursor": 1})
    items: list[AuditRow]
    next_cursor: int | None


ACCESS_ROW = {
    "seq": 1,
    "recorded_at": "2026-01-19T10:00:00.123456+00:00",
    "actor": "alex",
    "role": "coordinator",
    "route": "GET /episodes/{episode_id}",
    "outcome": "answered",
    "episode_ids": [EPISODE_ID],
    "episode_count": 1,
    "query": None,
    "prev_hash": "0" * 64,
    "hash": HASH,
}
EXPORT_READ = {
    **ACCESS_ROW,
    "seq": 2,
    "actor": "audit-office",
    "role": "auditor",
    "route": "GET /audit/export",
    "episode_ids": None,
    "episode_count": None,
    "query": "format=csv&since=2026-01-01T00:00:00Z",
    "prev_hash": HASH,
    "hash": "9f2c" + HASH[4:],
}


class AccessRow(BaseModel):
    """One read of episode data, hash-chained: ``hash`` covers this row and ``prev_hash``."""

    model_config = _example(ACCESS_ROW)
    seq: int
    recorded_at: datetime
    actor: str = Field(description="the token's subject, or cli:<user> for the command line")
    role: str = Field(description="the token's role, or cli")
    route: str = Field(description="the route template (or command) read through: the purpose")
    outcome: Literal["answered", "forbidden", "not_found"]
    episode_ids: list[str] | None = Field(
        description="the episodes shown (for forbidden/not_found: asked for); null when the "
        "read covered more than can be listed, see episode_count and query"
    )
    episode_count: int | None = Field(
        description="how many episodes were shown; null when not counted (an export)"
    )
    query: str | None = Field(description="the query string, without any token")
    prev_hash: str
    hash: str


class AccessPage(BaseModel):
    model_config = _example({"items": [ACCESS_ROW, EXPORT_READ], "next_cursor": 2})
    items: list[AccessRow]
    next_cursor: int | None


CHECKPOINT = {
    "id": 12,
    "log": "audit_log",
    "seq": 41,
    "hash": HASH,
    "signed_at": "2026-03-01T09:05:00.000000Z",
    "key_id": "3f2a9c0d81b7e645",
    "signature": "5be0" + "0" * 124,
}


class SignedCheckpoint(BaseModel):
    """The chain's row ``seq`` carried ``hash`` at ``signed_at``, signed (Ed25519) by the
    audit key ``key_id``."""

    model_config = _example(CHECKPOINT)
    id: int | None
    log: str
    seq: int
    hash: str
    signed_at: datetime
    key_id: str
    signature: str = Field(description="Ed25519 signature, hex")


class ChainHead(BaseModel):
    model_config = _example({"seq": 42, "hash": HASH})
    seq: int
    hash: str


class LogCheck(BaseModel):
    """What a verify of a hash-chained log found; ``problem`` names the first bad row."""

    model_config = _example(
        {"ok": False, "rows_checked": 41, "first_bad_seq": 42, "problem": "hash mismatch"}
    )
    ok: bool
    rows_checked: int
    first_bad_seq: int | None
    problem: str | None


class ChainCheck(BaseModel):
    """What a verify found; ``problem`` names the first bad row or checkpoint."""

    model_config = _example(
        {"ok": False, "rows_checked": 1, "first_bad_seq": 42, "first_bad_checkpoint": None,
         "problem": "row 42 (episode 583dab66-…): seal does not match: the row was rewritten "
                    "or forged",
         "full": False, "head": {"seq": 42, "hash": HASH}, "resumed_from": CHECKPOINT,
         "latest_checkpoint": CHECKPOINT, "checkpoints": 12, "signatures_checked": 12,
         "seals_checked": True, "unauthenticated_rows": 0, "warnings": []}
    )  # fmt: skip
    ok: bool
    rows_checked: int = Field(description="rows re-hashed")
    first_bad_seq: int | None
    problem: str | None
    first_bad_checkpoint: int | None = Field(description="the checkpoint at fault, if one is")
    full: bool = Field(description="every row re-hashed (else those after resumed_from)")
    head: ChainHead
    resumed_from: SignedCheckpoint | None = Field(
        description="the trusted checkpoint the re-hashing started after"
    )
    latest_checkpoint: SignedCheckpoint | None = Field(
        description="the newest checkpoint found trustworthy (signature and row)"
    )
    checkpoints: int
    signatures_checked: int
    seals_checked: bool = Field(description="the service has the audit key, so seals were checked")
    unauthenticated_rows: int = Field(
        description="rows after the newest trusted checkpoint that nothing could authenticate"
    )
    warnings: list[str]


class Health(BaseModel):
    model_config = _example(
        {"status": "ok", "database": "ok", "timer_lag_seconds": 0.8, "open_incidents": 0,
         "lag_threshold_seconds": 300.0, "reasons": []}
    )  # fmt: skip
    status: Literal["ok", "degraded", "unavailable"]
    database: Literal["ok", "unreachable"]
    timer_lag_seconds: float | None = Field(
        default=None, description="age of the oldest due timer not yet fired"
    )
    open_incidents: int | None = Field(
        default=None, description="incidents not yet resolved (see GET /incidents)"
    )
    lag_threshold_seconds: float | None = Field(
        default=None, description="a lag past this is degraded (CAREPATH_HEALTH_MAX_LAG_SECONDS)"
    )
    reasons: list[str] | None = Field(default=None, description="why it is degraded")


INCIDENT = {
    "id": 7, "kind": "episode", "episode_id": EPISODE_ID, "timer_id": 1042, "delivery_id": None,
    "error": "configuration is not a list of state ids", "attempts": 3,
    "first_seen_at": "2026-03-02T09:00:00+00:00", "last_seen_at": "2026-03-02T09:03:00+00:00",
    "next_retry_at": "2026-03-02T09:07:00+00:00", "resolved": False, "resolved_at": None,
    "resolution": None,
}  # fmt: skip


class IncidentView(BaseModel):
    """A step that could not be done for one episode (``carepath incidents``)."""

    model_config = _example(INCIDENT)
    id: int
    kind: Literal["timer", "episode", "delivery"]
    episode_id: str
    timer_id: int | None
    delivery_id: int | None
    error: str = Field(description="the error's first line")
    attempts: int
    first_seen_at: datetime
    last_seen_at: datetime
    next_retry_at: datetime | None = Field(description="null once resolved")
    resolved: bool
    resolved_at: datetime | None
    resolution: str | None = Field(description="retried, by hand, or no pending timer left")


class IncidentList(BaseModel):
    model_config = _example({"items": [INCIDENT]})
    items: list[IncidentView]


class Problem(BaseModel):
    """An RFC 9457 problem; the members after ``detail`` appear where they apply."""

    model_config = ConfigDict(extra="forbid")
    type: str
    title: str
    status: int
    detail: str
    field: str | None = Field(default=None, description="422: the field at fault")
    episode_id: str | None = Field(
        default=None, description="500: the episode whose stored record cannot be read"
    )
    errors: list[dict[str, str]] | None = Field(
        default=None, description="422: every field at fault, as {field, reason}"
    )
    rules: list[str] | None = Field(default=None, description="409: the refusing rules")
    reason: str | None = Field(default=None, description="409: why, in words")
    override_possible: bool | None = Field(
        default=None, description="409: a documented override_reason would let it through"
    )
    eligible_from: date | None = Field(
        default=None, description="409: the day time lifts the refusal, if it does"
    )
    current_version: int | None = Field(default=None, description="412: the version now")


PATHWAY_VERSION = {
    "id": "lumbosacral-radiculopathy", "version": "1.0.0", "status": "published",
    "published_at": "2026-12-01", "recorded": True,
    "digest": "sha256:35537e79d1e540c733419aa9d51f36a7ae691b37e02f8fcc6ba577576754fd21",
}  # fmt: skip


class PathwayVersion(BaseModel):
    """One version of a pathway (``carepath pathway list``)."""

    model_config = _example(PATHWAY_VERSION)
    id: str
    version: str
    status: Literal["published", "draft"]
    published_at: date | None
    digest: str = Field(description="SHA-256 of the definition file, as published")
    recorded: bool = Field(description="whether this database has the version on record")


class PathwayList(BaseModel):
    model_config = _example({"items": [PATHWAY_VERSION]})
    items: list[PathwayVersion]


class PathwayRule(BaseModel):
    """One rule, its text with the version's numbers filled in."""

    model_config = ConfigDict(extra="forbid")
    id: str
    title: str
    strength: Literal["refuse", "refuse_with_override", "warn", "advisory", "trigger"]
    text: str
    citations: list[str]
    conflict: str | None = Field(description="where the sources disagree, both positions")
    default: str | None = Field(description="a number of ours, not the sources', and its name")
    care: list[str] = Field(description="recommended care of a phase or population rule")


class SourceDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file: str
    title: str | None = Field(
        default=None, description="the document's title, where the version gives one"
    )
    references: dict[str, str]


PATHWAY_RULE = {
    "id": "ESI-GUIDED", "title": "No blind epidural injections", "strength": "refuse",
    "text": "Epidural injections are done under image guidance, fluoroscopy being the ...",
    "citations": ["S0 (000_b802428f9beaff9b.txt): S0 reference 1 (not listed in the document)"],
    "conflict": None, "default": None, "care": [],
}  # fmt: skip


class PathwayDocument(BaseModel):
    """A version's content (``carepath pathway show ID VERSION``)."""

    model_config = _example(
        {
            **{k: PATHWAY_VERSION[k] for k in ("id", "version", "status", "digest")},
            "title": "Lumbosacral radiculopathy (low back pain with sciatica)",
            "documents": {"S0": {"file": "000_b802428f9beaff9b.txt", "references": {}}},
            "timings": {"subacute_from_days": 42}, "defaults": {"ces_task_hours": 6},
            "figures": {"vas_scale": "0-10"}, "rules": [PATHWAY_RULE],
        }
    )  # fmt: skip
    id: str
    version: str
    title: str
    status: Literal["published", "draft"]
    digest: str
    documents: dict[str, SourceDocument]
    timings: dict[str, int | float | str] = Field(description="the numbers the sources give")
    defaults: dict[str, int | float | str] = Field(description="ours; a clinic may change them")
    figures: dict[str, int | float | str] = Field(description="evidence figures and scales")
    rules: list[PathwayRule]
