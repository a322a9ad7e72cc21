"""`carepath audit`: the audit key, checkpoints, verification, replay and exports.

Exit status as for every command: 0 ok (for ``verify``: intact), 1 a bad row or checkpoint
(one line on stderr naming it) or another error, 2 bad usage.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from cli import common
from cli.common import database, fail, print_json, reported
from cli.replay import REPLAY_HELP
from models.audit_keys import (
    AUDIT_KEY_FILE_ENV,
    AuditKeyError,
    PublicKey,
    generate_key,
    load_public_key,
    public_key_path,
    public_pem,
)

audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)


def _time_option(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 instant with its offset; a date or an offset-less time is refused."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        fail(f"invalid: {option}: must be an ISO 8601 time with offset, got {value!r}", 2)
    if parsed.tzinfo is None or "T" not in value.upper():
        fail(
            f"invalid: {option}: needs a time and a UTC offset "
            f"(e.g. 2026-03-01T09:00:00Z), got {value!r}",
            2,
        )
    return parsed


@audit_app.command("keygen")
def keygen(
    out: Annotated[
        Path | None,
        typer.Option("--out", help=f"The private key's file (default: ${AUDIT_KEY_FILE_ENV})"),
    ] = None,
) -> None:
    """Make the audit key (Ed25519) and print its public half.

    The private key goes to FILE (mode 0600), never into the database, and is never
    overwritten; the public key to FILE.pub, for auditors (`verify --public-key`). Point
    CAREPATH_AUDIT_KEY_FILE at FILE for every carepath process that writes to the log:
    they seal each row they append, and `serve` and `worker` sign checkpoints with it.
    """
    named = os.environ.get(AUDIT_KEY_FILE_ENV)
    target = out or (Path(named) if named else None)
    if target is None:
        fail(f"invalid: --out: give the key's file, or set {AUDIT_KEY_FILE_ENV}", 2)
    try:
        key = generate_key(target)
    except AuditKeyError as exc:
        fail(f"error: {exc}")
    typer.echo(public_pem(key.public.key), nl=False)
    typer.echo(
        f"audit key {key.id} written to {target} (keep it secret); public key in "
        f"{public_key_path(target)}",
        err=True,
    )


@audit_app.command("checkpoint")
def checkpoint(
    accept_unsealed: Annotated[
        bool,
        typer.Option(
            "--accept-unsealed",
            help="Sign over rows that carry no seal (written before the key existed, or "
            "without it): only after checking them",
        ),
    ] = False,
) -> None:
    """Verify the rows since the newest checkpoint, then sign the chain's head.

    Needs the audit key (CAREPATH_AUDIT_KEY_FILE). Prints the checkpoint as JSON. Nothing
    is signed when the log is found broken (exit 1, naming the first bad row).
    """
    from engine.clinic_time import SystemClock
    from models.checkpointing import ChainNotSignable, write_checkpoint

    key = common.audit_key()
    if key is None:
        fail(f"invalid: {AUDIT_KEY_FILE_ENV} is not set: no key to sign with", 2)
    with database() as engine, reported():
        try:
            written = write_checkpoint(
                engine, key, SystemClock().now(), accept_unsealed=accept_unsealed
            )
        except ChainNotSignable as exc:
            hint = ""
            if "no seal" in exc.problem and not accept_unsealed:
                hint = " (rows written without the key: check them, then --accept-unsealed)"
            fail(f"not signed: audit log broken at row {exc.seq}: {exc.problem}{hint}")
    if written is None:
        typer.echo("the audit log is empty: nothing to sign", err=True)
        return
    print_json(written.as_json())


# Paragraphs as single lines: the help re-wraps them to the terminal's width.
VERIFY_HELP = "\n\n".join(
    " ".join(paragraph.split())
    for paragraph in """
Check the audit log; exit 1 names the first bad row or checkpoint.

With the audit key (CAREPATH_AUDIT_KEY_FILE) every checkpoint's signature is checked, the
row at each checkpoint's sequence number must still carry the hash it signed, and every
row after the newest checkpoint must carry its seal. With only --public-key the
checkpoints are checked, and the rows after the newest one are counted as not
authenticated. With no key only the hash chain is checked.

By default only the rows after the newest trusted checkpoint are re-hashed: rows up to it
are vouched for by its signature. An old row whose content was changed in place, its
stored hash left alone, is then not seen (the append-only triggers stand in the way; if
they are found lifted, every row is re-hashed). --full re-hashes every row: run it on a
schedule.
""".strip().split("\n\n")
)


@audit_app.command("verify", help=VERIFY_HELP)
def verify(
    against: Annotated[
        str | None,
        typer.Option(
            "--against",
            metavar="SEQ:HASH",
            help="A head kept from before (an export's chain_head): the log must still hold it",
        ),
    ] = None,
    public_key: Annotated[
        list[Path] | None,
        typer.Option("--public-key", help="A public key (FILE.pub) to check checkpoints with"),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="Verify a JSONL export offline, without the database"),
    ] = None,
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="Re-hash every row, not only those after the newest checkpoint",
        ),
    ] = False,
) -> None:
    from models.audit_verify import ChainReport, parse_against, verify_log

    parsed = None
    if against is not None:
        try:
            parsed = parse_against(against)
        except ValueError as exc:
            fail(f"invalid: --against: {exc}", 2)
    keys: list[PublicKey] = []
    for path in public_key or []:
        try:
            keys.append(load_public_key(path))
        except AuditKeyError as exc:
            fail(f"invalid: --public-key: {exc.path}: {exc.reason}", 2)
    key = common.audit_key()
    report: ChainReport
    if file is not None:
        from models.export_check import verify_export

        if not file.is_file():
            fail(f"invalid: --file: no such file: {file}", 2)
        with file.open(encoding="utf-8") as lines:
            report = verify_export(lines, key=key, public_keys=keys, against=parsed)
        what = f"export {file}"
    else:
        from models.audit_export import head

        with database() as engine, reported():
            total = head(engine)[0]
            with typer.progressbar(length=total, label="verifying", file=sys.stderr) as bar:
                report = verify_log(
                    engine, key=key, public_keys=keys, full=full, against=parsed,
                    on_progress=bar.update,
                )  # fmt: skip
        what = "audit log"
    for warning in report.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if not report.ok:
        where = (
            f"checkpoint {report.first_bad_checkpoint}"
            if report.first_bad_checkpoint is not None
            else f"row {report.first_bad_seq}"
        )
        fail(f"{what} broken at {where}: {report.problem}")
    typer.echo(f"{what} intact: {report.head_seq} rows; {describe(report)}")


def describe(report: Any) -> str:
    """What a verify that passed looked at, in one clause list."""
    parts = []
    start = report.resumed_from
    rows = f"{report.rows_checked} row{'' if report.rows_checked == 1 else 's'}"
    if start is not None:
        parts.append(
            f"re-hashed {rows} after {start.label()}, whose signature vouches for the rows "
            "up to it (--full re-hashes them too)"
        )
    else:
        parts.append(f"re-hashed {rows} from the first")
    if report.signatures_checked:
        parts.append(f"{report.signatures_checked} checkpoint signature(s) valid")
    elif report.checkpoints:
        parts.append(f"{report.checkpoints} checkpoints not checked")
    if report.seals_checked:
        parts.append("seals checked")
    return "; ".join(parts)


@audit_app.command("replay", help=f"""Re-run every episode's recorded history (or those
given with --episode) and compare every step with its audit row: exit 0 when all match, 1
when any differs, each differing episode named on stderr with its first differing step.

{REPLAY_HELP}""")
def replay(
    episode: Annotated[
        list[str] | None, typer.Option("--episode", help="An episode to replay (repeatable)")
    ] = None,
) -> None:
    from cli.replay import run

    run(episode or None, progress=True)


@audit_app.command("export")
def export(
    out: Annotated[
        Path | None, typer.Option("--out", help="File to write (default: stdout; '-' too)")
    ] = None,
    format_: Annotated[str, typer.Option("--format", help="csv, jsonl or fhir")] = "jsonl",
    since: Annotated[
        str | None, typer.Option("--since", help="Rows recorded at or after (ISO 8601 with offset)")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Rows recorded before (ISO 8601 with offset)")
    ] = None,
    episode: Annotated[str | None, typer.Option("--episode")] = None,
    actor: Annotated[str | None, typer.Option("--actor")] = None,
    rule: Annotated[str | None, typer.Option("--rule")] = None,
) -> None:
    """Export the audit log; it ends with the chain's head and its latest signed checkpoint.

    A filtered export says in its trailer what can and cannot be checked from it.
    """
    from cli.access import record_read
    from models.audit_export import FORMATS, AuditFilter, head
    from models.audit_export import export as export_rows

    if format_ not in FORMATS:
        fail(f"invalid: --format: must be one of {', '.join(FORMATS)}", 2)
    window = _time_option(since, "--since"), _time_option(until, "--until")
    to_stdout = out is None or str(out) == "-"
    with database() as engine, reported():
        where = AuditFilter(*window, episode_id=episode, actor=actor, rule=rule)
        # On record in the access log before a row is written out.
        record_read(engine, common.CLOCK, "audit export", [episode] if episode else None,
                    format=format_, since=since, until=until, episode=episode, actor=actor,
                    rule=rule)  # fmt: skip
        total = head(engine)[0]
        target = sys.stdout if to_stdout else out.open("w", encoding="utf-8", newline="")  # type: ignore[union-attr]
        try:
            with typer.progressbar(length=total, label="exporting", file=sys.stderr) as bar:
                for chunk in export_rows(engine, format_, where):
                    target.write(chunk)
                    bar.update(chunk.count("\n"))
        finally:
            if target is not sys.stdout:
                target.close()
            else:
                target.flush()
    typer.echo(f"exported up to row {total} to {'stdout' if to_stdout else out}", err=True)


@audit_app.command("access")
def audit_access(
    since: Annotated[str | None, typer.Option("--since", help="Recorded at or after")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Recorded before")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="A token's subject")] = None,
    episode: Annotated[str | None, typer.Option("--episode", help="Reads of an episode")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 100,
    cursor: Annotated[int, typer.Option("--cursor", min=0, help="next_cursor of a page")] = 0,
    verify: Annotated[bool, typer.Option("--verify", help="Check the hash chain")] = False,
) -> None:
    """Who read which episodes, when, through which route: a page of the access log as
    JSON, oldest first (its own read is recorded too). --verify checks its hash chain."""
    from cli.access import listing
    from models.access_reading import verify_access_log

    with database() as engine, reported():
        if not verify:
            print_json(listing(engine, common.CLOCK, since, until, actor, episode, limit, cursor))
            return
        result = verify_access_log(engine)
    print_json({"ok": result.ok, "rows_checked": result.rows_checked,
            "first_bad_seq": result.first_bad_seq, "problem": result.problem})  # fmt: skip
    if not result.ok:
        fail(f"access log broken at row {result.first_bad_seq}: {result.problem}")
