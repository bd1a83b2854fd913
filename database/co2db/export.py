"""make export: the research dataset (DATA-FORMATS.md, "The research dataset
(export)") in EXPORT_DIR: CSV files, a Parquet dataset, daily summaries and
datapackage.json.

Incremental, and never half-written:
- datapackage.json keeps what the export was made of: a hash of this code
  and of the deployments table (`co2db:base`), and the readings' version
  (`co2db:readings`: the database's generation, its count of edits to
  co2_readings and the last rowid; schema.sql's co2_readings_edits). When
  nothing of it changed, the run ends there (nothing is read or written);
- when only rows were added (same base, generation and edits), the run
  appends (export_append.py): it reads the added rows only and rewrites only
  the files and partitions they fall in;
- otherwise the whole export is built afresh (export_build.py); every file
  whose bytes equal the previous export's is then replaced by a hard link
  to it (it keeps its bytes and mtime);
- either way the files are written into a staging folder beside EXPORT_DIR
  (.<name>.staging), unchanged files hard-linked into it, and the staging
  folder and EXPORT_DIR swapped in one atomic rename(RENAME_EXCHANGE) (two
  renames where the kernel lacks it) and the old one removed. A run that
  fails before the swap leaves EXPORT_DIR as it was: files and
  datapackage.json always agree. EXPORT_DIR is a real folder, never a
  symlink (refused: the server does not follow them). Two runs into one
  EXPORT_DIR go one after the other (flock on .<name>.lock beside it).
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import hashlib
import os
import shutil
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path

from .cli import CommandError, run_command
from .export_package import PACKAGE_FILE, build_package, file_hash, read_package, software_version, write_package
from .readonly import open_db_readonly, table_exists

CODE_FILES = (
    "export.py",
    "export_append.py",
    "export_build.py",
    "export_read.py",
    "export_rows.py",
    "export_write.py",
    "export_package.py",
    "deployments.py",
)
RENAME_EXCHANGE = 2
AT_FDCWD = -100


def _edits(conn) -> tuple:
    """(generation, edits) of co2_readings_edits; (None, None) when there is none."""
    state = None
    if table_exists(conn, "co2_readings_edits"):
        state = conn.execute("SELECT generation, edits FROM co2_readings_edits WHERE id = 1").fetchone()
    return tuple(state) if state else (None, None)


def readings_version(conn) -> tuple:
    """(generation, edits, rows, last rowid) of co2_readings: while generation
    and edits stay the same, rows above the last rowid are the rows added, and
    rows is None (not counted: that costs a scan). generation is None in a
    database without co2_readings_edits (made before it, not imported into
    since) or just reset; then every row is counted."""
    if not table_exists(conn, "co2_readings"):
        return (None, None, 0, 0)
    generation, edits = _edits(conn)
    if generation is None:
        return (None, None, *conn.execute("SELECT count(*), ifnull(max(rowid), 0) FROM co2_readings").fetchone())
    return (generation, edits, None, conn.execute("SELECT ifnull(max(rowid), 0) FROM co2_readings").fetchone()[0])


def base_fingerprint(conn: sqlite3.Connection, version: tuple) -> str:
    """What, besides the readings, the export is made of: this code and the
    deployments table (and the import state, in a database whose edits are
    not counted). Not the software version: it names the git commit, which
    any commit of the checkout changes; the export's own code is hashed
    instead."""
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for name in CODE_FILES:
        digest.update((here / name).read_bytes())
    queries = []
    if table_exists(conn, "deploy_durations_tiered"):
        queries.append("SELECT * FROM deploy_durations_tiered ORDER BY rowid")
    if version[0] is None and table_exists(conn, "import_state"):
        queries.append("SELECT file, size, mtime_ns, done_bytes, check_hash FROM import_state WHERE kind = 'readings'")
    for sql in queries:
        for row in conn.execute(sql):
            digest.update(repr(row).encode())
    return digest.hexdigest()


def fingerprint(base: str, version: tuple) -> str:
    return hashlib.sha256(f"{base} {version!r}".encode()).hexdigest()


def files_intact(export_dir: Path, package: dict) -> bool:
    """True when every file of the package is there, of its size."""
    for res in package["resources"]:
        try:
            if (export_dir / res["path"]).stat().st_size != res["bytes"]:
                return False
        except (OSError, KeyError, TypeError):
            return False
    return True


def up_to_date(export_dir: Path, package: dict | None, print_: str) -> bool:
    """True when the previous export has this fingerprint and all its files."""
    return package is not None and package.get("co2db:fingerprint") == print_ and files_intact(export_dir, package)


def keep_unchanged(staging: Path, export_dir: Path, old: dict | None, paths: list[str]) -> tuple[dict, int]:
    """Hard-link every staged file whose bytes equal the previous export's
    version; returns the (size, hash) of every file and how many were kept."""
    previous = {r.get("path"): r for r in (old or {}).get("resources", []) if isinstance(r, dict)}
    stats, kept = {}, 0
    for path in paths:
        size, digest = stats[path] = file_hash(staging / path)
        before = previous.get(path)
        old_file = export_dir / path
        if before and before.get("hash") == digest and before.get("bytes") == size:
            try:
                if old_file.is_file() and not old_file.is_symlink() and file_hash(old_file) == (size, digest):
                    os.unlink(staging / path)
                    os.link(old_file, staging / path)
                    kept += 1
            except OSError:
                pass  # cannot link (another disk?): the new copy stays
    return stats, kept


def swap_in(staging: Path, export_dir: Path) -> None:
    """Put staging in place of export_dir atomically; remove the old one."""
    if not export_dir.exists():
        os.rename(staging, export_dir)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None and renameat2(AT_FDCWD, bytes(staging), AT_FDCWD, bytes(export_dir), RENAME_EXCHANGE) == 0:
        shutil.rmtree(staging)  # now holds the old export
        return
    old = export_dir.with_name(f".{export_dir.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    os.rename(export_dir, old)
    os.rename(staging, export_dir)
    shutil.rmtree(old)


SNAPSHOT_TRIES = 3


def export(db: Path, export_dir: Path) -> str:
    export_dir = Path(os.path.abspath(export_dir))
    if export_dir.is_symlink():
        raise CommandError(f"{export_dir} is a symlink; the server refuses those: make it a real folder")
    if export_dir.exists() and not export_dir.is_dir():
        raise CommandError(f"{export_dir} exists and is not a folder: move it away")
    export_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(export_dir.with_name(f".{export_dir.name}.lock"), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # the timer's run and one by hand: one after the other, never both
            print(f"export: another export into {export_dir} is running; waiting for it", file=sys.stderr)
            fcntl.flock(lock, fcntl.LOCK_EX)
        for _ in range(SNAPSHOT_TRIES):
            done = _export_once(db, export_dir)
            if done is not None:
                return done
    raise CommandError("the database kept changing while the export started (an import running?): run it again")


def _export_once(db: Path, export_dir: Path) -> str | None:
    """One try; None when the database moved under the readers (try again)."""
    conn = open_db_readonly(db)
    try:
        conn.execute("BEGIN")  # one snapshot of the database for the whole run
        old = read_package(export_dir)
        version = readings_version(conn)
        base = base_fingerprint(conn, version)
        print_ = fingerprint(base, version)
        if up_to_date(export_dir, old, print_):
            return f"nothing new, {len(old['resources'])} files kept"
        staging = export_dir.with_name(f".{export_dir.name}.staging")
        try:
            shutil.rmtree(staging, ignore_errors=True)  # left by a run that failed
            staging.mkdir(parents=True)
            # pyarrow, numpy and ADBC: not loaded when nothing is new
            from .export_append import append, can_append
            from .export_build import FLAG_LIST, SnapshotMoved, Tally, build

            tally = Tally()
            snapshot = (version, readings_version)  # what the readers check
            try:
                if can_append(export_dir, old, base, version):
                    built, stats, kept = append(staging, export_dir, old, db, conn, snapshot, tally)
                    what = "appended"
                else:
                    built = build(staging, db, conn, snapshot, tally)
                    stats, kept = keep_unchanged(staging, export_dir, old, [f.path for f in built.files])
                    what = ""
            except SnapshotMoved:
                shutil.rmtree(staging, ignore_errors=True)
                return None
            created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            state = {"co2db:fingerprint": print_, "co2db:base": base, "co2db:readings": version_record(version)}
            package = build_package(staging, built, stats, created, software_version(), state)
            write_package(staging, package)
            os.chmod(staging, 0o755)
            swap_in(staging, export_dir)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise CommandError(
                f"cannot write the export beside {export_dir}: {exc.strerror or exc} ({exc.filename or ''});"
                " the previous export is unchanged"
            ) from exc
    finally:
        conn.close()
    flags = ", ".join(f"{name} {tally.flags[name]}" for name, _ in FLAG_LIST if tally.flags[name]) or "none"
    unusable = ", ".join(f"{c} {n}" for c, n in sorted(tally.unusable.items()))
    if unusable:
        print(f"warning: export: values that are not numbers, exported empty: {unusable}", file=sys.stderr)
    from .export_write import NAME_BYTES, safe_name

    cut = [site for site in built.sites if len(safe_name(site)) >= NAME_BYTES]
    if cut:
        print(
            f"warning: export: {len(cut)} site names too long for a file name, cut in the csv/ and parquet/"
            f" names (the rows and datapackage.json have them whole): {', '.join(map(repr, cut[:3]))}",
            file=sys.stderr,
        )
    files = built.files
    rows = f"{tally.rows} row{'' if tally.rows == 1 else 's'}{' ' + what if what else ''}"
    return f"{rows}, {len(files)} files ({len(files) - kept} written, {kept} kept) + {PACKAGE_FILE}, flags: {flags}"


def version_record(version: tuple) -> dict:
    generation, edits, _, last = version
    return {"generation": generation, "edits": edits, "last_rowid": last}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="co2db.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, type=Path, help="SQLite database (read only)")
    parser.add_argument("--export-dir", required=True, type=Path, help="the export folder (EXPORT_DIR)")
    args = parser.parse_args(argv)
    return run_command("export", lambda: export(args.db, args.export_dir))


if __name__ == "__main__":
    sys.exit(main())
