"""`serve_in_thread`: the real uvicorn server in a thread, its start-up failure and its shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI

from gateway.threaded_server import serve_in_thread


def test_serves_the_app_and_runs_its_lifespan() -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    app = FastAPI(lifespan=lifespan)

    @app.get("/ping")
    def ping() -> dict[str, str]:
        return {"pong": "yes"}

    with serve_in_thread(app, name="ping") as url:
        assert events == ["startup"]
        assert httpx.get(f"{url}/ping", timeout=10).json() == {"pong": "yes"}
    assert events == ["startup", "shutdown"]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/ping", timeout=2)


def test_a_failing_startup_raises_instead_of_hanging() -> None:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        raise RuntimeError("no database")
        yield  # pragma: no cover - never reached

    with pytest.raises(RuntimeError, match="stopped during start-up"), serve_in_thread(FastAPI(lifespan=lifespan), name="broken"):
        pass  # pragma: no cover - the block must not run
