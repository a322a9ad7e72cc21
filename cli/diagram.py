"""The pathway statechart drawn by python-statemachine's diagram support."""

from __future__ import annotations

from engine.chart import PathwayChart


def render(fmt: str) -> str | bytes:
    """The chart as ``svg``/``mermaid``/``dot`` text or ``png`` bytes.

    SVG and PNG need Graphviz's ``dot`` on the PATH.
    """
    from statemachine.contrib.diagram import DotGraphMachine, MermaidGraphMachine

    if fmt == "mermaid":
        return MermaidGraphMachine(PathwayChart).get_mermaid()  # type: ignore[no-untyped-call]
    graph = DotGraphMachine(PathwayChart)()  # type: ignore[no-untyped-call]
    if fmt == "dot":
        return str(graph.to_string())
    if fmt == "png":
        return bytes(graph.create_png())
    if fmt == "svg":
        svg = graph.create_svg()
        return svg.decode("utf-8") if isinstance(svg, bytes) else str(svg)
    raise ValueError(f"unknown diagram format {fmt!r}")
