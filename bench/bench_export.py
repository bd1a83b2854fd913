"""Benchmark of `make export` at archive scale (run on demand, not a test).

On bench_import.py's archive (100 units x 2 years, ~3.5 M readings; the same
folder, generated once and reused), with a deployments file putting two
units at each site (en route for the first month, then deployed), it
measures in one run, each with its target and PASS/FAIL:

1. the full export from scratch (`make export` after `make import`), against
   the reference of a bare `sqlite3 -csv` dump of co2_readings measured
   here and now; target ratio <= 2;
2. `make export` with nothing new: target < 1 s;
3. one new day appended to every unit and imported, then `make export`:
   target < 5 s.

    .venv/bin/python bench/bench_export.py [--dir DIR] [--units 100] [--days 730]

Needs the sqlite3 CLI for the reference (`apt-get install sqlite3`).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from bench_import import ROOT, START, append_day, make, prepare_archive, report, unit_params


def write_deployments(path: Path, units: int) -> None:
    """Two units per site: en route for the first 30 days, then deployed (open end)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = ["unit_id\tnickname\tsite\ttier\tstatus\tstart_ts\tend_ts\tnote"]
    moved = START + timedelta(days=30)
    for i, (unit, nick, _, _) in enumerate(unit_params(units)):
        site = f"site_{i // 2:03d}"
        rows.append(f"{unit}\t{nick}\t{site}\t{10 + i % 5}\ten_route\t{START}\t{moved}\tbench")
        rows.append(f"{unit}\t{nick}\t{site}\t{10 + i % 5}\tdeployed\t{moved}\t\tbench")
    path.write_text("\n".join(rows) + "\n")


def reference_dump(db_file: Path, out: Path) -> float:
    """Seconds of `sqlite3 -csv -header DB 'SELECT * FROM co2_readings' > out`."""
    cli = shutil.which("sqlite3")
    if cli is None:
        sys.exit("the reference needs the sqlite3 CLI: apt-get install sqlite3")
    t0 = time.perf_counter()
    with open(out, "wb") as f:
        subprocess.run([cli, "-csv", "-header", str(db_file), "SELECT * FROM co2_readings"], stdout=f, check=True)
    elapsed = time.perf_counter() - t0
    out.unlink()
    return elapsed


def summary(out: str) -> str:
    return next((s for s in out.splitlines() if s.startswith("export: ") and " in " in s), "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=ROOT / "bench/out/import", help="the archive (bench_import.py's)")
    parser.add_argument("--units", type=int, default=100)
    parser.add_argument("--days", type=int, default=730)
    args = parser.parse_args()
    if shutil.which("sqlite3") is None:
        print("the reference needs the sqlite3 CLI: apt-get install sqlite3", file=sys.stderr)
        return 1
    data_dir, var_dir, db_file, vars_ = prepare_archive(args.dir, args.units, args.days)
    write_deployments(data_dir / "manual/deploy_durations_tiered.tsv", args.units)
    seconds, _ = make(vars_, "import")
    print(f"   make import from scratch: {seconds:.1f} s (not part of the targets)")

    ok = True
    ref = reference_dump(db_file, var_dir / "reference.csv")
    full, out = make(vars_, "export")
    rows = re.search(r"export: (\d+) rows", out)
    print("   " + summary(out))
    report("sqlite3 -csv dump of co2_readings", ref, "(reference)", True)
    ok &= report(
        "make export, from scratch", full, f"<= {2 * ref:.2f} s (2x)", full <= 2 * ref, f"ratio {full / ref:.2f}"
    )
    noop, out = make(vars_, "export")
    ok &= report("make export, nothing new", noop, "< 1 s", noop < 1.0, summary(out))
    append_day(data_dir, args.units, args.days, 0)
    day_import, _ = make(vars_, "import")
    report("  one new day: make import", day_import, "(not part of the next)", True)
    day, out = make(vars_, "export")
    ok &= report("make export, one new day for every unit", day, "< 5 s", day < 5.0, summary(out))
    if rows:
        print(f"   {rows.group(1)} rows exported")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
