"""JSON text exactly as :func:`json.dumps` writes it, for the values every step stores.

``json.dumps`` builds a new C encoder on every call, which costs more than encoding a
step's short lists and small documents. :func:`dumps_with` builds it once for a fixed set of
options. The text is the same, character for character (tests/models/test_json_text.py);
only the check for a value that contains itself is left out, as no stored document can.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json import encoder as _encoder
from typing import Any


def dumps_with(
    *,
    sort_keys: bool = False,
    separators: tuple[str, str] = (", ", ": "),
    ensure_ascii: bool = True,
    allow_nan: bool = True,
    default: Callable[[Any], Any] | None = None,
) -> Callable[[Any], str]:
    """A ``dumps`` with these options (``json.dumps``'s own names and defaults) fixed."""
    reference = json.JSONEncoder(
        sort_keys=sort_keys,
        separators=separators,
        ensure_ascii=ensure_ascii,
        allow_nan=allow_nan,
        default=default,
    )
    make = getattr(_encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without the C accelerator
        return reference.encode
    string = _encoder.encode_basestring_ascii if ensure_ascii else _encoder.encode_basestring
    item_separator, key_separator = separators
    encode = make(
        None, reference.default, string, None,
        key_separator, item_separator, sort_keys, False, allow_nan,
    )  # fmt: skip
    return _Dumps(string, encode)


class _Dumps:
    """The prebuilt encoder as a callable object: psycopg caches its JSON dumpers by the
    function given, which it can do for an object but not for a closure."""

    def __init__(self, string: Callable[[str], str], encode: Callable[[Any, int], Any]) -> None:
        self.string = string
        self.encode = encode

    def __call__(self, value: Any) -> str:
        if isinstance(value, str):
            return self.string(value)
        return "".join(self.encode(value, 0))


# json.dumps with its defaults: the text of every JSON column carepath writes.
dumps = dumps_with()
