"""The pathway statechart: phase, management and referral tracks, and the red-flag branch.

``care`` is a parallel state with two regions. ``phase`` follows time since onset.
``track`` is either ``routine`` -- itself parallel: ``management`` and ``referral`` -- or
``red_flag``, which pre-empts routine care. Leaving ``routine`` for ``red_flag`` records the
deep history of ``routine`` (``routine_history``); clearing the flag re-enters it, so the
episode goes back to the configuration it left. Confirming the flag goes on to specialist
care. ``resolved`` and ``closed`` are final.

The library keeps configuration and history in memory only; :func:`bind` and
:func:`snapshot` move them to and from plain lists that the database stores.
"""

from __future__ import annotations

import threading
from typing import Any

from statemachine import State, StateChart
from statemachine.exceptions import TransitionNotAllowed
from statemachine.orderedset import OrderedSet
from statemachine.state import HistoryState

from engine.errors import InvalidConfiguration

PATHWAY_ID = "lumbosacral-radiculopathy"
PATHWAY_VERSION = "1.0.0"

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
PHASE_STATES = ("acute", "subacute", "chronic")
RED_FLAG_LEVELS = ("emergency", "urgent")
FINAL_STATES = ("resolved", "closed")
HISTORY_ID = "routine_history"


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


class _Holder:
    """The model object the chart reads and writes its configuration through."""

    state: Any = None


STATE_IDS = frozenset(PathwayChart.states_map)


def snapshot(chart: PathwayChart) -> tuple[list[str], dict[str, list[str]]]:
    """Configuration and history as plain JSON-able lists, in document order."""
    active = {state.id for state in chart.configuration}
    order = list(PathwayChart.states_map)
    configuration = [sid for sid in order if sid in active]
    history = {key: [s.id for s in states] for key, states in chart.history_values.items()}
    return configuration, history


# Where every episode starts: the same for all, so worked out once (binding a fresh chart
# costs more than the rest of an opening).
_INITIAL = tuple(snapshot(PathwayChart())[0])


def initial_configuration() -> list[str]:
    return list(_INITIAL)


# Configurations already found valid: a chart has few, and every step checks one twice.
_valid_configurations: set[tuple[str, ...]] = set()


def validate_configuration(configuration: list[str]) -> None:
    """Refuse a stored configuration the chart could never be in.

    Raises:
        InvalidConfiguration: unknown ids, two siblings active, a missing parent or region.
    """
    key = tuple(configuration)
    if key in _valid_configurations:
        return
    _check_configuration(configuration)
    _valid_configurations.add(key)


def _check_configuration(configuration: list[str]) -> None:
    states = PathwayChart.states_map
    unknown = [sid for sid in configuration if sid not in states]
    if unknown:
        raise InvalidConfiguration(configuration, f"unknown state id(s): {', '.join(unknown)}")
    active = set(configuration)
    if len(active) != len(configuration):
        raise InvalidConfiguration(configuration, "a state id is listed twice")
    top = [s.id for s in PathwayChart.states if s.id in active]
    if len(top) != 1:
        raise InvalidConfiguration(configuration, "exactly one top-level state must be active")
    for sid in configuration:
        state = states[sid]
        parent = state.parent
        if parent is not None and parent.id not in active:
            raise InvalidConfiguration(configuration, f"{sid} is active but {parent.id} is not")
        children = [c for c in state.states if not c.is_history]
        if not children:
            continue
        on = [c.id for c in children if c.id in active]
        if state.parallel and len(on) != len(children):
            raise InvalidConfiguration(configuration, f"parallel {sid} needs all its regions")
        if not state.parallel and len(on) != 1:
            detail = "two siblings active: " + ", ".join(on) if on else "no child active"
            raise InvalidConfiguration(configuration, f"{sid}: {detail}")


def validate_stored(configuration: list[str], history: dict[str, list[str]]) -> None:
    """Refuse a stored configuration or history the chart could never have.

    Raises:
        InvalidConfiguration: naming what is wrong.
    """
    validate_configuration(configuration)
    for key, values in history.items():
        if key != HISTORY_ID or any(v not in PathwayChart.states_map for v in values):
            raise InvalidConfiguration(configuration, f"invalid stored history {key}: {values}")


_charts = threading.local()


def bind(configuration: list[str], history: dict[str, list[str]]) -> PathwayChart:
    """A chart standing in a stored configuration, without running entry actions.

    Building a StateChart registers every callback anew, which costs more than the step
    itself; each thread keeps one chart and re-points it at the stored configuration.
    """
    validate_stored(configuration, history)
    chart: PathwayChart | None = getattr(_charts, "chart", None)
    # A chart that entered a final state has stopped its engine for good: replace it.
    if chart is None or chart.is_terminated:
        holder = _Holder()
        holder.state = OrderedSet(configuration)
        chart = PathwayChart(model=holder)
        _charts.chart = chart
    else:
        chart.model.state = OrderedSet(configuration)
    states = PathwayChart.states_map
    chart.history_values = {key: [states[v] for v in values] for key, values in history.items()}
    return chart


Configuration = tuple[list[str], dict[str, list[str]]]
# Where an event leads from a configuration and history (None: nowhere). The chart has no
# guards and no actions, so the answer depends on nothing else; python-statemachine takes
# 0.3-0.8 ms to work it out, and the episodes of a clinic stand in few of the chart's
# configurations, so each answer is worked out once per process (the memo is bounded).
_moves: dict[tuple[tuple[str, ...], tuple[tuple[str, tuple[str, ...]], ...], str], Any] = {}
_MAX_MOVES = 10_000
_UNKNOWN = object()  # not in the memo (None there means "not allowed")


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
    resumed = move(configuration, history, "clear_red_flag")
    moved = None if resumed is None else move(*resumed, event)
    return None if moved is None else move(*moved, f"raise_{level}_flag")


def move(
    configuration: list[str], history: dict[str, list[str]], event: str
) -> Configuration | None:
    """The configuration and history after ``event``, or None when it is not allowed here.

    Raises:
        InvalidConfiguration: the configuration or history cannot be bound to the chart.
    """
    key = (
        tuple(configuration),
        tuple(sorted((name, tuple(values)) for name, values in history.items())),
        event,
    )
    # One lookup, and the answer kept locally: another thread may clear the memo between a
    # write and a second read.
    answer = _moves.get(key, _UNKNOWN)
    if answer is _UNKNOWN:
        chart = bind(configuration, history)
        try:
            chart.send(event)
            answer = snapshot(chart)
        except TransitionNotAllowed:
            answer = None
        if len(_moves) >= _MAX_MOVES:
            _moves.clear()
        _moves[key] = answer
    if answer is None:
        return None
    after, history_after = answer
    # Copies: the caller's episode owns what it is given.
    return list(after), {name: list(values) for name, values in history_after.items()}


def region_value(configuration: list[str], region: tuple[str, ...]) -> str | None:
    """Which of a region's states is active, if any."""
    # A plain loop: every episode view asks this several times, and a generator costs more
    # to set up than the search itself.
    for sid in configuration:
        if sid in region:
            return sid
    return None
