"""The alive-ping log of record: var/pings/pings-NNNN.tsv (DATA-FORMATS.md)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .seqfiles import choose_append_file, fsync_dir, locked_hot, make_dirs_durable

# This process's open log file: pings_dir -> (pid, path, fd). Used only under the hot lock.
_open_logs: dict[str, tuple[int, Path, int]] = {}


@dataclass(frozen=True)
class Ping:
    ping_ts: str
    unit_id: str
    nickname: str | None
    rssi_raw: int | None
    rssi_dbm: int | None
    ber_raw: int | None

    @classmethod
    def arriving_now(cls, unit_id, nickname, rssi_raw, rssi_dbm, ber_raw) -> Ping:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
        return cls(now, unit_id, nickname, rssi_raw, rssi_dbm, ber_raw)

    def tsv_line(self) -> bytes:
        fields = (self.ping_ts, self.unit_id, self.nickname, self.rssi_raw, self.rssi_dbm, self.ber_raw)
        return ("\t".join("None" if f is None else str(f) for f in fields) + "\n").encode("ascii")

    def db_row(self) -> tuple:
        date, _, time = self.ping_ts.partition("T")
        return (self.ping_ts, date, time, self.unit_id, self.nickname, self.rssi_raw, self.rssi_dbm, self.ber_raw)


def _current_log(pings_dir: Path, roll_bytes: int) -> tuple[Path, int, int]:
    """The log file to append to, its descriptor, and its size (0: a new file).

    The descriptor stays open between pings. It is given up when the file
    reached the roll size (every process sees that size, so a process that
    did not roll over itself finds the next file on its following ping), or
    when the file was deleted.
    """
    key = str(pings_dir)
    pid = os.getpid()
    cached = _open_logs.get(key)
    if cached is not None and cached[0] == pid:
        _, path, fd = cached
        st = os.fstat(fd)
        if st.st_size < roll_bytes and st.st_nlink > 0:
            return path, fd, st.st_size
        os.close(fd)
        del _open_logs[key]
    path = choose_append_file(pings_dir, "pings", ".tsv", roll_bytes)
    make_dirs_durable(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise OSError(f"{path} is not a regular file")
    _open_logs[key] = (pid, path, fd)
    return path, fd, st.st_size


def record_ping(pings_dir: Path, locks_dir: Path, ping: Ping, roll_bytes: int) -> Path:
    """Append the ping to the current log file, durably; return that file.

    Only choosing the file and the write are under the lock; the fsync comes
    after it (on a duplicate descriptor, which no other thread can close), so
    pings arriving together share the disk's journal commit. Either way the
    line is on disk before the caller answers 200.
    """
    line = ping.tsv_line()
    with locked_hot(locks_dir / "pings.lock"):
        path, fd, size = _current_log(pings_dir, roll_bytes)
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(f"short write to {path}: {written} of {len(line)} bytes")
        except OSError:
            os.ftruncate(fd, size)  # never leave half a line for the next ping to follow
            raise
        sync_fd = os.dup(fd)
    try:
        os.fsync(sync_fd)
    finally:
        os.close(sync_fd)
    if size == 0:
        fsync_dir(path.parent)
    return path
