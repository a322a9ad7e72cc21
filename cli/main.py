"""The `carepath` command: database, episodes (their replay: cli/replay.py), events, simulation,
tokens, diagram; the audit commands (cli/audit.py) and the service's (cli/service.py) are
registered here too.

Output is JSON on stdout. Exit status: 0 ok, 1 refused or invalid (one line on stderr
naming the rule or the field), 2 bad usage.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

import pathways
from cli import common, service, teams
from cli.audit import audit_app
from cli.common import OPTIONS, database, fail, parse_time, print_json, reported, repository
from cli.pathway import pathway_app
from cli.replay import REPLAY_HELP
from cli.teams import team_app
from engine.errors import CarepathError, InvalidEvent
from engine.events import parse_opening
from models.db import upgrade

app = typer.Typer(
    name="carepath",
    help="Care-pathway engine for lumbosacral radiculopathy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
episode_app = typer.Typer(help="Open and show episodes.", no_args_is_help=True)
token_app = typer.Typer(help="Bearer tokens for the HTTP API.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(episode_app, name="episode")
app.add_typer(audit_app, name="audit")
app.add_typer(token_app, name="token")
app.add_typer(pathway_app, name="pathway")
app.add_typer(team_app, name="team")
app.command("cover")(teams.cover)
# The service and its operators' commands (cli/service.py).
app.command("worker")(service.worker)
app.command("serve")(service.serve)
app.command("incidents")(service.incidents)
app.command("reminders")(service.reminders)


@app.callback()
def main(
    db: Annotated[
        str | None,
        typer.Option(
            "--db", help="SQLAlchemy URL (default: CAREPATH_DATABASE_URL or ./carepath.db)"
        ),
    ] = None,
) -> None:
    OPTIONS.db = db


# --------------------------------------------------------------------------------------------
# db


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the schema up to date (Alembic upgrade head)."""
    engine = common.open_engine()
    try:
        with reported():
            upgrade(engine)
    finally:
        engine.dispose()
    typer.echo("database upgraded to head", err=True)


# --------------------------------------------------------------------------------------------
# episode


@episode_app.command("open")
def episode_open(
    patient_ref: Annotated[str, typer.Option("--patient-ref", help="The patient's reference")],
    onset: Annotated[str, typer.Option("--onset", help="Symptom onset date, YYYY-MM-DD")],
    enrolled_at: Annotated[str | None, typer.Option("--enrolled-at")] = None,
    age: Annotated[int | None, typer.Option("--age")] = None,
    sex: Annotated[str | None, typer.Option("--sex")] = None,
    flag: Annotated[
        list[str] | None, typer.Option("--flag", help="Repeatable patient flag")
    ] = None,
    coordinator: Annotated[str | None, typer.Option("--coordinator")] = None,
    team: Annotated[
        str | None,
        typer.Option("--team", help="Its care team (default: the coordinator's, if only one)"),
    ] = None,
    clinic_timezone: Annotated[str | None, typer.Option("--clinic-timezone")] = None,
    pathway_version: Annotated[
        str | None,
        typer.Option("--pathway-version", help="A published version (default: the newest)"),
    ] = None,
    actor: Annotated[str | None, typer.Option("--actor")] = None,
) -> None:
    """Enrol a patient and print the episode view."""
    patient: dict[str, Any] = {"ref": patient_ref}
    if age is not None:
        patient["age"] = age
    if sex is not None:
        patient["sex"] = sex
    for name in flag or []:
        patient[name] = True
    payload: dict[str, Any] = {"patient": patient, "onset": onset}
    if enrolled_at is not None:
        payload["enrolled_at"] = enrolled_at
    if coordinator is not None:
        payload["coordinator"] = coordinator
    if team is not None:
        payload["team"] = team
    if clinic_timezone is not None:
        payload["clinic_timezone"] = clinic_timezone
    if pathway_version is not None:
        payload["pathway_version"] = pathway_version
    try:
        # The version checked here too, before the database is opened.
        opening = pathways.opening_for(parse_opening(payload))
    except InvalidEvent as exc:
        # A patient flag that does not exist is reported as the option the user typed.
        field = exc.field
        if field.startswith("patient.") and field[8:] in (flag or []):
            field = f"--flag {field[8:]}"
        elif field == "pathway_version":
            field = "--pathway-version"
        fail(f"invalid: {field}: {exc.reason}")
    with database() as engine, reported():
        view = repository(engine).open(opening, common.CLOCK.now(), actor=actor)
    print_json(view)


@episode_app.command("show")
def episode_show(episode_id: Annotated[str, typer.Argument(help="Episode id")]) -> None:
    """Print an episode view (the read is recorded in the access log first)."""
    from cli.access import record_read

    with database() as engine, reported():
        view = repository(engine).view(episode_id)
        record_read(engine, common.CLOCK, "episode show", [episode_id])
    print_json(view)


@episode_app.command(
    "replay",
    help=f"""Re-run an episode's recorded history and compare
every step with its audit row: exit 0 when all match, 1 naming the first that differs.

{REPLAY_HELP}""",
)
def episode_replay(episode_id: Annotated[str, typer.Argument(help="Episode id")]) -> None:
    from cli.replay import run

    run([episode_id], progress=False)


# --------------------------------------------------------------------------------------------
# event


@app.command("event")
def event(
    episode_id: Annotated[str, typer.Argument(help="Episode id")],
    type_: Annotated[str, typer.Argument(metavar="TYPE", help="Event type")],
    data: Annotated[str | None, typer.Option("--data", help="Event data as a JSON object")] = None,
    actor: Annotated[str | None, typer.Option("--actor")] = None,
    occurred_at: Annotated[str | None, typer.Option("--occurred-at")] = None,
    if_version: Annotated[int | None, typer.Option("--if-version")] = None,
) -> None:
    """Apply one event and print the step result."""
    payload: dict[str, Any] = {"type": type_}
    if data is not None:
        try:
            payload["data"] = json.loads(data)
        except json.JSONDecodeError as exc:
            fail(f"invalid: data: not valid JSON: {exc}")
    if actor is not None:
        payload["actor"] = actor
    if occurred_at is not None:
        payload["occurred_at"] = parse_time(occurred_at, "occurred_at")
    with database() as engine, reported():
        entry = repository(engine).apply_entry(episode_id, payload, common.CLOCK.now(), if_version)
    print_json(entry)
    if not entry["accepted"]:
        fail(f"refused: {', '.join(entry['rules'])}: {entry['reason']}")


# --------------------------------------------------------------------------------------------
# simulate


@app.command("simulate")
def simulate_command(
    file: Annotated[Path, typer.Argument(help="Scenario file, YAML or JSON ('-' for stdin)")],
) -> None:
    """Play a scenario on a private in-memory database and print the timeline."""
    from cli.simulate import SimulationError, simulate

    if str(file) == "-":
        text = sys.stdin.read()
    else:
        if not file.is_file():
            fail(f"no such file: {file}", 2)
        text = file.read_text(encoding="utf-8")
    try:
        result = simulate(text)
    except (InvalidEvent, SimulationError) as exc:
        fail(f"invalid: {exc.field}: {exc.reason}")
    except CarepathError as exc:
        fail(f"error: {exc}")
    print_json(result)


# --------------------------------------------------------------------------------------------
# tokens (the audit commands are in cli/audit.py; the service's in cli/service.py)


@token_app.command("create")
def token_create(
    role: Annotated[
        str,
        typer.Option(
            "--role", help="coordinator, clinician, service, auditor, admin, or calendar (one feed)"
        ),
    ],
    subject: Annotated[
        str | None, typer.Option("--subject", help="Who acts with it (default: the role)")
    ] = None,
    sign_in_link: Annotated[
        bool,
        typer.Option(
            "--sign-in-link",
            help="Also a one-time link that signs its holder in "
            "to the coordinator page (coordinator and admin tokens)",
        ),
    ] = False,
    link_valid_hours: Annotated[
        int, typer.Option("--link-valid-hours", min=1, max=24 * 14, help="How long the link works")
    ] = 24,
) -> None:
    """Create a token and print it once: only its hash is kept. With ``--sign-in-link`` also
    a link that signs its holder in once (at ``CAREPATH_BASE_URL``; a path without it)."""
    from datetime import timedelta

    from api.pages import PAGE_ROLES
    from api.security import WebSettingError, WebSettings
    from api.sign_in_links import PATH, create_link
    from api.tokens import create_token

    if sign_in_link and role not in PAGE_ROLES:
        fail(f"invalid: --sign-in-link: a {role} token does not sign in to the page", 2)
    try:
        base = WebSettings.from_env().base_url or ""
    except WebSettingError as exc:
        fail(f"invalid: {exc}", 2)
    now = common.CLOCK.now()
    with database() as engine:
        try:
            token_id, token = create_token(engine, role, subject or role, now)
        except ValueError as exc:
            fail(f"invalid: --role/--subject: {exc}", 2)
        made: dict[str, Any] = {"id": token_id, "role": role, "subject": subject or role,
                                "token": token}  # fmt: skip
        if sign_in_link:
            code = create_link(engine, token_id, now, timedelta(hours=link_valid_hours))
            made["sign_in_link"] = f"{base}{PATH}{code}"
            made["link_expires_at"] = (now + timedelta(hours=link_valid_hours)).isoformat()
    print_json(made)
    typer.echo("store it now: it cannot be shown again", err=True)


@token_app.command("revoke")
def token_revoke(token_id: Annotated[int, typer.Argument(help="The token's id")]) -> None:
    """Revoke a token: requests with it are refused from now on."""
    from api.tokens import revoke_token

    with database() as engine:
        if not revoke_token(engine, token_id, common.CLOCK.now()):
            fail(f"invalid: no live token with id {token_id}")
    typer.echo(f"token {token_id} revoked")


# --------------------------------------------------------------------------------------------
# diagram


@app.command("diagram")
def diagram(
    format_: Annotated[str, typer.Option("--format", help="svg, png, mermaid or dot")] = "svg",
    out: Annotated[Path | None, typer.Option("--out", help="Output file (default: stdout)")] = None,
) -> None:
    """Draw the pathway statechart; --out DIR writes SVG, Mermaid and DOT into DIR."""
    from cli.diagram import render, write_all

    if out is not None and (out.is_dir() or str(out).endswith("/")):
        for path in write_all(out):
            typer.echo(f"wrote {path}", err=True)
        return

    if format_ not in ("svg", "png", "mermaid", "dot"):
        fail(f"invalid: --format: must be svg, png, mermaid or dot, not {format_!r}", 2)
    if format_ == "png" and out is None:
        fail("invalid: --out: png output needs a file", 2)
    try:
        content = render(format_)
    except Exception as exc:  # noqa: BLE001 - graphviz missing, etc.
        fail(f"error: cannot draw the diagram as {format_}: {exc}")
    if out is not None:
        out.write_bytes(content if isinstance(content, bytes) else content.encode())
        typer.echo(f"wrote {out}", err=True)
    elif isinstance(content, bytes):
        sys.stdout.buffer.write(content)
    else:
        typer.echo(content)


if __name__ == "__main__":  # pragma: no cover
    app()
