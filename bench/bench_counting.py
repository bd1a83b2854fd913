#!/usr/bin/env python3
"""What counting requests for /metrics costs the unit API: this checkout against one without it, side by side.

    .venv/bin/python bench/bench_counting.py [--baseline COMMIT] [--seconds 5] [--rounds 3]

The baseline (by default the parent of the commit that added
src/co2server/request_metrics.py) is checked out with `git worktree` into a
temporary folder; both servers are the real uWSGI from their own
server.ini.example, started side by side with their own data and var
folders. Pings and 4 KiB chunks are driven by bench_server.py's load
generator in the order baseline, this, this, baseline, ... so that a drift
of the machine weighs on both alike; it prints each round, then the means:
requests/s and server CPU per request, as ratios of this checkout to the
baseline. The worktree is removed at the end.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests"), str(ROOT / "src")]
import bench_server as bs  # noqa: E402

import conftest  # noqa: E402  (the tests' real-uWSGI runner reads conftest.SERVER_INI on start)


def default_baseline() -> str:
    added = subprocess.run(["git", "-C", str(ROOT), "log", "--diff-filter=A", "--format=%H", "--",
                            "src/co2server/request_metrics.py"], capture_output=True, text=True, check=True)
    first = added.stdout.split()[-1]
    return f"{first}^"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", help="commit without request counting (default: before request_metrics.py)")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3, help="pairs of rounds (default 3)")
    args = ap.parse_args()
    baseline = args.baseline or default_baseline()
    tmp = Path(tempfile.mkdtemp(prefix="co2-bench-counting-"))
    tree = tmp / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), baseline], check=True)
    (tree / ".venv").symlink_to(ROOT / ".venv")
    inis = {"baseline": tree / "server.ini.example", "counting": ROOT / "server.ini.example"}
    servers: dict[str, bs.Uwsgi] = {}
    try:
        for name, ini in inis.items():
            conftest.SERVER_INI = ini
            server = bs.Uwsgi(name, tmp, [], {"CO2_DATA_DIR": str(tmp / name / "data"),
                                              "CO2_VAR_DIR": str(tmp / name / "var")})
            server.start()
            servers[name] = server
        conftest.SERVER_INI = inis["counting"]
        metrics = {n: bs.http_request(s.port, "GET", "/metrics").status for n, s in servers.items()}
        if metrics != {"baseline": 404, "counting": 200}:
            raise SystemExit(f"expected /metrics only on this checkout, got {metrics} (baseline {baseline})")
        units = bs.hw_ids(50)
        fresh = 50  # chunk units: fresh folders each round
        results: dict[tuple[str, str], list[dict]] = {(n, k): [] for n in servers for k in ("pings", "chunks")}
        print(f"baseline {baseline}; 2 processes x 16 in flight, {args.seconds:g} s per measurement")
        for name in ["baseline", "counting", "counting", "baseline"] * ((args.rounds + 1) // 2):
            server = servers[name]
            bs.drive("pings", server, 1.0, 2, 16, units)
            p = bs.drive("pings", server, args.seconds, 2, 16, units)
            c = bs.drive("chunks", server, args.seconds, 2, 16, bs.hw_ids(fresh + 32)[fresh:])
            fresh += 32
            results[(name, "pings")].append(p)
            results[(name, "chunks")].append(c)
            print(f"{name:9} pings {p['rate']:7.1f}/s ({p['server_cpu_ms_per_req']:.3f} ms CPU, {p['errors']} errors);"
                  f" chunks {c['rate']:7.1f}/s ({c['server_cpu_ms_per_req']:.3f} ms CPU, {c['errors']} errors)")
        for kind in ("pings", "chunks"):
            base, new = results[("baseline", kind)], results[("counting", kind)]
            rate_b, rate_n = (statistics.mean(r["rate"] for r in rs) for rs in (base, new))
            cpu_b, cpu_n = (statistics.mean(r["server_cpu_ms_per_req"] for r in rs) for rs in (base, new))
            print(f"{kind}: {rate_n:.1f}/s with counting vs {rate_b:.1f}/s without = {rate_n / rate_b:.3f}x;"
                  f" server CPU per request {cpu_n:.3f} vs {cpu_b:.3f} ms = {cpu_n / cpu_b:.3f}x")
    finally:
        for server in servers.values():
            server.stop()
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
