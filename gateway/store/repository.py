"""Queries on the ``analyses`` table, with keyset (cursor) pagination for listings.

Calls are short synchronous transactions (one statement each); the engine is created
once per app. SQLite gets ``check_same_thread=False`` so worker threads may use it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, create_engine, event, or_, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.core.errors import ApiError
from gateway.store.models import Analysis, Base, JobStatus, utcnow


@dataclass(frozen=True)
class ListFilters:
    """Filters of ``GET /v1/analyses`` (all optional; times are inclusive/exclusive bounds)."""

    plane: str | None = None
    status: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


@dataclass(frozen=True)
class Page:
    """One page of rows, newest first, and the cursor of the next page (``None`` at the end)."""

    items: Sequence[Analysis]
    next_cursor: str | None


def encode_cursor(row: Analysis) -> str:
    """Opaque cursor after ``row``: base64url of ``{"t": created_at, "i": id}``."""
    raw = json.dumps({"t": row.created_at.isoformat(), "i": row.id}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """``(created_at, id)`` of a cursor; :class:`ApiError` 422 when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        return datetime.fromisoformat(data["t"]), str(data["i"])
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ApiError(422, "validation_error", "cursor: not a valid cursor") from exc


def _naive_utc(value: datetime) -> datetime:
    """SQLite returns naive datetimes; compare in naive UTC there."""
    from datetime import UTC

    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def make_engine(url: str) -> Engine:
    """An engine for ``url`` (SQLite: WAL journal, cross-thread use)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


class AnalysisRepository:
    """CRUD of :class:`Analysis` rows."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self._is_sqlite = url.startswith("sqlite")
        Base.metadata.create_all(self.engine)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    def session(self) -> Session:
        """A new session (use as a context manager)."""
        return self._session()

    # writes ----------------------------------------------------------------------------
    def create(self, row: Analysis) -> Analysis:
        """Insert ``row``."""
        with self.session() as s, s.begin():
            s.add(row)
        return row

    def update(self, job_id: str, **fields: Any) -> Analysis | None:
        """Set ``fields`` on the row; the updated row, or ``None`` when it was deleted."""
        with self.session() as s, s.begin():
            row = s.get(Analysis, job_id)
            if row is None:
                return None
            for key, value in fields.items():
                setattr(row, key, value)
            row.updated_at = utcnow()
        return row

    def delete(self, job_id: str) -> bool:
        """Delete the row; whether it existed."""
        with self.session() as s, s.begin():
            row = s.get(Analysis, job_id)
            if row is None:
                return False
            s.delete(row)
        return True

    def requeue_running(self) -> int:
        """Put rows left ``running`` by a stopped gateway back to ``queued``; how many."""
        with self.session() as s, s.begin():
            rows = s.scalars(select(Analysis).where(Analysis.status == JobStatus.RUNNING.value)).all()
            for row in rows:
                row.status = JobStatus.QUEUED.value
        return len(rows)

    # reads -----------------------------------------------------------------------------
    def get(self, job_id: str) -> Analysis | None:
        """The row, or ``None``."""
        with self.session() as s:
            return s.get(Analysis, job_id)

    def pending_ids(self) -> list[str]:
        """Ids of ``queued`` rows, oldest first."""
        with self.session() as s:
            stmt = select(Analysis.id).where(Analysis.status == JobStatus.QUEUED.value).order_by(Analysis.created_at, Analysis.id)
            return list(s.scalars(stmt).all())

    def list(self, filters: ListFilters, limit: int, cursor: str | None = None) -> Page:
        """Rows matching ``filters``, newest first, ``limit`` per page after ``cursor``."""
        conv = _naive_utc if self._is_sqlite else (lambda v: v)
        stmt = select(Analysis)
        if filters.plane:
            stmt = stmt.where(Analysis.plane == filters.plane)
        if filters.status:
            stmt = stmt.where(Analysis.status == filters.status)
        if filters.created_after:
            stmt = stmt.where(Analysis.created_at >= conv(filters.created_after))
        if filters.created_before:
            stmt = stmt.where(Analysis.created_at < conv(filters.created_before))
        if cursor:
            t, i = decode_cursor(cursor)
            t = conv(t)
            stmt = stmt.where(or_(Analysis.created_at < t, and_(Analysis.created_at == t, Analysis.id < i)))
        stmt = stmt.order_by(Analysis.created_at.desc(), Analysis.id.desc()).limit(limit + 1)
        with self.session() as s:
            rows = list(s.scalars(stmt).all())
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(items=rows, next_cursor=encode_cursor(rows[-1]) if more and rows else None)
