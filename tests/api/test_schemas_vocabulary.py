"""The API's closed vocabularies are the engine's."""

from __future__ import annotations

from typing import get_args

from api.schemas import Severity
from engine.episode import SEVERITIES


def test_the_severities_the_api_names_are_the_engines_in_its_order() -> None:
    assert get_args(Severity) == SEVERITIES
