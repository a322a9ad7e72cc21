"""The statechart drawing with one episode's active states picked out.

The drawing is the one ``carepath diagram`` writes (diagrams/pathway.svg), read once; per
request only the shapes of the active states are recoloured and marked ``class="… active"``
so that a screen reader and a stylesheet can find them too.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path

SVG = "http://www.w3.org/2000/svg"
DRAWING = Path(__file__).resolve().parents[1] / "diagrams" / "pathway.svg"
ACTIVE_FILL = "#ffe08a"
ACTIVE_STROKE = "#8a5a00"
SHAPES = {f"{{{SVG}}}{tag}" for tag in ("path", "polygon", "ellipse", "rect")}

ET.register_namespace("", SVG)
ET.register_namespace("xlink", "http://www.w3.org/1999/xlink")


@cache
def drawing() -> str:
    """The pathway's SVG (rendered with Graphviz when the file is not there)."""
    if DRAWING.is_file():
        return DRAWING.read_text(encoding="utf-8")
    from cli.diagram import render

    return str(render("svg"))


def highlighted(active: list[str]) -> str:
    """The drawing with the states in ``active`` filled and outlined."""
    root = ET.fromstring(drawing())
    wanted = set(active)
    for group in root.iter(f"{{{SVG}}}g"):
        title = group.find(f"{{{SVG}}}title")
        if title is None or title.text is None:
            continue
        state = title.text.removeprefix("cluster_")
        if state not in wanted or group.get("class") not in ("node", "cluster"):
            continue
        group.set("class", f"{group.get('class')} active")
        group.set("aria-label", f"{state} (active)")
        for shape in group:
            if shape.tag in SHAPES:
                shape.set("fill", ACTIVE_FILL)
                shape.set("stroke", ACTIVE_STROKE)
                shape.set("stroke-width", "3")
    return ET.tostring(root, encoding="unicode")
