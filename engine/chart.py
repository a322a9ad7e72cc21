"""Binding and moving a pathway's statechart: the mechanics, whatever the chart.

A pathway defines its chart as a python-statemachine ``StateChart`` class (the lumbosacral
one is ``pathways/lumbosacral_radiculopathy/chart.py``); :class:`Statechart` wraps it with
what the engine needs. The library keeps configuration and history in memory only;
:meth:`Statechart.bind` and :meth:`Statechart.snapshot` move them to and from the plain
lists the database stores, :meth:`Statechart.move` says where an event leads, and
:meth:`Statechart.validate_stored` refuses what the chart could never be in.
"""

from __future__ import annotations

import threading
from typing import Any

from statemachine import StateChart
from statemachine.exceptions import TransitionNotAllowed
from statemachine.orderedset import OrderedSet

from engine.errors import InvalidConfiguration

Configuration = tuple[list[str], dict[str, list[str]]]
_MoveKey = tuple[tuple[str, ...], tuple[tuple[str, tuple[str, ...]], ...], str]
_UNKNOWN = object()  # not in the memo (None there means "not allowed")


class _Holder:
    """The model object the chart reads and writes its configuration through."""

    state: Any = None


class Statechart:
    """One pathway's chart class, with the engine's mechanics over it.

    Args:
        chart_class: the pathway's ``StateChart`` (no guards, no actions: where an event
            leads depends on the configuration and history alone).
        history_ids: the ids of its history states, the only keys a stored history has.
    """

    # Moves remembered per chart (see :meth:`move`); bounded.
    MAX_MOVES = 10_000

    def __init__(self, chart_class: type[StateChart[Any]], history_ids: frozenset[str]):
        self.chart_class = chart_class
        self.states = chart_class.states_map
        self.history_ids = history_ids
        # Configurations already found valid: a chart has few, and every step checks one
        # twice.
        self._valid: set[tuple[str, ...]] = set()
        self._moves: dict[_MoveKey, Any] = {}
        self._charts = threading.local()
        # Where every episode starts: the same for all, so worked out once (binding a
        # fresh chart costs more than the rest of an opening).
        self._initial = tuple(self.snapshot(chart_class())[0])

    def snapshot(self, chart: StateChart[Any]) -> Configuration:
        """Configuration and history as plain JSON-able lists, in document order."""
        active = {state.id for state in chart.configuration}
        configuration = [sid for sid in self.states if sid in active]
        history = {key: [s.id for s in states] for key, states in chart.history_values.items()}
        return configuration, history

    def initial_configuration(self) -> list[str]:
        return list(self._initial)

    def validate_configuration(self, configuration: list[str]) -> None:
        """Refuse a stored configuration the chart could never be in.

        Raises:
            InvalidConfiguration: unknown ids, two siblings active, a missing parent or
                region.
        """
        key = tuple(configuration)
        if key in self._valid:
            return
        self._check_configuration(configuration)
        self._valid.add(key)

    def _check_configuration(self, configuration: list[str]) -> None:
        states = self.states
        unknown = [sid for sid in configuration if sid not in states]
        if unknown:
            raise InvalidConfiguration(configuration, f"unknown state id(s): {', '.join(unknown)}")
        active = set(configuration)
        if len(active) != len(configuration):
            raise InvalidConfiguration(configuration, "a state id is listed twice")
        top = [s.id for s in self.chart_class.states if s.id in active]
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

    def validate_stored(self, configuration: list[str], history: dict[str, list[str]]) -> None:
        """Refuse a stored configuration or history the chart could never have.

        Raises:
            InvalidConfiguration: naming what is wrong.
        """
        self.validate_configuration(configuration)
        for key, values in history.items():
            if key not in self.history_ids or any(v not in self.states for v in values):
                raise InvalidConfiguration(configuration, f"invalid stored history {key}: {values}")

    def bind(self, configuration: list[str], history: dict[str, list[str]]) -> StateChart[Any]:
        """A chart standing in a stored configuration, without running entry actions.

        Building a StateChart registers every callback anew, which costs more than the step
        itself; each thread keeps one chart and re-points it at the stored configuration.
        """
        self.validate_stored(configuration, history)
        chart: StateChart[Any] | None = getattr(self._charts, "chart", None)
        # A chart that entered a final state has stopped its engine for good: replace it.
        if chart is None or chart.is_terminated:
            holder = _Holder()
            holder.state = OrderedSet(configuration)
            chart = self.chart_class(model=holder)
            self._charts.chart = chart
        else:
            chart.model.state = OrderedSet(configuration)
        states = self.states
        chart.history_values = {k: [states[v] for v in values] for k, values in history.items()}
        return chart

    def move(
        self, configuration: list[str], history: dict[str, list[str]], event: str
    ) -> Configuration | None:
        """The configuration and history after ``event``, or None when it is not allowed
        here.

        The chart has no guards and no actions, so the answer depends on nothing else;
        python-statemachine takes 0.3-0.8 ms to work it out, and the episodes of a clinic
        stand in few of the chart's configurations, so each answer is worked out once per
        process (the memo is bounded).

        Raises:
            InvalidConfiguration: the configuration or history cannot be bound to the chart.
        """
        key = (
            tuple(configuration),
            tuple(sorted((name, tuple(values)) for name, values in history.items())),
            event,
        )
        # One lookup, and the answer kept locally: another thread may clear the memo
        # between a write and a second read.
        answer = self._moves.get(key, _UNKNOWN)
        if answer is _UNKNOWN:
            chart = self.bind(configuration, history)
            try:
                chart.send(event)
                answer = self.snapshot(chart)
            except TransitionNotAllowed:
                answer = None
            if len(self._moves) >= self.MAX_MOVES:
                self._moves.clear()
            self._moves[key] = answer
        if answer is None:
            return None
        after, history_after = answer
        # Copies: the caller's episode owns what it is given.
        return list(after), {name: list(values) for name, values in history_after.items()}

    def forget_moves(self) -> None:
        """Drop the remembered moves (a test asks the chart afresh)."""
        self._moves.clear()


def region_value(configuration: list[str], region: tuple[str, ...]) -> str | None:
    """Which of a region's states is active, if any."""
    # A plain loop: every episode view asks this several times, and a generator costs more
    # to set up than the search itself.
    for sid in configuration:
        if sid in region:
            return sid
    return None
