"""Tail reads: the last lines of a file, read backwards from its end, and numbered files."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

# How far back from a file's end a "last line" is looked for.
LAST_LINE_BYTES = 8 * 1024
BLOCK = 16 * 1024


def lines_backwards(path: Path, max_bytes: int | None = None) -> Iterator[bytes]:
    """The complete lines of `path`, last first, reading blocks from the end.

    A last line without its newline (still being written) is left out. Stops
    after `max_bytes` from the end when given (the line cut there is dropped).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        pos = os.fstat(fd).st_size
        floor = 0 if max_bytes is None else max(0, pos - max_bytes)
        buf = b""
        started = False  # found the newline that ends the last complete line
        while pos > floor:
            step = min(BLOCK, pos - floor)
            pos -= step
            buf = os.pread(fd, step, pos) + buf
            if not started:
                cut = buf.rfind(b"\n")
                if cut < 0:
                    continue  # all unfinished so far
                buf, started = buf[:cut], True
            cut = buf.rfind(b"\n")
            while cut >= 0:
                yield buf[cut + 1:]
                buf = buf[:cut]
                cut = buf.rfind(b"\n")
        if started and pos == 0:
            yield buf  # the file's first line
    finally:
        os.close(fd)


def numbered_files(folder: Path, pattern: re.Pattern[str]) -> list[str]:
    """Names in `folder` matching `pattern` (first group: the number), in number order."""
    try:
        names = [e.name for e in os.scandir(folder) if pattern.fullmatch(e.name) and e.is_file(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(names, key=lambda n: (len(pattern.fullmatch(n).group(1)), n))


def last_line_fields(path: Path, accept) -> tuple[list[str], bytes] | None:
    """The last complete line near the end of `path` that `accept(fields)` takes."""
    for raw in lines_backwards(path, LAST_LINE_BYTES):
        fields = raw.decode("ascii", errors="replace").split("\t")
        if accept(fields):
            return fields, raw
    return None

