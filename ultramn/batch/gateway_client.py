"""An :class:`~ultramn.batch.types.Analyzer` that sends clips to a running gateway (httpx, async).

Per clip: ``POST /v1/analyses`` with ``wait=true`` (a short clip answers with its result at
once), else polling ``GET /v1/analyses/{id}`` until it succeeded or failed, then
``GET .../masks.npz``. A full queue (429) is retried after ``Retry-After``; a refused
upload (4xx) or a failed analysis raises :class:`ClipError` with the gateway's error code.
A gateway that is away for a moment (a proxy's 502/504, 503 ``starting``) is asked again
like a lost answer (so are the reads of a job and its masks), then reported as ``gateway_unreachable`` (the runner then checks
whether it is down and stops the batch if so).

Uploads carry an ``Idempotency-Key`` made from the batch's key for the clip and the
analysis options: when an upload's answer is lost (the connection broke, the batch was
interrupted) the same upload sent again gets the job the gateway had accepted, not a
second analysis. That makes a lost answer safe to retry, which this client does
``transport_retries`` times before the clip counts as failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from ultramn.batch.discover import clip_name
from ultramn.batch.types import ClipAnalysis, ClipError, ModelId

#: Seconds the health and API-key checks wait for the gateway (they answer at once when it is live).
CHECK_TIMEOUT_S = 10.0


class GatewayUnreachableError(RuntimeError):
    """The gateway does not answer at all (checked once before a batch starts)."""


class GatewayAuthError(RuntimeError):
    """The gateway refuses the API key (missing or wrong; checked once before a batch starts)."""


def error_of(resp: httpx.Response) -> tuple[str, str]:
    """``(code, message)`` of a gateway error response."""
    try:
        err = resp.json()["error"]
        return str(err["code"]), str(err["message"])
    except (ValueError, KeyError, TypeError):
        return f"http_{resp.status_code}", resp.text[:200] or f"HTTP {resp.status_code}"


def away(resp: httpx.Response) -> bool:
    """Whether ``resp`` says the gateway is away for now rather than anything about the clip: a
    proxy in front of it without its gateway (502, 504), or the app starting or stopping (503
    ``starting``, or a 503 that is not the gateway's JSON)."""
    return resp.status_code in (502, 504) or (resp.status_code == 503 and error_of(resp)[0] in ("starting", "http_503"))


def retry_after(resp: httpx.Response, default: float) -> float:
    """The ``Retry-After`` seconds of ``resp`` (``default`` when absent or an HTTP date)."""
    try:
        return max(float(resp.headers.get("Retry-After", "")), 0.0)
    except ValueError:
        return default


def clip_error(resp: httpx.Response) -> ClipError:
    """The :class:`ClipError` of a gateway error response (``gateway_unreachable`` when it is :func:`away`)."""
    code, message = error_of(resp)
    if away(resp):
        return ClipError("gateway_unreachable", f"the gateway is away (HTTP {resp.status_code}, {code}: {message})")
    return ClipError(code, message)


class GatewayAnalyzer:
    """See the module docstring; one ``httpx.AsyncClient`` shared by all clips."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        pixel_spacing_mm: float | None = None,
        stride: int | None = None,
        poll_s: float = 0.25,
        timeout_s: float = 3600.0,
        max_queue_retries: int = 240,
        transport_retries: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self.client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers=headers, timeout=httpx.Timeout(120.0, connect=10.0), transport=transport
        )
        self.fields: dict[str, str] = {"wait": "true"}
        if pixel_spacing_mm is not None:
            self.fields["pixel_spacing_mm"] = str(pixel_spacing_mm)
        if stride is not None:
            self.fields["stride"] = str(stride)
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.max_queue_retries = max_queue_retries
        self.transport_retries = transport_retries

    async def check(self) -> ModelId | None:
        """:class:`GatewayUnreachableError` unless ``/health/live`` answers; :class:`GatewayAuthError`
        when the API is closed to this client's key. The model the gateway serves (:meth:`served_model`)."""
        reason = await self.unavailable()
        if reason is not None:
            raise GatewayUnreachableError(reason)
        try:  # a wrong key would fail every clip with the same 401/403: say so once, before the first upload
            resp = await self.client.get("/v1/analyses", params={"limit": 1}, timeout=CHECK_TIMEOUT_S)
        except httpx.HTTPError as exc:
            raise GatewayUnreachableError(f"cannot reach the gateway at {self.client.base_url} ({type(exc).__name__}: {exc})") from exc
        if resp.status_code in (401, 403):
            code, message = error_of(resp)
            raise GatewayAuthError(f"the gateway at {self.client.base_url} refuses the API key ({code}: {message}); give it with --api-key")
        return await self.served_model()

    async def served_model(self) -> ModelId | None:
        """The model ``/health/ready`` names (its ``model``, ``version`` and ``weights``; a 503 names it too, when the
        gateway has seen it), or ``None`` when the gateway does not say (not seen yet, an older gateway)."""
        try:
            resp = await self.client.get("/health/ready", timeout=CHECK_TIMEOUT_S)
            body = resp.json()
        except (httpx.HTTPError, ValueError):
            return None
        if not isinstance(body, dict):
            return None
        return ModelId.of({"name": body.get("model"), "version": body.get("version"), "weights": body.get("weights")})

    async def unavailable(self) -> str | None:
        """Why the gateway cannot analyse now (``/health/live`` does not answer 200 within
        :data:`CHECK_TIMEOUT_S`: a silent port is no gateway), or ``None``."""
        try:
            resp = await self.client.get("/health/live", timeout=CHECK_TIMEOUT_S)
        except httpx.HTTPError as exc:
            return f"cannot reach the gateway at {self.client.base_url} ({type(exc).__name__}: {exc})"
        if resp.status_code != 200:
            return f"the gateway at {self.client.base_url} is not live (HTTP {resp.status_code})"
        return None

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()

    def idempotency_key(self, key: str) -> str:
        """The ``Idempotency-Key`` of an upload: the batch's ``key`` for the clip with the
        analysis options folded in (other options must not get the old job back)."""
        return hashlib.sha256(f"{key}\n{json.dumps(self.fields, sort_keys=True)}".encode()).hexdigest()

    async def _upload(self, path: Path, key: str | None, fields: Mapping[str, str] | None = None) -> httpx.Response:
        headers = {"Idempotency-Key": self.idempotency_key(key)} if key else {}
        lost = 0
        busy: httpx.Response | None = None
        for _ in range(self.max_queue_retries + 1):
            data = await asyncio.to_thread(path.read_bytes)
            try:
                # a name that is not UTF-8 cannot go into the multipart header as it is: send it escaped
                upload = (clip_name(path.name), data)
                form = {**self.fields, **(fields or {})}
                resp = await self.client.post("/v1/analyses", files={"file": upload}, data=form, headers=headers)
            except httpx.TransportError:
                # the answer was lost; with a key the gateway gives back what it accepted, so ask again
                lost += 1
                if not key or lost > self.transport_retries:
                    raise
                await asyncio.sleep(min(2.0 ** (lost - 1), 10.0))
                continue
            if away(resp) and (key or error_of(resp)[0] == "starting"):
                # nothing was accepted (starting), or what was is given back for the key: like a lost answer
                lost += 1
                if lost > self.transport_retries:
                    raise clip_error(resp)
                await asyncio.sleep(min(retry_after(resp, 2.0 ** (lost - 1)), 10.0))
                continue
            if resp.status_code != 429:
                return resp
            busy = resp  # queue_full or uploads_busy: the gateway says when to come back
            await asyncio.sleep(min(max(retry_after(resp, 1.0), 0.2), 10.0))
        code, message = error_of(busy) if busy is not None else ("gateway_unreachable", "every answer was lost")
        raise ClipError(code, f"the gateway stayed busy after {self.max_queue_retries + 1} tries: {message}")

    async def _get(self, url: str) -> httpx.Response:
        """``GET url``, asked again (``transport_retries`` times, backing off) when the answer is lost
        or the gateway is :func:`away`: reading a job or its masks twice is harmless."""
        for attempt in range(self.transport_retries):
            try:
                resp = await self.client.get(url)
            except httpx.TransportError:
                await asyncio.sleep(min(2.0**attempt, 10.0))
                continue
            if not away(resp):
                return resp
            await asyncio.sleep(min(retry_after(resp, 2.0**attempt), 10.0))
        return await self.client.get(url)  # the last try: its answer, or its error, is the result

    async def _poll(self, job_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout_s
        while True:
            resp = await self._get(f"/v1/analyses/{job_id}")
            if resp.status_code != 200:
                raise clip_error(resp)
            job: dict[str, Any] = resp.json()
            if job["status"] in ("succeeded", "failed"):
                return job
            if time.monotonic() > deadline:
                raise ClipError("timeout", f"analysis {job_id} not finished after {self.timeout_s:.0f} s")
            await asyncio.sleep(self.poll_s)

    async def analyze(self, path: Path, name: str, key: str | None = None, fields: Mapping[str, str] | None = None) -> ClipAnalysis:
        """Upload (with ``key``'s ``Idempotency-Key`` and ``fields``, the follow-up form fields),
        wait, download the masks (see the module docstring)."""
        try:
            resp = await self._upload(path, key, fields)
            body: dict[str, Any] = {}
            with contextlib.suppress(ValueError):
                body = resp.json()
            job_id = (body.get("error") or {}).get("id") if "error" in body else body.get("id")
            if resp.status_code in (200, 202):
                job = body
            elif job_id and resp.status_code in (500, 503):  # failed while waiting / Triton away: the job row has it
                job = await self._poll(str(job_id))
            else:
                raise clip_error(resp)
            if job["status"] not in ("succeeded", "failed"):
                job = await self._poll(job["id"])
            if job["status"] == "failed":
                err = job.get("error") or {}
                raise ClipError(str(err.get("code") or "analysis_failed"), str(err.get("message") or "analysis failed"))
            masks = await self._get(f"/v1/analyses/{job['id']}/masks.npz")
            if masks.status_code != 200:
                raise clip_error(masks)
        except httpx.HTTPError as exc:
            raise ClipError("gateway_unreachable", f"{type(exc).__name__}: {exc}") from exc
        except ClipError as exc:
            # the gateway keeps no client file names and calls every clip "upload<ext>": say which clip it was
            generic = f"upload{path.suffix.lower()}"
            if path.suffix and generic in exc.message:
                raise ClipError(exc.code, exc.message.replace(generic, name)) from exc
            raise
        return ClipAnalysis(result=job["result"], masks_npz=masks.content, analysis_id=job["id"])
