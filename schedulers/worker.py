"""The scheduler worker: fires due timers and sends coordinator reminders, on a clock.

The ``due_timer`` table is the truth; APScheduler 3.x is only the clock, one interval job
per process (``max_instances=1``: sweeps never overlap; ``coalesce=True``: a late process
runs one sweep, not a burst; ``misfire_grace_time=None``: a late sweep still runs). Several
processes may sweep one PostgreSQL database: each batch claims its timers with
``FOR UPDATE SKIP LOCKED``, so a timer is fired by one of them, once. A process killed
mid-batch loses nothing: its transaction rolls back and the timers are claimed again.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import DBAPIError

from engine.clinic_time import Clock
from models.db import checkpoint_sqlite, read_only
from models.repository import EpisodeRepository, FiredBatch
from models.tables import DueTimer
from schedulers.metrics import WorkerMetrics

log = logging.getLogger("carepath.worker")

DEFAULT_INTERVAL = 15.0
DEFAULT_BATCH = 100
# How long to let another worker finish an episode's earlier timer, and how many times.
HELD_PAUSE = 0.05
HELD_RETRIES = 100
# Waits between reconnection attempts when the database has gone away (seconds).
RECONNECT_DELAYS = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 60.0)

# What a sweep does with reminders once the timers are fired: (now) -> {(channel,
# outcome): count}. Supplied by the reminder module when channels are configured.
Deliver = Callable[[datetime], dict[tuple[str, str], int]]


@dataclass
class SweepReport:
    """One sweep: batches run, timers fired (no-ops included), deliveries made."""

    batches: int = 0
    fired: int = 0
    noops: int = 0
    held: int = 0
    deliveries: dict[tuple[str, str], int] = field(default_factory=dict)
    duration_s: float = 0.0

    def add(self, batch: FiredBatch) -> None:
        self.batches += 1
        self.fired += batch.fired
        self.noops += batch.noops
        self.held += batch.held


class Worker:
    """Sweeps due timers through the engine and hands reminders to their channels.

    Args:
        repo: the episodes, on the worker's database.
        clock: read once per sweep.
        batch_size: timers fired per transaction.
        deliver: sends due reminders after the timers are fired (None: no channels).
        metrics: where sweeps, fired timers, lag and deliveries are counted.
        wait: how the worker waits between reconnection attempts; returns True when it
            was asked to stop meanwhile (a test passes one that does not sleep).
        checkpoint: called with the time after each sweep, to sign the audit chain's head
            on its own schedule (``models.checkpointing.CheckpointSchedule``).
    """

    def __init__(
        self,
        repo: EpisodeRepository,
        clock: Clock,
        batch_size: int = DEFAULT_BATCH,
        deliver: Deliver | None = None,
        metrics: WorkerMetrics | None = None,
        wait: Callable[[float], bool] | None = None,
        checkpoint: Callable[[datetime], object] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.repo = repo
        self.engine: Engine = repo.engine
        self.clock = clock
        self.batch_size = batch_size
        self.deliver = deliver
        self.metrics = metrics or WorkerMetrics()
        self.stopping = threading.Event()
        self.wait = wait or self.stopping.wait
        self.checkpoint = checkpoint

    # ---------------------------------------------------------------------------------------
    # One sweep

    def sweep(self) -> SweepReport:
        """Fire everything due now, batch after batch, then send due reminders.

        Stops between batches when asked to stop, so a shutdown never cuts a batch short.
        """
        started = time.perf_counter()
        report = SweepReport()
        waits = 0
        while not self.stopping.is_set():
            # Read per batch: a long catch-up records when each timer really fired.
            now = self.clock.now()
            batch = self.repo.fire_batch(now, self.batch_size)
            report.add(batch)
            self.metrics.timers_fired.inc(batch.fired - batch.noops)
            self.metrics.timers_noop.inc(batch.noops)
            for lag in batch.lags:
                self.metrics.fire_lag.observe(lag)
            if batch.claimed == 0:
                break
            if batch.fired == 0:
                # Every timer claimed waits on an earlier one of its episode that another
                # worker is firing right now: give it a moment, then take them in order.
                waits += 1
                if waits > HELD_RETRIES or self.wait(HELD_PAUSE):
                    break
                continue
            waits = 0
        now = self.clock.now()
        if self.deliver is not None and not self.stopping.is_set():
            report.deliveries = self.deliver(now)
            for (channel, outcome), count in report.deliveries.items():
                self.metrics.deliveries.labels(channel, outcome).inc(count)
        self.metrics.lag.set(self.lag(now))
        if self.checkpoint is not None and not self.stopping.is_set():
            self.checkpoint(now)
        checkpoint_sqlite(self.engine)
        report.duration_s = time.perf_counter() - started
        return report

    def lag(self, now: datetime) -> float:
        """Seconds since the oldest pending timer fell due (0 when none is due)."""
        with read_only(self.engine) as connection:
            oldest = connection.scalar(
                select(func.min(DueTimer.due_at)).where(
                    DueTimer.status == "pending", DueTimer.due_at <= now
                )
            )
        return max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0

    def sweep_logged(self) -> SweepReport | None:
        """A sweep, logged and counted; a lost database is waited for, not fatal."""
        try:
            report = self.sweep()
        except DBAPIError as exc:
            self.metrics.sweeps.labels("database_error").inc()
            self.metrics.database_up.set(0)
            log.error("database unreachable during a sweep", extra={"error": _first_line(exc)})
            self.reconnect()
            return None
        self.metrics.sweeps.labels("ok").inc()
        self.metrics.database_up.set(1)
        if report.fired or report.held or report.deliveries:
            log.info(
                "sweep",
                extra={
                    "fired": report.fired,
                    "noops": report.noops,
                    "held_by_others": report.held,
                    "batches": report.batches,
                    "duration_s": round(report.duration_s, 3),
                    "deliveries": {f"{c}:{o}": n for (c, o), n in report.deliveries.items()},
                },
            )
        return report

    def reconnect(self) -> bool:
        """Try the database again with growing waits until it answers or we are stopped."""
        for attempt, delay in enumerate(_delays(), start=1):
            log.warning("reconnecting", extra={"attempt": attempt, "retry_in_s": delay})
            if self.wait(delay):
                return False
            try:
                with self.engine.connect() as connection:
                    connection.exec_driver_sql("SELECT 1")
            except DBAPIError as exc:
                log.error("database still unreachable", extra={"error": _first_line(exc)})
                continue
            self.metrics.database_up.set(1)
            log.info("database reachable again", extra={"attempt": attempt})
            return True
        return False  # pragma: no cover - _delays() never ends

    # ---------------------------------------------------------------------------------------
    # Running on a clock

    def run(self, interval: float = DEFAULT_INTERVAL) -> None:
        """Sweep every ``interval`` seconds until SIGTERM or SIGINT.

        A signal lets the sweep in progress finish its batch, then the process exits.
        """
        from apscheduler.schedulers.blocking import BlockingScheduler

        scheduler = BlockingScheduler(timezone="UTC")
        self._schedule(scheduler, interval)

        def stop(signum: int, _frame: Any) -> None:
            log.info("stopping", extra={"signal": signal.Signals(signum).name})
            self.stopping.set()
            # From the signal handler: wake the scheduler, let the running job finish.
            threading.Thread(target=scheduler.shutdown, kwargs={"wait": True}).start()

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        log.info("worker started", extra={"interval_s": interval, "batch_size": self.batch_size})
        try:
            scheduler.start()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        log.info("worker stopped")

    def start(self, interval: float = DEFAULT_INTERVAL) -> Callable[[], None]:
        """Sweep every ``interval`` seconds on a background thread (inside the API
        process); returns the function that stops it after the batch in progress."""
        from apscheduler.schedulers.background import BackgroundScheduler

        scheduler = BackgroundScheduler(timezone="UTC")
        self._schedule(scheduler, interval)
        scheduler.start()
        log.info("worker started", extra={"interval_s": interval, "in_process": True})

        def stop() -> None:
            self.stopping.set()
            scheduler.shutdown(wait=True)
            log.info("worker stopped")

        return stop

    def _schedule(self, scheduler: Any, interval: float) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, not {interval}")
        scheduler.add_job(
            self.sweep_logged,
            "interval",
            seconds=interval,
            id="sweep",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            next_run_time=datetime.now(tz=scheduler.timezone),
        )


def _delays() -> Any:
    yield from RECONNECT_DELAYS
    while True:
        yield RECONNECT_DELAYS[-1]


def _first_line(exc: DBAPIError) -> str:
    return str(exc.orig if exc.orig is not None else exc).strip().splitlines()[0]
