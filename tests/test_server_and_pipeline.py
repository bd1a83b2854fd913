"""The server and the pipeline together: they meet only in files and tables."""

from __future__ import annotations

import os
import sqlite3
import subprocess

from conftest import ROOT
from firmware import UnitSim, http_request, wait_until

HW = "co2unit-30aea42a50bc"


def make_summaries(server, *targets: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CO2_DATA_DIR": str(server.data_dir), "CO2_VAR_DIR": str(server.var_dir)}
    proc = subprocess.run([str(ROOT / "scripts/make-summaries.sh"), *targets], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_pipeline_fills_in_pings_the_server_could_not_insert(server, tmp_path):
    unit = UnitSim(HW, tmp_path / "sd", server.port)
    assert unit.ping().status == 200
    wait_until(lambda: sqlite3.connect(server.db_path).execute("SELECT count(*) FROM pings").fetchone()[0] == 1)
    holder = sqlite3.connect(server.db_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # the database is busy: the server can only log to TSV
    try:
        assert http_request(server.port, "POST", f"/ou/{HW}/alive?site_code=while-busy").status == 200
        wait_until(lambda: "logged to TSV but not inserted" in server.log())
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    make_summaries(server, "import")
    rows = sqlite3.connect(server.db_path).execute("SELECT unit_id, nickname FROM pings ORDER BY ping_ts").fetchall()
    assert rows == [(HW, "varanger-03"), (HW, "while-busy")]  # filled in, and the live row not doubled


def test_uploaded_readings_reach_the_tables_and_the_pages_the_server_shows(server, tmp_path):
    unit = UnitSim(HW, tmp_path / "sd", server.port)
    lines = b"".join(
        f"{HW}\tvaranger-03\t2019-08-01\t{h:02d}:00:10\t12.5\t0\t" .encode() + b"\t".join([b"600"] * 10) + b"\n"
        for h in range(24)
    )
    unit.write_sd("data/readings", "readings-0000.tsv", lines + b"co2unit-30aea42a50bc\tvaranger-03\t2019-08")
    assert unit.cycle() == "ok"
    make_summaries(server)
    conn = sqlite3.connect(server.db_path)
    assert conn.execute("SELECT count(*), avg(co2_01) FROM co2_readings").fetchone() == (24, 600.0)
    for url in ("/status/alive/summary", "/data/co2/summary", "/status/alive/pings_all_tiered.svg",
                "/data/co2/co2_tiered_all_hires.svg"):
        reply = http_request(server.port, "GET", url)
        assert reply.status == 200, url
        assert b"not been rendered" not in reply.body
