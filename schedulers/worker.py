"""The scheduler worker: fires due timers and sends coordinator reminders, on a clock.

The ``due_timer`` table is the truth; APScheduler 3.x is only the clock, one interval job
per process (``max_instances=1``: sweeps never overlap; ``coalesce=True``: a late process
runs one sweep, not a burst; ``misfire_grace_time=None``: a late sweep still runs). Several
processes may sweep one PostgreSQL database: each batch claims its timers with
``FOR UPDATE SKIP LOCKED``, so a timer is fired by one of them, once. A process killed
mid-batch loses nothing: its transaction rolls back and the timers are claimed again.

A step that cannot be done for one episode is an incident (:mod:`models.incidents`), not
a failed sweep: the other episodes' timers fire. With ``database_clock`` (what ``carepath
worker`` and ``carepath serve`` use) PostgreSQL's clock decides what is due, so a worker
whose own clock is skewed fires nothing early; a skew over :data:`SKEW_WARNING_SECONDS` is
logged and exported as ``carepath_clock_skew_seconds``.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import DBAPIError

from engine.clinic_time import Clock
from models.db import checkpoint_sqlite, read_only
from models.incidents import describe, lapse, open_counts
from models.repository import EpisodeRepository, FiredBatch
from models.tables import DueTimer
from schedulers.metrics import WorkerMetrics

log = logging.getLogger("carepath.worker")

DEFAULT_INTERVAL = 15.0
DEFAULT_BATCH = 100
# How long to let another worker finish an episode's earlier timer, and how many times.
HELD_PAUSE = 0.05
HELD_RETRIES = 100
# Waits between reconnection attempts when the database has gone away: doubling from 1 s
# up to the cap (our default 10 s), so a worker resumes within about the cap of an outage.
RECONNECT_CAP = 10.0
# A clock further than this from the database's is logged (once per change).
SKEW_WARNING_SECONDS = 5.0

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
    failed: int = 0
    # Each incident this sweep opened, retried or resolved (models.incidents.Change.as_json).
    incidents: list[dict[str, Any]] = field(default_factory=list)
    open_incidents: int = 0
    deliveries: dict[tuple[str, str], int] = field(default_factory=dict)
    duration_s: float = 0.0

    def add(self, batch: FiredBatch) -> None:
        self.batches += 1
        self.fired += batch.fired
        self.noops += batch.noops
        self.held += batch.held
        self.failed += batch.failed
        self.incidents += [{"change": c.action, **c.as_json()} for c in batch.incidents]

    def summary(self) -> dict[str, Any]:
        """What ``carepath worker --once`` prints."""
        return {
            "fired": self.fired,
            "noops": self.noops,
            "held": self.held,
            "failed": self.failed,
            "incidents": self.incidents,
            "open_incidents": self.open_incidents,
            "deliveries": {f"{c}:{o}": n for (c, o), n in self.deliveries.items()},
            "duration_s": round(self.duration_s, 3),
        }


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
        database_clock: let the database's clock decide what is due (PostgreSQL's
            ``now()``; SQLite has none, so there ``clock`` decides). Tests that move time
            with a fake ``clock`` leave it off.
        reconnect_cap: the longest wait between reconnection attempts, in seconds.
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
        database_clock: bool = False,
        reconnect_cap: float = RECONNECT_CAP,
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
        # SQLite has no clock of its own: there the process's (``clock``) decides.
        self.database_clock = database_clock and self.engine.dialect.name == "postgresql"
        self.reconnect_cap = reconnect_cap
        self._skewed = False
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
        now = self.clock.now()
        while not self.stopping.is_set():
            # Read per batch: a long catch-up records when each timer really fired.
            process_now = self.clock.now()
            batch = self.repo.fire_batch(None if self.database_clock else process_now,
                                         self.batch_size)  # fmt: skip
            now = batch.now or process_now
            if self.database_clock and report.batches == 0:
                self._note_skew(process_now, now)
            report.add(batch)
            self.metrics.timers_fired.inc(batch.fired - batch.noops)
            self.metrics.timers_noop.inc(batch.noops)
            for change in batch.incidents:
                if change.action != "resolved":
                    self.metrics.failed_steps.labels(change.kind).inc()
            for lag in batch.lags:
                self.metrics.fire_lag.observe(lag)
            if batch.claimed == 0:
                break
            if batch.fired == 0 and batch.failed == 0:
                # Every timer claimed waits on an earlier one of its episode that another
                # worker is firing right now: give it a moment, then take them in order.
                waits += 1
                if waits > HELD_RETRIES or self.wait(HELD_PAUSE):
                    break
                continue
            waits = 0
        if self.deliver is not None and not self.stopping.is_set():
            report.deliveries = self.deliver(now)
            for (channel, outcome), count in report.deliveries.items():
                self.metrics.deliveries.labels(channel, outcome).inc(count)
                if outcome == "failed":
                    self.metrics.failed_steps.labels("delivery").inc(count)
        report.open_incidents = self.count_incidents(now, report)
        self.metrics.lag.set(self.lag(None if self.database_clock else now))
        if self.checkpoint is not None and not self.stopping.is_set():
            self.checkpoint(now)
        checkpoint_sqlite(self.engine)
        report.duration_s = time.perf_counter() - started
        return report

    def count_incidents(self, now: datetime, report: SweepReport | None = None) -> int:
        """Set the open-incidents gauge, after resolving the incidents whose episode has
        no pending timer left; returns how many are open."""
        counts = open_counts(self.engine)
        if counts["timer"] or counts["episode"]:
            lapsed = lapse(self.engine, now)
            if lapsed:
                if report is not None:
                    report.incidents += [{"change": c.action, **c.as_json()} for c in lapsed]
                counts = open_counts(self.engine)
        for kind, count in counts.items():
            self.metrics.open_incidents.labels(kind).set(count)
        return sum(counts.values())

    def lag(self, now: datetime | None) -> float:
        """Seconds since the oldest pending timer fell due (0 when none is due); ``now``
        None: by the database's clock (the process's on SQLite)."""
        pending = DueTimer.status == "pending"
        if now is None and self.engine.dialect.name == "postgresql":
            age = func.extract("epoch", func.now() - func.min(DueTimer.due_at))
            query: Any = select(age).where(pending, DueTimer.due_at <= func.now())
            with read_only(self.engine) as connection:
                seconds = connection.scalar(query)
            return max(0.0, float(seconds)) if seconds is not None else 0.0
        now = now if now is not None else datetime.now(UTC)
        with read_only(self.engine) as connection:
            oldest = connection.scalar(
                select(func.min(DueTimer.due_at)).where(pending, DueTimer.due_at <= now)
            )
        return max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0

    def _note_skew(self, process_now: datetime, database_now: datetime) -> None:
        skew = (process_now - database_now).total_seconds()
        if self.engine.dialect.name != "postgresql":
            skew = 0.0  # one clock
        self.metrics.clock_skew.set(skew)
        skewed = abs(skew) > SKEW_WARNING_SECONDS
        if skewed != self._skewed:
            self._skewed = skewed
            if skewed:
                log.warning(
                    "clock skew: this process's clock is off the database's; the database's "
                    "decides what is due",
                    extra={"skew_seconds": round(skew, 3), "threshold_s": SKEW_WARNING_SECONDS},
                )
            else:
                log.info("clock skew back within threshold", extra={"skew_seconds": round(skew, 3)})

    def sweep_logged(self) -> SweepReport | None:
        """A sweep, logged and counted; a lost database is waited for, and any other
        failure is logged and counted, never fatal. The lag gauge is set either way."""
        try:
            report = self.sweep()
        except DBAPIError as exc:
            self.metrics.sweeps.labels("database_error").inc()
            self.metrics.database_up.set(0)
            log.error("database unreachable during a sweep", extra={"error": _first_line(exc)})
            self._refresh_lag()
            self.reconnect()
            return None
        except Exception as exc:  # noqa: BLE001 - logged and counted, the next sweep runs
            self.metrics.sweeps.labels("error").inc()
            log.exception("sweep failed", extra={"error": describe(exc)})
            self._refresh_lag()
            return None
        self.metrics.sweeps.labels("ok").inc()
        self.metrics.database_up.set(1)
        if report.fired or report.held or report.deliveries or report.incidents:
            log.info(
                "sweep",
                extra={
                    "fired": report.fired,
                    "noops": report.noops,
                    "held_by_others": report.held,
                    "failed": report.failed,
                    "open_incidents": report.open_incidents,
                    "batches": report.batches,
                    "duration_s": round(report.duration_s, 3),
                    "deliveries": {f"{c}:{o}": n for (c, o), n in report.deliveries.items()},
                },
            )
        return report

    def _refresh_lag(self) -> None:
        """The lag after a failed sweep: still the age of the oldest due timer, when the
        database answers (a sweep that fails leaves timers waiting)."""
        try:
            self.metrics.lag.set(self.lag(None if self.database_clock else self.clock.now()))
        except Exception:  # noqa: BLE001 - the database is gone: the gauge keeps its value
            log.debug("lag not refreshed", exc_info=True)

    def reconnect(self) -> bool:
        """Try the database again with growing waits until it answers or we are stopped."""
        for attempt, delay in enumerate(_delays(self.reconnect_cap), start=1):
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

        stopper: list[threading.Thread] = []

        def stop(signum: int, _frame: Any) -> None:
            log.info("stopping", extra={"signal": signal.Signals(signum).name})
            self.stopping.set()
            # From the signal handler: wake the scheduler, let the running job finish.
            stopper.append(threading.Thread(target=scheduler.shutdown, kwargs={"wait": True}))
            stopper[-1].start()

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        log.info("worker started", extra={"interval_s": interval, "batch_size": self.batch_size})
        try:
            scheduler.start()
            # start() returns once shutdown began; the sweep in progress ends its batch.
            for thread in stopper:
                thread.join()
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


def _delays(cap: float) -> Any:
    delay = 1.0
    while True:
        yield min(delay, cap)
        delay *= 2


def _first_line(exc: DBAPIError) -> str:
    return str(exc.orig if exc.orig is not None else exc).strip().splitlines()[0]
