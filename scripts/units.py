"""Enroll units, list them, rotate and revoke their keys (the registry of src/co2server/registry.py).

  units.sh enroll <hw_id> [--nickname N] [--also-sync URL ...] [--publish]
  units.sh list
  units.sh rotate <hw_id>
  units.sh revoke <hw_id>

A key is shown once, when it is issued (enroll, rotate), inside the
`sync_dest` the unit needs; the registry keeps only its SHA-256. Safe while
the server runs: every change is made under the registry's lock and written
atomically; each uWSGI process reads the new file on its next request.

rotate issues a new key and publishes an update (as scripts/new-update.sh
does) whose conf-patch/ou-comm-config.json sets the unit's new sync_dest,
keeping the other servers it syncs to (--also-sync at enroll). The old key
keeps working until the unit has been seen with the new one, then retires.
enroll --publish does the same for a unit already in the field (the
migration from shared to per-unit keys: see the README).

Respects CO2_VAR_DIR, CO2_DATA_DIR, CO2_URL_KEY and CO2_PUBLIC_URL like the
server. Run it as the service's user.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from new_update import Payload, UpdateError, publish  # noqa: E402

from co2server.config import Config, ConfigError  # noqa: E402
from co2server.registry import (  # noqa: E402
    ACTIVE,
    CURRENT,
    PREVIOUS,
    RETIRED,
    REVOKED,
    KeyRecord,
    Registry,
    RegistryError,
    UnitRecord,
    key_hash,
    new_key,
    utc_stamp,
)


class UnitsError(Exception):
    """Something the operator must fix; nothing was changed."""


def server_url(config: Config, given: str | None) -> str:
    url = (given or config.public_url).rstrip("/")
    if not url.startswith("http://"):
        raise UnitsError("say how units reach this server: set CO2_PUBLIC_URL=http://host:8080 or pass --server-url")
    return url


def sync_dest(url: str, key: str, others: list[str]) -> list[str]:
    return [f"{url}/{key}", *others]


def publish_key(config: Config, hw_id: str, dest: list[str]) -> str:
    """Publish update-<UTC stamp>-key with conf-patch/ou-comm-config.json {"sync_dest": dest}; its folder name."""
    name = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-key"
    patch = json.dumps({"sync_dest": dest}, indent=1).encode() + b"\n"
    payload = Payload({"conf-patch/ou-comm-config.json": patch})
    plans = publish(config, hw_id, name, payload, allow_new=True)
    return plans[0].final.name


def enroll(config: Config, reg: Registry, args) -> str:
    config.hw_id_re.fullmatch(args.hw_id) or _fail(f"{args.hw_id!r} is not a hardware ID (CO2_HW_ID_PATTERN)")
    url = server_url(config, args.server_url)
    key = new_key()
    stamp = utc_stamp()

    def edit(units):
        if args.hw_id in units:
            raise UnitsError(f"{args.hw_id} is already enrolled; use rotate for a new key")
        keys = [KeyRecord(key_hash(key), CURRENT, stamp)]
        if config.url_key:  # a migration: the shared key stays accepted until the unit uses its own
            keys.append(KeyRecord(key_hash(config.url_key), PREVIOUS, stamp, note="shared CO2_URL_KEY"))
        units[args.hw_id] = UnitRecord(
            args.hw_id, args.nickname or "", ACTIVE, stamp, other_dests=list(args.also_sync), keys=keys
        )

    reg.change(edit)
    dest = sync_dest(url, key, list(args.also_sync))
    lines = [f"enrolled {args.hw_id}" + (f" ({args.nickname})" if args.nickname else "")]
    if args.publish:
        lines.append(f"published {publish_key(config, args.hw_id, dest)}: the unit takes its key on its next cycle")
    else:
        lines.append("put this into the unit's conf/ou-comm-config.json (shown once, not stored):")
    lines.append(json.dumps({"sync_dest": dest}))
    return "\n".join(lines)


def rotate(config: Config, reg: Registry, args) -> str:
    url = server_url(config, args.server_url)
    key = new_key()
    stamp = utc_stamp()

    def edit(units):
        unit = units.get(args.hw_id) or _fail(f"{args.hw_id} is not enrolled")
        if unit.state == REVOKED:
            raise UnitsError(f"{args.hw_id} is revoked; enroll it again after removing it from the registry")
        for k in unit.keys:
            if k.state == PREVIOUS:  # never seen with the last new key: that one becomes the fallback
                k.state, k.retired = RETIRED, stamp
        for k in unit.keys:
            if k.state == CURRENT:
                k.state = PREVIOUS
        unit.keys.append(KeyRecord(key_hash(key), CURRENT, stamp))
        return list(unit.other_dests)

    others = reg.change(edit)
    dest = sync_dest(url, key, others)
    folder = publish_key(config, args.hw_id, dest)
    return (
        f"rotated the key of {args.hw_id}; published {folder} with its new sync_dest "
        f"(the old key works until the unit is seen with the new one):\n{json.dumps({'sync_dest': dest})}"
    )


def revoke(config: Config, reg: Registry, args) -> str:
    def edit(units):
        unit = units.get(args.hw_id) or _fail(f"{args.hw_id} is not enrolled")
        unit.state, unit.revoked = REVOKED, utc_stamp()

    reg.change(edit)
    return f"revoked {args.hw_id}: its requests answer 404 from now on; its data stays"


def list_units(config: Config, reg: Registry, args) -> str:
    units = reg.units()
    if not units:
        return f"no units enrolled ({reg.path}); mode: {config.key_mode}"
    rows = [("hw_id", "nickname", "state", "keys", "last seen")]
    for hw_id in sorted(units):
        u = units[hw_id]
        keys = ", ".join(f"{k.note or 'key'} {k.state} {k.issued}" for k in u.keys if k.state != RETIRED)
        rows.append((hw_id, u.nickname or "-", u.state, keys or "-", u.last_seen or "never"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    out = ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4] for r in rows]
    return "\n".join([*out, f"mode: {config.key_mode}; {len(units)} units in {reg.path}"])


def _fail(message: str):
    raise UnitsError(message)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="units.sh",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("enroll", help="enroll a unit and show its sync_dest (once)")
    p.add_argument("hw_id")
    p.add_argument("--nickname", default="")
    p.add_argument(
        "--also-sync",
        action="append",
        default=[],
        metavar="URL",
        help="another server in the unit's sync_dest, kept when its key rotates; repeatable",
    )
    p.add_argument(
        "--publish", action="store_true", help="publish the new sync_dest as an update (a unit already in the field)"
    )
    p.add_argument("--server-url", help="this server as units reach it (default: CO2_PUBLIC_URL)")
    p.set_defaults(run=enroll)
    p = sub.add_parser("rotate", help="issue a new key and publish it to the unit as an update")
    p.add_argument("hw_id")
    p.add_argument("--server-url", help="this server as units reach it (default: CO2_PUBLIC_URL)")
    p.set_defaults(run=rotate)
    p = sub.add_parser("revoke", help="refuse every request of a unit from now on (its data stays)")
    p.add_argument("hw_id")
    p.set_defaults(run=revoke)
    p = sub.add_parser("list", help="list enrolled units and the states of their keys (never a key)")
    p.set_defaults(run=list_units)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config = Config.from_environ()
        print(args.run(config, Registry(config.var_dir), args))
        return 0
    except (UnitsError, UpdateError, ConfigError, RegistryError) as exc:
        print(f"units: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
