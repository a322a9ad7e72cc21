"""diagrams/ is generated from the statechart itself: this fails when it is stale."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.diagram import FILES, render

DIAGRAMS = Path(__file__).resolve().parents[2] / "diagrams"


@pytest.mark.parametrize("name", [n for n, fmt in FILES.items() if fmt != "svg"])
def test_committed_diagram_matches_the_statechart(name: str) -> None:
    committed = (DIAGRAMS / name).read_text()
    assert committed == render(FILES[name]), f"diagrams/{name} is stale: run `make diagrams`"


def test_svg_is_drawn_from_the_same_chart() -> None:
    svg = (DIAGRAMS / "pathway.svg").read_text()
    for state in ("Conservative", "Red flag", "Overdue", "Shared care", "Chronic"):
        assert state in svg, f"diagrams/pathway.svg lacks {state}: run `make diagrams`"
