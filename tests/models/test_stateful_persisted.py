"""Random event sequences through the persisted path: the audit chain always verifies."""

from __future__ import annotations

from datetime import UTC, date

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from engine.clinic_time import add_days, clinic_noon
from engine.errors import InvalidEvent
from engine.events import parse_opening
from models.audit import verify_chain
from models.db import make_engine, make_session_factory
from models.repository import EpisodeRepository
from models.tables import ClinicalEventRow
from pathways.lumbosacral_radiculopathy.chart import CHART
from tests.engine.test_stateful import EVENTS

ONSET = date(2026, 1, 5)

steps = st.lists(
    st.tuples(st.integers(0, 15), st.integers(0, len(EVENTS) - 1)), min_size=1, max_size=12
)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sequence=steps)
def test_random_sequences_keep_the_chain_and_configuration_valid(
    db_url: str, sequence: list[tuple[int, int]]
) -> None:
    engine = make_engine(db_url)
    try:
        factory = make_session_factory(engine)
        repo = EpisodeRepository(factory)
        start = clinic_noon(ONSET, UTC)  # type: ignore[arg-type]
        opening = parse_opening(
            {
                "patient": {"ref": "prop"},
                "onset": ONSET.isoformat(),
                "enrolled_at": start.isoformat(),
            }
        )
        episode_id = repo.open(opening, start)["id"]
        day = 0
        for gap, index in sequence:
            day += gap
            now = clinic_noon(add_days(ONSET, day), UTC)  # type: ignore[arg-type]
            repo.fire_due(now)
            kind, data = EVENTS[index]
            final_before = repo.view(episode_id)["status"] != "active"
            try:
                step, view = repo.apply(episode_id, {"type": kind, "data": data}, now)
            except InvalidEvent:
                assert final_before
                continue
            assert not final_before
            CHART.validate_configuration(view["configuration"])
        with factory() as session:
            result = verify_chain(session)
            assert result.ok, result.problem
            accepted = session.scalars(
                select(ClinicalEventRow.type)
                .where(ClinicalEventRow.episode_id == episode_id, ClinicalEventRow.accepted)
                .order_by(ClinicalEventRow.id)
            ).all()
            finals = [i for i, kind in enumerate(accepted) if kind in ("resolve", "close")]
            assert not finals or finals[0] == len(accepted) - 1, "accepted after a final state"
    finally:
        engine.dispose()
