"""The working context of one step: the episode being changed, its chart, the clock reading."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.episode import EpisodeState, Step
from engine.settings import PathwayDefaults
from pathways import of_episode
from pathways.lumbosacral_radiculopathy.chart import CHART, move_beneath_flag


@dataclass
class StepContext:
    state: EpisodeState
    step: Step
    at: datetime  # when it happened clinically (occurred_at, or the timer's due time)
    now: datetime  # the clock reading of this step
    defaults: PathwayDefaults

    @property
    def facts(self) -> dict[str, Any]:
        return self.state.facts

    def send(self, event: str) -> bool:
        """Send a chart event if the current configuration allows it; True when it moved.

        Under a red flag, from version 1.1.0 (RF-CARE), a routine move (a referral made, a
        specialist visit, a procedure) is applied to the care the flag will resume.
        """
        moved = CHART.move(self.state.configuration, self.state.history, event)
        if moved is None and self.state.in_red_flag and of_episode(self.state).corrects("RF-CARE"):
            moved = move_beneath_flag(self.state.configuration, self.state.history, event)
        if moved is None:
            return False
        self.state.configuration, self.state.history = moved
        return True
