"""Errors raised by the pathway engine.

Every error is rooted in :class:`CarepathError` and carries its data as attributes, so the
command line, the HTTP API and the simulation can each render it their own way.
"""

from __future__ import annotations

from datetime import date


class CarepathError(Exception):
    """Base class of every error carepath raises on purpose."""


class InvalidEvent(CarepathError):
    """Input that does not match the contract: names the offending field.

    Args:
        field: dotted path of the bad field, e.g. ``data.vas_leg``.
        reason: what is wrong with it, in words.
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class RuleRefusal(CarepathError):
    """The guideline forbids the request.

    Args:
        rules: the rule IDs that refused it.
        reason: the refusal in words, for the clinician.
        override_possible: whether a documented ``override_reason`` would let it through.
        eligible_from: the date the time-based part of the refusal lifts, if any.
    """

    def __init__(
        self,
        rules: list[str],
        reason: str,
        override_possible: bool,
        eligible_from: date | None = None,
    ) -> None:
        self.rules = rules
        self.reason = reason
        self.override_possible = override_possible
        self.eligible_from = eligible_from
        super().__init__(f"{', '.join(rules)}: {reason}")


class StaleEpisode(CarepathError):
    """The episode changed since the caller read it (optimistic concurrency)."""

    def __init__(self, episode_id: str, expected: int, actual: int) -> None:
        self.episode_id = episode_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"episode {episode_id} is at version {actual}, the request expected {expected}"
        )


class InvalidConfiguration(CarepathError):
    """A stored configuration or history that cannot be bound to the statechart."""

    def __init__(self, configuration: list[str], reason: str) -> None:
        self.configuration = configuration
        self.reason = reason
        super().__init__(f"invalid stored configuration {configuration}: {reason}")


class EpisodeNotFound(CarepathError):
    """No episode has this id."""

    def __init__(self, episode_id: str) -> None:
        self.episode_id = episode_id
        super().__init__(f"no episode with id {episode_id}")


class UnreadableEpisode(InvalidConfiguration):
    """A stored episode that cannot be rebuilt, whatever shape the damage has (a
    configuration that is null, not a list or names unknown states; a patient, history or
    facts that are not objects; a column that is null or not of its type; a row that does
    not parse). An :class:`InvalidConfiguration` that names the episode.

    Args:
        episode_id: the episode whose stored record is damaged.
        reason: what is wrong with it, in words (no stored values beyond state ids).
    """

    def __init__(self, episode_id: str, reason: str) -> None:
        self.episode_id = episode_id
        self.configuration = []
        self.reason = reason
        CarepathError.__init__(self, f"stored episode {episode_id} cannot be read: {reason}")
