"""The alive-ping log of record: var/pings/pings-NNNN.tsv (DATA-FORMATS.md)."""

from __future__ import annotations

import os
import stat
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .per_process import PerProcess
from .seqfiles import choose_append_file, fsync_dir, locked_hot, make_dirs_durable


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


class _OpenLog:
    """This process's open pings log file, with group commit of its fsyncs.

    Every line is written under the cross-process pings lock. Making it
    durable happens after the lock: the first waiting thread becomes the
    leader and fsyncs once for every line written so far, the others wait for
    that (or the next) fsync. A ping is answered only after an fsync that
    began after its line was written has finished; under load one fsync
    serves many pings, which saves CPU (each fsync costs disk I/O
    notifications and thread wake-ups) without weakening that rule.
    """

    def __init__(self, pings_dir: Path):
        self.pings_dir = pings_dir
        self.path: Path | None = None
        self.fd = -1  # used only under the pings lock
        self.cond = threading.Condition()
        self.sync_fd = -1  # a duplicate of fd, for the leader; replaced under cond
        self.written = 0  # number of the last line written by this process
        self.synced = 0  # lines up to this number are on disk
        self.leader = False

    def current(self, roll_bytes: int) -> int:
        """The size of the file to append to, opening or rolling over first if needed.

        The file is given up when it reached the roll size (every process sees
        that size, so a process that did not roll over itself finds the next
        file on its following ping) or when it was deleted. Called under the
        pings lock.
        """
        if self.fd >= 0:
            st = os.fstat(self.fd)
            if st.st_size < roll_bytes and st.st_nlink > 0:
                return st.st_size
            os.fsync(self.fd)  # lines waiting for the leader are in this file
            with self.cond:
                self.synced = self.written
            os.close(self.fd)
            self.fd = -1
        path = choose_append_file(self.pings_dir, "pings", ".tsv", roll_bytes)
        make_dirs_durable(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise OSError(f"{path} is not a regular file")
        if st.st_size == 0:
            fsync_dir(path.parent)
        self.path, self.fd = path, fd
        with self.cond:
            if self.sync_fd >= 0:
                os.close(self.sync_fd)
            self.sync_fd = os.dup(fd)
        return st.st_size

    def append(self, line: bytes, roll_bytes: int) -> int:
        """Write one line (under the pings lock); return its number for wait_durable."""
        size = self.current(roll_bytes)
        try:
            written = os.write(self.fd, line)
            if written != len(line):
                raise OSError(f"short write to {self.path}: {written} of {len(line)} bytes")
        except OSError:
            os.ftruncate(self.fd, size)  # never leave half a line for the next ping to follow
            raise
        with self.cond:
            self.written += 1
            return self.written

    def wait_durable(self, number: int) -> None:
        """Return once line `number` is fsynced (leading an fsync if nobody is)."""
        with self.cond:
            while self.synced < number:
                if self.leader:
                    self.cond.wait()
                    continue
                self.leader = True
                target = self.written
                fd = os.dup(self.sync_fd)
                self.cond.release()
                try:
                    os.fsync(fd)
                finally:  # on failure, the exception goes to this ping; others try again
                    os.close(fd)
                    self.cond.acquire()
                    self.leader = False
                    self.cond.notify_all()
                self.synced = max(self.synced, target)


_open_logs: PerProcess[_OpenLog] = PerProcess(lambda folder: _OpenLog(Path(folder)))


def record_ping(pings_dir: Path, locks_dir: Path, ping: Ping, roll_bytes: int) -> Path:
    """Append the ping to the current log file and return once it is on disk."""
    log = _open_logs.get(str(pings_dir))
    with locked_hot(locks_dir / "pings.lock"):
        number = log.append(ping.tsv_line(), roll_bytes)
        path = log.path
    log.wait_durable(number)
    return path
