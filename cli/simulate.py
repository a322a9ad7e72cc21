"""`carepath simulate`: run a scripted episode on a private in-memory database.

The scenario (YAML or JSON, CONTRACT section 4) is played on the real engine and unit of
work with a fake clock: before each step every timer due by then fires at its due instant,
then the step's event is applied at the step's time.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

import pathways
from engine.clinic_time import FakeClock, add_days, clinic_noon, to_utc
from engine.errors import CarepathError, InvalidEvent
from engine.events import parse_opening
from models.db import make_engine, make_session_factory, upgrade
from models.repository import EpisodeRepository

TOP_KEYS = (
    "clinic_timezone", "patient", "onset", "enrolled_at", "coordinator", "pathway_version",
    "steps", "until",
)  # fmt: skip
STEP_KEYS = ("at", "event")
DAY_RE = re.compile(r"^\s*day\s+(-?\d+)\s*$", re.IGNORECASE)


class _ScenarioLoader(yaml.SafeLoader):
    """YAML without implicit timestamps: dates and times stay text for the engine's parser
    (which names a bad one by its field instead of failing inside the YAML reader)."""


_ScenarioLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class SimulationError(CarepathError):
    """A scenario that cannot be simulated: names the field, like :class:`InvalidEvent`."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


def load_scenario(text_or_path: str | Path) -> dict[str, Any]:
    """Parse a scenario given as a path or as YAML/JSON text."""
    text = str(text_or_path)
    path = Path(text)
    try:
        if "\n" not in text and path.exists():
            text = path.read_text(encoding="utf-8")
    except OSError:
        pass
    try:
        scenario = (
            json.loads(text)
            if text.lstrip().startswith("{")
            else yaml.load(text, Loader=_ScenarioLoader)
        )  # noqa: S506
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SimulationError("scenario", f"not valid YAML or JSON: {exc}") from None
    if not isinstance(scenario, dict):
        raise SimulationError("scenario", "must be a mapping with patient, onset and steps")
    return scenario


def _instant(value: Any, field: str, onset: date, tz: ZoneInfo) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise SimulationError(field, "needs a UTC offset (e.g. 'Z')")
        return to_utc(value)
    if isinstance(value, str):
        match = DAY_RE.match(value)
        if match:
            try:
                return clinic_noon(add_days(onset, int(match.group(1))), tz)
            except (OverflowError, ValueError):  # a day beyond the calendar
                raise SimulationError(field, f"{value!r} is out of range") from None
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return to_utc(parsed)
    raise SimulationError(field, f"must be 'day N' or an ISO 8601 time with offset, got {value!r}")


def _opening_payload(scenario: dict[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = {
        k: scenario[k]
        for k in ("patient", "onset", "coordinator", "clinic_timezone", "pathway_version")
        if k in scenario
    }
    for key in ("onset",):
        if isinstance(payload.get(key), date):
            payload[key] = payload[key].isoformat()
    enrolled = scenario.get("enrolled_at")
    if isinstance(enrolled, datetime):
        enrolled = enrolled.isoformat()
    if enrolled is not None and not (isinstance(enrolled, str) and DAY_RE.match(enrolled)):
        payload["enrolled_at"] = enrolled
    return payload


def simulate(text_or_path: str | Path | dict[str, Any]) -> dict[str, Any]:
    """Play a scenario; returns ``{"timeline": [...], "final": view}``.

    Raises:
        SimulationError, InvalidEvent: naming the bad field (``steps[3].event.data.vas_leg``).
    """
    scenario = text_or_path if isinstance(text_or_path, dict) else load_scenario(text_or_path)
    unknown = [k for k in scenario if k not in TOP_KEYS]
    if unknown:
        raise SimulationError(
            str(unknown[0]), f"unknown field; expected one of: {', '.join(TOP_KEYS)}"
        )
    opening = parse_opening(_opening_payload(scenario))
    tz = ZoneInfo(opening.clinic_timezone)
    raw_enrolled = scenario.get("enrolled_at")
    if isinstance(raw_enrolled, str) and DAY_RE.match(raw_enrolled):
        enrolled = _instant(raw_enrolled, "enrolled_at", opening.onset, tz)
    else:
        enrolled = opening.enrolled_at or clinic_noon(opening.onset, tz)

    steps = scenario.get("steps") or []
    if not isinstance(steps, list):
        raise SimulationError("steps", "must be a list of {at, event}")
    timed: list[tuple[datetime, dict[str, Any]]] = []
    previous = enrolled
    for i, step in enumerate(steps):
        where = f"steps[{i}]"
        if not isinstance(step, dict):
            raise SimulationError(where, "must be a mapping with 'at' and 'event'")
        extra = [k for k in step if k not in STEP_KEYS]
        if extra:
            raise SimulationError(f"{where}.{extra[0]}", "unknown field; expected: at, event")
        if "at" not in step:
            raise SimulationError(f"{where}.at", "is required")
        if not isinstance(step.get("event"), dict):
            raise SimulationError(f"{where}.event", "is required and must be a mapping")
        at = _instant(step["at"], f"{where}.at", opening.onset, tz)
        if at < previous:
            raise SimulationError(
                f"{where}.at",
                "steps must be in time order and not before enrolment "
                f"({at.isoformat()} is before {previous.isoformat()})",
            )
        previous = at
        timed.append((at, step["event"]))
    until = previous
    if scenario.get("until") is not None:
        until = max(_instant(scenario["until"], "until", opening.onset, tz), previous)

    engine = make_engine("sqlite://")
    try:
        upgrade(engine)
        repo = EpisodeRepository(make_session_factory(engine))
        clock = FakeClock(enrolled)
        view = repo.open(opening, clock.now(), episode_id="sim-episode")
        episode_id = view["id"]
        timeline: list[dict[str, Any]] = []
        for i, (at, event) in enumerate(timed):
            timeline += repo.fire_due(at, on_time=True)
            clock.set(at)
            payload = {k: _jsonable(v) for k, v in event.items()}
            try:
                timeline.append(repo.apply_entry(episode_id, payload, clock.now()))
            except InvalidEvent as exc:
                raise InvalidEvent(f"steps[{i}].event.{exc.field}", exc.reason) from None
        timeline += repo.fire_due(until, on_time=True)
        clock.set(until)
        final = repo.view(episode_id)
    finally:
        engine.dispose()
    for entry in timeline:
        entry.pop("version", None)
    if pathways.definition(final["pathway"]["id"], final["pathway"]["version"]).corrects(
        "EVENTS-AT-OCCURRED"
    ):
        # From 1.1.0 the timeline is in the order things happened (a step documented late
        # among those of its time); the sort is stable, so steps of one instant keep theirs.
        timeline.sort(key=lambda entry: datetime.fromisoformat(entry["at"].replace("Z", "+00:00")))
    return {"timeline": timeline, "final": final}


def _jsonable(value: Any) -> Any:
    """YAML reads dates and times as Python objects; the event parser wants JSON values."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value
