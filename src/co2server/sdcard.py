"""Import a copy of a unit's SD card into its folder, beside what it uploaded.

A card brought back from the field holds `data/readings/`, `errors/` and
`conf/`. Its files go where the unit's uploads go, by the server's own rules
(safe_paths.push_target: only `errors/` and `data/<folder>/`, plain names),
each under the same per-folder lock a chunk takes (chunks.py), so the import is
safe while the server runs and the unit uploads. Per file:

- not on the server: added;
- the server's file is a prefix of the card's: the missing bytes appended
  (the unit's next upload is acknowledged from there, as after any chunk);
- the card's file is a prefix of the server's (or the same): nothing;
- it disagrees with bytes the server holds (a reformatted or replaced card):
  the server's bytes are never touched; the card's file is kept under
  `<unit>/superseded/<UTC time>/<folder>/`, where the server keeps a replaced
  card's files, so the dashboard shows "SD card replaced" and the pipeline
  imports it as an archived file. A copy kept there earlier is reused.

Everything written is fsynced, with its folders, before the summary is
printed; a second run adds nothing. Run through scripts/import-sd-card.sh.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import re
import stat
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .chunks import SUPERSEDED, superseded_stamp
from .config import Config, ConfigError
from .errors import ApiError
from .safe_paths import PushTarget, check_push_folder, push_target, refuse_symlinks
from .seqfiles import append_durably, fsync_dir, locked, make_dirs_durable

PROG = "import-sd-card.sh"
CONF_MAX_BYTES = 1 << 20  # configuration files are small; anything bigger is not read for the ID
EXAMPLES = """\
examples:
  scripts/import-sd-card.sh /media/card --dry-run
  scripts/import-sd-card.sh /media/card
  scripts/import-sd-card.sh ~/cards/varanger-03 --hw-id co2unit-30aea42a50bc
"""


class CardError(Exception):
    """Something the operator must fix before anything is imported; nothing was written."""


@dataclass
class Evidence:
    """What on the card names one hardware ID."""

    lines: int = 0
    conf_files: list[str] = field(default_factory=list)

    def describe(self) -> str:
        parts = [f"{self.lines} readings lines"] if self.lines else []
        parts += [f"named in {name}" for name in self.conf_files]
        return ", ".join(parts)


@dataclass
class Outcome:
    label: str  # "added", "appended", "unchanged", "kept aside", "refused", "skipped"
    rel: str
    detail: str
    added: int = 0  # bytes added to the unit's current folders
    kept: int = 0  # bytes written under superseded/


def card_files(card: Path) -> tuple[list[str], list[Outcome]]:
    """Relative paths of the card's regular files, sorted; and what was passed over (links, devices)."""
    files, passed = [], []
    for root, dirs, names in os.walk(card):
        dirs.sort()
        for name in list(dirs):
            rel = os.path.relpath(os.path.join(root, name), card)
            if os.path.islink(os.path.join(root, name)):
                dirs.remove(name)
                passed.append(Outcome("skipped", rel + "/", "a symbolic link on the card: not followed"))
        for name in sorted(names):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, card)
            mode = os.lstat(path).st_mode
            if stat.S_ISREG(mode):
                files.append(rel)
            else:
                kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
                passed.append(Outcome("skipped", rel, f"{kind} on the card"))
    return sorted(files), passed


def _id_finder(config: Config) -> re.Pattern[bytes]:
    return re.compile(rb"(?<![A-Za-z0-9_-])(?:" + config.hw_id_pattern.encode() + rb")(?![A-Za-z0-9_-])")


def find_units(config: Config, card: Path, files: list[str]) -> dict[str, Evidence]:
    """Hardware IDs the card names: first field of its readings lines, and anywhere in conf/."""
    found: dict[str, Evidence] = {}
    finder = _id_finder(config)
    for rel in files:
        parts = rel.split(os.sep)
        if parts[:2] == ["data", "readings"]:
            counts = Counter(line.split(b"\t", 1)[0] for line in (card / rel).read_bytes().splitlines())
            for first, count in counts.items():
                hw_id = first.decode("ascii", "replace")
                if config.hw_id_re.fullmatch(hw_id):
                    found.setdefault(hw_id, Evidence()).lines += count
        elif parts[0] == "conf" and (card / rel).stat().st_size <= CONF_MAX_BYTES:
            for hw_id in sorted({m.decode() for m in finder.findall((card / rel).read_bytes())}):
                found.setdefault(hw_id, Evidence()).conf_files.append(rel)
    return found


def choose_unit(config: Config, found: dict[str, Evidence], hw_id: str | None) -> str:
    """The unit the card belongs to, or a CardError saying how to tell."""
    named = "; ".join(f"{unit} ({evidence.describe()})" for unit, evidence in sorted(found.items()))
    if hw_id is not None:
        if not config.hw_id_re.fullmatch(hw_id):
            raise CardError(f"--hw-id {hw_id!r} does not match the pattern {config.hw_id_pattern}")
        if found and hw_id not in found:
            raise CardError(f"the card does not name {hw_id}: it names {named}. Check the card and the ID")
        return hw_id
    if len(found) == 1:
        return next(iter(found))
    if not found:
        raise CardError("no readings line or conf/ file on the card names a unit; give --hw-id co2unit-...")
    raise CardError(f"the card names {len(found)} units: {named}. Say which it is with --hw-id")


def check_owner(config: Config) -> None:
    """Run as the owner of the data and var folders: the server must append to what this adds, and
    open the lock files it creates (var/locks/), or the unit would be refused from then on."""
    for folder in (config.data_dir, config.var_dir):
        try:
            owner = folder.stat().st_uid
        except FileNotFoundError:
            continue
        if owner != os.geteuid():
            try:
                name = pwd.getpwuid(owner).pw_name
            except KeyError:
                name = str(owner)
            raise CardError(f"{folder} belongs to {name}: run this as that user (sudo -u {name} ...), "
                            "so that the server can go on writing where this writes")


def read_held(path: str) -> bytes | None:
    """The server's bytes of `path` (None: no such file), never through a link."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if os.path.islink(path):
            raise ApiError(403, "SYMLINK_REFUSED", "a symbolic link on the server: not written through") from exc
        raise
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ApiError(403, "NOT_A_FILE", "not a regular file on the server")
        return f.read()


def first_difference(a: bytes, b: bytes) -> int:
    return next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)


def create_durably(path: str, data: bytes) -> None:
    """A new file holding `data`, fsynced with its folder: never over a file or through a link, and
    removed again if it cannot be written whole."""
    make_dirs_durable(Path(path).parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)
    fsync_dir(os.path.dirname(path))


class KeptAside:
    """Where this run keeps the card's disagreeing files: one new <unit>/superseded/<UTC time>/."""

    def __init__(self, unit_dir: str, dry_run: bool):
        self.unit_dir = unit_dir
        self.dry_run = dry_run
        self.stamp: str | None = None

    def keep(self, target: PushTarget, rel: str, data: bytes, why: str) -> Outcome:
        folder = "/".join(target.folder)
        verb = "would be" if self.dry_run else "is"
        for stamp in self._stamps():
            copy = f"{SUPERSEDED}/{stamp}/{folder}/{target.name}"
            held = read_held(f"{self.unit_dir}/{copy}")
            if held is not None and held.startswith(data):
                more = "" if held == data else f" (with more: {len(held)} bytes)"
                return Outcome("unchanged", rel, f"{why}; already kept aside as {copy}{more}")
            if held is not None and data.startswith(held):
                if not self.dry_run:
                    append_durably(Path(self.unit_dir, copy), data[len(held):])
                return Outcome("kept aside", rel, f"{why}; {len(data) - len(held)} bytes {verb} appended to "
                               f"its copy kept as {copy}", kept=len(data) - len(held))
        if self.stamp is None:
            self.stamp = superseded_stamp()
        copy = f"{SUPERSEDED}/{self.stamp}/{folder}/{target.name}"
        if not self.dry_run:
            refuse_symlinks(self.unit_dir, [SUPERSEDED, self.stamp, *target.folder])
            create_durably(f"{self.unit_dir}/{copy}", data)
        return Outcome("kept aside", rel, f"{why}; the card's copy {verb} kept as {copy}, the server's "
                       "file left as it is", kept=len(data))

    def _stamps(self) -> list[str]:
        try:
            entries = os.scandir(f"{self.unit_dir}/{SUPERSEDED}")
        except (FileNotFoundError, NotADirectoryError):
            return []
        with entries:
            return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))


def import_file(config: Config, target: PushTarget, rel: str, data: bytes, kept: KeptAside) -> Outcome:
    """One card file against the server's, under its folder's lock (dry run: without it, writing nothing)."""
    dry_run = kept.dry_run
    if len(data) > config.max_file_bytes:
        return Outcome("refused", rel, f"{len(data)} bytes, over the {config.max_file_bytes} a file may hold "
                       "(CO2_MAX_FILE_BYTES)")
    held = read_held(target.file_path)
    if held is None:
        if not data:
            return Outcome("unchanged", rel, "empty on the card")
        if not dry_run:
            create_durably(target.file_path, data)
        return Outcome("added", rel, f"new file, {len(data)} bytes", added=len(data))
    if data.startswith(held):
        if len(data) == len(held):
            return Outcome("unchanged", rel, f"the server holds all {len(held)} bytes")
        if not dry_run:
            append_durably(Path(target.file_path), data[len(held):])
        return Outcome("appended", rel, f"+{len(data) - len(held)} bytes after the server's {len(held)}",
                       added=len(data) - len(held))
    if held.startswith(data):
        return Outcome("unchanged", rel, f"the server holds more: {len(held)} bytes, the card {len(data)}")
    at = first_difference(held, data)
    return kept.keep(target, rel, data, f"differs from the server's {len(held)} bytes at byte {at}")


def import_folder(config: Config, card: Path, files: list[tuple[str, PushTarget]], kept: KeptAside) -> list[Outcome]:
    """The card's files of one upload folder, each under that folder's lock (held for one file at a
    time: the unit's chunks for the folder wait no longer than that)."""
    outcomes = []
    for rel, target in files:
        with contextlib.nullcontext() if kept.dry_run else locked(target.lock_path):
            try:
                check_push_folder(target)
                outcomes.append(import_file(config, target, rel, (card / rel).read_bytes(), kept))
            except ApiError as exc:
                outcomes.append(Outcome("refused", rel, exc.message))
            except OSError as exc:
                outcomes.append(Outcome("refused", rel, f"could not be written: {exc}"))
    return outcomes


def import_card(config: Config, card: Path, hw_id: str | None, dry_run: bool) -> tuple[str, str, list[Outcome]]:
    """Import the card; returns (unit, how it was told, per-file outcomes)."""
    if not card.is_dir():
        raise CardError(f"{card} is not a folder (give the folder that holds the card's data/, errors/, conf/)")
    files, outcomes = card_files(card)
    found = find_units(config, card, files)
    unit = choose_unit(config, found, hw_id)
    if not dry_run:
        check_owner(config)
    folders: dict[tuple[str, ...], list[tuple[str, PushTarget]]] = {}
    for rel in files:
        try:
            target = push_target(config, unit, rel.replace(os.sep, "/"))
        except ApiError as exc:
            reason = "configuration: read for the hardware ID, not imported" if rel.startswith("conf" + os.sep) \
                else exc.message
            outcomes.append(Outcome("skipped", rel, reason))
            continue
        folders.setdefault(target.folder, []).append((rel, target))
    kept = KeptAside(f"{config.data_dir}/{unit}", dry_run)
    for folder in sorted(folders):
        outcomes.extend(import_folder(config, card, folders[folder], kept))
    told = found[unit].describe() if unit in found else "given with --hw-id; the card names no unit"
    return unit, told, outcomes


_DRY_LABELS = {"added": "would add", "appended": "would append", "kept aside": "would keep aside"}
_SHOWN_LABELS = {"kept aside": "KEPT ASIDE"}


def report(card: Path, unit: str, told: str, outcomes: list[Outcome], dry_run: bool) -> str:
    lines = [f"card {card} is unit {unit} ({told})"]
    order = ["added", "appended", "kept aside", "unchanged", "refused", "skipped"]
    for outcome in sorted(outcomes, key=lambda o: (order.index(o.label), o.rel)):
        label = (_DRY_LABELS if dry_run else _SHOWN_LABELS).get(outcome.label, outcome.label)
        lines.append(f"  {label:<16} {outcome.rel}: {outcome.detail}")
    count = Counter(o.label for o in outcomes)
    if count["kept aside"]:
        lines.append(f"  The card disagrees with what the server holds for {unit}: its files are kept under "
                     f"{unit}/{SUPERSEDED}/ (the dashboard shows \"SD card replaced\", the pipeline imports them); "
                     "nothing the server held was changed.")
    files = "file" if count["added"] == 1 else "files"
    lines.append(
        f"summary: {count['added']} {files} added, {count['appended']} appended, {count['kept aside']} kept aside, "
        f"{count['unchanged']} unchanged, {count['refused']} refused, {count['skipped']} skipped; "
        f"{sum(o.added for o in outcomes)} bytes added, {sum(o.kept for o in outcomes)} bytes kept aside"
        + (" (dry run: nothing written)" if dry_run else "")
    )
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="\n\n".join(__doc__.split("\n\n")[:3]),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("card", type=Path, metavar="CARD_DIR", help="the copy of the card: the folder holding data/, errors/, conf/")
    parser.add_argument("--hw-id", metavar="ID", help="the unit, when the card names several (or none); must be one it names")
    parser.add_argument("--dry-run", action="store_true", help="show what would happen; write nothing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config = Config.from_environ()
        unit, told, outcomes = import_card(config, args.card, args.hw_id, args.dry_run)
    except (CardError, ConfigError) as exc:
        print(f"import-sd-card: error: {exc}; nothing was imported", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"import-sd-card: error: {exc}", file=sys.stderr)
        return 1
    print(report(args.card, unit, told, outcomes, args.dry_run))
    return 1 if any(o.label == "refused" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
