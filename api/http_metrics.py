"""Request counts and latencies for /metrics, by route template and status.

A plain ASGI middleware, not Starlette's ``BaseHTTPMiddleware``: it adds a few
microseconds per request instead of a task and a stream per request. Routes are labelled by
their template (``/episodes/{episode_id}``), never by the path itself, so no episode id
reaches the metrics and the label set stays small.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "unmatched"


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "carepath_http_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.seconds = Histogram(
            "carepath_http_request_seconds",
            "Time to answer an HTTP request (to the start of the answer), by route template",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=registry,
        )


class HttpMetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500  # an exception before the answer started is answered 500

        async def recorded(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                self._observe(scope, status, began)
            await send(message)

        try:
            await self.app(scope, receive, recorded)
        except BaseException:
            self._observe(scope, status, began)
            raise

    def _observe(self, scope: Scope, status: int, began: float) -> None:
        route: Any = scope.get("route")
        template = getattr(route, "path", None) or UNMATCHED
        method = scope["method"]
        self.metrics.requests.labels(method, template, str(status)).inc()
        self.metrics.seconds.labels(method, template).observe(time.perf_counter() - began)
