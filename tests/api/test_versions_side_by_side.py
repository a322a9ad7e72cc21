"""Episodes of two pathway versions side by side: listed, worked from the worklist and
stepped, each under its own version's rules."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from engine.clinic_time import FakeClock
from engine.settings import DRAFTS_ENV, PathwayDefaults
from models.repository import EpisodeRepository
from schedulers.worker import Worker
from tests.api.conftest import OPENING

SEVERE = {"type": "assessment", "data": {"vas_leg": 9, "odi": 70, "severe_disabling": True}}


def test_both_versions_are_listed_worked_and_stepped_side_by_side(
    client: TestClient, tokens: dict[str, str], engine: Engine, clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv(DRAFTS_ENV, "1")
    service = {"Authorization": tokens["service"]}
    coordinator = {"Authorization": tokens["coordinator"]}
    opened = {}
    for version in ("1.0.0", "1.1.0"):
        body = {**OPENING, "patient": {**OPENING["patient"], "ref": f"P-{version}"},
                "pathway_version": version}  # fmt: skip
        answer = client.post("/episodes", json=body, headers=service)
        assert answer.status_code == 201, answer.text
        opened[version] = answer.json()["id"]
        stepped = client.post(f"/episodes/{opened[version]}/events", json=SEVERE, headers=service)
        assert stepped.status_code == 200, stepped.text
    clock.set(clock.now() + timedelta(days=17))  # both two-week referrals missed
    Worker(EpisodeRepository(engine, PathwayDefaults()), clock).sweep()

    listed = client.get("/episodes?limit=50", headers=service).json()["items"]
    versions = {e["id"]: e["pathway_version"] for e in listed}
    assert versions == {opened["1.0.0"]: "1.0.0", opened["1.1.0"]: "1.1.0"}
    worklist = client.get("/worklist?window=7d", headers=coordinator).json()["items"]
    escalated = {i["patient_ref"] for i in worklist if i["status"] == "escalated"}
    assert escalated == {"P-1.0.0", "P-1.1.0"}

    # The same request, each episode deciding under its own version (MED-STEROID-WARN).
    course = {"type": "treatment",
              "data": {"kind": "oral_steroid", "contraindications": ["peptic ulcer"]}}  # fmt: skip
    for version, warned in (("1.0.0", False), ("1.1.0", True)):
        answer = client.post(f"/episodes/{opened[version]}/events", json=course, headers=service)
        assert answer.status_code == 200, answer.text
        assert answer.json()["episode"]["pathway"]["version"] == version
        reason = answer.json()["transition"]["reason"] or ""
        assert ("warning (MED-STEROID)" in reason) is warned
    closing = {"type": "close", "data": {"reason": "moved away"}}
    visit = {"type": "assessment", "data": {"vas_leg": 3, "odi": 20}}
    for version, status in (("1.0.0", 422), ("1.1.0", 409)):  # EP-FINAL
        events = f"/episodes/{opened[version]}/events"
        assert client.post(events, json=closing, headers=service).status_code == 200
        assert client.post(events, json=visit, headers=service).status_code == status
