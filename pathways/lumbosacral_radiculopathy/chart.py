"""The lumbosacral pathway's statechart: phase, management and referral tracks, and the
red-flag branch.

``care`` is a parallel state with two regions. ``phase`` follows time since onset.
``track`` is either ``routine`` -- itself parallel: ``management`` and ``referral`` -- or
``red_flag``, which pre-empts routine care. Leaving ``routine`` for ``red_flag`` records the
deep history of ``routine`` (``routine_history``); clearing the flag re-enters it, so the
episode goes back to the configuration it left. Confirming the flag goes on to specialist
care. ``resolved`` and ``closed`` are final.

The region and state names are those of the episode view (CONTRACT.md section 3,
:mod:`engine.episode`); :data:`CHART` binds and moves the chart (:mod:`engine.chart`).
"""

from __future__ import annotations

from statemachine import State, StateChart
from statemachine.state import HistoryState

from engine.chart import Configuration, Statechart
from engine.episode import HISTORY_ID


class PathwayChart(StateChart):  # type: ignore[type-arg]
    """Lumbosacral radiculopathy care pathway (PATHWAY.md)."""

    catch_errors_as_events = False
    allow_event_without_transition = False

    class care(State.Parallel):
        class phase(State.Compound):
            acute = State(initial=True)
            subacute = State()
            chronic = State()

            # PH-SUBACUTE at onset + 6 weeks, PH-CHRONIC at onset + 12 weeks.
            enter_subacute = acute.to(subacute)
            enter_chronic = subacute.to(chronic) | acute.to(chronic)

        class track(State.Compound):
            class routine(State.Parallel):
                class management(State.Compound):
                    conservative = State(initial=True)
                    review = State()
                    imaging = State()
                    interventional = State()
                    specialist = State()
                    rehabilitation = State()
                    shared_care = State()

                    # Management only moves forward along the pathway.
                    start_review = conservative.to(review)
                    start_imaging = conservative.to(imaging) | review.to(imaging)
                    start_intervention = (
                        conservative.to(interventional)
                        | review.to(interventional)
                        | imaging.to(interventional)
                    )
                    start_specialist_care = (
                        conservative.to(specialist)
                        | review.to(specialist)
                        | imaging.to(specialist)
                        | interventional.to(specialist)
                    )
                    start_rehabilitation = (
                        conservative.to(rehabilitation)
                        | review.to(rehabilitation)
                        | imaging.to(rehabilitation)
                        | interventional.to(rehabilitation)
                        | specialist.to(rehabilitation)
                    )
                    start_shared_care = (
                        conservative.to(shared_care)
                        | review.to(shared_care)
                        | imaging.to(shared_care)
                        | interventional.to(shared_care)
                        | specialist.to(shared_care)
                        | rehabilitation.to(shared_care)
                    )

                class referral(State.Compound):
                    not_indicated = State(initial=True)
                    due = State()
                    overdue = State()
                    referred = State()
                    seen = State()

                    referral_indicated = not_indicated.to(due)
                    referral_withdrawn = due.to(not_indicated)
                    deadline_missed = due.to(overdue)
                    referral_made = (
                        not_indicated.to(referred) | due.to(referred) | overdue.to(referred)
                    )
                    specialist_visit = (
                        not_indicated.to(seen) | due.to(seen) | overdue.to(seen) | referred.to(seen)
                    )

                routine_history = HistoryState(type="deep")

            class red_flag(State.Compound):
                urgent = State(initial=True)
                emergency = State()

            raise_urgent_flag = routine.to(red_flag.urgent)
            raise_emergency_flag = routine.to(red_flag.emergency) | red_flag.urgent.to(
                red_flag.emergency
            )
            clear_red_flag = red_flag.to(routine.routine_history)
            confirm_red_flag = red_flag.to(routine.management.specialist)

    resolved = State(final=True)
    closed = State(final=True)

    resolve_episode = care.to(resolved)
    close_episode = care.to(closed)


CHART = Statechart(PathwayChart, history_ids=frozenset({HISTORY_ID}))


FLAG_EVENTS = frozenset(
    {"raise_urgent_flag", "raise_emergency_flag", "clear_red_flag", "confirm_red_flag"}
)


def move_beneath_flag(
    configuration: list[str], history: dict[str, list[str]], event: str
) -> Configuration | None:
    """Under a red flag routine care is paused, and the flag's deep history holds where it
    will resume: ``event`` moved there (RF-CARE, from version 1.1.0), the flag unchanged.

    Done with the chart's own moves: resume, move, raise the flag again at its level; None
    when ``event`` is not a routine move allowed where care would resume.
    """
    if "red_flag" not in configuration or event in FLAG_EVENTS:
        return None
    level = "emergency" if "emergency" in configuration else "urgent"
    resumed = CHART.move(configuration, history, "clear_red_flag")
    moved = None if resumed is None else CHART.move(*resumed, event)
    return None if moved is None else CHART.move(*moved, f"raise_{level}_flag")
