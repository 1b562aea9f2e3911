"""The app factory: ``create_app(settings)``; ``uvicorn gateway.main:app`` serves the default.

The lifespan creates, in order: the data-folder lock (:mod:`gateway.store.lock`: a second
gateway process on the same folder fails to start with ``DataDirInUseError``), the store
(database + folders), the Triton client (one per process; the model config is checked
against the contract when Triton answers), the pipeline and the job queue (which resumes
unfinished jobs); at shutdown it stops the workers, closes the client and the database
and releases the lock.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from pydantic import ValidationError

from gateway.api.routes import analyses, batches, frames, health, live, metrics, patients, ui
from gateway.core.config import Settings
from gateway.core.errors import install_error_handlers
from gateway.core.headers import NoStoreMiddleware
from gateway.core.logging import configure_logging
from gateway.core.metrics import Metrics, MetricsMiddleware
from gateway.core.state import AppState
from gateway.core.uploads import UploadSlots
from gateway.pipeline import PipelineConfig, build_pipeline
from gateway.store import AnalysisRepository, FileStore
from gateway.store.lock import DataDirLock
from gateway.triton_client import TritonClient
from gateway.worker import JobQueue

log = logging.getLogger("gateway")

API_DESCRIPTION = """Median-nerve ultrasound clip analysis: imaging plane (TW, TF, LW, LF) and
nerve outline per frame, with CSA, shape and excursion measurements. Errors are
`{"error": {"code", "message"}}`. When `ULTRAMN_API_KEY` is set, `/v1` routes need the
header `X-API-Key`."""


def create_app(settings: Settings | None = None) -> FastAPI:
    """A configured gateway app (settings from the environment when not given)."""
    settings = settings or Settings()
    configure_logging(settings.log_level)
    app_metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        async with AsyncExitStack() as stack:  # undone in reverse order, also when the start fails
            stack.enter_context(DataDirLock(settings.data_dir))  # before anything reads or cleans the folder
            repo = AnalysisRepository(settings.sqlalchemy_url)
            stack.callback(repo.close)
            files = FileStore(settings.data_dir, settings.frame_cache_bytes)
            if removed := files.remove_leftovers():
                log.info("removed files left half-written by a stopped process", extra={"files": removed})
            triton = TritonClient.from_settings(settings)
            stack.push_async_callback(triton.close)
            await triton.start()
            pipeline = build_pipeline(PipelineConfig.from_settings(settings), triton, app_metrics.observe_stage)
            jobs = JobQueue(settings, repo, files, pipeline, triton, app_metrics)
            app_metrics.track_queue(lambda: jobs.depth)
            await jobs.start()
            stack.push_async_callback(jobs.stop)
            decode_slots = asyncio.Semaphore(settings.decode_concurrency)
            uploads = UploadSlots(settings.upload_concurrency, settings.retry_after_s, settings.data_dir)
            app.state.ultramn = AppState(settings, app_metrics, repo, files, triton, jobs, decode_slots, uploads)
            stack.callback(setattr, app.state, "ultramn", None)
            log.info("gateway started", extra={"triton": settings.triton_url, "model": settings.model_name, "workers": settings.workers})
            yield
        log.info("gateway stopped")

    app = FastAPI(
        title="UltraMN gateway",
        version="1.0.0",
        description=API_DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    install_error_handlers(app)
    app.add_middleware(NoStoreMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=app_metrics)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(analyses.router)
    app.include_router(batches.router)
    app.include_router(patients.router)
    app.include_router(live.router)
    app.include_router(frames.router)
    app.include_router(ui.router)
    return app


def settings_from_environment() -> Settings:
    """:class:`Settings` from the environment; a bad value prints one ``error:`` line per
    variable (named as set: ``ULTRAMN_...``) and exits 2, instead of a pydantic traceback
    from inside the server's import of the app."""
    try:
        return Settings()
    except ValidationError as exc:
        for problem in exc.errors():
            field = ".".join(str(part) for part in problem["loc"])
            print(f"error: invalid setting ULTRAMN_{field.upper()}: {problem['msg']}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def __getattr__(name: str) -> FastAPI:
    """``gateway.main:app``: the app with settings from the environment (built on first access)."""
    if name == "app":
        instance = create_app(settings_from_environment())
        globals()["app"] = instance
        return instance
    raise AttributeError(name)
