"""OpenAPI fragments shared by the routes: error responses and multipart upload bodies."""

from __future__ import annotations

from typing import Any

from gateway.api.schemas import ErrorResponse

#: Statuses every ``/v1`` route may answer (API key checks).
AUTH_ERRORS: dict[int, str] = {401: "Missing X-API-Key", 403: "Wrong X-API-Key"}


def error_responses(texts: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """FastAPI ``responses=`` for the auth errors plus ``texts`` (status -> description), all as :class:`ErrorResponse`."""
    return {code: {"model": ErrorResponse, "description": text} for code, text in {**AUTH_ERRORS, **texts}.items()}


def multipart_upload(properties: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``openapi_extra`` of a ``multipart/form-data`` body with a required binary ``file`` and ``properties``."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "required": ["file"], "properties": properties},
                }
            },
        }
    }
