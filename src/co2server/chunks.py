"""Storing one uploaded chunk of a sequential file: lock, compare, write, fsync, ack.

Rules (PROTOCOL.md, "Sequential push"):
- a chunk that would leave a gap (offset > size) is refused with 416 and an
  ack of what the server holds of that file, so the unit rewinds;
- bytes the server already holds are never overwritten: a repeated chunk is
  compared and left as it is; a chunk that *differs* from held bytes means the
  unit's SD card was replaced, so the whole folder is moved aside under
  `<unit>/superseded/<UTC stamp>/` and the new stream starts afresh;
- a 200 is answered only after the bytes are fsynced.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .errors import ApiError
from .safe_paths import PushTarget
from .seqfiles import fsync_dir, locked, make_dirs_durable, plain_files

log = logging.getLogger("co2server")

SUPERSEDED = "superseded"


@dataclass(frozen=True)
class ChunkResult:
    ack_file: list  # [name, size, size], as the firmware expects
    written: int  # bytes newly written (0 for a repeat)


def _ack(target: PushTarget, size: int) -> list:
    """[last file of the folder, its size, its size]; `size` is the pushed file's."""
    names = plain_files(target.folder_dir)
    if not names or names[-1] == target.name:
        return [target.name, size, size]
    last_size = os.lstat(os.path.join(target.folder_dir, names[-1])).st_size
    return [names[-1], last_size, last_size]


def _open_existing(path: str) -> tuple[int | None, int]:
    """A descriptor of the file and its size; (None, 0) when there is no file."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, 0
    except OSError as exc:  # ELOOP: a symlink planted in the folder
        raise ApiError(403, "SYMLINK_REFUSED", f"{os.path.basename(path)} is a symbolic link on the server") from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ApiError(403, "NOT_A_FILE", f"{os.path.basename(path)} is not a regular file on the server")
    return fd, st.st_size


def supersede_folder(target: PushTarget) -> Path:
    """Move the unit's folder aside (never deleting it) and return where it went."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    dest = target.unit_dir.joinpath(SUPERSEDED, stamp, *target.folder)
    make_dirs_durable(dest.parent)
    os.rename(target.folder_path, dest)
    fsync_dir(dest.parent)
    fsync_dir(target.folder_path.parent)
    return dest


def store_chunk(target: PushTarget, offset: int, data: bytes, max_file_bytes: int, locks_dir: Path) -> ChunkResult:
    with locked(os.path.join(locks_dir, target.lock_name)):
        fd, size = _open_existing(target.file_path)
        try:
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
                os.close(fd)
                fd = None
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
                size, overlap = 0, 0
            written = 0
            if end > size:
                if fd is None:
                    make_dirs_durable(target.folder_path)
                    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                    fd = os.open(target.file_path, flags, 0o644)
                    new_file = True
                else:
                    new_file = False
                try:
                    tail = data[overlap:]
                    done = os.pwrite(fd, tail, offset + overlap)
                    if done != len(tail):
                        raise OSError(f"short write: {done} of {len(tail)} bytes")
                    os.fsync(fd)
                except OSError:
                    os.ftruncate(fd, size)  # never leave unacknowledged bytes behind
                    raise
                if new_file:
                    fsync_dir(target.folder_dir)
                written = len(tail)
                size = end
            return ChunkResult(_ack(target, size), written)
        finally:
            if fd is not None:
                os.close(fd)
