"""An episode rebuilt from its stored rows, or refused with the episode named.

Rows are written only by the unit of work, but a database can be edited by hand, restored
from a bad backup or written by an older release. Whatever the damage (a configuration that
is null, not a list or names unknown states; a patient, history or facts that are not
objects; a column that is null or not of its type; a row whose JSON or instant does not
parse), reading the episode raises one error, :class:`~engine.errors.UnreadableEpisode`,
naming the episode and what is wrong, and nothing else is affected: the worker makes it an
incident, the API a 500 problem naming the episode.

The checks are on types only (a few ``type(...) is`` tests per column); what the values
mean is the engine's business (the episode's pathway's chart:
:meth:`engine.chart.Statechart.validate_configuration`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pathways
from engine.episode import SEVERITIES, EpisodeState, Patient, TaskItem
from engine.errors import InvalidConfiguration, UnreadableEpisode

EPISODE_STATUSES = frozenset({"active", "resolved", "closed"})
TASK_STATUSES = frozenset({"upcoming", "due", "overdue", "escalated", "done", "cancelled"})
_T = TypeVar("_T")


def state_from_rows(row: Mapping[str, Any], tasks: Sequence[Mapping[str, Any]]) -> EpisodeState:
    """Rebuild the engine's value from stored rows.

    Raises:
        UnreadableEpisode: any column is not what the unit of work writes, or the
            configuration could never be the chart's.
    """
    episode_id = row.get("id")
    if type(episode_id) is not str:
        raise UnreadableEpisode(str(episode_id), "the episode row has no id")
    try:
        return _state(episode_id, row, tasks)
    except UnreadableEpisode:
        raise
    except InvalidConfiguration as exc:
        raise UnreadableEpisode(episode_id, f"configuration: {exc.reason}") from None
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        # A column missing from the row, or a time zone that does not exist.
        raise UnreadableEpisode(episode_id, f"{type(exc).__name__}: {exc}") from None


def converted(
    episode_id: str, convert: Callable[..., _T], *args: Any, what: str = "the stored row"
) -> _T:
    """``convert(*args)`` (a row's columns read into Python values), with a failure to
    parse (JSON that is not JSON, an instant that is not one) raised as
    :class:`UnreadableEpisode`."""
    try:
        return convert(*args)
    except (ValueError, TypeError, OverflowError) as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UnreadableEpisode(episode_id, f"{what} does not parse: {reason}") from None


def _bad(episode_id: str, column: str, expected: str) -> UnreadableEpisode:
    return UnreadableEpisode(episode_id, f"{column} is not {expected}")


def _state(
    episode_id: str, row: Mapping[str, Any], task_rows: Sequence[Mapping[str, Any]]
) -> EpisodeState:
    for column in ("patient_ref", "clinic_timezone", "pathway_id", "pathway_version"):
        if type(row[column]) is not str:
            raise _bad(episode_id, column, "text")
    try:
        chart = pathways.code(row["pathway_id"]).chart
    except pathways.UnknownPathway:
        raise _bad(episode_id, "pathway_id", "a pathway carepath runs") from None
    configuration = row["configuration"]
    if type(configuration) is not list or any(type(s) is not str for s in configuration):
        raise _bad(episode_id, "configuration", "a list of state ids")
    chart.validate_configuration(configuration)
    history = row["history"]
    if type(history) is not dict or any(
        type(v) is not list or any(type(s) is not str for s in v) for v in history.values()
    ):
        raise _bad(episode_id, "history", "an object of state id lists")
    facts = row["facts"]
    if type(facts) is not dict:
        raise _bad(episode_id, "facts", "an object")
    patient = row["patient"]
    if type(patient) is not dict:
        raise _bad(episode_id, "patient", "an object")
    age, sex, flags = patient.get("age"), patient.get("sex"), patient.get("flags", {})
    if not (age is None or type(age) is int):
        raise _bad(episode_id, "patient.age", "a whole number")
    if not (sex is None or type(sex) is str):
        raise _bad(episode_id, "patient.sex", "text")
    if type(flags) is not dict:
        raise _bad(episode_id, "patient.flags", "an object")
    if row["status"] not in EPISODE_STATUSES:
        raise _bad(episode_id, "status", "active, resolved or closed")
    if type(row["version"]) is not int:
        raise _bad(episode_id, "version", "a whole number")
    if type(row["onset"]) is not date:
        raise _bad(episode_id, "onset", "a date")
    if not _instant(row["enrolled_at"]):
        raise _bad(episode_id, "enrolled_at", "an instant")
    coordinator, team = row["coordinator"], row["team"]
    if not (coordinator is None or type(coordinator) is str):
        raise _bad(episode_id, "coordinator", "text")
    if not (team is None or type(team) is str):
        raise _bad(episode_id, "team", "text")
    ZoneInfo(row["clinic_timezone"])  # cached by zoneinfo: a lookup after the first
    return EpisodeState(
        id=episode_id,
        patient=Patient(row["patient_ref"], age, sex, dict(flags)),
        onset=row["onset"],
        enrolled_at=row["enrolled_at"],
        clinic_timezone=row["clinic_timezone"],
        coordinator=coordinator,
        status=row["status"],
        configuration=list(configuration),
        history={k: list(v) for k, v in history.items()},
        facts=dict(facts),
        tasks={t["key"]: _task(episode_id, t) for t in task_rows},
        version=row["version"],
        pathway_id=row["pathway_id"],
        pathway_version=row["pathway_version"],
        team=team,
    )


def _task(episode_id: str, t: Mapping[str, Any]) -> TaskItem:
    key = t["key"]
    if type(key) is not str or type(t["rule"]) is not str or t["status"] not in TASK_STATUSES:
        raise _bad(episode_id, f"due item {key!r}", "a key, a rule and a status")
    window_start, escalate_at, completed_at = t["window_start"], t["escalate_at"], t["completed_at"]
    severity = t["severity"]
    if type(severity) is not int or not 0 <= severity < len(SEVERITIES):
        raise _bad(episode_id, f"due item {key}'s severity", "a rank of " + "/".join(SEVERITIES))
    if not (
        _instant(t["due_at"])
        and (window_start is None or _instant(window_start))
        and (escalate_at is None or _instant(escalate_at))
        and (completed_at is None or _instant(completed_at))
    ):
        raise _bad(episode_id, f"due item {key}'s times", "instants")
    return TaskItem(
        key=key,
        rule=t["rule"],
        due_at=t["due_at"],
        window_start=window_start,
        escalate_at=escalate_at,
        status=t["status"],
        completed_at=completed_at,
        severity=severity,
    )


def _instant(value: Any) -> bool:
    return type(value) is datetime and value.tzinfo is not None
