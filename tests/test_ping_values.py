"""No unit is shut out by its own configuration: every ping from a well-formed
hardware ID is recorded and answered 200, whatever its nickname and signal
values hold (the firmware abandons the whole cycle on anything but 200).

The nickname is kept as UTF-8 text, made safe for the TSV log and the pages;
what had to be repaired is logged (without the URL key) and shown on the
dashboard; signal values that are not numbers are stored as missing.
"""

from __future__ import annotations

import json
import re
import sqlite3

import pytest
from test_server_and_pipeline import make_summaries

from firmware import UnitSim, http_request, wait_until

KEY = "k3y-Only4Units"
REPLACED = "\N{REPLACEMENT CHARACTER}"

# (site_code as the firmware sends it: raw, UTF-8, unencoded; what is stored; repaired?)
NICKNAMES = [
    ("vårdø-01", "vårdø-01", False),
    ("site%203+north", "site 3 north", False),  # a raw space: test_a_raw_space_in_the_nickname
    ("x" * 100, "x" * 63 + "\N{HORIZONTAL ELLIPSIS}", True),
    ("bad\x01nick\x7f", f"bad{REPLACED}nick{REPLACED}", True),
    ("tab%09nl%0Acr%0Dend", f"tab{REPLACED}nl{REPLACED}cr{REPLACED}end", True),
    ("caf%C3%A9-%FF", f"café-{REPLACED}", True),
    ("", None, False),
    ("None", None, False),
]


def hw(i: int) -> str:
    return f"co2unit-{0x30aea4000000 + i:012x}"


def tsv_bytes(server) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((server.var_dir / "pings").glob("pings-*.tsv")))


def test_odd_nicknames_and_signal_values_are_recorded_safely(make_server, tmp_path):
    server = make_server(CO2_URL_KEY=KEY)
    for i, (sent, _stored, _repaired) in enumerate(NICKNAMES):
        unit = UnitSim(hw(i), tmp_path / f"sd{i}", server.port, nickname=sent, prefix=f"/{KEY}")
        reply = unit.ping()
        assert (reply.status, reply.body) == (200, b"OK\n"), (sent, reply.body)
    junk = UnitSim(hw(50), tmp_path / "sd-junk", server.port, nickname="junk", prefix=f"/{KEY}")
    assert junk.ping(rssi_raw="loud", rssi_dbm="-97.5", ber_raw="100001").status == 200
    repeated = f"/{KEY}/ou/{hw(51)}/alive?site_code=first&site_code=second&rssi_raw=1&rssi_raw=2&rssi_dbm=-90&ber_raw="
    assert http_request(server.port, "POST", repeated).status == 200

    # The log of record: one whole 6-field UTF-8 line per ping, no control characters.
    data = tsv_bytes(server)
    text = data.decode("utf-8")
    assert not re.search(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]", text.replace("\n", "")), text
    lines = [line.split("\t") for line in text.splitlines()]
    assert len(lines) == len(NICKNAMES) + 2 and all(len(line) == 6 for line in lines)
    by_unit = {line[1]: line[2:] for line in lines}
    for i, (_sent, stored, _repaired) in enumerate(NICKNAMES):
        assert by_unit[hw(i)] == ["None" if stored is None else stored, "8", "-97", "99"]
    assert by_unit[hw(50)] == ["junk", "None", "None", "None"]
    assert by_unit[hw(51)] == ["first", "None", "-90", "None"]

    # The pages: the recent pings (plain text, UTF-8) and the dashboard's JSON.
    recent = http_request(server.port, "GET", "/status/alive/recent?n=50")
    assert recent.status == 200 and "charset=utf-8" in recent.headers["content-type"]
    recent_rows = {row.split("\t")[1]: row.split("\t")[2:] for row in recent.body.decode("utf-8").splitlines()[1:]}
    for i, (_sent, stored, _repaired) in enumerate(NICKNAMES):
        assert recent_rows[hw(i).removeprefix("co2unit-")] == ["None" if stored is None else stored, "8", "-97", "99"]
    board = {u["hw_id"]: u for u in http_request(server.port, "GET", "/status/units.json").json()["units"]}
    for i, (_sent, stored, repaired) in enumerate(NICKNAMES):
        assert board[hw(i)]["nickname"] == stored
        assert bool(board[hw(i)]["last_ping_repaired"]) == repaired, board[hw(i)]
    assert board[hw(0)]["rssi_dbm"] == -97
    assert board[hw(50)]["rssi_dbm"] is None
    assert "rssi_raw='loud'" in board[hw(50)]["last_ping_repaired"]
    assert "site_code" in board[hw(51)]["last_ping_repaired"] and "rssi_raw" in board[hw(51)]["last_ping_repaired"]
    page = http_request(server.port, "GET", "/status/units").body.decode("utf-8")
    assert "vårdø-01" in page and "ping repaired" in page and "\x01" not in page

    # The app log says what was repaired, per unit, and never holds the URL key.
    log = server.log()
    assert KEY not in log
    for i, (_sent, _stored, repaired) in enumerate(NICKNAMES):
        assert (f"repaired ping unit={hw(i)}" in log) == repaired, hw(i)
    assert re.search(rf"repaired ping unit={hw(50)}: .*rssi_raw='loud'.*stored as missing", log), log[-2000:]

    # The pipeline imports every line (UTF-8 nickname, missing numbers), none rejected.
    wait_until(lambda: sqlite3.connect(server.db_path).execute("SELECT count(*) FROM pings").fetchone()[0] == len(lines))
    make_summaries(server, "import")
    conn = sqlite3.connect(server.db_path)
    rows = dict(conn.execute("SELECT unit_id, json_array(nickname, rssi_raw, rssi_dbm, ber_raw) FROM pings"))
    assert len(rows) == len(lines)
    for i, (_sent, stored, _repaired) in enumerate(NICKNAMES):
        assert json.loads(rows[hw(i)]) == [stored, 8, -97, 99]
    assert json.loads(rows[hw(50)]) == ["junk", None, None, None]
    assert conn.execute("SELECT count(*) FROM rejected_lines WHERE file LIKE 'var/pings/%'").fetchone() == (0,)


@pytest.mark.parametrize("query", ["site_code=%00", "site_code=a%E2%80%8Fb", "site_code=" + "é" * 80])
def test_the_table_gets_what_the_log_got(server, query):
    """The live insert and the TSV line carry the same nickname (one row whichever writes it first)."""
    assert http_request(server.port, "POST", f"/ou/{hw(0)}/alive?{query}").status == 200
    [line] = tsv_bytes(server).decode("utf-8").splitlines()
    nickname = line.split("\t")[2]
    assert len(nickname) <= 64 and "\x00" not in nickname and "\u200f" not in nickname
    wait_until(lambda: sqlite3.connect(server.db_path).execute("SELECT nickname FROM pings").fetchall() == [(nickname,)])


def test_a_raw_space_in_the_nickname(server):
    """uWSGI's own HTTP parser ends the query at a raw space and takes the rest as the protocol: the ping is
    still recorded whole. (Its answer's status line then starts with that rest, which the firmware cannot read;
    nginx's units' door refuses such a request line with 400 before the app sees it.)"""
    import socket

    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(f"POST /ou/{hw(0)}/alive?site_code=site 3 north&rssi_raw=8&rssi_dbm=-97&ber_raw=99 HTTP/1.0\r\n"
                     "Host: x\r\n\r\n".encode())
        answer = b""
        while part := sock.recv(65536):
            answer += part
    assert b" 200 OK\r\n" in answer.split(b"\r\n\r\n")[0] + b"\r\n"
    [line] = tsv_bytes(server).decode("utf-8").splitlines()
    assert line.split("\t")[1:] == [hw(0), "site 3 north", "8", "-97", "99"]
