"""GET /status/alive/recent: the last pings as plain text, from the TSV log's tail."""

from __future__ import annotations

import re

from firmware import UnitSim, assert_plain_answer

NOW_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\t\(now\)")


def write_pings(server, name: str, lines: list[str], tail: str = "") -> None:
    folder = server.var_dir / "pings"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / name, "a") as f:
        f.write("".join(line + "\n" for line in lines) + tail)


def ping_line(i: int, unit: str = "co2unit-30aea42a50bc", nick: str = "varanger-03") -> str:
    return f"2019-10-07T03:{i // 60:02d}:{i % 60:02d}.{i:06d}\t{unit}\t{nick}\t8\t-{60 + i}\t99"


def lines_of(reply) -> list[str]:
    assert reply.status == 200, reply.body
    assert_plain_answer(reply)
    assert "content-length" in reply.headers
    assert reply.headers["content-type"].startswith("text/plain")
    return reply.body.decode().splitlines()


def test_no_pings_yet_gives_just_the_now_line(server):
    lines = lines_of(server.request("GET", "/status/alive/recent"))
    assert len(lines) == 1 and NOW_LINE.fullmatch(lines[0])
    assert "refresh" not in server.request("GET", "/status/alive/recent").headers


def test_pings_from_units_newest_first_prefix_dropped(server, tmp_path):
    units = [UnitSim(hw, tmp_path / hw, server.port, nickname=f"nick-{i}")
             for i, hw in enumerate(["co2unit-30aea42a50bc", "co2unit-30aea42a5268"])]
    units[0].ping(rssi_raw=8, rssi_dbm=-97, ber_raw=99)
    units[1].ping(rssi_raw=None)
    units[0].ping(rssi_raw=10, rssi_dbm=-93, ber_raw=0)
    lines = lines_of(server.request("GET", "/status/alive/recent"))
    assert NOW_LINE.fullmatch(lines[0])
    rows = [line.split("\t") for line in lines[1:]]
    assert [r[1:] for r in rows] == [
        ["30aea42a50bc", "nick-0", "10", "-93", "0"],
        ["30aea42a5268", "nick-1", "None", "None", "None"],
        ["30aea42a50bc", "nick-0", "8", "-97", "99"],
    ]
    stamps = [r[0] for r in rows]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", s) for s in stamps)  # to the second
    assert stamps == sorted(stamps, reverse=True)
    assert lines[0][:19] >= stamps[0]


def test_n_default_bounds_across_files_and_asc(server):
    write_pings(server, "pings-0000.tsv", [ping_line(i) for i in range(0, 15)])
    # A cut-off last line (still being written) is not shown.
    write_pings(server, "pings-0001.tsv", [ping_line(i) for i in range(15, 30)], tail="2019-10-07T04:00")

    lines = lines_of(server.request("GET", "/status/alive/recent"))
    assert len(lines) == 21  # 20 by default, plus (now)
    assert [line.split("\t")[0] for line in lines[1:3]] == ["2019-10-07T03:00:29", "2019-10-07T03:00:28"]
    assert lines[-1].startswith("2019-10-07T03:00:10\t")

    lines = lines_of(server.request("GET", "/status/alive/recent?n=1000"))
    assert len(lines) == 31 and lines[-1].startswith("2019-10-07T03:00:00\t30aea42a50bc\tvaranger-03\t8\t-60\t99")

    lines = lines_of(server.request("GET", "/status/alive/recent?n=3&asc=1"))
    assert [line.split("\t")[0] for line in lines[:3]] == [
        "2019-10-07T03:00:27", "2019-10-07T03:00:28", "2019-10-07T03:00:29"]
    assert NOW_LINE.fullmatch(lines[3])

    lines = lines_of(server.request("GET", "/status/alive/recent?n=1&asc=0"))
    assert len(lines) == 2 and lines[1].startswith("2019-10-07T03:00:29\t")


def test_refresh_header(server):
    reply = server.request("GET", "/status/alive/recent?refresh=30")
    lines_of(reply)
    assert reply.headers["refresh"] == "30"


def test_bad_parameters_are_400_json(server):
    for query in ("n=0", "n=1001", "n=abc", "n=", "n=5&n=6", "refresh=0", "refresh=x", "asc=maybe"):
        reply = server.request("GET", f"/status/alive/recent?{query}")
        assert reply.status == 400, query
        assert reply.headers["content-type"] == "application/json"
        assert reply.json()["error"] == "BAD_QUERY", query
