"""The pathway's statechart drawn by python-statemachine's diagram support."""

from __future__ import annotations

import re
from pathlib import Path

import pathways


def render(fmt: str) -> str | bytes:
    """The chart as ``svg``/``mermaid``/``dot`` text or ``png`` bytes.

    SVG and PNG need Graphviz's ``dot`` on the PATH.
    """
    from statemachine.contrib.diagram import DotGraphMachine, MermaidGraphMachine

    chart = pathways.code(pathways.OPENING_PATHWAY).chart.chart_class

    if fmt == "mermaid":
        return MermaidGraphMachine(chart).get_mermaid()  # type: ignore[no-untyped-call]
    graph = DotGraphMachine(chart)()  # type: ignore[no-untyped-call]
    # The library names pseudo-states and clusters after object ids: renumber them so the
    # drawing is the same on every run and a stale diagrams/ can be detected.
    dot = stable_ids(str(graph.to_string()))
    if fmt == "dot":
        return dot
    import pydot

    if fmt not in ("png", "svg"):
        raise ValueError(f"unknown diagram format {fmt!r}")
    graphs = pydot.graph_from_dot_data(dot)
    assert graphs, "the statechart's DOT source did not parse"
    drawn = graphs[0].create(format=fmt)
    if isinstance(drawn, str):
        return drawn
    return drawn if fmt == "png" else drawn.decode("utf-8")


# What `carepath diagram --out DIR` writes; tests/cli/test_diagrams.py fails when stale.
FILES = {"pathway.svg": "svg", "pathway.mmd": "mermaid", "pathway.dot": "dot"}


def write_all(directory: Path) -> list[Path]:
    """Write the statechart in every text format into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fmt in FILES.items():
        content = render(fmt)
        path = directory / name
        path.write_text(content if isinstance(content, str) else content.decode())
        written.append(path)
    return written


def stable_ids(dot: str) -> str:
    numbers: dict[str, str] = {}

    def renumber(match: re.Match[str]) -> str:
        return match.group(1) + numbers.setdefault(match.group(2), str(len(numbers) + 1))

    return re.sub(r"(__[a-z]+_)(\d{6,})", renumber, dot)
