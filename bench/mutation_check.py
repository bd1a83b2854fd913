"""Mutation check: make one small deliberate bug at a time and see whether the tests catch it.

Run on demand, never part of the test suite (it takes minutes):

    .venv/bin/python bench/mutation_check.py              # every mutation in MUTATIONS
    .venv/bin/python bench/mutation_check.py --only daily  # those whose name contains "daily"
    .venv/bin/python bench/mutation_check.py --list        # print the table, run nothing

The checkout is copied to a temp folder (sharing .venv; .git, var/,
remote_data/ and caches left out). First the test files the mutations name
are run unmutated in the copy (they must pass, or nothing below means
anything). Then each mutation, one at a time: the file is restored, its
`original` text replaced by `mutated`, and the mutation's test files run with
`pytest -x -q`. A mutation is

- caught:   pytest reports a failed test (exit status 1);
- UNCAUGHT: every test passed with the bug in place;
- STALE:    its original text is not in the file exactly once (the code was
            refactored: update the row, it checks nothing as it is);
- ERROR:    pytest ended some other way (usage error, no tests, timeout).

Exit status 0 only when every mutation run was caught.

To add a mutation, add a row to MUTATIONS: the file (relative to the
checkout), the exact original text, the mutated text, the test files to run,
and a one-line description of the bug.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent


class Mutation(NamedTuple):
    name: str
    file: str
    original: str
    mutated: str
    tests: tuple[str, ...]
    description: str


T = "tests/"
MUTATIONS = [
    # --- The bugs of issue 12's table --------------------------------------------------------------
    Mutation("daily-valid-max", "database/co2db/daily.py",
             "CO2_VALID_MAX = 199_999", "CO2_VALID_MAX = 200_010",
             (T + "test_import_readings.py",), "the sensor's limit code 200010 enters the daily means"),
    Mutation("silent-half", "src/co2server/dashboard.py",
             "silent_after = timedelta(hours=config.silent_hours)",
             "silent_after = timedelta(hours=config.silent_hours / 2)",
             (T + "test_dashboard.py",), "a unit is marked silent after half of CO2_SILENT_HOURS"),
    Mutation("1970-only-jan-1", "database/co2db/import_errors.py",
             'if odate.startswith("1970-"):', 'if odate.startswith("1970-01-01"):',
             (T + "test_import_errors.py",), "an error entry is seen as 1970 only when dated 1970-01-01"),
    Mutation("updates-refusal-branch", "src/co2server/safe_paths.py",
             'if parts[0] == "updates":', "if False:",
             (T + "test_hostile_input.py",), "the dedicated refusal of uploads into updates/ is disabled"),
    Mutation("gap-check-plus-one", "src/co2server/chunks.py",
             "if offset > size:", "if offset > size + 1:",
             (T + "test_chunks.py", T + "test_hostile_input.py", T + "test_uploads.py"),
             "a chunk one byte past the end of the file is accepted, leaving a gap"),
    Mutation("push-pattern-updates", "src/co2server/safe_paths.py",
             '_GOOD_PUSH_RE = re.compile(rf"(?:errors|data/{_NAME})/{_NAME}")',
             '_GOOD_PUSH_RE = re.compile(rf"(?:errors|updates|data/{_NAME})/{_NAME}")',
             (T + "test_hostile_input.py", T + "test_safe_paths.py"), "uploads into updates/ are allowed"),
    Mutation("1970-inferred-dropped", "database/co2db/import_errors.py",
             "idate, itime = self.good if self.good else (None, None)", "idate, itime = None, None",
             (T + "test_import_errors.py",), "a 1970 entry no longer takes the last good date"),
    Mutation("cr-allowed-in-readings", "database/co2db/import_readings.py",
             '_PRINTABLE = b"\\t\\n" + bytes(range(0x20, 0x7F))',
             '_PRINTABLE = b"\\t\\n\\r" + bytes(range(0x20, 0x7F))',
             (T + "test_import_readings.py",), "a reading line ending in CR is imported"),
    Mutation("no-fsync-pings", "src/co2server/pinglog.py",
             "    os.fsync(written_to.fd)", "    pass",
             (T + "test_pings.py",), "a ping is answered 200 before its log line is on disk"),
    Mutation("no-fsync-chunks", "src/co2server/chunks.py",
             "                os.fsync(fd)\n", "                pass\n",
             (T + "test_uploads.py",), "a chunk is answered 200 before its bytes are on disk"),
    # --- More on the modules that guard data --------------------------------------------------------
    Mutation("no-dir-fsync-chunks", "src/co2server/chunks.py",
             "                fsync_dir(target.folder_dir)\n", "                pass\n",
             (T + "test_uploads.py",), "a new file's folder entry is not on disk when its first chunk gets 200"),
    Mutation("daily-valid-min", "database/co2db/daily.py",
             "CO2_VALID_MIN = 1", "CO2_VALID_MIN = 0",
             (T + "test_import_readings.py",), "the sensor's limit code 0 enters the daily means"),
    Mutation("daily-temp-code", "database/co2db/daily.py",
             "TEMP_LIMIT_CODE = 85.0", "TEMP_LIMIT_CODE = 185.0",
             (T + "test_import_readings.py",), "the temperature limit code 85.0 enters the daily means"),
    Mutation("daily-no-refresh", "database/co2db/daily.py",
             'conn.executemany(f"DELETE FROM {NAME} WHERE unit_id = ? AND date = ?", pairs)',
             'conn.executemany(f"DELETE FROM {NAME} WHERE unit_id = ? AND date = ? AND 0", pairs)',
             (T + "test_import_readings.py",), "an incremental import does not replace the days it touches"),
    Mutation("chunk-overwrite", "src/co2server/chunks.py",
             "if overlap and os.pread(fd, overlap, offset) != data[:overlap]:", "if False:",
             (T + "test_chunks.py", T + "test_uploads.py"),
             "a chunk that differs from held bytes is not taken for a new SD card"),
    Mutation("chunk-file-limit", "src/co2server/chunks.py",
             "if end > max_file_bytes:", "if end > max_file_bytes + len(data):",
             (T + "test_hostile_input.py", T + "test_chunks.py"), "a file may grow past CO2_MAX_FILE_BYTES"),
    Mutation("chunk-no-truncate-on-error", "src/co2server/chunks.py",
             "os.ftruncate(fd, size)  # never leave unacknowledged bytes behind", "pass",
             (T + "test_chunks.py", T + "test_uploads.py"),
             "a failed write leaves unacknowledged bytes in the file"),
    Mutation("name-leading-dot", "src/co2server/safe_paths.py",
             'NAME_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")',
             'NAME_RE = re.compile(r"[A-Za-z0-9._-][A-Za-z0-9._-]{0,127}")',
             (T + "test_safe_paths.py", T + "test_hostile_input.py", T + "test_updates.py"),
             "hidden names (a leading dot) are accepted"),
    Mutation("symlinks-followed", "src/co2server/safe_paths.py",
             "if stat.S_ISLNK(st.st_mode):", "if False:",
             (T + "test_safe_paths.py", T + "test_hostile_input.py"), "a symlink below the data folder is followed"),
    Mutation("percent-allowed", "src/co2server/safe_paths.py",
             '_RAW_PATH_RE = re.compile(r"[A-Za-z0-9._/~-]*")',
             '_RAW_PATH_RE = re.compile(r"[A-Za-z0-9._/~%-]*")',
             (T + "test_hostile_input.py", T + "test_safe_paths.py"), "percent-encoded paths get past the checks"),
    Mutation("pings-half-line-kept", "src/co2server/pinglog.py",
             "os.ftruncate(current.fd, size)  # never leave half a line for the next ping to follow", "pass",
             (T + "test_pings.py",), "a failed ping write leaves half a line in the log"),
    Mutation("pings-no-dir-fsync", "src/co2server/pinglog.py",
             "        if st.st_size == 0:\n            fsync_dir(path.parent)",
             "        if False:\n            fsync_dir(path.parent)",
             (T + "test_pings.py",), "a new pings log file's folder entry is not made durable"),
    Mutation("readings-1970-kept", "database/co2db/import_readings.py",
             'if len(fields) >= 3 and fields[2].startswith(b"1970-"):', "if False:",
             (T + "test_import_readings.py",), "readings dated 1970 are imported"),
    Mutation("readings-field-count", "database/co2db/import_readings.py",
             "if len(fields) not in (16, 21):", "if len(fields) not in (16, 18, 21):",
             (T + "test_import_readings.py",), "a reading line of 18 fields is accepted"),
    Mutation("other-unit-imported", "database/co2db/import_readings.py",
             "    if fields[0] != unit:\n", "    if False:\n",
             (T + "test_import_readings.py",), "a line naming another unit is imported as that unit's reading"),
    Mutation("readings-nick-kept", "database/co2db/import_readings.py",
             'if nick is not None and nick.endswith("NICK"):', "if False:",
             (T + "test_import_readings.py",), "a misconfigured nickname ending in NICK is kept"),
    Mutation("errors-impossible-date", "database/co2db/import_errors.py",
             "when = datetime(year, month, day, hour, minute, second)",
             "when = datetime(year, month, min(day, 28), hour, minute, second)",
             (T + "test_import_errors.py",), "31 February is read as a date"),
    Mutation("errors-etype-order", "database/co2db/import_errors.py",
             'if "transmitting" in message:\n        return "transmit"\n',
             "",
             (T + "test_import_errors.py",), "the transmit entry type is never given"),
]


def copy_checkout(dest: Path) -> None:
    """The checkout without .git, the venv, run-time data and caches; .venv a symlink to the real one."""
    ignore = shutil.ignore_patterns(".git", ".venv", "var", "remote_data", "__pycache__", ".pytest_cache",
                                    ".ruff_cache", "artifacts", "out")  # fmt: skip
    shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)
    (dest / ".venv").symlink_to((ROOT / ".venv").resolve())


def run_tests(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[int | None, str]:
    """pytest -x -q on the copy: (exit status or None on timeout, last lines of output)."""
    cmd = [str(copy / ".venv/bin/python"), "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    try:
        proc = subprocess.run(cmd, cwd=copy, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    tail = [line for line in proc.stdout.splitlines() if line.strip()][-1:]
    return proc.returncode, " ".join(tail)


def apply(copy: Path, m: Mutation, originals: dict[str, str]) -> str | None:
    """Write the mutated file into the copy; the reason it cannot be, or None."""
    text = originals[m.file]
    found = text.count(m.original)
    if found != 1:
        return f"original text found {found} times in {m.file} (expected exactly once)"
    (copy / m.file).write_text(text.replace(m.original, m.mutated))
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                     epilog="See bench/README.md, 'mutation_check.py'.")  # fmt: skip
    parser.add_argument("--only", metavar="TEXT", action="append",
                        help="run only mutations whose name contains TEXT (repeatable)")
    parser.add_argument("--list", action="store_true", help="print the mutations and run nothing")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of the test files")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per pytest run (default 900)")
    parser.add_argument("--keep", action="store_true", help="keep the temp copy (its path is printed)")
    args = parser.parse_args(argv)

    chosen = [m for m in MUTATIONS if args.only is None or any(text in m.name for text in args.only)]
    if not chosen:
        parser.error(f"no mutation name contains any of {args.only}")
    if args.list:
        for m in chosen:
            print(f"{m.name:28} {m.file:36} {m.description}")
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="co2-mutation-"))
    copy = tmp / "checkout"
    try:
        copy_checkout(copy)
        originals = {m.file: (ROOT / m.file).read_text() for m in chosen}
        if not args.no_baseline:
            tests = tuple(sorted({t for m in chosen for t in m.tests}))
            print(f"baseline: {' '.join(tests)}", flush=True)
            status, tail = run_tests(copy, tests, args.timeout * 2)
            if status != 0:
                print(f"the unmutated tests do not pass ({tail}); fix that first", file=sys.stderr)
                return 2
        results = []
        for m in chosen:
            started = time.monotonic()
            problem = apply(copy, m, originals)
            if problem:
                outcome, tail = "STALE", problem
            else:
                status, tail = run_tests(copy, m.tests, args.timeout)
                outcome = {0: "UNCAUGHT", 1: "caught"}.get(status, "ERROR")
            (copy / m.file).write_text(originals[m.file])
            seconds = time.monotonic() - started
            results.append((m, outcome, seconds))
            print(f"{outcome:8} {m.name} ({seconds:.0f} s): {tail}", flush=True)
    finally:
        if args.keep:
            print(f"copy kept in {copy}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(f"| {'mutation':28} | {'file':36} | {'bug':72} | result   |")
    print(f"|{'-' * 30}|{'-' * 38}|{'-' * 74}|----------|")
    for m, outcome, _seconds in results:
        print(f"| {m.name:28} | {m.file:36} | {m.description:72} | {outcome:8} |")
    caught = sum(outcome == "caught" for _m, outcome, _s in results)
    print(f"\n{caught} of {len(results)} mutations caught")
    return 0 if caught == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
