"""Benchmark of the database/ pipeline at archive scale (run on demand, not a test).

Generates 100 units x 2 years of half-hourly readings (~3.5 M lines, 16 and
21 columns, 100 KiB files like the units write, some units with daily
`None` values and weekly 1970 dates) plus error logs and pings,
then in one run measures and prints, each with its target and PASS/FAIL:

1. full import from scratch through the real `make import`, against the
   sqlite3 command-line tool's own `.import` of the same lines into a plain
   table (the reference, measured here and now); target ratio <= 1.5;
2. `make` (the default target web: import, plots, pages) with nothing new:
   target < 1 s;
3. one new day appended to every unit, then `make`: target < 10 s;
4. each plot target rendered on its own (informative; target < 10 s each).

    .venv/bin/python bench/bench_import.py [--dir DIR] [--units 100] [--days 730]

The archive is kept in DIR (default bench/out/import/) and reused when it was
generated with the same parameters; the database is rebuilt every run. Needs
the sqlite3 CLI for the reference: as root the script runs
`apt-get install -y sqlite3` when it is missing; otherwise install it first.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATABASE_DIR = ROOT / "database"
ROLL_BYTES = 100 * 1024  # the units start a new file past 100 KiB
START = date(2018, 7, 1)  # mid-year: the day appended after 2 years falls in a year partition half full


# --- The archive ---------------------------------------------------------------


def unit_ids(n: int) -> list[str]:
    """n hardware IDs."""
    return [f"co2unit-{0x30AEA42A0000 + i:012x}" for i in range(n)]


def value_pool(rng: random.Random, ncols: int, size: int = 997) -> list[str]:
    """Pre-formatted tails (CO2 readings and raw fields) to pick from."""
    pool = []
    for _ in range(size):
        base = rng.randint(380, 900)
        fields = [str(base + rng.randint(-9, 9)) for _ in range(10)]
        if ncols == 21:
            fields += [
                str(base),
                f"{rng.uniform(0.5, 1.5):.5f}",
                f"{rng.uniform(1000, 3000):.2f}",
                f"{rng.uniform(0.9, 1.1):.4f}",
                f"{rng.uniform(-20, 25):.3f}",
            ]
        pool.append("\t".join(fields))
    return pool


TIMES = [f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m, s in ((0, 10), (30, 12))]


def day_lines(unit: str, nick: str, day: date, pool: list[str], temps: list[str], k: int) -> str:
    """One day (48 readings) of one unit."""
    d = day.isoformat()
    n = len(pool)
    out = []
    for i, t in enumerate(TIMES):
        j = k + i
        out.append(f"{unit}\t{nick}\t{d}\t{t}\t{temps[j % 89]}\t{j % 3}\t{pool[j % n]}\n")
    if unit.endswith("9"):
        # Field data is messy: some units have a failing temperature sensor
        # once a day, and once a week a reading from a lost clock.
        out[7] = out[7].replace(f"\t{temps[(k + 7) % 89]}\t", "\tNone\t", 1)
        if day.toordinal() % 7 == 0:
            out[8] = out[8].replace(f"\t{d}\t", "\t1970-01-01\t", 1)
    return "".join(out)


class UnitWriter:
    """Appends lines to a unit's readings files, rolling past 100 KiB like a unit."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        existing = sorted(folder.glob("readings-*.tsv"))
        self.index = len(existing) - 1 if existing else 0
        self.size = existing[-1].stat().st_size if existing else 0

    def append(self, text: str) -> None:
        data = text.encode()
        while data:
            if self.size >= ROLL_BYTES:
                self.index += 1
                self.size = 0
            room = ROLL_BYTES - self.size
            cut = data.rfind(b"\n", 0, room) + 1 or data.find(b"\n") + 1
            part, data = data[:cut], data[cut:]
            with open(self.folder / f"readings-{self.index:04d}.tsv", "ab") as fh:
                fh.write(part)
            self.size += len(part)


def unit_params(units: int) -> list[tuple[str, str, int, random.Random]]:
    rng = random.Random(42)
    return [
        (unit, f"site-{i:03d}", 21 if i % 10 < 7 else 16, random.Random(rng.random()))
        for i, unit in enumerate(unit_ids(units))
    ]


def generate(data_dir: Path, pings_dir: Path, units: int, days: int) -> int:
    """Write the archive; return the number of reading lines."""
    lines = 0
    for n, (unit, nick, ncols, rng) in enumerate(unit_params(units)):
        pool = value_pool(rng, ncols)
        temps = [f"{rng.uniform(-25, 25):.4f}" for _ in range(89)]
        writer = UnitWriter(data_dir / unit / "data/readings")
        buf = []
        for d in range(days):
            buf.append(day_lines(unit, nick, START + timedelta(days=d), pool, temps, d * 48))
            if len(buf) >= 60:
                writer.append("".join(buf))
                buf = []
        writer.append("".join(buf))
        lines += 48 * days
        errors = data_dir / unit / "errors"
        errors.mkdir(parents=True, exist_ok=True)
        with open(errors / "errors-0000.txt", "w") as fh:
            for d in range(0, days, 3):
                day = START + timedelta(days=d)
                fh.write(f"----- {day} 03:00:00 INFO  Self-test. Signal quality ok\n")
                if d % 30 == 0:
                    fh.write(
                        f"----- {day} 03:10:00 EXC   Uncaught exception\n"
                        'Traceback (most recent call last):\n  File "main.py"\n'
                    )
        if n % 10 == 0:
            print(f"  generated {n}/{units} units", file=sys.stderr, flush=True)
    pings_dir.mkdir(parents=True, exist_ok=True)
    with open(pings_dir / "pings-0000.tsv", "w") as fh:
        for d in range(days):
            for unit in unit_ids(units)[:20]:
                fh.write(f"{START + timedelta(days=d)}T12:00:00.000001\t{unit}\tx\t8\t-97\t99\n")
    return lines


def append_day(data_dir: Path, units: int, days: int, extra: int) -> int:
    """Append day number days+extra to every unit; return lines written."""
    day = START + timedelta(days=days + extra)
    for unit, nick, ncols, rng in unit_params(units):
        pool = value_pool(random.Random(unit), ncols, 50)
        temps = [f"{rng.uniform(-25, 25):.4f}" for _ in range(89)]
        UnitWriter(data_dir / unit / "data/readings").append(day_lines(unit, nick, day, pool, temps, extra * 48))
    return 48 * units


# --- Measurements ---------------------------------------------------------------


def sqlite3_cli() -> str:
    """Path of the sqlite3 command-line tool, installing it as root if missing."""
    found = shutil.which("sqlite3")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing the sqlite3 CLI for the reference (apt-get)", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "sqlite3"], check=True)
        return shutil.which("sqlite3") or sys.exit("sqlite3 still missing")
    sys.exit("the reference needs the sqlite3 CLI: sudo apt-get install sqlite3")


def children_cpu() -> float:
    """CPU seconds (user + system) used so far by finished child processes."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def reference_import(data_dir: Path, work: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of sqlite3's .import of all reading lines into a plain table."""
    all_lines = work / "all-readings.tsv"
    with open(all_lines, "wb") as out:
        for path in sorted(data_dir.glob("*/data/readings/readings-*.tsv")):
            out.write(path.read_bytes())
    db = work / "reference.sqlite3"
    db.unlink(missing_ok=True)
    cols = ", ".join(f"c{i:02d}" for i in range(1, 22))
    script = f"CREATE TABLE readings ({cols});\n.mode tabs\n.import {all_lines} readings\n"
    cli = sqlite3_cli()
    t0, c0 = time.perf_counter(), children_cpu()
    subprocess.run([cli, str(db)], input=script, text=True, check=True, stderr=subprocess.DEVNULL)
    elapsed, cpu = time.perf_counter() - t0, children_cpu() - c0
    all_lines.unlink()
    db.unlink()
    return elapsed, cpu


def make(vars_: list[str], *targets: str) -> tuple[float, str]:
    """Run make in database/; return (seconds, stdout)."""
    t0 = time.perf_counter()
    proc = subprocess.run(["make", "-C", str(DATABASE_DIR), *vars_, *targets], capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stdout, proc.stderr, file=sys.stderr)
        raise SystemExit(f"make {' '.join(targets)} failed")
    return elapsed, proc.stdout


def web_available() -> bool:
    """True when the plot and page commands exist (another engineer's part)."""
    return all((DATABASE_DIR / "co2db" / f"{m}.py").exists() for m in ("plot_pings", "plot_co2", "pages"))


def report(name: str, seconds: float, target: str, ok: bool, note: str = "") -> bool:
    print(
        f"{name:<44} {seconds:8.2f} s   target {target:<22} {'PASS' if ok else 'FAIL'}"
        + (f"   {note}" if note else ""),
        flush=True,
    )
    return ok


def prepare_archive(folder: Path, units: int, days: int) -> tuple[Path, Path, Path, list[str]]:
    """The archive in folder (generated once per parameters, reused after), its
    data folder reset to the pristine copy, no database, no pub folder; prints
    its size. Returns (data_dir, var_dir, db_file, make variables)."""
    work = folder.resolve()
    data_dir, var_dir = work / "remote_data", work / "var"
    params = {"units": units, "days": days, "version": 3}
    stamp = work / "archive.json"
    if not stamp.exists() or json.loads(stamp.read_text()) != params:
        shutil.rmtree(work, ignore_errors=True)
        print(f"generating {units} units x {days} days in {work}", file=sys.stderr)
        t0 = time.perf_counter()
        lines = generate(data_dir, var_dir / "pings", units, days)
        print(f"  {lines} reading lines in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        shutil.copytree(data_dir, work / "pristine")  # appends go to a copy
        stamp.write_text(json.dumps(params))
    # Start every run from the pristine archive and an empty database.
    shutil.rmtree(data_dir, ignore_errors=True)
    shutil.copytree(work / "pristine", data_dir)
    shutil.rmtree(var_dir / "db", ignore_errors=True)
    shutil.rmtree(var_dir / "pub", ignore_errors=True)
    db_file = var_dir / "db" / "db.sqlite3"
    pub = var_dir / "pub"
    vars_ = [
        f"DATA_DIR={data_dir}",
        f"DB_DIR={db_file.parent}",
        f"DB_FILE={db_file}",
        f"WEB_PUB_DIR={pub}",
        f"PINGS_DIR={var_dir / 'pings'}",
        f"PYTHON={ROOT / '.venv/bin/python'}",
    ]
    nbytes = sum(p.stat().st_size for p in data_dir.glob("*/data/readings/*.tsv"))
    nfiles = len(list(data_dir.glob("*/data/readings/*.tsv")))
    print(
        f"archive: {units} units, {days} days, {nfiles} readings files, {nbytes / 1e6:.0f} MB; cores: {os.cpu_count()}"
    )

    return data_dir, var_dir, db_file, vars_


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=ROOT / "bench/out/import")
    parser.add_argument("--units", type=int, default=100)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="measure the reference and the full import N times each, keep the best (less noise)",
    )
    args = parser.parse_args()
    data_dir, var_dir, db_file, vars_ = prepare_archive(args.dir, args.units, args.days)
    pub = var_dir / "pub"
    work = args.dir.resolve()

    ok = True
    ref, ref_cpu = min(reference_import(data_dir, work) for _ in range(args.repeat))
    full = full_cpu = float("inf")
    for attempt in range(args.repeat):
        if attempt:
            shutil.rmtree(db_file.parent)
        c0 = children_cpu()
        seconds, out = make(vars_, "import")
        full, full_cpu = min((full, full_cpu), (seconds, children_cpu() - c0))
    print("   " + "\n   ".join(s for s in out.splitlines() if s.startswith("readings:")))
    print(
        f"   load average: {os.getloadavg()[0]:.1f} (other work on the machine"
        " skews wall times; CPU seconds are steadier)"
    )
    report("sqlite3 .import reference", ref, "(reference)", True, f"CPU {ref_cpu:.2f} s")
    ok &= report(
        "make import, from scratch",
        full,
        f"<= {1.5 * ref:.2f} s (1.5x)",
        full <= 1.5 * ref,
        f"ratio {full / ref:.2f}; CPU {full_cpu:.2f} s, ratio {full_cpu / ref_cpu:.2f}",
    )
    web = web_available()
    goal = () if web else ("import",)
    label = "make" if web else "make import"
    note = "" if web else "plot/page commands missing: timed make import"
    if web:
        first, _ = make(vars_)  # draw everything once
        report("make (first plots and pages)", first, "(informative)", True)
    noop, _ = make(vars_, *goal)
    ok &= report(f"{label}, nothing new", noop, "< 1 s", noop < 1.0, note)
    append_day(data_dir, args.units, args.days, 0)
    if web:
        # Import and drawing timed apart (their sum is what one `make` takes).
        day_import, out = make(vars_, "import")
        report(
            "  one new day: make import",
            day_import,
            "(part of the next)",
            True,
            next((s for s in out.splitlines() if s.startswith("readings:")), ""),
        )
        day_web, _ = make(vars_)
        report("  one new day: then make (plots, pages)", day_web, "(part of the next)", True)
        day = day_import + day_web
    else:
        day, out = make(vars_, *goal)
    ok &= report(f"{label}, one new day for every unit", day, "< 10 s", day < 10.0, note)
    if web:
        for name in ("pings_all_tiered.svg", "co2_tiered_recent_hires.svg", "co2_tiered_all_hires.svg"):
            (pub / name).unlink(missing_ok=True)
            secs, _ = make(vars_, str(pub / name))
            ok &= report(f"make {name}", secs, "< 10 s", secs < 10.0, "includes no-op import")
    else:
        print("plots: commands not there yet (co2db.plot_pings, plot_co2, pages)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
