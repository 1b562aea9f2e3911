"""A byte-bounded LRU cache of decoded arrays, safe across threads, one load per key at a time.

The viewer asks for every frame (and mask) of a clip at once, each request in its own
thread: without the cache every request would decode the whole upload (or decompress the
whole mask archive) again; without the per-key lock the first requests of a clip would all
decode it together. Different clips load in parallel.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class ArrayCache:
    """Values by key, least recently used dropped first once their sizes pass ``max_bytes``.

    The newest value is kept even when it alone is larger than ``max_bytes`` (its requests are
    still coming); ``max_bytes = 0`` turns caching off.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self._dropped: set[str] = set()  # keys dropped while loading: their value must not be kept
        self.loads = 0  # how many times a value was loaded (misses), for tests and metrics

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._items

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        with self._lock:
            return sum(size for _, size in self._items.values())

    def get(self, key: str, load: Callable[[], T], size: Callable[[T], int]) -> T:
        """The value of ``key``, from ``load()`` when absent (once, however many threads ask)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._items:  # another thread loaded it meanwhile
                    self._items.move_to_end(key)
                    return self._items[key][0]
            try:
                value = load()
            except BaseException:
                with self._lock:
                    self._loading.pop(key, None)
                    self._dropped.discard(key)
                raise
            with self._lock:
                self._loading.pop(key, None)
                dropped = key in self._dropped
                self._dropped.discard(key)
                self.loads += 1
                if self.max_bytes > 0 and not dropped:
                    self._items[key] = (value, size(value))
                    self._evict()
        return value

    def drop(self, *keys: str) -> None:
        """Forget ``keys`` (a deleted analysis); a load of one of them under way is not kept."""
        with self._lock:
            for key in keys:
                self._items.pop(key, None)
                if key in self._loading:
                    self._dropped.add(key)

    def _evict(self) -> None:
        total = sum(size for _, size in self._items.values())
        while total > self.max_bytes and len(self._items) > 1:
            _, (_, size) = self._items.popitem(last=False)
            total -= size
