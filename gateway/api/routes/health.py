"""``/health/live`` (the process answers) and ``/health/ready`` (Triton's model is ready)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from gateway.api.deps import JobsDep, SettingsDep, TritonDep

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", summary="Liveness")
async def live() -> dict[str, str]:
    """Always 200 while the process serves requests."""
    return {"status": "live"}


@router.get("/ready", summary="Readiness: Triton's model is ready", responses={503: {"description": "Triton or the model is not ready"}})
async def ready(triton: TritonDep, jobs: JobsDep, settings: SettingsDep) -> JSONResponse:
    """200 when Triton answers and the model is ready, else 503 (with Retry-After)."""
    ok = await triton.is_ready()
    body: dict[str, Any] = {
        "status": "ready" if ok else "not_ready",
        "model": triton.model_name,
        "version": triton.served_version,
        "weights": triton.served_weights,
        "queue_depth": jobs.depth,
    }
    if ok:
        return JSONResponse(body)
    message = f"model {triton.model_name!r} is not ready on {triton.url}"
    if triton.model_broken is not None:
        message = f"model {triton.model_name!r} on {triton.url}: its backend process is dead; restart Triton ({triton.model_broken})"
    body["error"] = {"code": "triton_unavailable", "message": message}
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(settings.retry_after_s)})
