"""Publish a code or configuration update for one unit, or for every unit, atomically.

Builds remote_data/<hw_id>/updates/update-<name>/ with
  flash/<DEST>          files that replace files in the unit's flash
  conf-patch/<NAME>.json  JSON objects merged into the unit's configuration
as the firmware expects (PROTOCOL.md, "Pulling updates"). The unit installs
only the LAST update by plain sorted name, once; so the new folder must sort
after every entry already in that unit's updates/.

Each update is built under a hidden name inside updates/ (the server never
lists hidden names), fsynced, then renamed into place: a unit never sees a
half-written update. On any error nothing is left behind.

Run through scripts/new-update.sh (the venv's Python). Respects CO2_DATA_DIR
and CO2_HW_ID_PATTERN like the server. Run it as the service's user.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from co2server.config import Config, ConfigError  # noqa: E402
from co2server.safe_paths import NAME_RE  # noqa: E402
from co2server.seqfiles import fsync_dir  # noqa: E402
from co2server.unit_updates import UPDATE_PREFIX, complete_updates, files_below  # noqa: E402

EXAMPLES = """\
examples:
  scripts/new-update.sh co2unit-30aea42a50bc 20260105-fix-lte --flash build/main.py:main.py
  scripts/new-update.sh all 20260105-interval --conf-patch interval.json
  scripts/new-update.sh co2unit-30aea42a50bc 20260105-both \\
      --flash lib/comm.py:lib/comm.py --conf-patch ou-id.json --dry-run
"""
_UNSAFE_ENDINGS = ("~", ".tmp", ".part")


class UpdateError(Exception):
    """Something the operator must fix; nothing was written."""


@dataclass(frozen=True)
class Payload:
    """What goes into every update folder: {relative path: bytes}."""

    files: dict[str, bytes] = field(default_factory=dict)


def plain_name(text: str) -> bool:
    return bool(NAME_RE.fullmatch(text)) and not text.endswith(_UNSAFE_ENDINGS)


def folder_name(name: str) -> str:
    folder = name if name.startswith(UPDATE_PREFIX) else UPDATE_PREFIX + name
    if not plain_name(name) or not plain_name(folder):
        raise UpdateError(
            f"update name {name!r} is not a plain name: use letters, digits, '-', '_' and '.', "
            "not starting with a dot, e.g. 20260105-fix-lte"
        )
    return folder


def safe_dest(dest: str) -> str:
    parts = dest.split("/")
    if not dest or not all(plain_name(p) for p in parts):
        raise UpdateError(
            f"flash destination {dest!r} is not a safe relative path: plain names separated by '/', "
            "no '..', no leading '/' or '.', e.g. main.py or lib/comm.py"
        )
    return dest


def read_payload(flash: list[str], conf_patches: list[str]) -> Payload:
    files: dict[str, bytes] = {}

    def add(rel: str, data: bytes, source: str) -> None:
        if rel in files:
            raise UpdateError(f"{rel} is given twice (second time from {source})")
        files[rel] = data

    for spec in flash:
        source, sep, dest = spec.rpartition(":")
        if not sep:
            source, dest = spec, os.path.basename(spec)
        path = Path(source)
        if not path.is_file():
            raise UpdateError(f"--flash {spec}: {source!r} is not a readable file")
        add(f"flash/{safe_dest(dest)}", path.read_bytes(), source)
    for source in conf_patches:
        path = Path(source)
        name = path.name
        if not name.endswith(".json") or not plain_name(name):
            raise UpdateError(f"--conf-patch {source}: the file name must be a plain NAME.json")
        if not path.is_file():
            raise UpdateError(f"--conf-patch {source}: not a readable file")
        data = path.read_bytes()
        try:
            value = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UpdateError(f"--conf-patch {source}: not valid JSON ({exc}); nothing was written") from None
        if not isinstance(value, dict):
            raise UpdateError(
                f"--conf-patch {source}: holds a JSON {type(value).__name__}, but a configuration patch "
                "must be a JSON object ({{...}}); nothing was written"
            )
        add(f"conf-patch/{name}", data, source)
    if not files:
        raise UpdateError("an update needs at least one file: give --flash FILE:DEST and/or --conf-patch NAME.json")
    folders = {rel.rsplit("/", n)[0] for rel in files for n in range(1, rel.count("/") + 1)}
    clash = sorted(set(files) & folders)
    if clash:
        raise UpdateError(f"{clash[0]} is given as both a file and a folder; choose one")
    return Payload(files)


def target_units(config: Config, target: str, allow_new: bool) -> list[str]:
    data_dir = config.data_dir
    if target == "all":
        try:
            units = sorted(
                e.name for e in os.scandir(data_dir)
                if config.hw_id_re.fullmatch(e.name) and e.is_dir(follow_symlinks=False)
            )
        except FileNotFoundError:
            units = []
        if not units:
            raise UpdateError(f"'all': no unit folders under {data_dir} (CO2_DATA_DIR)")
        return units
    if not config.hw_id_re.fullmatch(target):
        raise UpdateError(f"{target!r} is neither 'all' nor a hardware ID matching {config.hw_id_pattern}")
    unit_dir = data_dir / target
    if unit_dir.is_symlink():
        raise UpdateError(f"{unit_dir} is a symbolic link; refusing to write through it")
    if not unit_dir.is_dir() and not allow_new:
        raise UpdateError(
            f"no folder {unit_dir}: this unit has never uploaded to this server (typo?). "
            "Use --new-unit to prepare an update for it anyway"
        )
    return [target]


def check_sorts_last(updates_dir: Path, folder: str, name: str) -> None:
    """The unit takes the last name by plain sort: the new one must come after all others."""
    if updates_dir.is_symlink():
        raise UpdateError(f"{updates_dir} is a symbolic link; refusing to write through it")
    try:
        existing = sorted(e.name for e in os.scandir(updates_dir) if not e.name.startswith("."))
    except FileNotFoundError:
        return
    if folder in existing:
        raise UpdateError(f"{updates_dir / folder} already exists; choose a new update name")
    blocking = [n for n in existing if n >= folder]
    if blocking:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
        suggestion = f"{stamp}-{name.removeprefix(UPDATE_PREFIX)}"
        hint = (f", e.g. {suggestion!r} (a date first keeps them in order)"
                if UPDATE_PREFIX + suggestion > blocking[-1] else f": it must sort after {blocking[-1]!r}")
        raise UpdateError(
            f"{folder!r} would not be the last entry of {updates_dir}: {blocking[-1]!r} sorts after it "
            f"(plain string sort), so the unit would never install it. Choose a name that sorts last{hint}"
        )


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def build_hidden(updates_dir: Path, folder: str, payload: Payload) -> Path:
    """Write the whole update under a hidden name, fsynced; return that folder."""
    tmp = updates_dir / f".tmp-{folder}-{os.getpid()}"
    os.mkdir(tmp, 0o755)  # fails on anything already there, a planted link too: never ours to remove
    try:
        for rel, data in sorted(payload.files.items()):
            _write_file(tmp / rel, data)
        for root, dirs, _files in os.walk(tmp, topdown=False):
            for d in dirs:
                fsync_dir(Path(root, d))
        fsync_dir(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


@dataclass
class Plan:
    hw_id: str
    updates_dir: Path
    final: Path
    created_updates_dir: bool = False
    tmp: Path | None = None
    published: bool = False


def publish(config: Config, target: str, name: str, payload: Payload, allow_new: bool) -> list[Plan]:
    """Check every unit first, then build all hidden folders, then rename them all into place."""
    folder = folder_name(name)
    plans = []
    for hw_id in target_units(config, target, allow_new):
        updates_dir = config.data_dir / hw_id / "updates"
        check_sorts_last(updates_dir, folder, name)
        plans.append(Plan(hw_id, updates_dir, updates_dir / folder))
    try:
        for plan in plans:
            if not plan.updates_dir.exists():
                plan.updates_dir.mkdir(parents=True, mode=0o755)
                plan.created_updates_dir = True
                fsync_dir(plan.updates_dir.parent)
            plan.tmp = build_hidden(plan.updates_dir, folder, payload)
        for plan in plans:
            if plan.final.exists():  # appeared meanwhile: rename would replace an empty dir
                raise UpdateError(f"{plan.final} appeared while building; nothing was published")
            os.rename(plan.tmp, plan.final)
            plan.published = True
            fsync_dir(plan.updates_dir)
    except BaseException:
        _undo(plans)
        raise
    return plans


def _undo(plans: list[Plan]) -> None:
    for plan in plans:
        if plan.published:  # only if a later rename failed: take it back before a unit asks
            os.rename(plan.final, plan.tmp)
        if plan.tmp is not None:
            shutil.rmtree(plan.tmp, ignore_errors=True)
        if plan.created_updates_dir:
            try:
                plan.updates_dir.rmdir()
            except OSError:
                pass


def describe(plans: list[Plan], dry_run: bool, payload: Payload, folder: str) -> str:
    lines = []
    for plan in plans:
        if dry_run:
            names = sorted([*(complete_updates(plan.updates_dir) if plan.updates_dir.is_dir() else []), folder])
            files = sorted(payload.files)
        else:
            names = complete_updates(plan.updates_dir)
            files = files_below(plan.final)
        lines.append(f"{plan.hw_id}: GET /ou/{plan.hw_id}/updates will answer {json.dumps(names)}")
        lines.append(f"  the unit installs {names[-1]} (the last by sorted name), once:")
        for rel in files:
            lines.append(f"    {rel} ({len(payload.files[rel])} bytes)")
    verb = "would publish" if dry_run else "published"
    lines.append(f"{verb} {folder} for {len(plans)} unit{'s' if len(plans) != 1 else ''}"
                 + (" (dry run: nothing written)" if dry_run else ""))
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="new-update.sh",
        description="\n\n".join(__doc__.split("\n\n")[:3]),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("target", help="a hardware ID (co2unit-...) or 'all' (every unit folder in CO2_DATA_DIR)")
    parser.add_argument("name", help="update name; the folder is update-<name>, and must sort last")
    parser.add_argument("--flash", action="append", default=[], metavar="FILE:DEST",
                        help="put FILE at flash/DEST (DEST relative, e.g. main.py or lib/comm.py); repeatable")
    parser.add_argument("--conf-patch", action="append", default=[], metavar="NAME.json",
                        help="put this JSON object file at conf-patch/NAME.json; repeatable")
    parser.add_argument("--new-unit", action="store_true",
                        help="allow a hardware ID that has no folder on this server yet")
    parser.add_argument("--dry-run", action="store_true", help="check and show what would be published; write nothing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config = Config.from_environ()
        payload = read_payload(args.flash, args.conf_patch)
        folder = folder_name(args.name)
        if args.dry_run:
            plans = []
            for hw_id in target_units(config, args.target, args.new_unit):
                updates_dir = config.data_dir / hw_id / "updates"
                check_sorts_last(updates_dir, folder, args.name)
                plans.append(Plan(hw_id, updates_dir, updates_dir / folder))
        else:
            plans = publish(config, args.target, args.name, payload, args.new_unit)
        print(describe(plans, args.dry_run, payload, folder))
        return 0
    except (UpdateError, ConfigError) as exc:
        print(f"new-update: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"new-update: error: {exc}; nothing was published", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
