"""Every setting of the server: its environment variable, its default.

The README's "Configure" section lists the same table; tests/test_docs.py
fails when the two disagree. Nothing is read at import time: call
`Config.from_environ()` (the app factory does) or build a `Config` directly.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]

DEFAULT_HW_ID_PATTERN = r"co2unit-[0-9a-f]{12}"


class ConfigError(ValueError):
    """A setting in the environment has a value the server cannot use."""


@dataclass(frozen=True)
class Setting:
    env: str
    default: str
    help: str


# The one table of settings. Paths that are relative are taken relative to the
# checkout, so the defaults keep all data under it.
SETTINGS = {
    "data_dir": Setting("CO2_DATA_DIR", "remote_data", "what units upload, one folder per hardware ID"),
    "var_dir": Setting("CO2_VAR_DIR", "var", "pings logs (var/pings), locks, rendered pages (var/pub)"),
    "db_path": Setting("CO2_DB_PATH", "", "SQLite database; empty means <var dir>/db.sqlite3"),
    "hw_id_pattern": Setting("CO2_HW_ID_PATTERN", DEFAULT_HW_ID_PATTERN, "regular expression a hardware ID must match in full"),
    "max_chunk_bytes": Setting("CO2_MAX_CHUNK_BYTES", "65536", "largest body of one upload request (413 above)"),
    "max_file_bytes": Setting("CO2_MAX_FILE_BYTES", "16777216", "largest size one uploaded file may grow to (413 above)"),
    "url_key": Setting("CO2_URL_KEY", "", "optional path prefix: units then use http://host:8080/<key>"),
    "key_mode": Setting("CO2_KEY_MODE", "", "open, shared or per-unit; empty: shared when CO2_URL_KEY is set, else open"),
    "public_url": Setting("CO2_PUBLIC_URL", "", "the units' address of this server (http://host:8080), for scripts/units.sh"),
    "unit_max_bytes": Setting("CO2_UNIT_MAX_BYTES", "1073741824", "most bytes one unit's folders may hold (403 UNIT_QUOTA_BYTES above)"),
    "unit_max_files": Setting("CO2_UNIT_MAX_FILES", "20000", "most files one unit's folders may hold (403 UNIT_QUOTA_FILES above)"),
    "silent_hours": Setting("CO2_SILENT_HOURS", "26", "a unit not heard for this many hours is marked silent"),
    "min_free_mb": Setting("CO2_MIN_FREE_MB", "100", "/healthz answers 503 when the data or var disk has less free space (MiB)"),
}


def _int_setting(name: str, raw: str, minimum: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{SETTINGS[name].env}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{SETTINGS[name].env}={value} must be at least {minimum}")
    return value


def _float_setting(name: str, raw: str, minimum: float | None = None, what: str = "number of hours") -> float:
    """A number above 0 (or at least `minimum` when given)."""
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{SETTINGS[name].env}={raw!r} is not a number") from None
    if not (value >= minimum if minimum is not None else value > 0):
        raise ConfigError(f"{SETTINGS[name].env}={raw!r} must be a {'non-negative' if minimum == 0 else 'positive'} {what}")
    return value


def _path_setting(raw: str) -> Path:
    path = Path(raw).expanduser()
    return path if path.is_absolute() else CHECKOUT / path


@dataclass(frozen=True)
class Config:
    data_dir: Path
    var_dir: Path
    db_path: Path
    hw_id_pattern: str = DEFAULT_HW_ID_PATTERN
    max_chunk_bytes: int = 64 * 1024
    max_file_bytes: int = 16 * 1024 * 1024
    url_key: str = ""
    key_mode: str = "open"
    public_url: str = ""
    unit_max_bytes: int = 1 << 30
    unit_max_files: int = 20000
    silent_hours: float = 26.0
    min_free_mb: float = 100.0
    # Not settings but fixed by the formats (DATA-FORMATS.md).
    pings_roll_bytes: int = field(default=100 * 1024)

    # Derived paths and the compiled pattern, made once: requests use them all the time.
    @cached_property
    def pings_dir(self) -> Path:
        return self.var_dir / "pings"

    @cached_property
    def pub_dir(self) -> Path:
        return self.var_dir / "pub"

    @cached_property
    def locks_dir(self) -> Path:
        return self.var_dir / "locks"

    @cached_property
    def pings_lock(self) -> str:
        return str(self.locks_dir / "pings.lock")

    @cached_property
    def update_fetches_log(self) -> Path:
        return self.var_dir / "update-fetches.tsv"

    @cached_property
    def hw_id_re(self) -> re.Pattern[str]:
        return re.compile(self.hw_id_pattern)

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> Config:
        env = os.environ if environ is None else environ

        def raw(name: str) -> str:
            return env.get(SETTINGS[name].env, SETTINGS[name].default).strip()

        var_dir = _path_setting(raw("var_dir"))
        db_raw = raw("db_path")
        pattern = raw("hw_id_pattern")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"CO2_HW_ID_PATTERN={pattern!r} is not a valid regular expression: {exc}") from None
        key = raw("url_key").strip("/")
        if key and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", key):
            raise ConfigError("CO2_URL_KEY may hold only letters, digits, '-' and '_' (1 to 64)")
        if key == "ou":
            raise ConfigError("CO2_URL_KEY must not be 'ou' (it would shadow the unit API)")
        mode = raw("key_mode") or ("shared" if key else "open")
        if mode not in ("open", "shared", "per-unit"):
            raise ConfigError(f"CO2_KEY_MODE={mode!r} must be open, shared or per-unit")
        if mode == "shared" and not key:
            raise ConfigError("CO2_KEY_MODE=shared needs CO2_URL_KEY, the key every unit uses")
        if mode == "open" and key:
            raise ConfigError("CO2_KEY_MODE=open takes no CO2_URL_KEY: unset it, or use shared or per-unit")
        public_url = raw("public_url").rstrip("/")
        if public_url and not re.fullmatch(r"http://[^/\s?#]+", public_url):
            raise ConfigError(f"CO2_PUBLIC_URL={public_url!r} must be http://host[:port] (the firmware speaks plain HTTP)")
        return cls(
            data_dir=_path_setting(raw("data_dir")),
            var_dir=var_dir,
            db_path=_path_setting(db_raw) if db_raw else var_dir / "db.sqlite3",
            hw_id_pattern=pattern,
            max_chunk_bytes=_int_setting("max_chunk_bytes", raw("max_chunk_bytes"), 1),
            max_file_bytes=_int_setting("max_file_bytes", raw("max_file_bytes"), 1),
            url_key=key,
            key_mode=mode,
            public_url=public_url,
            unit_max_bytes=_int_setting("unit_max_bytes", raw("unit_max_bytes"), 1),
            unit_max_files=_int_setting("unit_max_files", raw("unit_max_files"), 1),
            silent_hours=_float_setting("silent_hours", raw("silent_hours")),
            min_free_mb=_float_setting("min_free_mb", raw("min_free_mb"), minimum=0.0, what="number of MiB"),
        )
