"""Seals and signed checkpoints: each forgery an intruder with write access to the database
can make, on both databases, and what a verifier with each key sees."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text

from engine.clinic_time import add_days, clinic_noon
from engine.events import parse_opening
from engine.settings import PathwayDefaults
from models.audit import AUDIT_CHAIN
from models.audit_keys import AUDIT_KEY_FILE_ENV, AuditKey, generate_key
from models.audit_verify import ChainReport, verify_log
from models.checkpointing import ChainNotSignable, write_checkpoint
from models.checkpoints import CHECKPOINT, sign, store
from models.db import make_engine
from models.repository import EpisodeRepository
from tests.models import audit_forgery as forge

ONSET = date(2026, 1, 5)
NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def day(n: int) -> datetime:
    return clinic_noon(add_days(ONSET, n), UTC)  # type: ignore[arg-type]


@pytest.fixture
def key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AuditKey:
    return forge.use_key(tmp_path, monkeypatch)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def write_steps(engine: Engine, episodes: int = 2, events: int = 2) -> None:
    """Episodes opened and assessed through the engine: the rows the service writes."""
    repo = EpisodeRepository(engine, PathwayDefaults())
    for n in range(episodes):
        opening = parse_opening(
            {"patient": {"ref": f"r-{n}"}, "onset": ONSET.isoformat(),
             "enrolled_at": day(1).isoformat()}
        )  # fmt: skip
        episode_id = repo.open(opening, day(1))["id"]
        for e in range(events):
            event = {"type": "assessment", "data": {"vas_leg": 6 - e, "odi": 40}, "actor": "dr.gp"}
            repo.apply(episode_id, event, day(2 + e))


@pytest.fixture
def signed(engine: Engine, key: AuditKey) -> int:
    """Six rows (two episodes opened, two assessments each), the head signed, then three
    rows more. Returns the checkpointed row."""
    write_steps(engine, episodes=2, events=2)
    checkpoint = write_checkpoint(engine, key, NOW)
    assert checkpoint is not None
    write_steps(engine, episodes=1, events=2)
    return checkpoint.seq


def verify(engine: Engine, key: AuditKey | None, **options: object) -> ChainReport:
    return verify_log(engine, key=key, **options)  # type: ignore[arg-type]


def test_rows_the_engine_writes_carry_their_seals(engine: Engine, key: AuditKey) -> None:
    write_steps(engine)
    repo = EpisodeRepository(engine, PathwayDefaults())
    repo.fire_due(day(60))  # timers too, written in a batch
    rows = forge.log_rows(engine)
    seal = key.sealer("audit_log")
    assert len(rows) > 6
    assert all(row["seal"] == seal(row["hash"]) for row in rows)
    report = verify(engine, key)
    assert report.ok, report.problem
    assert (report.rows_checked, report.seals_checked) == (len(rows), True)


def test_rows_written_without_a_key_have_no_seal(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(AUDIT_KEY_FILE_ENV, raising=False)
    write_steps(engine, episodes=1, events=1)
    assert [row["seal"] for row in forge.log_rows(engine)] == [None, None]
    report = verify(engine, None)
    assert report.ok
    assert "no audit key given" in report.warnings[0]


def test_verify_resumes_after_the_newest_trusted_checkpoint(
    engine: Engine, key: AuditKey, signed: int
) -> None:
    report = verify(engine, key)
    assert report.ok, report.problem
    assert report.resumed_from is not None
    assert report.resumed_from.seq == signed == 6
    assert (report.head_seq, report.rows_checked, report.signatures_checked) == (9, 3, 1)
    full = verify(engine, key, full=True)
    assert (full.ok, full.rows_checked, full.resumed_from) == (True, 9, None)


def test_a_row_appended_after_the_checkpoint_is_caught_by_its_seal(
    engine: Engine, key: AuditKey, signed: int
) -> None:
    forged = forge.append_forged(engine)
    report = verify(engine, key)
    assert (report.ok, report.first_bad_seq) == (False, forged["seq"])
    assert (
        report.problem
        == "row 10 (no episode): no seal: appended without the audit key, or not by carepath"
    )
    with pytest.raises(ChainNotSignable, match="no seal"):
        write_checkpoint(engine, key, NOW)


def test_a_row_appended_with_a_made_up_seal_is_caught(
    engine: Engine, key: AuditKey, signed: int
) -> None:
    forge.append_forged(engine, seal="5" * 64)
    report = verify(engine, key)
    assert (report.ok, report.first_bad_seq) == (False, 10)
    assert "seal does not match" in (report.problem or "")


def test_with_the_public_key_only_the_rows_after_the_checkpoint_are_counted_as_unknown(
    engine: Engine, key: AuditKey, signed: int
) -> None:
    forge.append_forged(engine)
    report = verify(engine, None, public_keys=[key.public])
    assert report.ok  # the public key cannot tell a forged row from a real one there
    assert report.unauthenticated_rows == 4
    assert report.warnings == [
        "4 rows after checkpoint 1 (row 6) cannot be authenticated with the public key: "
        "their seals need the private key, so a row forged there would not show"
    ]


def test_rows_cut_off_behind_a_checkpoint_are_caught(engine: Engine, key: AuditKey) -> None:
    write_steps(engine)
    checkpoint = write_checkpoint(engine, key, NOW)
    assert checkpoint is not None
    assert checkpoint.seq == 6
    forge.cut_tail(engine, keep=4)
    public = verify(engine, None, public_keys=[key.public])
    assert (public.ok, public.first_bad_checkpoint, public.first_bad_seq) == (False, 1, 6)
    assert public.problem == (
        "checkpoint 1 (row 6): the log ends at row 4: rows signed for were cut off"
    )
    # With the private key the head's own seal shows it first: it is not row 4's.
    private = verify(engine, key)
    assert (private.ok, private.first_bad_seq) == (False, 4)
    assert private.problem == (
        "audit_head seal does not match row 4: the head was moved back, or rows cut off"
    )


def test_rows_cut_off_after_the_newest_checkpoint_are_caught_by_the_heads_seal(
    engine: Engine, key: AuditKey, signed: int
) -> None:
    forge.cut_tail(engine, keep=signed + 1)  # two of the three rows after it
    report = verify(engine, key)
    assert (report.ok, report.first_bad_seq) == (False, 7)
    assert (report.problem or "").startswith("audit_head seal does not match row 7")
    forge.lift_guard(engine, "audit_head")
    with engine.begin() as connection:
        connection.execute(text("UPDATE audit_head SET seal = NULL"))
    unsealed = verify(engine, key)
    assert unsealed.problem == (
        "audit_head carries no seal: moved without the audit key, or not by carepath"
    )
    # The public key cannot tell: it says how many rows it could not authenticate.
    public = verify(engine, None, public_keys=[key.public])
    assert (public.ok, public.unauthenticated_rows) == (True, 1)


def test_a_tail_cut_off_with_its_checkpoints_fails_a_kept_head_and_the_running_writer(
    engine: Engine, key: AuditKey
) -> None:
    write_steps(engine, episodes=1, events=1)
    early = write_checkpoint(engine, key, NOW)
    write_steps(engine, episodes=1, events=2)
    last = write_checkpoint(engine, key, NOW + timedelta(minutes=5))
    assert early is not None
    assert last is not None
    kept = (last.seq, last.hash)  # from yesterday's export's trailer, say
    forge.cut_tail(engine, keep=early.seq)
    forge.delete_checkpoints(engine, above_seq=early.seq)
    # The head's seal is not row 2's; with the public key alone all the database still
    # says is consistent, and only the kept head shows what is gone.
    assert verify(engine, key).problem == (
        "audit_head seal does not match row 2: the head was moved back, or rows cut off"
    )
    assert verify(engine, None, public_keys=[key.public]).ok
    report = verify(engine, None, public_keys=[key.public], against=kept)
    assert (report.ok, report.first_bad_seq) == (False, 3)
    assert report.problem == "--against row 5: the log ends at row 2"
    with pytest.raises(ChainNotSignable, match="the log went backwards: this process signed row 5"):
        write_checkpoint(engine, key, NOW + timedelta(minutes=10), last=last)


def test_a_row_edited_and_the_chain_rehashed_after_it_is_caught(
    engine: Engine, key: AuditKey, signed: int
) -> None:
    forge.rewrite(engine, 3, actor="dr.nobody")
    report = verify(engine, key)
    assert (report.ok, report.first_bad_seq, report.first_bad_checkpoint) == (False, 3, None)
    assert "row 3 (episode " in (report.problem or "")
    assert (report.problem or "").endswith("seal does not match: the row was rewritten or forged")
    # The public key alone sees the checkpoint's row changed.
    public = verify(engine, None, public_keys=[key.public])
    assert (public.ok, public.first_bad_checkpoint, public.first_bad_seq) == (False, 1, 6)
    assert (public.problem or "").startswith(
        "row 6 no longer carries the hash checkpoint 1 (row 6)"
    )


def test_a_tail_rewritten_after_the_checkpoint_is_caught(
    engine: Engine, key: AuditKey, signed: int
) -> None:
    forge.rewrite(engine, 8, accepted=False)
    report = verify(engine, key)
    assert (report.ok, report.first_bad_seq) == (False, 8)
    assert "seal does not match" in (report.problem or "")


@pytest.mark.parametrize(("a", "b"), [(7, 8), (2, 5)])
def test_reordered_rows_are_caught(
    engine: Engine, key: AuditKey, signed: int, a: int, b: int
) -> None:
    forge.swap(engine, a, b)
    report = verify(engine, key)
    assert (report.ok, report.first_bad_seq) == (False, a)
    assert f"row {a} (episode " in (report.problem or "")
    assert "prev_hash does not match" in (report.problem or "")


def test_an_edited_checkpoint_is_caught(engine: Engine, key: AuditKey, signed: int) -> None:
    forge.lift_guard(engine, "audit_checkpoint")
    rows = forge.log_rows(engine)
    for change in (
        {"signature": "00" * 64},
        {"hash": rows[3]["hash"]},  # another row's hash
        {"seq": 4, "hash": rows[3]["hash"]},  # moved to another row, consistently
        {"signed_at": NOW + timedelta(days=1)},
    ):
        with engine.begin() as connection:
            saved = dict(connection.execute(select(CHECKPOINT)).mappings().one())
            connection.execute(CHECKPOINT.update().values(change))
        report = verify(engine, key)
        assert (report.ok, report.first_bad_checkpoint) == (False, 1), change
        assert "signature does not match: the checkpoint was edited or forged" in (
            report.problem or ""
        )
        with engine.begin() as connection:
            connection.execute(CHECKPOINT.update().values(saved))
    assert verify(engine, key).ok


def test_a_checkpoint_signed_with_another_key_is_refused(
    engine: Engine, key: AuditKey, signed: int, tmp_path: Path
) -> None:
    intruder = generate_key(tmp_path / "intruder.pem")
    forged = forge.append_forged(engine)
    with engine.begin() as connection:
        store(connection, sign(intruder, AUDIT_CHAIN, forged["seq"], forged["hash"], NOW))
    report = verify(engine, key)
    assert (report.ok, report.first_bad_checkpoint) == (False, 2)
    assert report.problem == (
        f"checkpoint 2 (row 10): signed by key {intruder.id}, not by a key given ({key.id})"
    )


def test_against_proves_the_log_still_holds_a_head(
    engine: Engine, key: AuditKey, signed: int
) -> None:
    rows = forge.log_rows(engine)
    for seq in (2, 6, 9):
        assert verify(engine, key, against=(seq, rows[seq - 1]["hash"])).ok
    wrong = verify(engine, key, against=(2, "a" * 64))
    assert (wrong.ok, wrong.first_bad_seq) == (False, 2)
    assert wrong.problem == (
        f"row 2 carries hash {rows[1]['hash']}, not the {'a' * 64} given: the log was "
        "rewritten since"
    )
    forge.rewrite(engine, 1, actor="dr.nobody")
    rewritten = verify(engine, None, against=(2, rows[1]["hash"]))
    assert (rewritten.ok, rewritten.first_bad_seq) == (False, 2)


def test_an_old_row_edited_in_place_shows_when_the_guard_is_lifted_or_with_full(
    engine: Engine, key: AuditKey, signed: int
) -> None:
    forge.edit_in_place(engine, 2, actor="dr.nobody")
    lifted = verify(engine, key)
    assert (lifted.ok, lifted.first_bad_seq, lifted.full) == (False, 2, True)
    assert lifted.warnings[0].startswith("the append-only triggers on audit_log are missing")
    forge.restore_guard(engine)
    # Past the checkpoint, the default walk does not re-hash row 2 (the documented limit);
    # --full does.
    incremental = verify(engine, key)
    assert incremental.resumed_from is not None
    assert incremental.rows_checked == 3
    full = verify(engine, key, full=True)
    assert (full.ok, full.first_bad_seq) == (False, 2)
    assert full.problem == "row 2 (episode " + forge.log_rows(engine)[1]["episode_id"] + (
        "): hash mismatch: the row was altered"
    )


def test_the_checkpoint_writer_never_signs_a_broken_log(
    engine: Engine, key: AuditKey, signed: int
) -> None:
    forge.rewrite(engine, 8, rechain=False, actor="dr.nobody")
    with pytest.raises(ChainNotSignable) as refused:
        write_checkpoint(engine, key, NOW)
    assert refused.value.seq == 8
    assert refused.value.problem.endswith("seal does not match: the row was rewritten or forged")
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(CHECKPOINT)) == 1


def test_rows_from_before_the_key_are_signed_only_when_accepted(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(AUDIT_KEY_FILE_ENV, raising=False)
    write_steps(engine, episodes=1, events=1)  # an existing log, unsealed
    key = forge.use_key(tmp_path, monkeypatch)
    assert verify(engine, key).problem == (
        f"row 1 (episode {forge.log_rows(engine)[0]['episode_id']}): no seal: appended "
        "without the audit key, or not by carepath"
    )
    with pytest.raises(ChainNotSignable, match="no seal"):
        write_checkpoint(engine, key, NOW)
    adopted = write_checkpoint(engine, key, NOW, accept_unsealed=True)
    assert verify(engine, key).ok  # the head, unsealed too, was sealed with it
    assert adopted is not None
    assert adopted.seq == 2
    write_steps(engine, episodes=1, events=1)  # sealed from now on
    report = verify(engine, key, full=True)
    assert report.ok, report.problem


def test_an_unchanged_head_is_not_signed_twice(engine: Engine, key: AuditKey) -> None:
    write_steps(engine, episodes=1, events=1)
    first = write_checkpoint(engine, key, NOW, only_if_moved=True)
    assert first is not None
    assert write_checkpoint(engine, key, NOW + timedelta(minutes=5), only_if_moved=True) is None
    write_steps(engine, episodes=1, events=1)
    again = write_checkpoint(engine, key, NOW + timedelta(minutes=10), only_if_moved=True)
    assert again is not None
    assert again.seq == 4


def test_an_empty_log_gets_no_checkpoint(engine: Engine, key: AuditKey) -> None:
    assert write_checkpoint(engine, key, NOW) is None
    report = verify(engine, key)
    assert (report.ok, report.head_seq, report.checkpoints) == (True, 0, 0)


def test_the_checkpoint_table_is_append_only(engine: Engine, key: AuditKey, signed: int) -> None:
    for statement in ("UPDATE audit_checkpoint SET seq = 1", "DELETE FROM audit_checkpoint"):
        with pytest.raises(Exception, match="append-only"), engine.begin() as connection:
            connection.execute(text(statement))
