"""The alive-ping log of record: var/pings/pings-NNNN.tsv (DATA-FORMATS.md)."""

from __future__ import annotations

import logging
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from .config import Config
from .per_process import PerProcess
from .seqfiles import append_durably, choose_append_file, fsync_dir, locked, locked_hot, make_dirs_durable, write_all

log = logging.getLogger("co2server")

# What the server repaired in a unit's pings (tolerant readers, unit_pings.py):
# "<ping_ts>\t<hw_id>\t<what>" per repaired ping; the dashboard shows the last.
REPAIRS_LOG = "ping-repairs.tsv"
REPAIR_NOTE_MAX = 500


class Ping(NamedTuple):
    ping_ts: str
    unit_id: str
    nickname: str | None
    rssi_raw: int | None
    rssi_dbm: int | None
    ber_raw: int | None

    @classmethod
    def arriving_now(cls, unit_id, nickname, rssi_raw, rssi_dbm, ber_raw) -> Ping:
        now = datetime.now(UTC).isoformat(timespec="microseconds")[:26]  # no zone: 2019-10-07T03:23:39.980794
        return cls(now, unit_id, nickname, rssi_raw, rssi_dbm, ber_raw)

    def tsv_line(self) -> bytes:
        # UTF-8 (DATA-FORMATS.md); the nickname holds no TAB, newline or control character (params.tolerant_text).
        return ("\t".join(["None" if f is None else str(f) for f in self]) + "\n").encode("utf-8")

    def db_row(self) -> tuple:
        ts = self.ping_ts
        return (ts, ts[:10], ts[11:], *self[1:])


class _LogFile:
    """One open pings log file. A writer keeps a reference to it while it
    fsyncs outside the lock, so the descriptor is closed only once the last
    writer let go (CPython frees it at that moment), never under a fsync."""

    __slots__ = ("path", "fd")

    def __init__(self, path: Path, fd: int):
        self.path = path
        self.fd = fd

    def __del__(self):
        os.close(self.fd)


class _OpenLog:
    """This process's current pings log file.

    Every line is written under the cross-process pings lock and fsynced by
    its own request after the lock is released: concurrent fsyncs of one file
    are committed together by the kernel (one ext4 journal commit serves all
    that are waiting), so there is nothing to gain from grouping them in
    Python, and waking threads from a shared condition cost more CPU than it
    saved (bench/README.md).
    """

    def __init__(self, pings_dir: Path):
        self.pings_dir = pings_dir
        self.file: _LogFile | None = None  # replaced only under the pings lock

    def _current(self, roll_bytes: int) -> tuple[_LogFile, int]:
        """The file to append to and its size, opening or rolling over first if needed.

        The file is given up when it reached the roll size (every process sees
        that size, so a process that did not roll over itself finds the next
        file on its following ping) or when it was deleted. Called under the
        pings lock.
        """
        current = self.file
        if current is not None:
            st = os.fstat(current.fd)
            if st.st_size < roll_bytes and st.st_nlink > 0:
                return current, st.st_size
            self.file = None
        path = choose_append_file(self.pings_dir, "pings", ".tsv", roll_bytes)
        make_dirs_durable(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        current = _LogFile(path, fd)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path} is not a regular file")
        if st.st_size == 0:
            fsync_dir(path.parent)
        self.file = current
        return current, st.st_size

    def append(self, line: bytes, roll_bytes: int) -> _LogFile:
        """Write one line (under the pings lock); return the file it went to."""
        current, size = self._current(roll_bytes)
        try:
            write_all(current.fd, line)
        except OSError:
            os.ftruncate(current.fd, size)  # never leave half a line for the next ping to follow
            raise
        return current


_open_logs: PerProcess[_OpenLog] = PerProcess(_OpenLog)  # by pings folder


def record_ping(config: Config, ping: Ping) -> Path:
    """Append the ping to the current log file and return once it is on disk."""
    log = _open_logs.get(config.pings_dir)
    line = ping.tsv_line()
    with locked_hot(config.pings_lock):
        written_to = log.append(line, config.pings_roll_bytes)
    os.fsync(written_to.fd)  # the line is in this file's page cache; make it durable
    return written_to.path


def record_repairs(config: Config, ping: Ping, notes: list[str]) -> None:
    """Keep what was repaired in this ping for the dashboard (best effort: the ping is already recorded)."""
    what = "; ".join(notes).replace("\t", " ").replace("\n", " ")[:REPAIR_NOTE_MAX]
    line = f"{ping.ping_ts}\t{ping.unit_id}\t{what}\n".encode()
    try:
        with locked(config.locks_dir / "ping-repairs.lock"):
            append_durably(config.var_dir / REPAIRS_LOG, line)
    except OSError as exc:
        log.error("could not note the repaired ping of %s in %s: %s", ping.unit_id, REPAIRS_LOG, exc)
