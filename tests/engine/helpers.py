"""A small driver for engine tests: an episode on a fake clock, events by day number."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from engine.clinic_time import add_days, clinic_noon
from engine.episode import EpisodeState, Step
from engine.events import parse_event, parse_opening
from engine.settings import DEFAULTS, PathwayDefaults
from pathways.lumbosacral_radiculopathy.steps import apply_event, fire_timer, open_episode


class Episode:
    """Open an episode and drive it; timers fire in due order as the clock moves."""

    def __init__(
        self,
        onset: str = "2026-01-05",
        enrolled_day: int = 0,
        tz: str = "UTC",
        defaults: PathwayDefaults = DEFAULTS,
        **patient: Any,
    ) -> None:
        self.onset = date.fromisoformat(onset)
        self.tz = ZoneInfo(tz)
        self.defaults = defaults
        enrolled = self.day(enrolled_day)
        opening = parse_opening(
            {
                "patient": {"ref": "t-1", **patient},
                "onset": onset,
                "enrolled_at": enrolled.isoformat(),
                "clinic_timezone": tz,
            }
        )
        step = open_episode(opening, "ep-1", enrolled, defaults)
        self.state: EpisodeState = step.state
        self.timers = list(step.timers)
        self.fired: list[Step] = []
        self.now = enrolled

    def day(self, n: int) -> datetime:
        return clinic_noon(add_days(self.onset, n), self.tz)

    def run_until(self, instant: datetime) -> None:
        while True:
            due = sorted((t for t in self.timers if t.due_at <= instant), key=lambda t: t.due_at)
            if not due:
                break
            timer = due[0]
            self.timers.remove(timer)
            step = fire_timer(
                self.state, timer.kind, timer.payload, timer.due_at, timer.due_at, self.defaults
            )
            self._absorb(step)
            if not step.noop:
                self.fired.append(step)
        self.now = max(self.now, instant)

    def _absorb(self, step: Step) -> None:
        if not step.accepted or step.noop:
            return
        if "*" in step.cancel_refs:
            self.timers = []
        self.timers = [t for t in self.timers if t.ref not in step.cancel_refs]
        self.timers += step.timers
        self.state = step.state

    def send(self, day: int, type: str, **data: Any) -> Step:
        at = self.day(day)
        self.run_until(at)
        step = apply_event(self.state, parse_event({"type": type, "data": data}), at, self.defaults)
        self._absorb(step)
        return step

    def task(self, key: str) -> Any:
        return self.state.tasks[key]
