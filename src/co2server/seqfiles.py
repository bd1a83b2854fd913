"""Sequential, append-only files on disk: listing, locking, durable writes.

Locks are `flock` on a lock file, so they hold between uWSGI processes. A
lock taken rarely is opened afresh by each caller (`locked`; separate open
file descriptions exclude each other between threads too). A hot lock, taken
by many requests (the pings log; chunks.py's upload folders), keeps its file
open per process and queues the threads of a process on a `threading.Lock`
first (`HotLock`, `locked_hot`), so only one thread per process waits in the
kernel and each use costs two system calls instead of four.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

from .per_process import PerProcess

_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


class HotLock:
    """A lock file kept open by this process, and the lock its threads queue on.

    Dropped from the registry when it is full, it stays open (and locked)
    for as long as a thread still holds it; the file is closed when the last
    reference goes. Meanwhile a new HotLock for the same file excludes that
    thread through the kernel: two open file descriptions never share a flock.
    If the lock file is deleted (someone cleaned var/locks), the next use
    notices and locks the file now at that path, as every other user will.
    """

    __slots__ = ("thread_lock", "path", "fd")

    def __init__(self, lock_path: str):
        self.thread_lock = threading.Lock()
        self.path = lock_path
        self.fd = _open_lock_file(lock_path)

    def __enter__(self) -> None:
        self.thread_lock.acquire()
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            while os.fstat(self.fd).st_nlink == 0:
                fd = _open_lock_file(self.path)
                os.close(self.fd)  # releases the lock on the deleted file
                self.fd = fd
                fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            self.thread_lock.release()
            raise

    def __exit__(self, *exc_info) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            self.thread_lock.release()

    def __del__(self):
        fd = getattr(self, "fd", -1)  # unset when the lock file could not be opened
        if fd >= 0:
            os.close(fd)


_hot_locks: PerProcess[HotLock] = PerProcess(HotLock, max_items=16)


def _open_lock_file(lock_path: Path | str) -> int:
    try:
        return os.open(lock_path, _LOCK_FLAGS, 0o644)
    except FileNotFoundError:  # the locks folder was removed under us
        os.makedirs(os.path.dirname(lock_path), exist_ok=True)
        return os.open(lock_path, _LOCK_FLAGS, 0o644)


@contextlib.contextmanager
def locked(lock_path: Path | str) -> Iterator[None]:
    """Hold an exclusive lock named by `lock_path` (created when missing)."""
    fd = _open_lock_file(lock_path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def locked_hot(lock_path: str) -> HotLock:
    """`locked` for a lock that many requests take (see the module doc): `with locked_hot(path):`."""
    return _hot_locks.get(lock_path)


def fsync_dir(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs_durable(path: Path) -> list[Path]:
    """mkdir -p that fsyncs each parent whose entries it changed; returns the folders it made, outermost first."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    made = []
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o755)
            made.append(folder)
        except FileExistsError:
            pass
        fsync_dir(folder.parent)
    return made


def plain_files(folder: Path | str) -> list[str]:
    """Sorted names of the regular, non-hidden files directly in `folder`."""
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(e.name for e in entries if not e.name.startswith(".") and e.is_file(follow_symlinks=False))


def choose_append_file(folder: Path, prefix: str, suffix: str, roll_bytes: int) -> Path:
    """The file to append to: the last `<prefix>-NNNN<suffix>`, or the next once it passed `roll_bytes`."""
    pattern = re.compile(re.escape(prefix) + r"-(\d{4,})" + re.escape(suffix))
    numbered = [n for n in plain_files(folder) if pattern.fullmatch(n)]
    if not numbered:
        return folder / f"{prefix}-0000{suffix}"
    last = max(numbered, key=lambda n: int(pattern.fullmatch(n).group(1)))
    if os.lstat(folder / last).st_size < roll_bytes:
        return folder / last
    number = int(pattern.fullmatch(last).group(1)) + 1
    return folder / f"{prefix}-{number:04d}{suffix}"


def write_all(fd: int, data: bytes, offset: int | None = None) -> None:
    """Write all of `data` (at `offset`, else at the file position), or raise.

    A write that the disk takes only in part is continued, so that the reason
    it stopped (ENOSPC, EDQUOT, EFBIG) is raised as the OSError it is; the
    caller undoes what was written.
    """
    done = 0
    while done < len(data):
        view = memoryview(data)[done:]
        n = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset + done)
        if n <= 0:
            raise OSError(errno.EIO, f"write returned {n} after {done} of {len(data)} bytes")
        done += n


def append_durably(path: Path, data: bytes) -> None:
    """Append `data` to `path` and fsync it (and its folder if the file is new).

    The caller holds the lock for `path`; a short write is undone so the file
    never ends in half a record.
    """
    make_dirs_durable(path.parent)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o644)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path} is not a regular file")
        try:
            write_all(fd, data)
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, st.st_size)
            raise
    finally:
        os.close(fd)
    if st.st_size == 0:
        fsync_dir(path.parent)
