"""Replay: re-run each episode's recorded history and compare it with its audit rows.

An episode's audit rows record every step it took: its opening, each event (accepted or
refused), each due item marked done, each timer that fired. A replay feeds the same inputs
at the same instants, in the order the log recorded them, to the real engine and unit of
work on a private in-memory database (as ``carepath simulate`` does), and compares the row
each replayed step writes with the row on record: the configurations before and after,
accepted or refused, the rules, the reason, the input's digest, the pathway id and
version, the actor and the instants. After the last step the episode as the replay leaves
it must be the episode as stored: configuration, history, facts, current due items,
status, version, pathway version and what the opening gave (patient, onset, enrolment,
coordinator, team, time zone).

What a replay that matches proves: the stored episode is what the engine makes of the
recorded inputs under each step's recorded pathway version; neither the state, nor a
stored input, nor a published definition was changed since, and the engine still decides
as it did. (``carepath audit verify`` proves the rows themselves are the ones written.)

Each step runs on the pathway version its audit row names. The inputs are rebuilt from the
stored rows and picked by each row's payload digest (:mod:`models.replay_history`). Timers
are not copied from ``due_timer``: the replayed steps book their own, and at each recorded
timer step the private database fires its next due timer at the recorded instant (a timer
found stale, recorded as a no-op, is replayed the same way); the stored timer the row
describes must exist too. Episodes are replayed one after the other on one private
database, each with the timers of those before it cancelled. The real database is only
read.

The configurable numbers (``CAREPATH_DEFAULTS``) are not recorded with the steps: a replay
runs with the process's, as the service reads them (:meth:`PathwayDefaults.from_env`). A
replay under other defaults than those the steps were taken with differs, and says where.

Reported as differing, with the reason, rather than guessed at: a step whose input cannot be
rebuilt (an event row without its stored event, a timer row without its fired timer, a
stored input that no longer parses, a done item whose key no item has), a migration that
the record before it no longer allows (:func:`models.migration.take_again` takes it again:
the record re-run under the version it moved to), and a step on a version whose published
definition was edited since: the registry refuses it, or this database's record of the
digest it was published with does (:mod:`models.pathway_versions`); the message names the
version and both digests. A step the replay fails on (the engine raising) is reported
with its error, and the next episode is replayed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import Engine, Table, select, update

import pathways
from engine.decision import TASK_DONE, TASK_REOPENED
from engine.definition import DefinitionError
from engine.episode import iso
from engine.errors import CarepathError, InvalidEvent
from engine.settings import PathwayDefaults
from models.audit import HASHED_FIELDS
from models.db import make_engine, read_only, upgrade
from models.migration import take_again
from models.pathway_versions import check_recorded, recorded_digests
from models.replay_history import (
    AUDIT_LOG,
    EpisodeHistory,
    NotReplayable,
    Row,
    episode_ids,
    event_of,
    opening_of,
    read_histories,
    task_key_of,
    timer_of,
)
from models.repository import EpisodeRepository
from models.tables import DueTimer

TIMER = cast(Table, DueTimer.__table__)
# What a replayed step must give as recorded: every hashed field but the chain position.
COMPARED = tuple(name for name in HASHED_FIELDS if name != "seq")
# What the episode as stored must share with the replay's after the last step.
STATE_FIELDS = ("status", "configuration", "history", "facts", "tasks", "version",
                "pathway_id", "pathway_version", "patient", "onset", "enrolled_at",
                "clinic_timezone", "coordinator", "team")  # fmt: skip
BATCH = 100  # episodes read per snapshot
PRIVATE_EPISODES = 500  # episodes one private database holds before a fresh one


@dataclass(frozen=True)
class Difference:
    """The first step of an episode whose replay is not what was recorded.

    ``seq`` is the audit row's (None: the episode as stored, after its last step);
    ``fields`` maps each differing field to (recorded, replayed); ``problem`` says why the
    step could not be replayed at all.
    """

    episode_id: str
    seq: int | None
    trigger: str
    type: str
    fields: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)
    problem: str | None = None

    def line(self) -> str:
        """One line naming the episode, the step and what differs: values for a row's
        fields, only the keys for the episode's objects (facts, due items, history), whose
        values the JSON detail has."""
        if self.seq is None:
            where = f"episode {self.episode_id}: the episode as stored differs from its replay"
        else:
            where = (
                f"episode {self.episode_id} differs at audit row {self.seq} "
                f"({self.trigger} {self.type})"
            )
        if self.problem is not None:
            return f"{where}: {self.problem}"
        said = []
        for name, (recorded, replayed) in self.fields.items():
            if isinstance(recorded, dict) and isinstance(replayed, dict):
                keys = sorted(map(str, {**recorded, **replayed}))
                said.append(f"{name}: differs in {', '.join(keys)}")
            else:
                said.append(f"{name}: recorded {_text(recorded)}, replay gives {_text(replayed)}")
        return f"{where}: {'; '.join(said)}"

    def as_json(self) -> dict[str, Any]:
        return {
            "episode": self.episode_id,
            "seq": self.seq,
            "trigger": self.trigger,
            "type": self.type,
            "problem": self.problem,
            "fields": {
                name: {"recorded": plain(recorded), "replayed": plain(replayed)}
                for name, (recorded, replayed) in self.fields.items()
            },
        }


@dataclass
class EpisodeReplay:
    """One episode's replay: audit rows replayed, how many matched, the first difference."""

    episode_id: str
    steps: int = 0
    matched: int = 0
    difference: Difference | None = None


@dataclass
class ReplayReport:
    episodes: list[EpisodeReplay] = field(default_factory=list)

    @property
    def differing(self) -> list[Difference]:
        return [e.difference for e in self.episodes if e.difference is not None]

    @property
    def ok(self) -> bool:
        return not self.differing

    def as_json(self) -> dict[str, Any]:
        return {
            "episodes": len(self.episodes),
            "steps": sum(e.steps for e in self.episodes),
            "matched": sum(e.matched for e in self.episodes),
            "differing": [d.as_json() for d in self.differing],
        }


def replay_episodes(
    engine: Engine,
    ids: Sequence[str] | None = None,
    defaults: PathwayDefaults | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ReplayReport:
    """Replay every episode (or those of ``ids``), each to its first difference.

    Args:
        engine: the carepath database; only read.
        ids: the episodes to replay (default: all, in the order they were opened).
        defaults: the pathway's configurable numbers (default: ``CAREPATH_DEFAULTS``).
        on_progress: called with 1 after each episode.

    Raises:
        EpisodeNotFound: one of ``ids`` has no episode (nothing is replayed).
    """
    defaults = defaults or PathwayDefaults.from_env()
    wanted = episode_ids(engine, ids)
    recorded = recorded_digests(engine)
    report = ReplayReport()
    private: PrivateDatabase | None = None
    try:
        for start in range(0, len(wanted), BATCH):
            for history in read_histories(engine, wanted[start : start + BATCH]):
                if private is None or private.episodes >= PRIVATE_EPISODES:
                    if private is not None:
                        private.close()
                    private = PrivateDatabase(defaults)
                report.episodes.append(replay_history(private, history, recorded))
                if on_progress is not None:
                    on_progress(1)
    finally:
        if private is not None:
            private.close()
    return report


class PrivateDatabase:
    """The replay's own database: SQLite in memory, migrated once, thrown away after."""

    def __init__(self, defaults: PathwayDefaults) -> None:
        self.engine = make_engine("sqlite://")
        upgrade(self.engine, record_versions=False)
        self.repo = EpisodeRepository(self.engine, defaults)
        self.episodes = 0
        self._last_seq = 0

    def begin_episode(self) -> None:
        # An episode replayed before must not have its timers fire in this one's replay.
        with self.engine.begin() as connection:
            connection.execute(
                update(TIMER).where(TIMER.c.status == "pending").values(status="cancelled")
            )
        self.episodes += 1

    def written(self) -> list[Row]:
        """The audit rows written since the last call."""
        query = select(AUDIT_LOG).where(AUDIT_LOG.c.seq > self._last_seq).order_by(AUDIT_LOG.c.seq)
        with read_only(self.engine) as connection:
            rows: list[Row] = [row._asdict() for row in connection.execute(query)]
        if rows:
            self._last_seq = rows[-1]["seq"]
        return rows

    def close(self) -> None:
        self.engine.dispose()


def replay_history(
    private: PrivateDatabase,
    history: EpisodeHistory,
    recorded: Mapping[tuple[str, str], str] | None = None,
) -> EpisodeReplay:
    """Replay one episode's ``history`` on ``private``, up to its first difference; each
    step's version must also have the digest its database ``recorded`` for it, if any
    (:func:`models.pathway_versions.recorded_digests`).

    The steps run until one cannot be replayed, and the rows they wrote are compared with
    the recorded ones afterwards, in one read: a step that differs is followed by
    others, but only the first difference is reported."""
    result = EpisodeReplay(history.episode_id)
    private.begin_episode()
    events = iter(history.events)
    stopped: Difference | None = None
    for index in range(len(history.steps)):
        stopped = _run(private, history, index, events, recorded or {})
        if stopped is not None:
            break
    written = private.written()
    for step, replayed in zip(history.steps, written, strict=False):
        result.steps += 1
        result.difference = _compared(history, step, replayed)
        if result.difference is not None:
            return result
        result.matched += 1
    if stopped is not None:
        result.steps += 1
        result.difference = stopped
    elif len(written) != len(history.steps):
        problem = f"the replay wrote {len(written)} audit rows for {len(history.steps)} steps"
        result.difference = _stored(history, problem=problem)
    elif not history.steps:
        result.difference = _stored(history, problem="the audit log holds no row of it")
    elif left := sum(1 for _ in events):
        result.difference = _stored(
            history, problem=f"clinical_event holds {left} event(s) of it no audit row records"
        )
    else:
        result.difference = _final(private, history)
    return result


def _run(
    private: PrivateDatabase,
    history: EpisodeHistory,
    index: int,
    events: Iterator[Row],
    recorded: Mapping[tuple[str, str], str],
) -> Difference | None:
    """Run the step of audit row ``index``; None when it ran (and wrote its row), else
    why it could not."""
    step = history.steps[index]

    def differs(problem: str) -> Difference:
        return Difference(history.episode_id, step["seq"], step["trigger"], step["type"],
                          problem=problem)  # fmt: skip

    version = f"{step['pathway_id']} {step['pathway_version']}"
    try:
        check_recorded(pathways.definition(step["pathway_id"], step["pathway_version"]), recorded)
        _feed(private, history, index, events)
    except NotReplayable as exc:
        return differs(f"cannot be replayed: {exc.problem}")
    except DefinitionError as exc:
        return differs(f"cannot be replayed on pathway {version}: {exc}")
    except InvalidEvent as exc:
        return differs(f"the replay finds the input invalid: {exc.field}: {exc.reason}")
    except CarepathError as exc:
        return differs(f"the replay refuses the step: {exc}")
    except Exception as exc:  # noqa: BLE001 - one episode's failure is its own
        return differs(f"the replay fails: {type(exc).__name__}: {exc}")
    return None


def _compared(history: EpisodeHistory, step: Row, replayed: Row) -> Difference | None:
    fields = {
        name: (step[name], replayed[name]) for name in COMPARED if step[name] != replayed[name]
    }
    if not fields:
        return None
    return Difference(history.episode_id, step["seq"], step["trigger"], step["type"], fields)


def _feed(
    private: PrivateDatabase, history: EpisodeHistory, index: int, events: Iterator[Row]
) -> None:
    """Run the input of audit row ``index`` through the private unit of work, at its
    recorded instant."""
    step, first = history.steps[index], index == 0
    trigger, type_, at = step["trigger"], step["type"], step["recorded_at"]
    repo, episode_id = private.repo, history.episode_id
    if first and trigger != "open":
        raise NotReplayable("the episode's first audit row is not its opening")
    if trigger == "open" and not first:
        raise NotReplayable("the episode has a second opening")
    if trigger == "open":
        repo.open(
            opening_of(history, step), at, episode_id, step["actor"], answer_view=False,
            pinned=True,
        )  # fmt: skip
    elif trigger == "event" and type_ == TASK_DONE:  # the worklist's "done"
        key = task_key_of(history, step)
        repo.complete_task(episode_id, key, step["actor"], at, answer_view=False)
    elif trigger == "event" and type_ == TASK_REOPENED:  # ... and its "reopen"
        key = task_key_of(history, step)
        repo.reopen_task(episode_id, key, step["actor"], at, answer_view=False)
    elif trigger == "event":
        stored = next(events, None)
        if stored is None:
            raise NotReplayable("clinical_event holds no further event of the episode")
        repo.apply_parsed(episode_id, event_of(stored, step), at, answer_view=False)
    elif trigger == "timer":
        timer_of(history, step)
        batch = repo.fire_batch(at, 1)
        if batch.failed:
            errors = [change.error for change in batch.incidents if change.error]
            raise NotReplayable(f"the replayed timer step fails: {'; '.join(errors)}")
        if not batch.fired:
            raise NotReplayable(f"the replay has no timer due at {iso(at)}")
    elif trigger == "migration":  # the record before it taken again under the new version
        take_again(private.engine, history, index, step["pathway_version"], at, step["actor"],
                   repo.defaults)  # fmt: skip
    else:
        raise NotReplayable(f"replay does not re-run {trigger!r} steps")


def _stored(history: EpisodeHistory, **facts: Any) -> Difference:
    return Difference(history.episode_id, None, "final", "episode", **facts)


def _final(private: PrivateDatabase, history: EpisodeHistory) -> Difference | None:
    """The episode as stored against the replay's, after the last step."""
    try:
        stored = history.state()
    except CarepathError as exc:
        return _stored(history, problem=f"the stored episode cannot be read: {exc}")
    replayed = private.repo.load(history.episode_id)
    fields = {}
    for name in STATE_FIELDS:
        recorded, got = getattr(stored, name), getattr(replayed, name)
        if recorded != got:
            fields[name] = _narrowed(recorded, got)
    return _stored(history, fields=fields) if fields else None


def _narrowed(recorded: Any, replayed: Any) -> tuple[Any, Any]:
    """Two objects cut down to the keys whose values differ (facts, due items)."""
    if not (isinstance(recorded, dict) and isinstance(replayed, dict)):
        return recorded, replayed
    keys = [k for k in {**recorded, **replayed} if recorded.get(k) != replayed.get(k)]
    return {k: recorded.get(k) for k in keys}, {k: replayed.get(k) for k in keys}


def plain(value: Any) -> Any:
    """``value`` as JSON values: instants and dates in ISO 8601, dataclasses as objects."""
    if isinstance(value, datetime | date):
        return iso(value)
    if is_dataclass(value) and not isinstance(value, type):
        return plain(asdict(value))
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def _text(value: Any) -> str:
    return json.dumps(plain(value), ensure_ascii=False, sort_keys=True)
