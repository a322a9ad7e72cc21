"""The worker's Prometheus metrics, in a registry of their own.

A registry per worker (not the process-wide default) keeps tests independent and lets the
API process expose the worker it runs beside its own metrics.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class WorkerMetrics:
    """What an operator watches: sweeps, timers fired and no-ops, lag, deliveries,
    incidents and failed steps, the clock's skew from the database's."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.sweeps = Counter(
            "carepath_worker_sweeps", "Sweeps run, by outcome", ["outcome"], registry=self.registry
        )
        self.timers_fired = Counter(
            "carepath_timers_fired", "Timers whose transition was applied", registry=self.registry
        )
        self.timers_noop = Counter(
            "carepath_timers_noop",
            "Timers found stale (the episode had moved on) and recorded as no-ops",
            registry=self.registry,
        )
        self.lag = Gauge(
            "carepath_timer_lag_seconds",
            "Age of the oldest due timer not yet fired (0 when none is due)",
            registry=self.registry,
        )
        self.fire_lag = Histogram(
            "carepath_timer_fire_lag_seconds",
            "How long after its due instant each timer fired",
            buckets=(0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 900, 3600, float("inf")),
            registry=self.registry,
        )
        self.deliveries = Counter(
            "carepath_reminder_deliveries",
            "Reminder delivery attempts, by channel and outcome",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self.open_incidents = Gauge(
            "carepath_open_incidents",
            "Incidents not yet resolved, by kind (timer, episode, delivery)",
            ["kind"],
            registry=self.registry,
        )
        self.failed_steps = Counter(
            "carepath_failed_steps",
            "Steps that failed for one episode (each an incident, opened or retried) and "
            "delivery attempts that failed, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.clock_skew = Gauge(
            "carepath_clock_skew_seconds",
            "This process's clock minus the database's (0 on SQLite, whose clock is ours)",
            registry=self.registry,
        )
        self.database_up = Gauge(
            "carepath_worker_database_up",
            "1 while the worker reaches its database, 0 while it waits to reconnect",
            registry=self.registry,
        )
