"""Structured (JSON, one object per line) logs for the ``gateway`` logger tree.

Only identifiers the gateway makes (job ids), sizes, counts, formats and timings are
logged: never file names, DICOM tags or patient fields.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

#: ``LogRecord`` attributes that are not user extras.
_STANDARD = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...extras}`` per record."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            out["error_type"] = record.exc_info[0].__name__
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: str = "INFO") -> None:
    """Send the ``gateway`` loggers to stderr as JSON (idempotent)."""
    logger = logging.getLogger("gateway")
    logger.setLevel(level.upper())
    if not any(getattr(h, "_ultramn_json", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._ultramn_json = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.propagate = False
