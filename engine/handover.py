"""Handing an episode from one coordinator to another: who is in charge, on record.

Any pathway's episode has a coordinator (or nobody: its care team's unassigned queue), so the
engine takes a ``handover`` itself, without the pathway: the episode's clinical state is
untouched and its open items move to the new coordinator's list with it. It is an event like
any other (on record in the audit log, replayed, taken again by a migration), so who was in
charge of a patient at any time can be shown, and proved.
"""

from __future__ import annotations

from engine.episode import EpisodeState, Step
from engine.events import ClinicalEvent, HandoverData

HANDOVER = "handover"


def hand_over(state: EpisodeState, event: ClinicalEvent) -> Step:
    """The episode in ``event``'s new coordinator's charge, or refused (nothing changes)
    when its ``from`` is no longer the one in charge: someone else claimed or handed it
    over first."""
    data = event.data
    assert isinstance(data, HandoverData)
    if data.from_ != state.coordinator:
        now_with = f"{state.coordinator}'s" if state.coordinator else "in nobody's charge"
        was = f"{data.from_}'s" if data.from_ else "unassigned"
        return Step(
            state=state, accepted=False,
            reason=f"the episode is now {now_with}, not {was}: it was handed over meanwhile; "
            "reload to see who has it",
        )  # fmt: skip
    step = Step(state=state.clone(), accepted=True)
    step.state.coordinator = data.to
    return step
