"""Admission of upload bodies: how many are received at once, and whether the disk has room.

A request body is spooled by the multipart parser (to the temporary folder), then copied to
the data folder's staging area and decoded (a batch archive is extracted there too), so each
upload in flight holds up to twice its size of disk until it is queued. :class:`UploadSlots`
bounds those uploads (``ULTRAMN_UPLOAD_CONCURRENCY``) and answers the rest before their body
is read: 429 ``uploads_busy`` with ``Retry-After`` (clients retry, like ``queue_full``), or
507 ``insufficient_storage`` when the declared body cannot fit on the disk.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway.core.errors import ApiError

#: Free space kept on each disk beyond the upload's own need (the database, logs, other jobs).
DISK_RESERVE_BYTES = 64 * 1024**2


class UploadSlots:
    """At most ``limit`` uploads received and stored at once (single clips and batch
    archives together); not a queue: a request past the limit is refused at once, so a
    client is never left holding a connection open without an answer."""

    def __init__(self, limit: int, retry_after_s: int, data_dir: Path) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.data_dir = data_dir
        self.in_use = 0

    def disks(self) -> dict[int, Path]:
        """The folders a body is written to, one per device: the spool and the data folder."""
        found: dict[int, Path] = {}
        for folder in (Path(tempfile.gettempdir()), self.data_dir):
            try:
                found.setdefault(os.stat(folder).st_dev, folder)
            except OSError:
                continue
        return found

    def check_room(self, declared_bytes: int) -> None:
        """507 when a body of ``declared_bytes`` cannot be spooled and staged on the disks it uses."""
        disks = self.disks()
        copies = 3 - len(disks)  # the spool and the staged copy share one disk, or not
        for folder in disks.values():
            free = shutil.disk_usage(folder).free
            if free < copies * declared_bytes + DISK_RESERVE_BYTES:
                raise ApiError(
                    507,
                    "insufficient_storage",
                    f"the server has no room to store an upload of {declared_bytes} bytes; retry later",
                    headers={"Retry-After": str(self.retry_after_s)},
                )

    @contextmanager
    def hold(self, declared_bytes: int | None) -> Iterator[None]:
        """One slot for the body of an upload (``declared_bytes`` from ``Content-Length``, when
        given), from before it is read until it is stored and queued; 429 or 507 instead."""
        if self.in_use >= self.limit:
            raise ApiError(
                429,
                "uploads_busy",
                f"{self.in_use} uploads are being received; retry later",
                headers={"Retry-After": str(self.retry_after_s)},
            )
        if declared_bytes:
            self.check_room(declared_bytes)
        self.in_use += 1
        try:
            yield
        finally:
            self.in_use -= 1
