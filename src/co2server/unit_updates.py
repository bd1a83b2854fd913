"""GET /ou/<hw_id>/updates...: code and configuration updates for a unit.

Only complete updates are offered: folders named `update-*` holding at least
one file, with no hidden or temporary names (operators' tooling builds an
update under a hidden name and renames it into place).
"""

from __future__ import annotations

import logging
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

from flask import Response
from flask_restful import Resource

from .errors import ApiError, json_response
from .params import config, query_bool
from .safe_paths import NAME_RE, update_path
from .seqfiles import append_durably, locked

log = logging.getLogger("co2server")

UPDATE_PREFIX = "update-"


def _visible(name: str) -> bool:
    return bool(NAME_RE.fullmatch(name)) and not name.endswith(("~", ".tmp", ".part"))


def files_below(folder: Path) -> list[str]:
    """Every regular, visible file below `folder`, as sorted relative paths (no symlinks)."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = [d for d in dirs if _visible(d) and not os.path.islink(os.path.join(root, d))]
        for name in files:
            full = os.path.join(root, name)
            if _visible(name) and stat.S_ISREG(os.lstat(full).st_mode):
                found.append(os.path.relpath(full, folder))
    return sorted(found)


def complete_updates(updates_dir: Path) -> list[str]:
    """Sorted names of the complete update folders in `updates_dir`."""
    names = []
    for entry in os.scandir(updates_dir):
        if (entry.name.startswith(UPDATE_PREFIX) and _visible(entry.name)
                and entry.is_dir(follow_symlinks=False) and files_below(Path(entry.path))):
            names.append(entry.name)
    return sorted(names)


def _not_found(what: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"no {what} for this unit")


class UpdatesIndex(Resource):
    def get(self, hw_id: str):
        updates_dir = update_path(config(), hw_id)
        query_bool("recursive", default=False)  # validated; the index is always flat
        if not updates_dir.is_dir():
            raise _not_found("updates folder")
        return json_response(complete_updates(updates_dir))


class UpdatesItem(Resource):
    def get(self, hw_id: str, relpath: str):
        cfg = config()
        path = update_path(cfg, hw_id, relpath)
        recursive = query_bool("recursive", default=False)
        top = relpath.split("/")[0]
        updates_dir = cfg.data_dir / hw_id / "updates"
        if not top.startswith(UPDATE_PREFIX) or not updates_dir.is_dir() or top not in complete_updates(updates_dir):
            raise _not_found(f"complete update {top[:80]!r}")
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise _not_found(f"file {relpath[:120]!r} in the updates") from None
        if stat.S_ISDIR(st.st_mode):
            if recursive:
                return json_response(files_below(path))
            return json_response(sorted(e.name for e in os.scandir(path) if _visible(e.name)))
        if not stat.S_ISREG(st.st_mode) or not all(_visible(p) for p in relpath.split("/")):
            raise _not_found(f"file {relpath[:120]!r} in the updates")
        data = path.read_bytes()
        record_fetch(cfg.update_fetches_log, cfg.locks_dir, hw_id, relpath)
        return Response(data, mimetype="application/octet-stream")


def record_fetch(log_path: Path, locks_dir: Path, hw_id: str, relpath: str) -> None:
    """Remember which update file a unit downloaded (the dashboard shows it)."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    line = f"{now}\t{hw_id}\t{relpath}\n".encode("ascii")
    try:
        with locked(locks_dir / "update-fetches.lock"):
            append_durably(log_path, line)
    except OSError as exc:
        log.error("could not log the update fetch %s %s: %s", hw_id, relpath, exc)
    log.info("unit %s downloaded update file %s", hw_id, relpath)
