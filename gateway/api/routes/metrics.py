"""``/metrics``: Prometheus text exposition of the app's registry."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.api.deps import MetricsDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(m: MetricsDep) -> Response:
    """Requests by route/status, stage latency histograms, queue depth."""
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
