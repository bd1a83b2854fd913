"""Snapshots of folders, to prove a refused request changed nothing on disk."""

from __future__ import annotations

import os
from pathlib import Path

# Bookkeeping the server may touch on any request: lock files, the logs
# (uWSGI's, and nginx's below nginx/ when the front runs), SQLite, and the
# request counters of /metrics (var/metrics/, which count refusals too).
IGNORED_PARTS = {"locks", "uwsgi.log", "nginx"}
IGNORED_PREFIXES = (os.path.join("var", "metrics"),)


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every file (bytes), folder and symlink (target) below root, by relative path."""
    tree: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        for name in dirnames + filenames:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if IGNORED_PARTS & set(Path(rel).parts) or name.startswith("db.sqlite3") or rel.startswith(IGNORED_PREFIXES):
                continue
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                tree[rel] = "link->" + os.readlink(full)
            elif os.path.isdir(full):
                tree[rel] = "dir"
            else:
                tree[rel] = Path(full).read_bytes()
    return tree
