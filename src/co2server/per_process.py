"""Objects made once per process and key: uWSGI forks its workers, and an
open file, a thread or an SQLite connection must never be shared across a fork."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerProcess(Generic[T]):
    """`get(key)` returns this process's object for `key`, made by `factory(key)` on first use.

    With `max_items`, the oldest object is dropped from the registry when a
    new one would exceed it (its users keep their references).
    """

    def __init__(self, factory: Callable[[Hashable], T], max_items: int | None = None):
        self.factory = factory
        self.max_items = max_items
        self.items: dict[Hashable, tuple[int, T]] = {}
        self.lock = threading.Lock()

    def get(self, key: Hashable) -> T:
        pid = os.getpid()
        item = self.items.get(key)
        if item is None or item[0] != pid:
            with self.lock:
                item = self.items.get(key)
                if item is None or item[0] != pid:
                    if self.max_items is not None and len(self.items) >= self.max_items:
                        del self.items[next(iter(self.items))]
                    item = self.items[key] = (pid, self.factory(key))
        return item[1]
