"""`carepath audit`: keygen, checkpoint, verify (database, kept head, export file), export."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from cli.main import app
from models.audit import entry_hash
from models.audit_keys import AUDIT_KEY_FILE_ENV
from models.db import make_engine, upgrade
from tests.models import audit_forgery as forge


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return tmp_path / "keys" / "audit.pem"


def run(db_url: str, *args: str, key: Path | None = None) -> Any:
    env = {"CAREPATH_DATABASE_URL": db_url, AUDIT_KEY_FILE_ENV: str(key) if key else ""}
    return CliRunner().invoke(app, list(args), env=env)


def enrol(db_url: str, key: Path | None, count: int = 2) -> None:
    for n in range(count):
        opened = run(db_url, "episode", "open", "--patient-ref", f"P-{n}", "--onset",
                     "2026-11-20", key=key)  # fmt: skip
        assert opened.exit_code == 0, opened.output


@pytest.fixture
def signed(db_url: str, engine: Engine, key_file: Path) -> Path:
    """A key, two sealed rows, the head signed, then one row more."""
    key_file.parent.mkdir()
    made = run(db_url, "audit", "keygen", "--out", str(key_file))
    assert made.exit_code == 0, made.output
    enrol(db_url, key_file)
    signed = run(db_url, "audit", "checkpoint", key=key_file)
    assert signed.exit_code == 0, signed.output
    assert json.loads(signed.stdout)["seq"] == 2
    enrol(db_url, key_file, 1)
    return key_file


def test_keygen_prints_the_public_key_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "audit.pem"
    made = CliRunner().invoke(app, ["audit", "keygen"], env={AUDIT_KEY_FILE_ENV: str(path)})
    assert made.exit_code == 0, made.output
    assert made.stdout == (tmp_path / "audit.pem.pub").read_text()
    assert made.stdout.startswith("-----BEGIN PUBLIC KEY-----")
    again = CliRunner().invoke(app, ["audit", "keygen", "--out", str(path)])
    assert again.exit_code == 1
    assert "already exists; refusing to overwrite a key" in again.stderr
    nowhere = CliRunner().invoke(app, ["audit", "keygen"], env={AUDIT_KEY_FILE_ENV: ""})
    assert nowhere.exit_code == 2
    assert "invalid: --out" in nowhere.stderr


def test_checkpoint_needs_the_key(db_url: str, engine: Engine) -> None:
    refused = run(db_url, "audit", "checkpoint")
    assert refused.exit_code == 2
    assert f"{AUDIT_KEY_FILE_ENV} is not set" in refused.stderr


def test_verify_names_the_forged_row(db_url: str, engine: Engine, signed: Path) -> None:
    intact = run(db_url, "audit", "verify", key=signed)
    assert intact.exit_code == 0, intact.output
    assert intact.stdout.startswith("audit log intact: 3 rows; re-hashed 1 row after checkpoint 1")
    forge.append_forged(engine)
    broken = run(db_url, "audit", "verify", key=signed)
    assert broken.exit_code == 1
    assert broken.stderr.strip().splitlines()[-1] == (
        "audit log broken at row 4: row 4 (no episode): no seal: appended without the audit "
        "key, or not by carepath"
    )
    refused = run(db_url, "audit", "checkpoint", key=signed)
    assert refused.exit_code == 1
    assert refused.stderr.startswith("not signed: audit log broken at row 4:")


def test_verify_names_an_edited_checkpoint(db_url: str, engine: Engine, signed: Path) -> None:
    forge.lift_guard(engine, "audit_checkpoint")
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE audit_checkpoint SET seq = 1")
    broken = run(db_url, "audit", "verify", key=signed)
    assert broken.exit_code == 1
    assert broken.stderr.strip().splitlines()[-1] == (
        "audit log broken at checkpoint 1: checkpoint 1 (row 1): signature does not match: "
        "the checkpoint was edited or forged"
    )


def test_an_auditor_with_the_public_key_is_told_what_it_cannot_see(
    db_url: str, engine: Engine, signed: Path
) -> None:
    public = str(signed) + ".pub"
    result = run(db_url, "audit", "verify", "--public-key", public)
    assert result.exit_code == 0, result.output
    assert "1 checkpoint signature(s) valid" in result.stdout
    assert "warning: 1 rows after checkpoint 1 (row 2) cannot be authenticated" in result.stderr
    forge.cut_tail(engine, keep=1)
    cut = run(db_url, "audit", "verify", "--public-key", public)
    assert cut.exit_code == 1
    assert "rows signed for were cut off" in cut.stderr
    bad = run(db_url, "audit", "verify", "--public-key", str(signed.parent / "none.pub"))
    assert (bad.exit_code, "invalid: --public-key" in bad.stderr) == (2, True)


def test_against_a_kept_head(db_url: str, engine: Engine, signed: Path) -> None:
    seq, digest = forge.head(engine)
    assert run(db_url, "audit", "verify", "--against", f"{seq}:{digest}", key=signed).exit_code == 0
    forge.rewrite(engine, 3, actor="dr.nobody")  # the row after the checkpoint, and the head
    broken = run(db_url, "audit", "verify", "--against", f"{seq}:{digest}")
    assert broken.exit_code == 1
    assert f"row {seq} carries hash" in broken.stderr
    invalid = run(db_url, "audit", "verify", "--against", "3:xyz")
    assert invalid.exit_code == 2
    assert "invalid: --against: HASH must be 64 lower-case hex digits" in invalid.stderr


def export_file(db_url: str, key: Path | None, tmp_path: Path, *options: str) -> Path:
    exported = run(db_url, "audit", "export", *options, key=key)
    assert exported.exit_code == 0, exported.output
    path = tmp_path / "export.jsonl"
    path.write_text(exported.stdout)
    return path


def test_an_export_verifies_offline(
    db_url: str, engine: Engine, signed: Path, tmp_path: Path
) -> None:
    path = export_file(db_url, signed, tmp_path)
    public = str(signed) + ".pub"
    offline = run("sqlite:////nonexistent/no.db", "audit", "verify", "--file", str(path),
                  "--public-key", public)  # fmt: skip
    assert offline.exit_code == 0, offline.output
    assert offline.stdout.startswith(f"export {path} intact: 3 rows")
    assert "1 rows after the checkpoint cannot be authenticated" in offline.stderr
    sealed = run("sqlite:////nonexistent/no.db", "audit", "verify", "--file", str(path), key=signed)
    assert sealed.exit_code == 0, sealed.output


def test_an_edited_export_is_caught_offline(
    db_url: str, engine: Engine, signed: Path, tmp_path: Path
) -> None:
    path = export_file(db_url, signed, tmp_path)
    lines = path.read_text().splitlines()
    first = json.loads(lines[0])
    public = str(signed) + ".pub"

    first["actor"] = "dr.nobody"
    path.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    edited = run(db_url, "audit", "verify", "--file", str(path), "--public-key", public)
    assert edited.exit_code == 1
    assert edited.stderr.strip() == (
        f"export {path} broken at row 1: row 1: hash mismatch: the row was altered"
    )

    # Re-hashed and re-chained to a new head line: the checkpoint's hash gives it away.
    rows = [json.loads(line) for line in lines[:-1]]
    trailer = json.loads(lines[-1])
    rows[0]["actor"] = "dr.nobody"
    previous = "0" * 64
    for row in rows:
        values = {**row, "occurred_at": _instant(row["occurred_at"]),
                  "recorded_at": _instant(row["recorded_at"])}  # fmt: skip
        row["prev_hash"] = previous
        row["hash"] = previous = entry_hash(values, previous)
    trailer["chain_head"]["hash"] = previous
    path.write_text("".join(json.dumps(r) + "\n" for r in [*rows, trailer]))
    rechained = run(db_url, "audit", "verify", "--file", str(path), "--public-key", public)
    assert rechained.exit_code == 1
    assert rechained.stderr.strip().endswith(
        "row 2 no longer carries the hash checkpoint 1 (row 2) signed at "
        f"{trailer['checkpoint']['signed_at']}: the log was rewritten up to there"
    )
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(lines[:-1]) + "\n")
    assert "no trailer line" in run(db_url, "audit", "verify", "--file", str(cut)).stderr


def _instant(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text)


def test_export_writes_to_stdout_and_takes_a_window(
    db_url: str, engine: Engine, signed: Path, tmp_path: Path
) -> None:
    everything = run(db_url, "audit", "export", key=signed)
    assert everything.exit_code == 0
    *rows, trailer = [json.loads(line) for line in everything.stdout.splitlines()]
    assert (len(rows), trailer["checkpoint"]["seq"], trailer["export"]["filtered"]) == (3, 2, False)
    since = rows[2]["recorded_at"]
    window = run(db_url, "audit", "export", "--since", since, key=signed)
    *kept, scope = [json.loads(line) for line in window.stdout.splitlines()]
    assert [r["seq"] for r in kept] == [3]
    assert scope["export"]["filter"]["since"] == since
    assert scope["export"]["filtered"] is True
    path = export_file(db_url, signed, tmp_path, "--since", since)
    filtered = run(db_url, "audit", "verify", "--file", str(path), key=signed)
    assert filtered.exit_code == 0, filtered.output
    assert "a filtered export: could not check the links between rows" in filtered.stderr
    out = tmp_path / "audit.csv"
    assert run(db_url, "audit", "export", "--format", "csv", "--out", str(out)).exit_code == 0
    assert out.read_text().splitlines()[-1].startswith("#chain_head,3,")


@pytest.mark.parametrize("value", ["2026-01-01", "2026-01-01T09:00:00", "yesterday"])
@pytest.mark.parametrize("option", ["--since", "--until"])
def test_export_refuses_a_time_without_an_offset(
    db_url: str, engine: Engine, option: str, value: str
) -> None:
    result = run(db_url, "audit", "export", option, value)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"invalid: {option}: ")
    assert result.stdout == ""


def test_worker_once_signs_the_moved_head(db_url: str, engine: Engine, key_file: Path) -> None:
    key_file.parent.mkdir()
    assert run(db_url, "audit", "keygen", "--out", str(key_file)).exit_code == 0
    enrol(db_url, key_file)
    swept = run(db_url, "worker", "--once", key=key_file)
    assert swept.exit_code == 0, swept.output
    intact = run(db_url, "audit", "verify", key=key_file)
    assert "re-hashed 0 rows after checkpoint 1 (row 2)" in intact.stdout
    unkeyed = run(db_url, "worker", "--once")
    assert unkeyed.exit_code == 0
    assert "no audit key (CAREPATH_AUDIT_KEY_FILE)" in unkeyed.stderr
