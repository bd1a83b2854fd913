"""Who may use the unit API under which key: the three modes (CO2_KEY_MODE).

- `open`: units call `/ou/<hw_id>/...`, no key (the quick start's default).
- `shared`: every unit calls `/<CO2_URL_KEY>/ou/<hw_id>/...`; an enrolled
  unit may also use its own key (so a migration can hand out keys before the
  mode changes), and a revoked unit is refused whatever its key.
- `per-unit`: each enrolled unit only under one of its accepted keys
  (registry.py); the shared key only for a unit enrolled during a migration,
  until it has been seen with its own.

A refused request gets exactly the 404 of a path that does not exist (it
tells nothing about which units exist), writes nothing, and is logged with
the client address and the reason, never the key.
"""

from __future__ import annotations

import hmac
import time
from datetime import UTC, datetime, timedelta

from flask import request

from .errors import ApiError, log, scrub
from .registry import CURRENT, PREVIOUS, RETIRED, REVOKED, Registry, RegistryError, UnitRecord, utc_stamp

MODES = ("open", "shared", "per-unit")
# A unit's last-seen time in the registry is refreshed at most this often.
SEEN_EVERY = timedelta(minutes=10)

_registries: dict[str, Registry] = {}


def registry_for(var_dir) -> Registry:
    """This process's Registry of `var_dir` (it caches the file between requests)."""
    key = str(var_dir)
    reg = _registries.get(key)
    if reg is None:
        reg = _registries[key] = Registry(var_dir)
    return reg


def _refuse(reason: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"no such resource: {scrub(request.path)[:200]}", log_reason=reason)


def authorize(cfg, key: str | None, hw_id: str | None) -> None:
    """Raise the refusal unless `key` may act for `hw_id` in the configured mode."""
    if cfg.key_mode == "open":
        return
    try:
        entry = registry_for(cfg.var_dir).get(hw_id or "")
    except RegistryError as exc:
        log.error("unit keys: %s; unit requests are refused until it is fixed", exc)
        raise ApiError(503, "REGISTRY_UNREADABLE", "the server cannot check unit keys now; see its log") from None
    if entry is not None and entry.state == REVOKED:
        raise _refuse("unit revoked")
    if cfg.key_mode == "shared" and hmac.compare_digest((key or "").encode(), cfg.url_key.encode()):
        return
    if entry is None:
        raise _refuse("unit not enrolled" if cfg.key_mode == "per-unit" else "wrong key")
    record = entry.matching(key or "")
    if record is None:
        raise _refuse("key is not one of this unit's")
    _note_seen(cfg, entry, record.sha256)


# (hw_id, key hash) -> time.monotonic() when this process last found its last-seen time fresh.
_fresh: dict[tuple[str, str], float] = {}


def _needs_write(entry: UnitRecord, sha256: str) -> bool:
    record = next(k for k in entry.keys if k.sha256 == sha256)
    if record.state == CURRENT and any(k.state == PREVIOUS for k in entry.keys):
        return True
    mark = (entry.hw_id, sha256)
    now = time.monotonic()
    if now - _fresh.get(mark, -1e18) < SEEN_EVERY.total_seconds():
        return False
    if record.last_seen is None:
        return True
    age = datetime.now(UTC) - datetime.strptime(record.last_seen, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    if age >= SEEN_EVERY:
        return True
    if len(_fresh) > 100_000:
        _fresh.clear()
    _fresh[mark] = now - age.total_seconds()  # when the registry's time was written, on this clock
    return False


def _note_seen(cfg, entry: UnitRecord, sha256: str) -> None:
    """Record that the unit was seen with this key; seen with its current key, its previous ones retire."""
    if not _needs_write(entry, sha256):
        return
    hw_id = entry.hw_id

    def edit(units):
        unit = units.get(hw_id)
        if unit is None:
            return []
        stamp = utc_stamp()
        unit.last_seen = stamp
        retired = []
        for k in unit.keys:
            if k.sha256 == sha256:
                k.last_seen = stamp
        if any(k.sha256 == sha256 and k.state == CURRENT for k in unit.keys):
            for k in unit.keys:
                if k.state == PREVIOUS:
                    k.state, k.retired = RETIRED, stamp
                    retired.append(k.note or "previous key")
        return retired

    try:
        retired = registry_for(cfg.var_dir).change(edit)
    except (OSError, RegistryError) as exc:  # the request itself is fine: serve it
        log.error("unit keys: cannot record unit=%s as seen: %s", hw_id, exc)
        return
    for what in retired:
        log.warning(
            "unit keys: unit=%s seen with its new key from %s; its %s is retired", hw_id, request.remote_addr, what
        )


def describe_mode(cfg) -> str:
    """One line for the start-up log and /healthz: the mode, and how many units are enrolled."""
    if cfg.key_mode == "open":
        return "open mode: /ou/<hw_id>/..., no key (set CO2_KEY_MODE for keys)"
    try:
        units = registry_for(cfg.var_dir).units()
        enrolled = f"{sum(u.state != REVOKED for u in units.values())} units enrolled"
    except RegistryError as exc:
        enrolled = f"registry unreadable: {exc}"
    if cfg.key_mode == "shared":
        return f"shared mode: /<CO2_URL_KEY>/ou/<hw_id>/... (and enrolled units' own keys); {enrolled}"
    return f"per-unit mode: /<the unit's key>/ou/<hw_id>/..., enrolled units only; {enrolled}"
