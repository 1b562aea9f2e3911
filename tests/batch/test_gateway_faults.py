"""The gateway client against injected gateway faults (an httpx mock transport standing in for the gateway):
a gateway starting up, a proxy without its gateway, a full disk, a Retry-After date."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

from ultramn.batch.discover import Clip
from ultramn.batch.gateway_client import GatewayAnalyzer
from ultramn.batch.runner import BatchReport, run_batch

RESULT = {"plane": "TW", "plane_confidence": 0.9, "n_frames": 2}

#: A fault: given the upload's number (0, 1, ...), a response instead of the gateway's, or None.
Fault = Callable[[int], httpx.Response | None]


def fake_gateway(fault: Fault, health: Callable[[], httpx.Response] | None = None) -> tuple[httpx.MockTransport, list[str]]:
    """A gateway that analyses every upload at once (``wait=true``), with ``fault`` in front of its uploads."""
    uploads: list[str] = []
    buf = io.BytesIO()
    np.savez(buf, masks=np.zeros((2, 8, 8), np.uint8))

    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/health/live":
            return health() if health else httpx.Response(200, json={"status": "live"})
        if path == "/v1/analyses" and request.method == "GET":
            return httpx.Response(200, json={"items": []})
        if path == "/v1/analyses" and request.method == "POST":
            n = len(uploads)
            uploads.append(request.headers.get("Idempotency-Key", ""))
            if (resp := fault(n)) is not None:
                return resp
            return httpx.Response(200, json={"id": f"job{n}", "status": "succeeded", "result": RESULT})
        if path.endswith("/masks.npz"):
            return httpx.Response(200, content=buf.getvalue())
        return httpx.Response(404, json={"error": {"code": "not_found", "message": path}})

    return httpx.MockTransport(handle), uploads


def clips(tmp_path: Path, n: int) -> list[Clip]:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    found = []
    for i in range(n):
        np.save(src / f"c{i}.npy", np.full((2, 8, 8), i, np.uint8))
        found.append(Clip(f"c{i}.npy", src / f"c{i}.npy"))
    return found


def run(tmp_path: Path, n: int, transport: httpx.MockTransport, retries: int = 3) -> BatchReport:
    async def go() -> BatchReport:
        analyzer = GatewayAnalyzer("http://gateway", transport=transport, poll_s=0.01, transport_retries=retries)
        try:
            return await run_batch(clips(tmp_path, n), analyzer, tmp_path / "out", concurrency=1, progress=False)
        finally:
            await analyzer.aclose()

    return asyncio.run(go())


def journal(tmp_path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (tmp_path / "out" / "state.jsonl").read_text().splitlines()]


def error(status: int, code: str, message: str = "x", **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}}, headers=headers)


def test_a_gateway_starting_up_is_asked_again(tmp_path: Path) -> None:
    transport, uploads = fake_gateway(lambda n: error(503, "starting", "retry", **{"Retry-After": "0"}) if n < 2 else None)
    report = run(tmp_path, 2, transport)
    assert (report.succeeded, report.failed) == (2, 0)  # was: the first clip recorded as failed ("starting")
    assert len(uploads) == 4 and uploads[0] == uploads[1] == uploads[2]  # the same upload again, same key


def test_a_retry_after_date_on_a_full_queue_is_no_crash(tmp_path: Path) -> None:
    date = {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}  # what some proxies send
    transport, uploads = fake_gateway(lambda n: error(429, "queue_full", "busy", **date) if n == 0 else None)
    report = run(tmp_path, 1, transport)
    assert (report.succeeded, report.failed) == (1, 0)  # was: failed with internal_error "ValueError: could not convert"
    assert len(uploads) == 2


def test_a_proxy_without_its_gateway_stops_the_batch(tmp_path: Path) -> None:
    bad_gateway = httpx.Response(502, text="<html>502 Bad Gateway</html>")
    transport, uploads = fake_gateway(lambda n: bad_gateway if n >= 1 else None, health=lambda: bad_gateway)
    report = run(tmp_path, 4, transport, retries=1)
    assert (report.succeeded, report.failed, report.not_done) == (1, 0, 3)  # was: 3 clips failed with http_502
    assert report.stopped is not None and "HTTP 502" in report.stopped
    assert [r["status"] for r in journal(tmp_path)] == ["succeeded"]
    assert len(uploads) == 3  # the second clip's upload, asked again once with its key; no third clip sent


def test_a_gateway_with_a_full_disk_stops_the_batch(tmp_path: Path) -> None:
    full = error(507, "insufficient_storage", "the data folder's disk is full", **{"Retry-After": "30"})
    transport, uploads = fake_gateway(lambda n: full if n >= 1 else None)
    report = run(tmp_path, 4, transport)
    assert (report.succeeded, report.failed, report.not_done) == (1, 0, 3)  # was: every other clip failed in turn
    assert report.stopped is not None and "insufficient_storage" in report.stopped
    assert len(uploads) == 2  # no clip after the refusal was sent


def test_a_lost_answer_while_reading_the_job_or_its_masks_is_asked_again(tmp_path: Path) -> None:
    inner, uploads = fake_gateway(lambda n: None)
    lost: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/masks.npz") and len(lost) < 1:
            lost.append(request.url.path)
            raise httpx.ReadError("connection reset (injected)", request=request)
        if request.url.path.endswith("/masks.npz") and len(lost) < 2:
            lost.append(request.url.path)
            return httpx.Response(502, text="Bad Gateway")  # a proxy restarting
        return inner.handle_request(request)

    report = run(tmp_path, 2, httpx.MockTransport(handle))
    assert (report.succeeded, report.failed) == (2, 0)  # was: the first clip failed (gateway_unreachable: ReadError)
    assert len(uploads) == 2 and len(lost) == 2  # asked again, not uploaded again
