"""What the engine asks of a pathway's code: its steps, and what its view recommends.

The engine holds the mechanics every pathway shares (the statechart binding, clinic time,
due items, errors, the Decision of a step); a pathway's package (``pathways/<name>/``)
holds its clinical content: definition files per version, and the code that acts on them,
its handlers and guards keyed by rule ID. :class:`PathwayCode` is the seam between the two:
:mod:`engine.decision` takes one and runs its steps, the registry (:mod:`pathways`) hands
out the one an episode's pathway id names.

Each step is a pure function of (episode, input, clock reading, defaults) returning a
:class:`~engine.episode.Step`, under the rules of the episode's pinned version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.chart import Statechart
from engine.episode import EpisodeState, Step
from engine.settings import PathwayDefaults

if TYPE_CHECKING:  # the registry imports this module before the rules events read
    from engine.events import ClinicalEvent, Opening

Recommendation = dict[str, Any]


@dataclass(frozen=True)
class PathwayCode:
    """One pathway's code, as the engine calls it.

    Attributes:
        id: the pathway id its episodes carry (``lumbosacral-radiculopathy``).
        chart: its statechart, with the engine's mechanics over it.
        open_episode: enrol a patient (opening, episode id, now, defaults).
        check_event: input checks on an event that come before its time is checked, in the
            episode's version; raises :class:`~engine.errors.InvalidEvent`.
        apply_event: apply one clinical event; a refusal leaves the episode as it was.
        complete_task: a coordinator marks a due item done (episode, item key, now).
        fire_timer: act on a due timer (episode, kind, payload, due instant, now, defaults).
        recommendations: what the episode view recommends now, with the clinic's numbers.
    """

    id: str
    chart: Statechart
    open_episode: Callable[[Opening, str, datetime, PathwayDefaults], Step]
    check_event: Callable[[EpisodeState, ClinicalEvent], None]
    apply_event: Callable[[EpisodeState, ClinicalEvent, datetime, PathwayDefaults], Step]
    complete_task: Callable[[EpisodeState, str, datetime], Step]
    fire_timer: Callable[
        [EpisodeState, str, dict[str, Any], datetime, datetime, PathwayDefaults], Step
    ]
    recommendations: Callable[[EpisodeState, PathwayDefaults], list[Recommendation]]
