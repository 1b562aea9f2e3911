"""API errors and the handlers that render every error as ``{"error": {"code", "message"}}``.

Codes (stable, documented in docs/api.md): ``unauthorized`` 401, ``forbidden`` 403,
``not_found`` 404, ``method_not_allowed`` 405, ``not_ready`` 409, ``payload_too_large`` 413,
``unsupported_media_type`` 415, ``corrupt_file`` / ``limit_exceeded`` / ``validation_error`` /
``unsafe_archive`` / ``no_clips`` 422, ``queue_full`` / ``uploads_busy`` 429, ``analysis_failed`` /
``contract_mismatch`` / ``storage_error`` / ``internal_error`` 500 (a failed ``wait=true`` analysis;
``internal_error`` also for an unhandled error), ``storage_error`` / ``starting`` /
``triton_unavailable`` 503, ``insufficient_storage`` 507.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ultramn.data.decoders import (
    CorruptFileError,
    DecodeError,
    LimitExceededError,
    UnsupportedFormatError,
)

log = logging.getLogger("gateway.errors")


class ApiError(Exception):
    """An error with an HTTP status, a stable ``code`` and a message for the client."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra or {}


class PayloadTooLargeError(ApiError):
    """The request body is beyond ``max_upload_bytes``."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, "payload_too_large", f"the upload exceeds the limit of {limit} bytes")


def decode_error_to_api(exc: DecodeError) -> ApiError:
    """Map the decoders' error hierarchy to 415 / 422."""
    if isinstance(exc, UnsupportedFormatError):
        return ApiError(415, "unsupported_media_type", str(exc))
    if isinstance(exc, LimitExceededError):
        return ApiError(422, "limit_exceeded", str(exc))
    if isinstance(exc, CorruptFileError):
        return ApiError(422, "corrupt_file", str(exc))
    return ApiError(422, "undecodable", str(exc))


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The JSON error shape."""
    return {"error": {"code": code, "message": message, **extra}}


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "queue_full",
    503: "unavailable",
}


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(error_body(exc.code, exc.message, **exc.extra), status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "form"))
        parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg", "invalid")))
    return JSONResponse(error_body("validation_error", "; ".join(parts) or "invalid request"), status_code=422)


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", extra={"path": request.url.path, "error_type": type(exc).__name__}, exc_info=exc)
    return JSONResponse(error_body("internal_error", "internal server error"), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Render HTTPException, validation errors, :class:`ApiError` and anything else as JSON errors."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unhandled)
