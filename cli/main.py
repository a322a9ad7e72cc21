"""The `carepath` command: database, episodes, events, simulation, audit, worker, diagram.

Output is JSON on stdout. Exit status: 0 ok, 1 refused or invalid (one line on stderr
naming the rule or the field), 2 bad usage.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from cli.audit import audit_app
from engine.clinic_time import SystemClock
from engine.errors import (
    CarepathError,
    EpisodeNotFound,
    InvalidConfiguration,
    InvalidEvent,
    StaleEpisode,
)
from engine.events import parse_opening
from engine.settings import PathwayDefaults
from models.db import (
    DATABASE_URL_ENV,
    DatabaseUnavailable,
    check_connection,
    database_url,
    make_engine,
    make_session_factory,
    read_only,
    upgrade,
)
from models.timeouts import DatabaseTimeout

if TYPE_CHECKING:
    from models.audit_keys import AuditKey
    from models.checkpointing import CheckpointSchedule

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

CLOCK = SystemClock()


class _Options:
    db: str | None = None


OPTIONS = _Options()


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
# Helpers


def _print(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def _engine() -> Engine:
    """The database, checked with a read that takes no lock: a writer holding SQLite's
    lock does not stop a command from starting (its write waits its turn, bounded)."""
    try:
        engine = make_engine(database_url(OPTIONS.db))
    except ValueError as exc:  # a CAREPATH_DB_* setting
        _fail(f"invalid: {exc}", 2)
    try:
        check_connection(engine)
    except (DatabaseUnavailable, DatabaseTimeout) as exc:
        engine.dispose()
        _fail(f"error: {exc}")
    return engine


def _require_schema(engine: Engine) -> None:
    with read_only(engine) as connection:
        migrated = inspect(connection).has_table("episode")
    if not migrated:
        engine.dispose()
        _fail("error: database not migrated: run carepath db upgrade")


def _repository(engine: Engine) -> Any:
    from models.repository import EpisodeRepository

    try:
        defaults = PathwayDefaults.from_env()
    except (ValueError, TypeError) as exc:
        _fail(f"invalid: CAREPATH_DEFAULTS: {exc}", 2)
    return EpisodeRepository(make_session_factory(engine), defaults)


def _audit_key() -> AuditKey | None:
    """This process's audit key (None without CAREPATH_AUDIT_KEY_FILE); a key file that
    cannot be used is bad usage, found before anything starts."""
    from cli.audit import _process_key

    return _process_key()


def _no_key_warning() -> None:
    import logging

    logging.getLogger("carepath.audit").warning(
        "no audit key (CAREPATH_AUDIT_KEY_FILE): rows are not sealed and the chain is not "
        "checkpointed, so a forged tail would not show"
    )


def _checkpoints(
    engine: Engine, key: AuditKey | None, interval: float
) -> CheckpointSchedule | None:
    from models.checkpointing import CheckpointSchedule

    if key is None:
        _no_key_warning()
        return None
    return CheckpointSchedule(engine, key, interval)


@contextmanager
def _database() -> Iterator[Engine]:
    """An engine on the migrated carepath database, disposed afterwards; a database error
    in the block is one line on stderr and exit status 1, never a traceback."""
    engine = _engine()
    try:
        with _reported():
            _require_schema(engine)
            yield engine
    finally:
        engine.dispose()


@contextmanager
def _reported() -> Iterator[None]:
    """Render carepath and database errors as one line on stderr with exit status 1."""
    try:
        yield
    except typer.Exit:
        raise
    except Exception as exc:  # noqa: BLE001 - rendered for the user
        _handle(exc)


def _handle(exc: Exception) -> NoReturn:
    if isinstance(exc, InvalidEvent):
        _fail(f"invalid: {exc.field}: {exc.reason}")
    if isinstance(exc, EpisodeNotFound):
        _fail(f"not found: {exc}")
    if isinstance(exc, StaleEpisode):
        _fail(f"stale: {exc}")
    if isinstance(exc, InvalidConfiguration):
        _fail(f"error: {exc}")
    if isinstance(exc, DatabaseTimeout):
        # Named before the generic database error it also is: say what was waited for.
        advice = "look (episode show) before trying again" if exc.maybe_applied else "try again"
        _fail(f"error: {exc}; {advice}")
    if isinstance(exc, DBAPIError):
        _fail(f"error: database: {str(exc.orig).strip().splitlines()[0]}")
    if isinstance(exc, CarepathError):
        _fail(f"error: {exc}")
    raise exc


def _parse_time(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        _fail(f"invalid: {field}: must be an ISO 8601 time with offset, got {value!r}")
    if parsed.tzinfo is None:
        _fail(f"invalid: {field}: needs a UTC offset (e.g. 'Z'), got {value!r}")
    return parsed.isoformat()


# --------------------------------------------------------------------------------------------
# db


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the schema up to date (Alembic upgrade head)."""
    engine = _engine()
    try:
        with _reported():
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
    clinic_timezone: Annotated[str | None, typer.Option("--clinic-timezone")] = None,
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
    if clinic_timezone is not None:
        payload["clinic_timezone"] = clinic_timezone
    try:
        opening = parse_opening(payload)
    except InvalidEvent as exc:
        # A patient flag that does not exist is reported as the option the user typed.
        field = exc.field
        if field.startswith("patient.") and field[8:] in (flag or []):
            field = f"--flag {field[8:]}"
        _fail(f"invalid: {field}: {exc.reason}")
    with _database() as engine, _reported():
        view = _repository(engine).open(opening, CLOCK.now(), actor=actor)
    _print(view)


@episode_app.command("show")
def episode_show(episode_id: Annotated[str, typer.Argument(help="Episode id")]) -> None:
    """Print an episode view (the read is recorded in the access log first)."""
    from cli.access import record_read

    with _database() as engine, _reported():
        view = _repository(engine).view(episode_id)
        record_read(engine, CLOCK, "episode show", [episode_id])
    _print(view)


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
            _fail(f"invalid: data: not valid JSON: {exc}")
    if actor is not None:
        payload["actor"] = actor
    if occurred_at is not None:
        payload["occurred_at"] = _parse_time(occurred_at, "occurred_at")
    with _database() as engine, _reported():
        entry = _repository(engine).apply_entry(episode_id, payload, CLOCK.now(), if_version)
    _print(entry)
    if not entry["accepted"]:
        _fail(f"refused: {', '.join(entry['rules'])}: {entry['reason']}")


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
            _fail(f"no such file: {file}", 2)
        text = file.read_text(encoding="utf-8")
    try:
        result = simulate(text)
    except (InvalidEvent, SimulationError) as exc:
        _fail(f"invalid: {exc.field}: {exc.reason}")
    except CarepathError as exc:
        _fail(f"error: {exc}")
    _print(result)


# --------------------------------------------------------------------------------------------
# audit


# The audit commands (keygen, checkpoint, verify, export) are in cli/audit.py.


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

    with _database() as engine, _reported():
        if not verify:
            _print(listing(engine, CLOCK, since, until, actor, episode, limit, cursor))
            return
        result = verify_access_log(engine)
    _print({"ok": result.ok, "rows_checked": result.rows_checked,
            "first_bad_seq": result.first_bad_seq, "problem": result.problem})  # fmt: skip
    if not result.ok:
        _fail(f"access log broken at row {result.first_bad_seq}: {result.problem}")


# --------------------------------------------------------------------------------------------
# worker, serve, diagram


@app.command("worker")
def worker(
    once: Annotated[bool, typer.Option("--once", help="Sweep what is due now and exit")] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.01, help="Seconds between sweeps")
    ] = 15.0,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Timers fired per transaction")
    ] = 100,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="Serve Prometheus metrics on this port")
    ] = None,
    log_format: Annotated[
        str, typer.Option("--log-format", help="json (one object per line) or text")
    ] = "json",
    checkpoint_interval: Annotated[
        float,
        typer.Option(
            "--checkpoint-interval", min=1, help="Seconds between audit checkpoints (with a key)"
        ),
    ] = 300.0,
) -> None:
    """Fire due timers and send reminders: once, or every INTERVAL seconds until SIGTERM.

    Several workers may run against one PostgreSQL database; each timer fires once.
    Reminders go to the channels the environment configures: CAREPATH_WEBHOOK_URL with
    CAREPATH_WEBHOOK_SECRET, and CAREPATH_SMTP_HOST with CAREPATH_SMTP_FROM, CAREPATH_SMTP_TO
    (CAREPATH_SMTP_PORT, default 25). With the audit key (CAREPATH_AUDIT_KEY_FILE) the
    worker signs the audit chain's head after a sweep when it has moved, at most every
    --checkpoint-interval seconds (and after the sweep of --once).
    """
    from functools import partial

    from schedulers import logs
    from schedulers.channels import ChannelSettingError, channels_from_env
    from schedulers.reminders import deliver_due
    from schedulers.worker import Worker

    if log_format not in ("json", "text"):
        _fail(f"invalid: --log-format: {log_format!r} is not json or text", 2)
    try:
        channels = channels_from_env()
    except ChannelSettingError as exc:
        _fail(f"invalid: {exc}", 2)
    key = _audit_key()
    logs.configure(json_lines=log_format == "json")
    with _database() as engine:
        deliver = partial(deliver_due, engine, channels) if channels else None
        # The database's clock decides what is due (PostgreSQL): a skewed host fires
        # nothing early.
        runner = Worker(
            _repository(engine), CLOCK, batch_size=batch_size, deliver=deliver,
            database_clock=True, checkpoint=_checkpoints(engine, key, checkpoint_interval),
        )  # fmt: skip
        if metrics_port is not None:
            from prometheus_client import start_http_server

            start_http_server(metrics_port, registry=runner.metrics.registry)
        if once:
            # SIGTERM lets the batch in progress finish, then the summary is printed.
            stop_on_signal(runner.stopping.set)
            with _reported():
                report = runner.sweep()
            typer.echo(json.dumps(report.summary(), default=str))
            return
        runner.run(interval)


def stop_on_signal(stop: Any) -> None:
    """Call ``stop`` on SIGTERM or SIGINT instead of dying there and then."""
    import signal

    def handler(signum: int, _frame: Any) -> None:
        import logging

        logging.getLogger("carepath.worker").info(
            "stopping", extra={"signal": signal.Signals(signum).name}
        )
        stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)


@app.command("incidents")
def incidents(
    resolve: Annotated[
        int | None, typer.Option("--resolve", help="Close this open incident by hand")
    ] = None,
    retry: Annotated[
        int | None, typer.Option("--retry", help="Retry this open incident at the next sweep")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Resolved ones too")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many, newest first")] = 100,
) -> None:
    """Steps that could not be done for one episode: kind (timer, episode, delivery), the
    episode, the timer or delivery, the error, attempts and the next retry.

    Repair the episode, then --retry ID (or wait for the retry); --resolve ID closes one
    by hand. Either way the episode's timers are then claimed again, in due order.
    """
    from models.incidents import list_incidents, retry_now
    from models.incidents import resolve as resolve_incident
    from schedulers import logs

    if resolve is not None and retry is not None:
        _fail("invalid: --resolve and --retry: give one of them", 2)
    logs.configure()  # a retry or resolution is logged, as the worker logs its changes
    with _database() as engine, _reported():
        if resolve is not None:
            _print(resolve_incident(engine, resolve, CLOCK.now()))
        elif retry is not None:
            _print(retry_now(engine, retry))
        else:
            _print(list_incidents(engine, include_resolved=all_, limit=limit))


@app.command("reminders")
def reminders(
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many, newest first")] = 50,
) -> None:
    """Reminder deliveries: status (pending, retrying, sent), attempts and the last error."""
    from schedulers.reminders import delivery_status

    with _database() as engine, _reported():
        _print(delivery_status(engine, limit))


@app.command("serve")
def serve(
    demo: Annotated[bool, typer.Option("--demo", help="Seed demo episodes first")] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.01, help="Seconds between sweeps")
    ] = 15.0,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    token_cache: Annotated[
        float,
        typer.Option(
            "--token-cache",
            min=0,
            help="Seconds a live token is remembered; a revoked one stops working within it",
        ),
    ] = 5.0,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Processes serving requests (each sweeps)")
    ] = 1,
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url",
            envvar="CAREPATH_BASE_URL",
            help="Where people reach the service (https://carepath.clinic.example): links and "
            "the forms' origin check. Default http://HOST:PORT",
        ),
    ] = None,
    trusted_proxies: Annotated[
        str | None,
        typer.Option(
            "--trusted-proxies",
            envvar="CAREPATH_TRUSTED_PROXIES",
            help="Proxy addresses or networks whose X-Forwarded-Proto and -For are believed "
            "(comma-separated). Default: none",
        ),
    ] = None,
    log_format: Annotated[
        str, typer.Option("--log-format", help="json (one object per line) or text")
    ] = "json",
    checkpoint_interval: Annotated[
        float,
        typer.Option(
            "--checkpoint-interval", min=1, help="Seconds between audit checkpoints (with a key)"
        ),
    ] = 300.0,
) -> None:
    """Run the service: the HTTP API, with the scheduler worker sweeping in-process.

    With the audit key (CAREPATH_AUDIT_KEY_FILE) the worker also signs the audit chain's
    head when it has moved, at most every --checkpoint-interval seconds. SIGTERM lets the
    sweep's batch in progress and the requests in flight finish, then the process exits 0.
    """
    import dataclasses
    import logging
    import signal

    import uvicorn

    from api.app import LOG_FORMAT_ENV, SWEEP_INTERVAL_ENV, TOKEN_CACHE_ENV, create_app
    from api.security import (
        BASE_URL_ENV,
        WebSettingError,
        WebSettings,
        default_base_url,
        parse_base_url,
        parse_trusted_proxies,
    )
    from models.checkpointing import CHECKPOINT_INTERVAL_ENV
    from schedulers import logs
    from schedulers.channels import ChannelSettingError, channels_from_env

    if log_format not in ("json", "text"):
        _fail(f"invalid: --log-format: {log_format!r} is not json or text", 2)
    try:
        channels = channels_from_env()
    except ChannelSettingError as exc:
        _fail(f"invalid: {exc}", 2)
    try:
        base = parse_base_url(base_url, "--base-url") if base_url else None
        web = dataclasses.replace(
            WebSettings.from_env(), base_url=base or default_base_url(host, port)
        )
        proxies = parse_trusted_proxies(trusted_proxies or "", "--trusted-proxies")
    except WebSettingError as exc:
        _fail(f"invalid: {exc}", 2)
    # uvicorn rewrites the scheme and client address from X-Forwarded-* only for these.
    proxy_headers = proxies is not None
    json_lines = log_format == "json"
    key = _audit_key()
    logs.configure(json_lines=json_lines)
    if key is None:
        _no_key_warning()
    log = logging.getLogger("carepath.serve")
    with _database() as engine:
        if demo:
            for view in seed_demo(_repository(engine), CLOCK.now()):
                typer.echo(
                    f"demo episode {view['id']} ({view['patient_ref']}): {view['phase']}, "
                    f"management {view['management']}, referral {view['referral']}"
                )
            log.info("a token to try the API with: carepath token create --role admin")
        defaults = _repository(engine).defaults
        listening = f"http://{host}:{port}"
        reached = "" if web.base_url == listening else f", reached at {web.base_url}"
        log.info(f"carepath on {listening}{reached} (API docs at /docs)",
                 extra={"url": listening, "base_url": str(web.base_url),
                        "workers": workers})  # fmt: skip
        # Uvicorn stops gracefully on SIGTERM, then sends the signal again to end by it:
        # caught here, the process exits 0 instead, as a service manager expects.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)
        log_config = logs.logging_config(json_lines)
        if workers > 1:
            # Worker processes build the app themselves (api.app.app_from_env), from
            # settings passed down in the environment.
            os.environ[DATABASE_URL_ENV] = engine.url.render_as_string(hide_password=False)
            os.environ[SWEEP_INTERVAL_ENV] = str(interval)
            os.environ[TOKEN_CACHE_ENV] = str(token_cache)
            os.environ[BASE_URL_ENV] = str(web.base_url)
            os.environ[LOG_FORMAT_ENV] = log_format
            os.environ[CHECKPOINT_INTERVAL_ENV] = str(checkpoint_interval)
            engine.dispose()
            uvicorn.run(
                "api.app:app_from_env",
                factory=True,
                workers=workers,
                host=host,
                port=port,
                log_level="warning",
                proxy_headers=proxy_headers,
                forwarded_allow_ips=proxies,
                log_config=log_config,
            )
            return
        app = create_app(
            engine,
            CLOCK,
            defaults,
            worker_interval=interval,
            channels=channels,
            token_cache_seconds=token_cache,
            web=web,
            database_clock=True,
            checkpoint_interval=checkpoint_interval,
        )
        uvicorn.run(app, host=host, port=port, log_level="warning", log_config=log_config,
                    proxy_headers=proxy_headers, forwarded_allow_ips=proxies)  # fmt: skip


# --------------------------------------------------------------------------------------------
# tokens


@token_app.command("create")
def token_create(
    role: Annotated[
        str,
        typer.Option("--role", help="coordinator, service, auditor, admin, or calendar (one feed)"),
    ],
    subject: Annotated[
        str | None, typer.Option("--subject", help="Who acts with it (default: the role)")
    ] = None,
) -> None:
    """Create a token and print it once: only its hash is kept."""
    from api.tokens import create_token

    with _database() as engine:
        try:
            token_id, token = create_token(engine, role, subject or role, CLOCK.now())
        except ValueError as exc:
            _fail(f"invalid: --role/--subject: {exc}", 2)
    _print({"id": token_id, "role": role, "subject": subject or role, "token": token})
    typer.echo("store it now: it cannot be shown again", err=True)


@token_app.command("revoke")
def token_revoke(token_id: Annotated[int, typer.Argument(help="The token's id")]) -> None:
    """Revoke a token: requests with it are refused from now on."""
    from api.tokens import revoke_token

    with _database() as engine:
        if not revoke_token(engine, token_id, CLOCK.now()):
            _fail(f"invalid: no live token with id {token_id}")
    typer.echo(f"token {token_id} revoked")


def seed_demo(repo: Any, now: datetime) -> list[dict[str, Any]]:
    """A few episodes at different points of the pathway, opened relative to today."""

    views = []
    for ref, weeks_ago, extra in (
        ("demo-acute", 2, {"age": 45, "sex": "female", "prior_lbp": True}),
        ("demo-review", 7, {"age": 70}),
        ("demo-chronic", 14, {"age": 52, "workers_comp": True}),
    ):
        onset = (now - timedelta(weeks=weeks_ago)).date().isoformat()
        opening = parse_opening(
            {"patient": {"ref": ref, **extra}, "onset": onset, "coordinator": "demo"}
        )
        views.append(repo.open(opening, now))
    return views


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
        _fail(f"invalid: --format: must be svg, png, mermaid or dot, not {format_!r}", 2)
    if format_ == "png" and out is None:
        _fail("invalid: --out: png output needs a file", 2)
    try:
        content = render(format_)
    except Exception as exc:  # noqa: BLE001 - graphviz missing, etc.
        _fail(f"error: cannot draw the diagram as {format_}: {exc}")
    if out is not None:
        out.write_bytes(content if isinstance(content, bytes) else content.encode())
        typer.echo(f"wrote {out}", err=True)
    elif isinstance(content, bytes):
        sys.stdout.buffer.write(content)
    else:
        typer.echo(content)


if __name__ == "__main__":  # pragma: no cover
    app()
