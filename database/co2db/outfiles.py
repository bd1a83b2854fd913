"""Output files the server may be serving at this moment: written aside, then
renamed over the old one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from .cli import CommandError


def write_atomically(out: Path, write: Callable[[object], None]) -> int:
    """Call write(binary file) on a temp file beside out, then rename it over out.

    The server may be serving out at this moment: it sees the old file or the
    new one, never half of one. Returns the size written.
    """
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    except OSError as exc:
        raise CommandError(f"cannot write {out}: {exc}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            size = f.tell()
        # mkstemp makes the file private; the web server must be able to read it.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, 0o666 & ~umask)
        os.replace(tmp_name, out)
    except BaseException as exc:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise CommandError(f"cannot write {out}: {exc.strerror or exc}") from exc
        raise
    return size


def human_size(size: int) -> str:
    """'12.3 kB'."""
    for unit in ("B", "kB", "MB"):
        if size < 1000 or unit == "MB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size} B"
