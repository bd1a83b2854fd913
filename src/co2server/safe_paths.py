"""The one place that decides what a unit's request may touch on disk.

A unit may write only into `<data>/<hw_id>/errors/` and
`<data>/<hw_id>/data/<folder>/`, and read only below `<data>/<hw_id>/updates/`.
Every path segment must be a plain name; no symlink below the data folder is
ever followed. Anything else is an `ApiError` (4xx) before a byte is written.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import NamedTuple

from .config import Config
from .errors import ApiError

# Letters, digits, '-', '_' and '.', not starting with a dot (so no '.', '..'
# or hidden names), at most 128 characters.
NAME_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")

# Characters never legitimate in the raw path of a unit request: the firmware
# sends plain names, so a '%' can only be an attempt to smuggle '/', '.' or NUL
# past the checks below.
_RAW_PATH_RE = re.compile(r"[A-Za-z0-9._/~-]*")
# A raw path that passes every check below, in one match (the common case).
_GOOD_RAW_PATH_RE = re.compile(r"(?:/(?!\.\.?(?:/|$))[A-Za-z0-9._~-]+)+")

PUSH_FOLDERS = "errors/ or data/<folder>/"
# An upload path that push_target accepts, in one match (the common case);
# anything else goes through the checks that say what is wrong.
_NAME = NAME_RE.pattern
_GOOD_PUSH_RE = re.compile(rf"(?:errors|data/{_NAME})/{_NAME}")


def check_raw_path(raw_path: str) -> None:
    """Refuse percent-encoding, control characters and the like in the URL path."""
    if _GOOD_RAW_PATH_RE.fullmatch(raw_path):
        return
    if not _RAW_PATH_RE.fullmatch(raw_path):
        bad = next(c for c in raw_path if not _RAW_PATH_RE.fullmatch(c))
        raise ApiError(
            400,
            "BAD_PATH",
            f"character {bad!r} is not allowed in a unit URL; names are plain letters, digits, '-', '_' and '.'",
        )
    for segment in raw_path.split("/")[1:]:
        if segment in ("", ".", ".."):
            raise ApiError(400, "BAD_PATH", f"empty, '.' or '..' path segments are not allowed in a unit URL: {raw_path[:120]!r}")


def check_hw_id(config: Config, hw_id: str) -> None:
    if not config.hw_id_re.fullmatch(hw_id):
        raise ApiError(
            400,
            "BAD_HW_ID",
            f"hardware ID {hw_id[:80]!r} does not match the pattern {config.hw_id_pattern}",
        )


def check_name(segment: str) -> None:
    if not NAME_RE.fullmatch(segment):
        raise ApiError(
            400,
            "BAD_NAME",
            f"path segment {segment[:80]!r} is not a plain name (letters, digits, '-', '_', '.'; no leading dot)",
        )


def _split(relpath: str) -> list[str]:
    parts = relpath.split("/")
    for part in parts:
        check_name(part)
    return parts


def refuse_symlinks(base: Path | str, parts: list[str] | tuple[str, ...]) -> None:
    """Fail if `base` or any existing component of base/parts is a symlink."""
    path = os.fspath(base)  # plain strings: this runs on every request
    for part in ("", *parts):
        path = f"{path}/{part}" if part else path
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return
        if stat.S_ISLNK(st.st_mode):
            raise ApiError(403, "SYMLINK_REFUSED", f"{'/'.join(parts) or '.'} passes through a symbolic link on the server")


# Folders this process has walked and found free of symlinks, by path, with
# the identity (device, inode) they had. A folder that still lstat()s to the
# same directory needs no new walk: had any component above it been swapped
# for a symlink, the path would now lead to another directory.
_verified_folders: dict[str, tuple[int, int]] = {}
_VERIFIED_MAX = 10_000


class PushTarget(NamedTuple):
    """Where one upload goes, as plain strings (every chunk uses them)."""

    hw_id: str
    unit_dir: str
    folder: tuple[str, ...]  # ("errors",) or ("data", "readings")
    name: str
    folder_dir: str
    file_path: str
    lock_path: str  # the folder's lock file: every change to the folder happens under it

    @property
    def folder_path(self) -> Path:
        return Path(self.folder_dir)


def push_target(config: Config, hw_id: str, relpath: str) -> PushTarget:
    """Check the names of an upload (nothing on disk yet: see check_push_folder)."""
    check_hw_id(config, hw_id)
    if _GOOD_PUSH_RE.fullmatch(relpath):
        parts = relpath.split("/")
    else:
        parts = _split(relpath)
        if parts[0] == "updates":
            raise ApiError(403, "PUSH_NOT_ALLOWED", "uploads into updates/ are never accepted")
        raise ApiError(
            403,
            "PUSH_NOT_ALLOWED",
            f"uploads are accepted only as files directly in {PUSH_FOLDERS}, not {relpath[:120]!r}",
        )
    name = parts.pop()
    folder = tuple(parts)
    unit_dir = f"{config.data_dir}/{hw_id}"
    folder_dir = f"{unit_dir}/{'/'.join(folder)}"
    lock_path = f"{config.locks_dir}/{hw_id}__{'__'.join(folder)}.lock"
    return PushTarget(hw_id, unit_dir, folder, name, folder_dir, f"{folder_dir}/{name}", lock_path)


def check_push_folder(target: PushTarget) -> os.stat_result | None:
    """Refuse a symlink on the way to the upload's folder; return the folder's lstat (None: not there yet).

    Called under the folder's lock, right before writing. The file itself is
    opened with O_NOFOLLOW (chunks.py): a symlink there fails too.
    """
    try:
        st = os.lstat(target.folder_dir)
    except FileNotFoundError:
        refuse_symlinks(target.unit_dir, target.folder)  # check what is there
        return None
    except NotADirectoryError:  # a file stands where a folder on the way should be
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode) and _verified_folders.get(target.folder_dir) == (st.st_dev, st.st_ino):
        return st
    refuse_symlinks(target.unit_dir, target.folder)
    if st is None or not stat.S_ISDIR(st.st_mode):
        raise ApiError(403, "NOT_A_FOLDER", f"{'/'.join(target.folder)} is not a folder on the server")
    if len(_verified_folders) >= _VERIFIED_MAX:
        _verified_folders.clear()
    _verified_folders[target.folder_dir] = (st.st_dev, st.st_ino)
    return st


def update_path(config: Config, hw_id: str, relpath: str = "") -> Path:
    """The path below <unit>/updates/ that a GET names, checked."""
    check_hw_id(config, hw_id)
    parts = _split(relpath) if relpath else []
    unit_dir = config.data_dir / hw_id
    refuse_symlinks(unit_dir, ["updates", *parts])
    return unit_dir.joinpath("updates", *parts)


# One segment of a path below a served folder (the export): letters, digits
# and '._=+-~%' (hive partitions are 'site=<code>' with the code URL-quoted,
# CSV names spell other characters '~XX'), not starting with a dot.
PUB_SEGMENT_RE = re.compile(r"[A-Za-z0-9_=+~%-][A-Za-z0-9._=+~%-]{0,254}")  # NAME_MAX
PUB_DEPTH_MAX = 8


def pub_parts(rest: str, url: bool = True) -> list[str]:
    """The checked segments of a path below a served folder.

    url=True: the part of a raw URL path; each segment is percent-decoded on
    its own (strict UTF-8) exactly once, so an encoded '/', '.', '\\' or NUL
    is seen for what it is and refused, like '..', an empty segment (an
    absolute path: '//etc/passwd') or a hidden name. url=False: a path as it
    is on disk (datapackage.json's "path"), checked the same way, not decoded.
    """
    from urllib.parse import unquote

    segments = rest.split("/")
    if len(segments) > PUB_DEPTH_MAX:
        raise ApiError(400, "BAD_PATH", f"paths here are at most {PUB_DEPTH_MAX} folders deep")
    parts = []
    for segment in segments:
        try:
            name = unquote(segment, errors="strict") if url else segment
        except UnicodeDecodeError:
            name = "\ufffd"
        if not PUB_SEGMENT_RE.fullmatch(name):
            raise ApiError(
                400, "BAD_PATH",
                f"path segment {name[:80]!r} is not a plain file or folder name "
                "(letters, digits, '.', '_', '=', '+', '~', '%', '-'; no leading dot, no '..', no empty segment)",
            )
        parts.append(name)
    return parts


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISLNK, "a symbolic link"))


def file_kind(mode: int) -> str:
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def open_regular_below(base: Path | str, parts: list[str], shown: str) -> tuple[int, os.stat_result]:
    """An fd (O_RDONLY) and fstat of the regular file base/parts[0]/.../parts[-1].

    Every component below `base` is opened with O_NOFOLLOW relative to the
    one before (dir_fd), so a symlink anywhere on the way is refused (403),
    and never by a check that a swap could outrun; every open is O_NONBLOCK,
    so a FIFO or device never holds the thread; anything but a regular file
    is refused (404). `shown` names the path in messages. The caller closes the fd.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        dir_fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise ApiError(404, "NOT_FOUND", f"{shown} does not exist (nothing has been written here yet)",
                       log_reason=f"base folder: {exc.strerror}") from exc
    try:
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            try:
                fd = os.open(part, flags if last else flags | os.O_DIRECTORY, dir_fd=dir_fd)
            except OSError as exc:
                _refuse_open(dir_fd, part, shown, exc)
            os.close(dir_fd)
            dir_fd = fd
        fd, dir_fd = dir_fd, -1
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            kind = file_kind(st.st_mode)
            raise ApiError(404, "NOT_A_FILE", f"{shown} is {kind} on the server, not a file that is served",
                           log_reason=kind)
        return fd, st
    finally:
        if dir_fd >= 0:
            os.close(dir_fd)


def _refuse_open(dir_fd: int, part: str, shown: str, exc: OSError):
    """Raise the ApiError that says why `part` (in dir_fd) could not be opened."""
    try:
        st = os.lstat(part, dir_fd=dir_fd)
    except OSError:
        raise ApiError(404, "NOT_FOUND", f"{shown} does not exist", log_reason=exc.strerror) from exc
    if stat.S_ISLNK(st.st_mode):
        raise ApiError(403, "SYMLINK_REFUSED", f"{shown} passes through a symbolic link on the server",
                       log_reason=f"{part} is a symbolic link") from exc
    if stat.S_ISREG(st.st_mode):  # a file where a folder on the way should be
        raise ApiError(404, "NOT_FOUND", f"{shown} does not exist ({part} is a file, not a folder)",
                       log_reason=exc.strerror) from exc
    kind = file_kind(st.st_mode)
    raise ApiError(404, "NOT_A_FILE", f"{shown} is not a file that is served ({part} is {kind})",
                   log_reason=f"{part}: {exc.strerror}") from exc
