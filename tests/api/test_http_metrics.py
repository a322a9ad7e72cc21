"""/metrics counts requests by route template and status, and never names an episode."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import OPENING


def samples(client: TestClient, headers: dict[str, str]) -> dict[tuple[str, ...], float]:
    text = client.get("/metrics", headers=headers).text
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            found[(sample.name, *labels)] = sample.value
    return found


def test_requests_are_counted_by_route_template_and_status(
    client: TestClient, tokens: dict[str, str]
) -> None:
    service = {"Authorization": tokens["service"]}
    episode = client.post("/episodes", json=OPENING, headers=service).json()["id"]
    for _ in range(3):
        assert client.get(f"/episodes/{episode}", headers=service).status_code == 200
    assert client.get("/episodes/no-such-episode", headers=service).status_code == 404
    assert client.get("/no/such/route").status_code == 404
    found = samples(client, service)
    route = "route=/episodes/{episode_id}"
    assert found[("carepath_http_requests_total", "method=GET", route, "status=200")] == 3
    assert found[("carepath_http_requests_total", "method=GET", route, "status=404")] == 1
    assert found[("carepath_http_requests_total", "method=POST", "route=/episodes",
                  "status=201")] == 1  # fmt: skip
    assert found[("carepath_http_requests_total", "method=GET", "route=unmatched",
                  "status=404")] == 1  # fmt: skip
    assert found[("carepath_http_request_seconds_count", "method=GET", route)] == 4
    assert not any(episode in "".join(key) for key in found)
