"""Dependencies as ``Annotated[..., Depends(...)]`` aliases (FastAPI full-stack template style)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
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
        raise ApiError(503, "starting", "the service is starting")
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
