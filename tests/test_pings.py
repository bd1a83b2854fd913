"""Alive pings: the TSV log of record and the pings table, through real uWSGI."""

from __future__ import annotations

import re
import sqlite3
import threading
import time

from co2server.db import BACKOFF_S
from firmware import UnitSim, http_request, wait_until

HW = "co2unit-30aea42a50bc"
TS_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}")


def wait_for_rows(server, count: int, query: str, db=None) -> list[tuple]:
    """The table is filled by a background thread a moment after the 200."""
    def rows():
        got = sqlite3.connect(db or server.db_path).execute(query).fetchall()
        return got if len(got) >= count else None

    return wait_until(rows)


def tsv_lines(server) -> list[list[str]]:
    files = sorted((server.var_dir / "pings").glob("pings-*.tsv"))
    return [line.split("\t") for f in files for line in f.read_text().splitlines()]


def test_ping_is_logged_and_inserted(server, tmp_path):
    unit = UnitSim(HW, tmp_path / "sd", server.port, nickname="varanger-03")
    reply = unit.ping(rssi_raw=8, rssi_dbm=-97, ber_raw=99)
    assert reply.status == 200
    [line] = tsv_lines(server)
    assert TS_RE.fullmatch(line[0])
    assert line[1:] == [HW, "varanger-03", "8", "-97", "99"]
    rows = wait_for_rows(server, 1, "SELECT * FROM pings")
    date, time = line[0].split("T")
    assert rows == [(line[0], date, time, HW, "varanger-03", 8, -97, 99)]


def test_ping_without_signal_or_nickname(server):
    assert http_request(server.port, "POST", f"/ou/{HW}/alive").status == 200
    assert http_request(server.port, "POST", f"/ou/{HW}/alive?site_code=None&rssi_raw=None").status == 200
    assert [line[1:] for line in tsv_lines(server)] == [[HW, "None", "None", "None", "None"]] * 2
    rows = wait_for_rows(server, 2, "SELECT nickname, rssi_raw, rssi_dbm, ber_raw FROM pings")
    assert rows == [(None, None, None, None)] * 2


def test_ping_log_rolls_over_past_100_kib(server):
    log_dir = server.var_dir / "pings"
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / "pings-0000.tsv").write_bytes(b"x" * (100 * 1024 - 10) + b"\n")
    assert http_request(server.port, "POST", f"/ou/{HW}/alive?site_code=a").status == 200
    assert http_request(server.port, "POST", f"/ou/{HW}/alive?site_code=b").status == 200
    assert sorted(p.name for p in log_dir.iterdir()) == ["pings-0000.tsv", "pings-0001.tsv"]
    assert (log_dir / "pings-0001.tsv").read_text().count("\n") == 1
    assert http_request(server.port, "POST", f"/ou/{HW}/alive?site_code=c").status == 200
    assert (log_dir / "pings-0001.tsv").read_text().count("\n") == 2


def test_ping_is_answered_when_the_database_is_locked(server):
    assert http_request(server.port, "POST", f"/ou/{HW}/alive?site_code=first").status == 200
    wait_for_rows(server, 1, "SELECT * FROM pings")
    holder = sqlite3.connect(server.db_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        reply = http_request(server.port, "POST", f"/ou/{HW}/alive?site_code=while-locked")
        assert reply.status == 200
        assert [line[2] for line in tsv_lines(server)] == ["first", "while-locked"]
        wait_until(lambda: "logged to TSV but not inserted" in server.log())
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    # Once the database is free and the back-off has passed, pings go into the table again.
    time.sleep(BACKOFF_S)
    assert http_request(server.port, "POST", f"/ou/{HW}/alive?site_code=after").status == 200
    rows = wait_for_rows(server, 2, "SELECT nickname FROM pings ORDER BY ping_ts")
    assert [r[0] for r in rows] == ["first", "after"]


def test_ping_is_answered_when_the_database_is_broken(make_server, tmp_path):
    broken = tmp_path / "not-a-db"
    broken.write_bytes(b"this is not an SQLite file" * 100)
    server = make_server(CO2_DB_PATH=broken)
    assert http_request(server.port, "POST", f"/ou/{HW}/alive?site_code=x").status == 200
    assert [line[2] for line in tsv_lines(server)] == ["x"]
    health = http_request(server.port, "GET", "/healthz")
    assert health.status == 503
    assert health.json()["database"].startswith("error")


def test_ping_line_is_fsynced_before_the_answer(server):
    """The thread that logs a ping writes its line and fsyncs the log (and a new log's folder) before it answers 200."""
    with server.traced("fsync,fdatasync,write,writev,sendto,sendmsg") as trace:
        for nickname in ("first", "second"):
            assert http_request(server.port, "POST", f"/ou/{HW}/alive?site_code={nickname}").status == 200
    log = f"{server.var_dir / 'pings' / 'pings-0000.tsv'}>"
    for nickname, calls in zip(("first", "second"), trace.before_answers(), strict=True):
        wrote = next(i for i, c in enumerate(calls) if c.startswith("write(") and log in c and f"\\t{nickname}\\t" in c)
        assert any(c.startswith(("fsync(", "fdatasync(")) and log + ") = 0" in c for c in calls[wrote:]), calls
    # The first ping created the log file: its folder entry was made durable too.
    folder = f"{server.var_dir / 'pings'}>) = 0"
    assert any(c.startswith("fsync(") and folder in c for c in trace.before_answers()[0]), trace.before_answers()[0]


def test_many_pings_at_once_stay_whole(server):
    def ping_many(k):
        for i in range(40):
            assert http_request(server.port, "POST", f"/ou/{HW}/alive?site_code=t{k}-{i}&rssi_raw={i}").status == 200

    threads = [threading.Thread(target=ping_many, args=(k,)) for k in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = tsv_lines(server)
    assert len(lines) == 200 and all(len(line) == 6 for line in lines)
    assert sorted(line[2] for line in lines) == sorted(f"t{k}-{i}" for k in range(5) for i in range(40))
    assert len(wait_for_rows(server, 200, "SELECT * FROM pings")) == 200


def test_schema_is_created_in_wal_mode_at_start(server):
    conn = sqlite3.connect(server.db_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"pings", "co2_readings", "error_logs", "deploy_durations_tiered", "rejected_lines"} <= tables


def test_old_database_with_duplicate_pings_is_migrated(make_server, tmp_path):
    db = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE pings (ping_ts, ping_date, ping_time, unit_id, nickname, rssi_raw, rssi_dbm, ber_raw)")
    row = ("2019-10-07T03:23:39.980794", "2019-10-07", "03:23:39.980794", HW, "v", 8, -97, 99)
    conn.executemany("INSERT INTO pings VALUES (?,?,?,?,?,?,?,?)", [row, row])
    conn.commit()
    conn.close()
    server = make_server(CO2_DB_PATH=db)
    assert http_request(server.port, "POST", f"/ou/{HW}/alive").status == 200
    rows = wait_for_rows(server, 2, "SELECT ping_ts FROM pings ORDER BY ping_ts", db=db)
    assert len(rows) == 2 and rows[0][0] == row[0]


def test_crashed_server_leaves_whole_ping_lines_and_its_lock_free(server):
    """Pings from many threads; SIGKILL of every uWSGI process mid-way.

    What this shows is consistency after a crashed worker: every ping answered
    200 is in the log, every line is whole (no partial or interleaved bytes),
    and a restarted server logs pings again (the pings lock died with its
    holder). It is no proof of durability: the page cache survives a killed
    process, so this passes without any fsync; the proof that a ping is on disk
    before its 200 is test_ping_line_is_fsynced_before_the_answer.
    """
    answered, stop = [], threading.Event()

    def ping_until_stopped(k):
        i = 0
        while not stop.is_set():
            try:
                reply = http_request(server.port, "POST", f"/ou/{HW}/alive?site_code=c{k}-{i}", timeout=5)
            except OSError:
                return
            if reply.status == 200:
                answered.append(f"c{k}-{i}")
            i += 1

    threads = [threading.Thread(target=ping_until_stopped, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    wait_until(lambda: len(answered) > 300, timeout=30)
    server.kill_all()
    stop.set()
    for t in threads:
        t.join()
    logged = {line[2] for line in tsv_lines(server)}
    assert set(answered) <= logged
    data = b"".join(p.read_bytes() for p in sorted((server.var_dir / "pings").glob("pings-*.tsv")))
    assert data.endswith(b"\n")
    whole = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\t" + HW.encode() + rb"\tc\d-\d+\tNone\tNone\tNone")
    bad = [line for line in data.split(b"\n")[:-1] if not whole.fullmatch(line)]
    assert bad == []
    server.start()  # every lock file is still there; none may be held
    assert http_request(server.port, "POST", f"/ou/{HW}/alive?site_code=after").status == 200
    assert tsv_lines(server)[-1][2] == "after"


def test_a_failed_log_write_leaves_no_half_line(server):
    """The disk takes only part of a ping's line: a 500, the log as it was, and the next ping's line is whole."""
    import resource

    def limit_file_size(soft):
        for pid in server.worker_pids():
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, resource.prlimit(pid, resource.RLIMIT_FSIZE)[1]))

    assert http_request(server.port, "POST", f"/ou/{HW}/alive?site_code=first").status == 200
    log = server.var_dir / "pings" / "pings-0000.tsv"
    before = log.read_bytes()
    limit_file_size(len(before) + 20)  # room for a third of the next line
    try:
        reply = http_request(server.port, "POST", f"/ou/{HW}/alive?site_code=refused")
        assert (reply.status, reply.json()["error"]) == (500, "INTERNAL_ERROR")
        assert log.read_bytes() == before
    finally:
        limit_file_size(resource.RLIM_INFINITY)
    assert http_request(server.port, "POST", f"/ou/{HW}/alive?site_code=second").status == 200
    assert [line[2] for line in tsv_lines(server)] == ["first", "second"]
    assert all(len(line) == 6 for line in tsv_lines(server))
