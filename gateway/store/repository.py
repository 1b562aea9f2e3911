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
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, and_, create_engine, event, func, inspect, or_, select, text
from sqlalchemy.orm import Session, defer, sessionmaker

from gateway.core.errors import ApiError
from gateway.store.models import Analysis, Base, Batch, JobStatus, utcnow

#: Listings never need a row's result JSON (per-frame contours: hundreds of kB per clip); it is
#: not loaded, and reading it from such a row raises instead of querying again.
_WITHOUT_RESULT = defer(Analysis.result, raiseload=True)


@dataclass(frozen=True)
class ListFilters:
    """Filters of ``GET /v1/analyses`` (all optional; times are inclusive/exclusive bounds)."""

    plane: str | None = None
    status: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    patient: str | None = None
    side: str | None = None


@dataclass(frozen=True)
class Page:
    """One page of rows, newest first, and the cursor of the next page (``None`` at the end)."""

    items: Sequence[Analysis]
    next_cursor: str | None


def encode_cursor(created_at: datetime, row_id: str, kind: str) -> str:
    """Opaque cursor after the row ``(created_at, row_id)`` of listing ``kind`` (``"a"`` analyses,
    ``"b"`` batches): base64url of ``{"t": created_at, "i": id, "k": kind}``."""
    raw = json.dumps({"t": created_at.isoformat(), "i": row_id, "k": kind}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str) -> tuple[datetime, str]:
    """``(created_at, id)`` of a cursor of listing ``kind``; :class:`ApiError` 422 when it is not
    one of ours (or belongs to the other listing)."""
    invalid = ApiError(422, "validation_error", "cursor: not a valid cursor (pass next_cursor of the same listing)")
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, RecursionError) as exc:
        raise invalid from exc
    if not isinstance(data, dict) or not isinstance(data.get("t"), str) or not isinstance(data.get("i"), str):
        raise invalid
    if data.get("k", kind) != kind:
        raise invalid
    try:
        return datetime.fromisoformat(data["t"]), data["i"]
    except ValueError as exc:
        raise invalid from exc


def _utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (naive values are UTC already); an instant beyond
    the datetime range in UTC (year 9999 west of Greenwich, year 1 east) clamps to the range's end."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return (datetime.max if value.year > 1 else datetime.min).replace(tzinfo=UTC)


def _naive_utc(value: datetime) -> datetime:
    """SQLite returns naive datetimes; compare in naive UTC there."""
    return _utc(value).replace(tzinfo=None)


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
        self._add_missing_columns()
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    def _add_missing_columns(self) -> None:
        """Databases made by older gateways: add the columns added since (additive only):
        ``analyses.batch_id`` / ``batch_index`` (batches), ``idempotency_key`` (analyses and
        batches) and ``analyses.patient`` / ``side`` / ``visit`` (follow-up)."""
        columns = {c["name"] for c in inspect(self.engine).get_columns("analyses")}
        batch_columns = {c["name"] for c in inspect(self.engine).get_columns("batches")}
        with self.engine.begin() as conn:
            if "batch_id" not in columns:
                conn.execute(text("ALTER TABLE analyses ADD COLUMN batch_id VARCHAR(32)"))
            if "batch_index" not in columns:
                conn.execute(text("ALTER TABLE analyses ADD COLUMN batch_index INTEGER"))
            if "batch_id" not in columns:
                conn.execute(text("CREATE INDEX IF NOT EXISTS ix_analyses_batch ON analyses (batch_id, batch_index)"))
            if "idempotency_key" not in columns:
                conn.execute(text("ALTER TABLE analyses ADD COLUMN idempotency_key VARCHAR(64)"))
                conn.execute(text("CREATE UNIQUE INDEX IF NOT EXISTS ux_analyses_idempotency_key ON analyses (idempotency_key)"))
            if "patient" not in columns:
                conn.execute(text("ALTER TABLE analyses ADD COLUMN patient VARCHAR(64)"))
                conn.execute(text("ALTER TABLE analyses ADD COLUMN side VARCHAR(1)"))
                conn.execute(text("ALTER TABLE analyses ADD COLUMN visit VARCHAR(10)"))
                conn.execute(text("CREATE INDEX IF NOT EXISTS ix_analyses_patient ON analyses (patient, visit)"))
            if "idempotency_key" not in batch_columns:
                conn.execute(text("ALTER TABLE batches ADD COLUMN idempotency_key VARCHAR(64)"))
                conn.execute(text("CREATE UNIQUE INDEX IF NOT EXISTS ux_batches_idempotency_key ON batches (idempotency_key)"))

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    def session(self) -> Session:
        """A new session (use as a context manager)."""
        return self._session()

    # writes ----------------------------------------------------------------------------
    def create(self, row: Analysis) -> Analysis:
        """Insert ``row`` (``sqlalchemy.exc.IntegrityError`` when its idempotency key is taken)."""
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

    def by_idempotency_key(self, key: str) -> Analysis | None:
        """The analysis created with ``Idempotency-Key: key``, or ``None``."""
        with self.session() as s:
            return s.scalars(select(Analysis).where(Analysis.idempotency_key == key)).first()

    def exists(self, job_id: str) -> bool:
        """Whether the analysis ``job_id`` exists (no row loaded)."""
        with self.session() as s:
            return s.scalar(select(Analysis.id).where(Analysis.id == job_id)) is not None

    def pending_batch_ids(self) -> list[str]:
        """Ids of ``queued`` rows that are batch clips."""
        with self.session() as s:
            stmt = select(Analysis.id).where(Analysis.status == JobStatus.QUEUED.value, Analysis.batch_id.is_not(None))
            return list(s.scalars(stmt).all())

    def pending_ids(self) -> list[str]:
        """Ids of ``queued`` rows, oldest first."""
        with self.session() as s:
            stmt = select(Analysis.id).where(Analysis.status == JobStatus.QUEUED.value).order_by(Analysis.created_at, Analysis.id)
            return list(s.scalars(stmt).all())

    def list(self, filters: ListFilters, limit: int, cursor: str | None = None) -> Page:
        """Rows matching ``filters``, newest first, ``limit`` per page after ``cursor`` (``result`` not loaded)."""
        conv = _naive_utc if self._is_sqlite else _utc
        stmt = select(Analysis).options(_WITHOUT_RESULT)
        if filters.plane:
            stmt = stmt.where(Analysis.plane == filters.plane)
        if filters.status:
            stmt = stmt.where(Analysis.status == filters.status)
        if filters.patient:
            stmt = stmt.where(Analysis.patient == filters.patient)
        if filters.side:
            stmt = stmt.where(Analysis.side == filters.side)
        if filters.created_after:
            stmt = stmt.where(Analysis.created_at >= conv(filters.created_after))
        if filters.created_before:
            stmt = stmt.where(Analysis.created_at < conv(filters.created_before))
        if cursor:
            t, i = decode_cursor(cursor, "a")
            t = conv(t)
            stmt = stmt.where(or_(Analysis.created_at < t, and_(Analysis.created_at == t, Analysis.id < i)))
        stmt = stmt.order_by(Analysis.created_at.desc(), Analysis.id.desc()).limit(limit + 1)
        with self.session() as s:
            rows = list(s.scalars(stmt).all())
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(items=rows, next_cursor=encode_cursor(rows[-1].created_at, rows[-1].id, "a") if more and rows else None)

    def patient_analyses(self, patient: str) -> Sequence[Analysis]:
        """Every analysis of ``patient`` (results loaded), by visit then creation."""
        with self.session() as s:
            stmt = select(Analysis).where(Analysis.patient == patient).order_by(Analysis.visit, Analysis.created_at, Analysis.id)
            return list(s.scalars(stmt).all())

    # batches ---------------------------------------------------------------------------
    def create_batch(self, batch: Batch, rows: Sequence[Analysis]) -> Batch:
        """Insert a batch and its analyses in one transaction."""
        with self.session() as s, s.begin():
            s.add(batch)
            s.add_all(list(rows))
        return batch

    def batch_by_idempotency_key(self, key: str) -> Batch | None:
        """The batch created with ``Idempotency-Key: key``, or ``None``."""
        with self.session() as s:
            return s.scalars(select(Batch).where(Batch.idempotency_key == key)).first()

    def get_batch(self, batch_id: str) -> Batch | None:
        """The batch, or ``None``."""
        with self.session() as s:
            return s.get(Batch, batch_id)

    def batch_analyses(self, batch_id: str) -> Sequence[Analysis]:
        """The batch's analyses in archive order (``result`` not loaded)."""
        with self.session() as s:
            stmt = (
                select(Analysis).options(_WITHOUT_RESULT).where(Analysis.batch_id == batch_id).order_by(Analysis.batch_index, Analysis.id)
            )
            return list(s.scalars(stmt).all())

    def batch_status_counts(self, batch_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """``{batch id: {status: analyses}}`` for ``batch_ids`` (one grouped query; no rows loaded)."""
        counts: dict[str, dict[str, int]] = {b: {} for b in batch_ids}
        if not batch_ids:
            return counts
        stmt = (
            select(Analysis.batch_id, Analysis.status, func.count())
            .where(Analysis.batch_id.in_(list(batch_ids)))
            .group_by(Analysis.batch_id, Analysis.status)
        )
        with self.session() as s:
            for batch_id, status, n in s.execute(stmt).all():
                counts[str(batch_id)][status] = int(n)
        return counts

    def list_batches(self, limit: int, cursor: str | None = None) -> tuple[Sequence[Batch], str | None]:
        """Batches newest first, ``limit`` per page after ``cursor``; (rows, next cursor)."""
        stmt = select(Batch)
        if cursor:
            t, i = decode_cursor(cursor, "b")
            t = _naive_utc(t) if self._is_sqlite else _utc(t)
            stmt = stmt.where(or_(Batch.created_at < t, and_(Batch.created_at == t, Batch.id < i)))
        stmt = stmt.order_by(Batch.created_at.desc(), Batch.id.desc()).limit(limit + 1)
        with self.session() as s:
            rows = list(s.scalars(stmt).all())
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (encode_cursor(rows[-1].created_at, rows[-1].id, "b") if more and rows else None)
