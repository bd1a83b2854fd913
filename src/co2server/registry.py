"""The registry of enrolled units: `<var dir>/units.json`, one entry per hardware ID.

Each entry holds the unit's nickname, its state (`active` or `revoked`) and
its keys: never a key itself, only its SHA-256 (keys are 192-bit random
tokens, so a plain hash is as good as a slow one), with the key's state:

- `current`: the key the unit was last given (enroll, rotate);
- `previous`: the key it had before (or the shared `CO2_URL_KEY` when it was
  enrolled during a migration); still accepted until the unit has been seen
  with its current key, then `retired` by itself;
- `retired`: kept for the record, never accepted.

The file is small JSON, written whole (temp file, fsync, rename, fsync of the
folder) under `<var dir>/locks/units.lock`, by the operator scripts and by
the server (a retiring key, a unit's last-seen time). Every uWSGI process
reads it afresh when its identity or mtime changes, so changes take effect at
once without a restart; it never touches the database, so it works while the
database is locked or broken.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .seqfiles import fsync_dir, locked

ACTIVE, REVOKED = "active", "revoked"
CURRENT, PREVIOUS, RETIRED = "current", "previous", "retired"
KEY_BYTES = 24  # 192 bits, 32 URL-safe characters


def new_key() -> str:
    return secrets.token_urlsafe(KEY_BYTES)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def utc_stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class KeyRecord:
    sha256: str
    state: str
    issued: str
    last_seen: str | None = None
    retired: str | None = None
    note: str = ""  # "shared" for the shared CO2_URL_KEY during a migration


@dataclass
class UnitRecord:
    hw_id: str
    nickname: str = ""
    state: str = ACTIVE
    enrolled: str = ""
    last_seen: str | None = None
    revoked: str | None = None
    # The other servers in the unit's sync_dest, kept when its key rotates.
    other_dests: list[str] = field(default_factory=list)
    keys: list[KeyRecord] = field(default_factory=list)

    def accepted(self) -> list[KeyRecord]:
        return [k for k in self.keys if k.state in (CURRENT, PREVIOUS)] if self.state == ACTIVE else []

    def matching(self, key: str) -> KeyRecord | None:
        """The accepted key record `key` belongs to (constant time per record), or None."""
        given = key_hash(key)
        found = None
        for record in self.accepted():
            if hmac.compare_digest(given, record.sha256):
                found = record
        return found

    def current(self) -> KeyRecord | None:
        return next((k for k in self.keys if k.state == CURRENT), None)


def _unit_from_json(hw_id: str, raw: dict) -> UnitRecord:
    keys = [KeyRecord(**k) for k in raw.get("keys", [])]
    fields = {k: v for k, v in raw.items() if k not in ("keys", "hw_id")}
    return UnitRecord(hw_id=hw_id, keys=keys, **fields)


class RegistryError(Exception):
    """The registry file cannot be read or does not hold what it should."""


class Registry:
    """The registry file of one var dir: read (cached per process) and changed under its lock."""

    def __init__(self, var_dir: Path):
        self.path = Path(var_dir) / "units.json"
        self.lock_path = Path(var_dir) / "locks" / "units.lock"
        self._seen: tuple | None = None
        self._units: dict[str, UnitRecord] = {}
        self._read_lock = threading.Lock()

    # -- reading -----------------------------------------------------------

    def _signature(self) -> tuple | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)

    def _read_file(self) -> dict[str, UnitRecord]:
        try:
            with open(self.path, encoding="utf-8") as f:
                raw = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise RegistryError(f"cannot read {self.path}: {exc}") from None
        try:
            return {hw: _unit_from_json(hw, entry) for hw, entry in raw["units"].items()}
        except (KeyError, TypeError, AttributeError) as exc:
            raise RegistryError(f"{self.path} is not a registry of units: {exc!r}") from None

    def units(self) -> dict[str, UnitRecord]:
        """hw_id -> record, as the file holds them now (read again only when it changed)."""
        signature = self._signature()
        if signature != self._seen:
            with self._read_lock:
                if signature != self._seen:
                    self._units = self._read_file()
                    self._seen = signature
        return self._units

    def get(self, hw_id: str) -> UnitRecord | None:
        return self.units().get(hw_id)

    # -- changing ----------------------------------------------------------

    def change(self, edit) -> object:
        """Run `edit(units)` on a fresh read under the lock and write the result; returns what edit returns."""
        with locked(self.lock_path):
            units = self._read_file()
            result = edit(units)
            self._write(units)
            return result

    def _write(self, units: dict[str, UnitRecord]) -> None:
        payload = {"version": 1, "units": {}}
        for hw_id in sorted(units):
            entry = asdict(units[hw_id])
            del entry["hw_id"]
            payload["units"][hw_id] = entry
        data = (json.dumps(payload, indent=1, sort_keys=True) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".units.json.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
        try:
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(self.path.parent)
