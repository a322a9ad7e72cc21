"""The prebuilt JSON encoders write what json.dumps writes."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg.adapt import AdaptersMap
from psycopg.types.json import set_json_dumps

from models.audit import _json_default, canonical_json
from models.json_text import dumps, dumps_with

SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
DOCUMENTS = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(value=DOCUMENTS)
def test_dumps_writes_what_json_dumps_writes(value: Any) -> None:
    assert dumps(value) == json.dumps(value)


@given(
    value=DOCUMENTS.filter(lambda v: "NaN" not in json.dumps(v) and "Infinity" not in json.dumps(v))
    | st.lists(st.datetimes(timezones=st.just(UTC)), max_size=3)
)
def test_canonical_json_is_json_dumps_with_the_canonical_options(value: Any) -> None:
    expected = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
        default=_json_default,
    )  # fmt: skip
    assert canonical_json(value) == expected


def test_options_refuse_as_json_dumps_refuses() -> None:
    strict = dumps_with(allow_nan=False)
    with pytest.raises(ValueError, match="Out of range float"):
        strict([float("nan")])
    with pytest.raises(TypeError, match="not JSON serializable"):
        dumps({"at": datetime(2026, 1, 1, tzinfo=UTC)})
    with pytest.raises(TypeError, match="keys must be str"):
        dumps({(1, 2): "tuple key"})


def test_psycopg_takes_the_encoder_without_a_leak_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """psycopg caches a JSON dumper per dumps function, and refuses to (with a warning of a
    leak, on every connection) when the function is a closure."""
    adapters = AdaptersMap(psycopg.adapters)
    with caplog.at_level(logging.WARNING, logger="psycopg"):
        set_json_dumps(dumps, adapters)
        set_json_dumps(canonical_json, adapters)
    assert [r.getMessage() for r in caplog.records] == []
