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
