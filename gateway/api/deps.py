"""Dependencies as ``Annotated[..., Depends(...)]`` aliases (FastAPI full-stack template style)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader

from gateway.core.config import Settings
from gateway.core.errors import ApiError
from gateway.core.metrics import Metrics
from gateway.core.state import AppState
from gateway.store import AnalysisRepository, FileStore
from gateway.triton_client import TritonClient
from gateway.worker import JobQueue

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="Required when ULTRAMN_API_KEY is set.")


def get_state(request: Request) -> AppState:
    """The app's :class:`AppState` (set by the lifespan)."""
    state: AppState | None = getattr(request.app.state, "ultramn", None)
    if state is None:
        raise ApiError(503, "starting", "the service is starting or stopping; retry", headers={"Retry-After": "1"})
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_settings(state: StateDep) -> Settings:
    """Settings of this app."""
    return state.settings


def get_repo(state: StateDep) -> AnalysisRepository:
    """The analyses repository."""
    return state.repo


def get_files(state: StateDep) -> FileStore:
    """The file store."""
    return state.files


def get_jobs(state: StateDep) -> JobQueue:
    """The job queue."""
    return state.jobs


def get_triton(state: StateDep) -> TritonClient:
    """The Triton client."""
    return state.triton


def get_metrics(state: StateDep) -> Metrics:
    """The metrics registry."""
    return state.metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
RepoDep = Annotated[AnalysisRepository, Depends(get_repo)]
FilesDep = Annotated[FileStore, Depends(get_files)]
JobsDep = Annotated[JobQueue, Depends(get_jobs)]
TritonDep = Annotated[TritonClient, Depends(get_triton)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


def require_api_key(settings: SettingsDep, key: Annotated[str | None, Depends(_api_key_header)]) -> None:
    """401 without ``X-API-Key``, 403 with a wrong one (only when ``ULTRAMN_API_KEY`` is set)."""
    expected = settings.api_key
    if not expected:
        return
    if not key:
        raise ApiError(401, "unauthorized", "missing X-API-Key header", headers={"WWW-Authenticate": "APIKey"})
    if not hmac.compare_digest(key.encode(), expected.encode()):
        raise ApiError(403, "forbidden", "invalid API key")


ApiKeyDep = Depends(require_api_key)


def _query_names(dependant: Dependant) -> set[str]:
    """Query parameter names of ``dependant`` and of its dependencies, recursively."""
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def _declared_query(route: APIRoute) -> frozenset[str]:
    """The query parameter names ``route`` declares (its own and its dependencies')."""
    cached: frozenset[str] | None = getattr(route, "_ultramn_query_names", None)
    if cached is None:
        cached = frozenset(_query_names(route.dependant))
        route._ultramn_query_names = cached  # type: ignore[attr-defined]
    return cached


def check_query(request: Request) -> None:
    """422 for a query parameter the route does not take (a misspelt ``batch_id`` filter must
    not silently list everything) or one given twice (which value would count?)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = _declared_query(route)
    params = request.query_params
    unknown = sorted({key for key in params if key not in known})
    if unknown:
        takes = f"this route takes {', '.join(sorted(known))}" if known else "this route takes no query parameters"
        raise ApiError(422, "validation_error", f"unknown query parameter(s) {', '.join(map(repr, unknown))}; {takes}")
    repeated = sorted({key for key in params if len(params.getlist(key)) > 1})
    if repeated:
        raise ApiError(422, "validation_error", f"query parameter(s) {', '.join(map(repr, repeated))} given more than once")


QueryCheckDep = Depends(check_query)
