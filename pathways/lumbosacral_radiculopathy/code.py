"""The lumbosacral radiculopathy pathway's code, as the engine calls it
(:class:`engine.pathway.PathwayCode`): its steps and its view's recommendations."""

from __future__ import annotations

from engine.pathway import PathwayCode
from pathways import LUMBOSACRAL_RADICULOPATHY
from pathways.lumbosacral_radiculopathy import advisories, steps
from pathways.lumbosacral_radiculopathy.chart import CHART

CODE = PathwayCode(
    id=LUMBOSACRAL_RADICULOPATHY,
    chart=CHART,
    open_episode=steps.open_episode,
    check_event=steps.check_event,
    apply_event=steps.apply_event,
    complete_task=steps.complete_task,
    fire_timer=steps.fire_timer,
    recommendations=advisories.recommendations,
)
