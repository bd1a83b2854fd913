"""The alive-ping log of record: var/pings/pings-NNNN.tsv (DATA-FORMATS.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .seqfiles import append_durably, choose_append_file, locked


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


def record_ping(pings_dir: Path, locks_dir: Path, ping: Ping, roll_bytes: int) -> Path:
    """Append the ping to the current log file, durably; return that file."""
    with locked(locks_dir / "pings.lock"):
        path = choose_append_file(pings_dir, "pings", ".tsv", roll_bytes)
        append_durably(path, ping.tsv_line())
    return path
