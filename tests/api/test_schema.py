"""Generated requests against /openapi.json: whatever comes in, no 5xx comes out, and every
error answer is a problem (application/problem+json)."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from sqlalchemy import Engine

from api.app import create_app
from api.problems import MEDIA_TYPE
from engine.clinic_time import FakeClock
from engine.settings import PathwayDefaults

EXAMPLES_PER_OPERATION = 20


def test_no_generated_request_gets_a_server_error(
    engine: Engine, clock: FakeClock, tokens: dict[str, str]
) -> None:
    app = create_app(engine, clock, PathwayDefaults())
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    headers = {"Authorization": tokens["admin"]}
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def no_server_error(case: Any) -> None:
            response = case.call(headers=headers)
            said = f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
            assert response.status_code < 500, said
            if response.status_code >= 400:
                media = response.headers["content-type"]  # every value of the header
                assert media == [MEDIA_TYPE], said
                assert response.json()["status"] == response.status_code, said

        no_server_error()
        checked.append(f"{operation.method.upper()} {operation.path}")
    assert "POST /episodes/{episode_id}/events" in checked
    assert len(checked) >= 14
