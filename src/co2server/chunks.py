"""Storing one uploaded chunk of a sequential file: lock, compare, write, fsync, ack.

Rules (PROTOCOL.md, "Sequential push"):
- a chunk that would leave a gap (offset > size) is refused with 416 and an
  ack of what the server holds of that file, so the unit rewinds;
- bytes the server already holds are never overwritten: a repeated chunk is
  compared and left as it is; a chunk that *differs* from held bytes means the
  unit's SD card was replaced, so the whole folder is moved aside under
  `<unit>/superseded/<UTC stamp>/` and the new stream starts afresh;
- a 200 is answered only after the bytes are fsynced.

Everything happens under the folder's lock (`_Folder`, a seqfiles.HotLock),
which every change to the folder takes, in every uWSGI process.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .errors import ApiError
from .per_process import PerProcess
from .quota import check_quota
from .safe_paths import PushTarget, check_push_folder
from .seqfiles import HotLock, fsync_dir, make_dirs_durable, plain_files, write_all

log = logging.getLogger("co2server")

SUPERSEDED = "superseded"


@dataclass(frozen=True)
class ChunkResult:
    ack_file: list  # [name, size, size], as the firmware expects
    written: int  # bytes newly written (0 for a repeat)


# A folder whose mtime is at least this old when we look at it has settled:
# any later change to its entries, even within the same clock tick as that
# mtime, gives it a new mtime. What we saw in an unsettled folder is not kept.
SETTLED_NS = 1_000_000_000


class _Folder(HotLock):
    """One upload folder as this process knows it: its lock, and what it saw there.

    Every change to a folder's entries happens under its lock (here, in
    whichever uWSGI process), and changes its mtime. So while the folder has
    the identity and mtime it had when we looked, and that mtime had settled,
    the snapshot holds: the last file name of the folder, and an open
    descriptor of the file last written (sizes are always read afresh with
    fstat: other processes append too). Used only under the lock.
    """

    __slots__ = ("seen", "last_name", "file_name", "file_fd")

    _NOT_LISTED = object()

    def __init__(self, lock_path: str):
        super().__init__(lock_path)
        self.seen: tuple[int, int] | None = None  # (st_ino, st_mtime_ns) of a settled folder
        self.last_name = self._NOT_LISTED
        self.file_name: str | None = None
        self.file_fd = -1

    def look(self, folder_st: os.stat_result | None) -> None:
        """Forget the snapshot unless `folder_st` (lstat, now) shows the folder as it was."""
        now = None if folder_st is None else (folder_st.st_ino, folder_st.st_mtime_ns)
        if now is not None and now == self.seen:
            return
        self.forget()
        if now is not None and folder_st.st_mtime_ns < time.time_ns() - SETTLED_NS:
            self.seen = now

    def forget(self) -> None:
        self.seen = None
        self.last_name = self._NOT_LISTED
        self.file_name = None
        if self.file_fd >= 0:
            os.close(self.file_fd)
            self.file_fd = -1

    def open_file(self, target: PushTarget) -> int | None:
        """A descriptor of the pushed file (kept by the folder), or None when there is no such file."""
        if self.file_name == target.name:
            return self.file_fd
        try:
            fd = os.open(target.file_path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:  # ELOOP: a symlink planted in the folder
            raise ApiError(403, "SYMLINK_REFUSED", f"{target.name} is a symbolic link on the server") from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ApiError(403, "NOT_A_FILE", f"{target.name} is not a regular file on the server")
        self.keep_file(target.name, fd)
        return fd

    def keep_file(self, name: str, fd: int) -> None:
        if self.file_fd >= 0:
            os.close(self.file_fd)
        self.file_name, self.file_fd = name, fd

    def last_file(self, folder_dir: str) -> str | None:
        """The last plain file of the folder in sorted order (None when it has none)."""
        last = self.last_name
        if last is self._NOT_LISTED:
            names = plain_files(folder_dir)
            last = names[-1] if names else None
            if self.seen is not None:
                self.last_name = last
        return last

    def __del__(self):
        if getattr(self, "file_fd", -1) >= 0:
            os.close(self.file_fd)
        super().__del__()


# At most this many folders (two open files each) per process; the soft
# limit on open files is often 1024.
FOLDERS_MAX = 128
_folders: PerProcess[_Folder] = PerProcess(_Folder, max_items=FOLDERS_MAX)


def _ack(target: PushTarget, size: int, folder: _Folder, folder_st: os.stat_result | None) -> list:
    """[last file of the folder, its size, its size]; `size` is the pushed file's."""
    last = folder.last_file(target.folder_dir) if folder_st is not None else None
    if last is None or last == target.name:
        return [target.name, size, size]
    last_size = os.lstat(os.path.join(target.folder_dir, last)).st_size
    return [last, last_size, last_size]


def superseded_stamp() -> str:
    """The name of a new folder under <unit>/superseded/: the UTC time (the dashboard reads it)."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def supersede_folder(target: PushTarget) -> Path:
    """Move the unit's folder aside (never deleting it) and return where it went."""
    stamp = superseded_stamp()
    dest = Path(target.unit_dir).joinpath(SUPERSEDED, stamp, *target.folder)
    make_dirs_durable(dest.parent)
    os.rename(target.folder_dir, dest)
    fsync_dir(dest.parent)
    fsync_dir(target.folder_path.parent)
    return dest


def _remove_new(file_path, made: list[Path]) -> None:
    """Undo a failed chunk's new file and the folders made for it (a full disk leaves no empty trace)."""
    try:
        if file_path is not None:
            os.unlink(file_path)
        for folder in reversed(made):
            os.rmdir(folder)
        if file_path is not None or made:
            fsync_dir((made[0] if made else Path(file_path)).parent)
    except OSError as exc:
        log.error("could not remove what a failed chunk left at %s: %s", file_path or made[-1], exc)


def store_chunk(target: PushTarget, offset: int, data: bytes, max_file_bytes: int,
                quota: tuple[int, int] | None = None) -> ChunkResult:
    """Store one chunk; `quota` = (most bytes, most files) the unit's folders may hold (quota.py)."""
    folder = _folders.get(target.lock_path)
    with folder:
        folder_st = check_push_folder(target)
        folder.look(folder_st)
        fd = folder.open_file(target) if folder_st is not None else None
        size = 0 if fd is None else os.fstat(fd).st_size
        if offset > size:
            raise ApiError(
                416,
                "SKIPPED_PART_OF_FILE",
                f"offset {offset} is past the end of {target.name} ({size} bytes on the server); resend from {size}",
                ack_file=[target.name, size, size],
            )
        end = offset + len(data)
        if end > max_file_bytes:
            raise ApiError(
                413,
                "FILE_TOO_LARGE",
                f"{target.name} would grow to {end} bytes; the limit is {max_file_bytes} (CO2_MAX_FILE_BYTES)",
            )
        overlap = max(0, min(end, size) - offset)
        if overlap and os.pread(fd, overlap, offset) != data[:overlap]:
            folder.forget()  # closes fd
            superseded_to = supersede_folder(target)
            log.error(
                "SD CARD REPLACED? unit=%s pushed bytes at %s:%d that differ from the %d bytes the server "
                "held there; the old folder %s is kept as %s and the new stream starts from scratch",
                target.hw_id, "/".join((*target.folder, target.name)), offset, overlap,
                "/".join(target.folder), superseded_to,
            )
            if offset > 0:
                raise ApiError(
                    416,
                    "SKIPPED_PART_OF_FILE",
                    f"{target.name} starts afresh on the server (old files kept aside); resend from 0",
                    ack_file=[target.name, 0, 0],
                )
            fd, size, overlap, folder_st = None, 0, 0, None
        written = 0
        if end > size:
            new_file = fd is None
            if quota is not None:
                check_quota(target.hw_id, target.unit_dir, end - size, new_file, *quota)
            if new_file:
                made = []
                try:
                    made = make_dirs_durable(target.folder_path)
                    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                    fd = os.open(target.file_path, flags, 0o644)
                except OSError:
                    _remove_new(None, made)
                    raise
            try:
                tail = data[overlap:]
                write_all(fd, tail, offset + overlap)
                os.fsync(fd)
            except OSError:
                # Never leave unacknowledged bytes behind, nor a file or folder this chunk made.
                if new_file:
                    os.close(fd)
                    _remove_new(target.file_path, made)
                else:
                    os.ftruncate(fd, size)
                raise
            if new_file:
                fsync_dir(target.folder_dir)
                folder_st = os.lstat(target.folder_dir)  # it has a new entry
                folder.look(folder_st)
                folder.keep_file(target.name, fd)
            written = len(tail)
            size = end
        return ChunkResult(_ack(target, size, folder, folder_st), written)
