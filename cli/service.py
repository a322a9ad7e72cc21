"""`carepath worker`, `serve`, `incidents` and `reminders`: the service and what operators
ask of it.

The worker fires due timers and sends reminders; `serve` runs the HTTP API with a worker
sweeping in-process. Both sign the audit chain's head on a schedule when the process has
the audit key, log one JSON object per line, and end cleanly on SIGTERM (exit 0).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer

from cli import common
from cli.common import (
    audit_key,
    checkpoints,
    database,
    fail,
    print_json,
    reported,
    repository,
    warn_without_key,
)
from engine.events import parse_opening
from models.db import DATABASE_URL_ENV

# Options the worker and the service share.
LogFormat = Annotated[str, typer.Option("--log-format", help="json (one object per line) or text")]
CheckpointInterval = Annotated[
    float,
    typer.Option(
        "--checkpoint-interval", min=1, help="Seconds between audit checkpoints (with a key)"
    ),
]
SweepInterval = Annotated[
    float, typer.Option("--interval", min=0.01, help="Seconds between sweeps")
]


def check_log_format(log_format: str) -> None:
    if log_format not in ("json", "text"):
        fail(f"invalid: --log-format: {log_format!r} is not json or text", 2)


def worker(
    once: Annotated[bool, typer.Option("--once", help="Sweep what is due now and exit")] = False,
    interval: SweepInterval = 15.0,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Timers fired per transaction")
    ] = 100,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="Serve Prometheus metrics on this port")
    ] = None,
    log_format: LogFormat = "json",
    checkpoint_interval: CheckpointInterval = 300.0,
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

    from api.security import WebSettingError, WebSettings
    from schedulers import logs
    from schedulers.channels import ChannelSettingError, channels_from_env
    from schedulers.reminders import deliver_due
    from schedulers.worker import Worker

    check_log_format(log_format)
    try:
        channels = channels_from_env()
    except ChannelSettingError as exc:
        fail(f"invalid: {exc}", 2)
    key = audit_key()
    logs.configure(json_lines=log_format == "json")
    try:  # the address reminders link to: CAREPATH_BASE_URL, as the service's own
        base_url = WebSettings.from_env().base_url
    except WebSettingError as exc:
        fail(f"invalid: {exc}", 2)
    with database() as engine:
        deliver = (partial(deliver_due, engine, channels, base_url=base_url)
                   if channels else None)  # fmt: skip
        # The database's clock decides what is due (PostgreSQL): a skewed host fires
        # nothing early.
        runner = Worker(
            repository(engine), common.CLOCK, batch_size=batch_size, deliver=deliver,
            database_clock=True, checkpoint=checkpoints(engine, key, checkpoint_interval),
        )  # fmt: skip
        if metrics_port is not None:
            from prometheus_client import start_http_server

            start_http_server(metrics_port, registry=runner.metrics.registry)
        if once:
            # SIGTERM lets the batch in progress finish, then the summary is printed.
            stop_on_signal(runner.stopping.set)
            with reported():
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
        fail("invalid: --resolve and --retry: give one of them", 2)
    logs.configure()  # a retry or resolution is logged, as the worker logs its changes
    with database() as engine, reported():
        if resolve is not None:
            print_json(resolve_incident(engine, resolve, common.CLOCK.now()))
        elif retry is not None:
            print_json(retry_now(engine, retry))
        else:
            print_json(list_incidents(engine, include_resolved=all_, limit=limit))


def reminders(
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many, newest first")] = 50,
) -> None:
    """Reminder deliveries: status (pending, retrying, sent), attempts and the last error."""
    from schedulers.reminders import delivery_status

    with database() as engine, reported():
        print_json(delivery_status(engine, limit))


def serve(
    demo: Annotated[bool, typer.Option("--demo", help="Seed demo episodes first")] = False,
    interval: SweepInterval = 15.0,
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
    log_format: LogFormat = "json",
    checkpoint_interval: CheckpointInterval = 300.0,
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

    check_log_format(log_format)
    try:
        channels = channels_from_env()
    except ChannelSettingError as exc:
        fail(f"invalid: {exc}", 2)
    try:
        base = parse_base_url(base_url, "--base-url") if base_url else None
        web = dataclasses.replace(
            WebSettings.from_env(), base_url=base or default_base_url(host, port)
        )
        proxies = parse_trusted_proxies(trusted_proxies or "", "--trusted-proxies")
    except WebSettingError as exc:
        fail(f"invalid: {exc}", 2)
    # uvicorn rewrites the scheme and client address from X-Forwarded-* only for these.
    proxy_headers = proxies is not None
    json_lines = log_format == "json"
    key = audit_key()
    logs.configure(json_lines=json_lines)
    if key is None:
        warn_without_key()
    log = logging.getLogger("carepath.serve")
    with database() as engine:
        if demo:
            for view in seed_demo(repository(engine), common.CLOCK.now()):
                typer.echo(
                    f"demo episode {view['id']} ({view['patient_ref']}): {view['phase']}, "
                    f"management {view['management']}, referral {view['referral']}"
                )
            log.info("a token to try the API with: carepath token create --role admin")
        defaults = repository(engine).defaults
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
            common.CLOCK,
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
