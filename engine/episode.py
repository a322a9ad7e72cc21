"""The episode as the engine sees it: a plain value in, a new value and a step result out.

The engine's memory of the episode (baseline scores, treatments, results, flags) lives in
``facts``, a JSON-able dict stored beside the configuration, so a step is a pure function of
(episode, input, clock reading) and replays the same way every time. The facts keep what
the rules read (the pathway's ``memory`` module), so they do not grow with the
episode's history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from engine.chart import region_value

# Where an episode stands, as the episode view reports it (CONTRACT.md section 3) and the
# episode list filters on: the regions of the view, and the states each can be in. A
# pathway's chart names its regions and states so.
PHASE_STATES = ("acute", "subacute", "chronic")
MANAGEMENT_STATES = (
    "conservative",
    "review",
    "imaging",
    "interventional",
    "specialist",
    "rehabilitation",
    "shared_care",
)
REFERRAL_STATES = ("not_indicated", "due", "overdue", "referred", "seen")
RED_FLAG_STATE = "red_flag"
# How pressing a due item is, most pressing first (CONTRACT.md section 9): a task row keeps
# its rank, so a coordinator's queue is read in this order from an index.
SEVERITIES = ("emergency", "urgent", "referral", "review", "routine")
ROUTINE = SEVERITIES.index("routine")
# The deep history of routine care, kept while a red flag pre-empts it: where it resumes.
HISTORY_ID = "routine_history"

OPEN_TASK_STATUSES = ("upcoming", "due", "overdue", "escalated")
_Value = TypeVar("_Value", "Patient", "TaskItem", "EpisodeState")


@dataclass
class Patient:
    ref: str
    age: int | None = None
    sex: str | None = None
    flags: dict[str, bool] = field(default_factory=dict)

    def has(self, flag: str) -> bool:
        return bool(self.flags.get(flag))

    def as_json(self) -> dict[str, Any]:
        return {"age": self.age, "sex": self.sex, "flags": dict(self.flags)}


@dataclass
class TaskItem:
    """A due item for a person: window opens, falls due, may be overdue, then escalates."""

    key: str
    rule: str
    due_at: datetime
    window_start: datetime | None = None
    escalate_at: datetime | None = None
    status: str = "upcoming"
    completed_at: datetime | None = None
    severity: int = ROUTINE  # a rank of SEVERITIES

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_TASK_STATUSES

    def status_at(self, now: datetime) -> str:
        """The status the calendar gives this open item at ``now``."""
        if self.escalate_at is not None and now >= self.escalate_at:
            return "escalated"
        if now >= self.due_at:
            return "overdue"
        if self.window_start is None or now >= self.window_start:
            return "due"
        return "upcoming"

    def next_boundary(self, now: datetime) -> datetime | None:
        """The next instant at which this open item changes status by itself."""
        for boundary in (self.window_start, self.due_at, self.escalate_at):
            if boundary is not None and boundary > now:
                return boundary
        return None

    def view(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "rule": self.rule,
            "window_start": iso(self.window_start),
            "due_at": iso(self.due_at),
            "status": self.status,
        }


@dataclass(frozen=True)
class TimerRequest:
    """An instant at which the engine must act: written to the due-timer table."""

    kind: str
    due_at: datetime
    ref: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class EpisodeState:
    id: str
    patient: Patient
    onset: date
    enrolled_at: datetime
    clinic_timezone: str
    coordinator: str | None
    status: str
    configuration: list[str]
    history: dict[str, list[str]]
    facts: dict[str, Any]
    tasks: dict[str, TaskItem]
    pathway_id: str
    pathway_version: str
    version: int = 1
    # The care team the episode is among (its coordinators see it), set at opening.
    team: str | None = None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.clinic_timezone)

    def clone(self) -> EpisodeState:
        """A copy the engine may change without touching this one (every step makes one)."""
        copy = _fields_copy(self)
        copy.configuration = list(self.configuration)
        copy.history = {key: list(values) for key, values in self.history.items()}
        copy.facts = _copy_json(self.facts)
        copy.tasks = {key: _fields_copy(task) for key, task in self.tasks.items()}
        copy.patient = _fields_copy(self.patient)
        copy.patient.flags = dict(self.patient.flags)
        return copy

    @property
    def phase(self) -> str | None:
        return region_value(self.configuration, PHASE_STATES)

    def _routine_value(self, region: tuple[str, ...]) -> str | None:
        # Under a red flag, routine care is paused: report where it will resume.
        return region_value(self.configuration, region) or region_value(
            self.history.get(HISTORY_ID, []), region
        )

    @property
    def management(self) -> str | None:
        return self._routine_value(MANAGEMENT_STATES)

    @property
    def referral(self) -> str | None:
        return self._routine_value(REFERRAL_STATES)

    @property
    def in_red_flag(self) -> bool:
        return RED_FLAG_STATE in self.configuration

    @property
    def is_final(self) -> bool:
        return self.status != "active"


@dataclass
class Step:
    """What one event or timer did: the new episode, the verdict, and what to persist."""

    state: EpisodeState
    accepted: bool
    rules: list[str] = field(default_factory=list)
    reason: str | None = None
    override_possible: bool = False
    eligible_from: date | None = None
    timers: list[TimerRequest] = field(default_factory=list)
    cancel_refs: list[str] = field(default_factory=list)
    noop: bool = False

    def add_rule(self, *rule_ids: str) -> None:
        for rule_id in rule_ids:
            if rule_id not in self.rules:
                self.rules.append(rule_id)


def iso(value: datetime | date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value.isoformat()


def _fields_copy(value: _Value) -> _Value:
    """A field-for-field (shallow) copy of a plain dataclass instance.

    What ``dataclasses.replace`` gives when no field changes, at a quarter of its cost: it
    introspects the fields and runs ``__init__`` on every call.
    """
    copy = object.__new__(type(value))
    copy.__dict__.update(value.__dict__)
    return copy


def _copy_json(value: Any) -> Any:
    """A deep copy of a JSON document (dicts, lists, scalars), far cheaper than deepcopy."""
    if isinstance(value, dict):
        return {key: _copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_json(item) for item in value]
    return value
