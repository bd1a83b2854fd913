"""The pings TSV logs (var/pings/pings-NNNN.tsv) and the ping-repairs log, read from their tails."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .dash_files import lines_backwards, numbered_files
from .dash_text import parse_iso, printable_text

PINGS_FILE_RE = re.compile(r"pings-(\d{4,})\.tsv")

# How much of the pings log the dashboard reads to find units the database
# does not know yet (a fresh server, a failed insert): a day of pings of a
# few dozen units. /status/alive/recent reads exactly as far back as it needs.
PINGS_TAIL_BYTES = 256 * 1024


@dataclass(frozen=True)
class PingLine:
    ping_ts: str
    unit_id: str
    nickname: str | None
    rssi_raw: str | None
    rssi_dbm: str | None
    ber_raw: str | None

    @classmethod
    def parse(cls, raw: bytes) -> PingLine | None:
        fields = raw.decode("utf-8", errors="replace").split("\t")  # nicknames are UTF-8 (DATA-FORMATS.md)
        if len(fields) < 2 or parse_iso(fields[0]) is None or not fields[1]:
            return None
        fields += [None] * (6 - len(fields))
        values = [None if f in (None, "", "None") else f for f in fields[:6]]
        return cls(fields[0], fields[1], *values[2:6])


def recent_pings(pings_dir: Path, n: int, max_bytes: int | None = None) -> list[PingLine]:
    """The last `n` pings of the TSV logs, newest first (unparseable lines skipped)."""
    found: list[PingLine] = []
    budget = max_bytes
    for name in reversed(numbered_files(pings_dir, PINGS_FILE_RE)):
        path = pings_dir / name
        for raw in lines_backwards(path, budget):
            ping = PingLine.parse(raw)
            if ping is not None:
                found.append(ping)
                if len(found) >= n:
                    return found
        if budget is not None:
            try:
                budget -= os.lstat(path).st_size
            except OSError:
                pass
            if budget <= 0:
                break
    return found


def read_ping_repairs(log_path: Path) -> dict[str, tuple[datetime | None, str]]:
    """{hw_id: (ping time, what was repaired)} of each unit's last repaired ping (var/ping-repairs.tsv)."""
    repairs: dict[str, tuple[datetime | None, str]] = {}
    for raw in lines_backwards(log_path, PINGS_TAIL_BYTES):
        fields = raw.decode("utf-8", errors="replace").split("\t")
        if len(fields) >= 3 and fields[1] not in repairs:  # backwards: the newest wins
            repairs[fields[1]] = (parse_iso(fields[0]), printable_text(fields[2]))
    return repairs

