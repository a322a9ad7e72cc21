"""Numbers in a definition's texts: named, never written, and filled in when shown.

A text names each number it quotes, ``{subacute_from_days}``, or with a unit,
``{conservative_window_days:weeks}`` (days shown as weeks) or
``{improve_vas_fraction:percent}``. :func:`check_text` refuses a text that writes a number
itself or names one the definition does not have; :func:`fill` puts the numbers in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

Number = int | float | str

_PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)(?::([a-z]+))?\}")
# What a text may hold besides placeholders that has a digit in it: rule IDs, source
# documents (S0-S4) and spinal levels (L5, L5-S1, L5/S1).
_NOT_A_NUMBER = re.compile(
    r"(?<![\w-])[A-Z]{2,}(?:-[A-Z0-9]+)+(?![\w-])|\b[LS]\d(?:[-/][LS]?\d)*\b"
)


class TextError(ValueError):
    """A text that breaks the rules above: ``where`` it is, and ``problem``."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}")


def named(text: str) -> list[str]:
    """The names of the numbers ``text`` quotes, in order."""
    return [match.group(1) for match in _PLACEHOLDER.finditer(text)]


def check_text(text: str, where: str, numbers: Mapping[str, Number]) -> None:
    for match in _PLACEHOLDER.finditer(text):
        name, unit = match.groups()
        if name not in numbers:
            raise TextError(where, f"{{{name}}} names no timing, default or figure")
        if unit is not None and unit not in _UNITS:
            raise TextError(
                where, f"{{{name}:{unit}}}: the unit must be one of {', '.join(_UNITS)}"
            )
    rest = _NOT_A_NUMBER.sub("", _PLACEHOLDER.sub("", text))
    if "{" in rest or "}" in rest:
        raise TextError(where, "a brace that is not a placeholder such as {name}")
    written = re.search(r"\d[\d.,%-]*", rest)
    if written:
        raise TextError(
            where,
            f"the number {written.group()!r} is written in the text: name it under timings, "
            "defaults or figures and write its {name}",
        )


def _weeks(value: Number) -> str:
    weeks = float(value) / 7
    return f"{weeks:g}" if weeks == int(weeks) else f"{weeks:.1f}"


def _percent(value: Number) -> str:
    return f"{float(value) * 100:g}%"


def _plain(value: Number) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# How a placeholder's unit shows its number: {conservative_window_days:weeks} says 6 for 42.
_UNITS: dict[str, Callable[[Number], str]] = {"weeks": _weeks, "percent": _percent}


def fill(text: str, numbers: Mapping[str, Number]) -> str:
    def one(match: re.Match[str]) -> str:
        name, unit = match.groups()
        return (_UNITS[unit] if unit else _plain)(numbers[name])

    return _PLACEHOLDER.sub(one, text)
