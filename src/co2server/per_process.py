"""Objects made once per process and key: uWSGI forks its workers, and an
open file, a thread or an SQLite connection must never be shared across a fork."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerProcess(Generic[T]):
    """`get(key)` returns this process's object for `key`, made by `factory(key)` on first use."""

    def __init__(self, factory: Callable[[str], T]):
        self.factory = factory
        self.items: dict[str, tuple[int, T]] = {}
        self.lock = threading.Lock()

    def get(self, key: str) -> T:
        pid = os.getpid()
        item = self.items.get(key)
        if item is None or item[0] != pid:
            with self.lock:
                item = self.items.get(key)
                if item is None or item[0] != pid:
                    item = self.items[key] = (pid, self.factory(key))
        return item[1]
