"""Persistence: analysis rows (SQLAlchemy; SQLite default, PostgreSQL by URL) and files.

:mod:`.models` (the table), :mod:`.repository` (queries, cursor pagination),
:mod:`.files` (uploads, compressed mask archives, PNG rendering).
"""

from gateway.store.files import FileStore
from gateway.store.models import Analysis, Base, Batch, JobStatus
from gateway.store.repository import AnalysisRepository, ListFilters, Page

__all__ = ["Analysis", "AnalysisRepository", "Base", "Batch", "FileStore", "JobStatus", "ListFilters", "Page"]
