"""The web viewer: ``GET /`` serves ``gateway/static/index.html``, ``/static/...`` its files.

The viewer is plain static files (HTML, CSS, vanilla JS; no build step, nothing from a CDN)
that talk to the ``/v1`` JSON API like any other front end. These routes stay open when
``ULTRAMN_API_KEY`` is set: the page holds no data; the key is typed into the page and sent
as ``X-API-Key`` by its requests.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

#: The viewer's files (shipped as package data of ``gateway.static``).
STATIC_DIR = Path(__file__).resolve().parents[2] / "static"

router = APIRouter(include_in_schema=False)
router.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    """The viewer's single page."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})
