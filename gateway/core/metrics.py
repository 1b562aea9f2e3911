"""Prometheus metrics, one registry per app (several apps may live in one test process).

- ``ultramn_http_requests_total{method, route, status}`` and
  ``ultramn_http_request_seconds{method, route}``: route = the path template;
- ``ultramn_stage_seconds{stage}``: pipeline stage latency;
- ``ultramn_queue_depth``: queued + running jobs; ``ultramn_jobs_total{outcome}``;
- live stream: ``ultramn_live_streams`` (open now), ``ultramn_live_frames_total{outcome}``
  (``analysed`` / ``skipped``) and ``ultramn_live_window_seconds`` (one window's analysis).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """The gateway's collectors in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("ultramn_http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("ultramn_http_request_seconds", "HTTP request latency", ["method", "route"], registry=self.registry)
        self.stage = Histogram("ultramn_stage_seconds", "Pipeline stage latency", ["stage"], buckets=STAGE_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("ultramn_queue_depth", "Queued + running analysis jobs", registry=self.registry)
        self.jobs = Counter("ultramn_jobs", "Finished analysis jobs", ["outcome"], registry=self.registry)
        self.live_streams = Gauge("ultramn_live_streams", "Live streams open now", registry=self.registry)
        self.live_frames = Counter("ultramn_live_frames", "Live-stream frames answered", ["outcome"], registry=self.registry)
        self.live_window = Histogram(
            "ultramn_live_window_seconds", "Live-stream window analysis", buckets=STAGE_BUCKETS, registry=self.registry
        )

    def observe_live(self, analysed: int, skipped: int, seconds: float) -> None:
        """Record one live-stream analysis: frames answered with a result and skipped, its duration."""
        self.live_frames.labels("analysed").inc(analysed)
        self.live_frames.labels("skipped").inc(skipped)
        self.live_window.observe(seconds)

    def observe_stage(self, name: str, seconds: float) -> None:
        """Record one stage run."""
        self.stage.labels(name).observe(seconds)

    def track_queue(self, depth: Callable[[], float]) -> None:
        """Read the queue depth from ``depth()`` at every scrape."""
        self.queue_depth.set_function(depth)


#: Request methods counted under their own label; anything else is ``OTHER``.
STANDARD_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class MetricsMiddleware:
    """Pure ASGI middleware counting requests by route template and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None)
            if template is None and scope.get("endpoint") is not None and not scope.get("path_params"):
                template = scope.get("path")  # a plain Starlette route without parameters (/docs, /openapi.json)
            template = template or "unmatched"
            method = scope.get("method", "GET")
            if method not in STANDARD_METHODS:  # any string is a method to HTTP: one label, not one series each
                method = "OTHER"
            self.metrics.requests.labels(method, template, str(status["code"])).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - start)
