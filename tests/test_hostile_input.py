"""Hostile input gets a precise 4xx, is logged with the unit and reason, and changes nothing."""

from __future__ import annotations

import json
import re

import pytest

from firmware import assert_plain_answer, http_request, wait_until
from tree import snapshot

HW = "co2unit-30aea42a50bc"
P = f"/ou/{HW}/push-sequential"

# (method, path, body, status, error code)
CASES = [
    # Ill-formed hardware IDs
    ("POST", "/ou/co2unit-30AEA42A50BC/alive", None, 400, "BAD_HW_ID"),
    ("POST", "/ou/co2unit-30aea42a50bc0/alive", None, 400, "BAD_HW_ID"),
    ("POST", "/ou/evil/alive", None, 400, "BAD_HW_ID"),
    ("PUT", "/ou/co2unit-zzzzzzzzzzzz/push-sequential/errors/e.txt?offset=0", b"x", 400, "BAD_HW_ID"),
    ("GET", "/ou/co2unit-1/updates", None, 400, "BAD_HW_ID"),
    # Paths that try to leave their folder
    ("PUT", f"{P}/data/../../../etc/x?offset=0", b"x", 400, "BAD_PATH"),
    ("PUT", f"{P}/data/readings/../../updates/update-9/flash/main.py?offset=0", b"x", 400, "BAD_PATH"),
    ("PUT", f"{P}//etc/passwd?offset=0", b"x", 400, "BAD_PATH"),
    ("PUT", f"{P}/data/readings/./x?offset=0", b"x", 400, "BAD_PATH"),
    ("POST", "/ou/../ou/co2unit-30aea42a50bc/alive", None, 400, "BAD_PATH"),
    # Percent-encoded slashes, dots, NUL; raw control characters
    ("PUT", f"{P}/data/%2e%2e/%2e%2e/x?offset=0", b"x", 400, "BAD_PATH"),
    ("PUT", f"{P}/data%2Freadings%2Fx?offset=0", b"x", 400, "BAD_PATH"),
    ("PUT", f"{P}/errors/e%00.txt?offset=0", b"x", 400, "BAD_PATH"),
    ("PUT", f"{P}/errors/e\x01.txt?offset=0", b"x", 400, "BAD_PATH"),
    ("PUT", f"{P}/errors/e\x7f.txt?offset=0", b"x", 400, "BAD_PATH"),
    ("GET", f"/ou/{HW}/updates/update-1/%2e%2e/%2e%2e/x", None, 400, "BAD_PATH"),
    # Uploads aimed anywhere but errors/ and data/<folder>/
    ("PUT", f"{P}/updates/update-9/flash/main.py?offset=0", b"x", 403, "PUSH_NOT_ALLOWED"),
    ("PUT", f"{P}/updates/x?offset=0", b"x", 403, "PUSH_NOT_ALLOWED"),
    ("PUT", f"{P}/x.tsv?offset=0", b"x", 403, "PUSH_NOT_ALLOWED"),
    ("PUT", f"{P}/data/x.tsv?offset=0", b"x", 403, "PUSH_NOT_ALLOWED"),
    ("PUT", f"{P}/data/readings/deeper/x.tsv?offset=0", b"x", 403, "PUSH_NOT_ALLOWED"),
    ("PUT", f"{P}/superseded/x/errors/e.txt?offset=0", b"x", 403, "PUSH_NOT_ALLOWED"),
    ("PUT", f"{P}/data/readings/.hidden?offset=0", b"x", 400, "BAD_NAME"),
    # Offsets: missing, negative, not an integer, repeated, absurd
    ("PUT", f"{P}/errors/e.txt", b"x", 400, "BAD_QUERY"),
    ("PUT", f"{P}/errors/e.txt?offset=", b"x", 400, "BAD_QUERY"),
    ("PUT", f"{P}/errors/e.txt?offset=-1", b"x", 400, "BAD_QUERY"),
    ("PUT", f"{P}/errors/e.txt?offset=1.5", b"x", 400, "BAD_QUERY"),
    ("PUT", f"{P}/errors/e.txt?offset=1e3", b"x", 400, "BAD_QUERY"),
    ("PUT", f"{P}/errors/e.txt?offset=0x10", b"x", 400, "BAD_QUERY"),
    ("PUT", f"{P}/errors/e.txt?offset=0&offset=0", b"x", 400, "BAD_QUERY"),
    ("PUT", f"{P}/errors/e.txt?offset=99999999999999999999999", b"x", 400, "BAD_QUERY"),
    # Past the end of the file
    ("PUT", f"{P}/errors/e.txt?offset=1", b"x", 416, "SKIPPED_PART_OF_FILE"),
    ("PUT", f"{P}/errors/e.txt?offset=1000000000000", b"x", 416, "SKIPPED_PART_OF_FILE"),
    # A chunk over the limit (64 KiB by default)
    ("PUT", f"{P}/errors/e.txt?offset=0", b"x" * (64 * 1024 + 1), 413, "CHUNK_TOO_LARGE"),
    # Wrong methods
    ("GET", f"{P}/errors/e.txt?offset=0", None, 405, "METHOD_NOT_ALLOWED"),
    ("POST", f"{P}/errors/e.txt?offset=0", b"x", 405, "METHOD_NOT_ALLOWED"),
    ("DELETE", f"{P}/errors/e.txt", None, 405, "METHOD_NOT_ALLOWED"),
    ("GET", f"/ou/{HW}/alive", None, 405, "METHOD_NOT_ALLOWED"),
    ("PUT", f"/ou/{HW}/updates", b"x", 405, "METHOD_NOT_ALLOWED"),
    ("PUT", f"/ou/{HW}/updates/update-1/flash/main.py", b"x", 405, "METHOD_NOT_ALLOWED"),
    # Malformed query values (odd ping values are recorded instead: ODD_PINGS below)
    ("GET", f"/ou/{HW}/updates?recursive=maybe", None, 400, "BAD_QUERY"),
    # Unknown URLs
    ("GET", f"/ou/{HW}", None, 404, "NOT_FOUND"),
    ("GET", "/etc/passwd", None, 404, "NOT_FOUND"),
]


# What nginx's units' door refuses itself, before the app sees it: bytes it
# will not take in a request line, a body over client_max_body_size, and
# paths outside the unit API (its own short JSON, the app's codes).
FRONT_REFUSES = {
    f"{P}/errors/e%00.txt?offset=0": "BAD_REQUEST",
    f"{P}/errors/e\x01.txt?offset=0": "BAD_REQUEST",
    f"{P}/errors/e\x7f.txt?offset=0": "BAD_REQUEST",
    "/etc/passwd": "NOT_FOUND",
}
FRONT_REFUSES_BODIES_OVER = 64 * 1024


@pytest.fixture(scope="module", params=["direct", "nginx"])
def hostile_server(request, tmp_path_factory, tls_cert):
    """uWSGI alone, or behind nginx's units' door (which resolves '..' and '%2e' itself: the app checks the raw path)."""
    from conftest import NginxFront, UwsgiServer

    app = UwsgiServer(tmp_path_factory.mktemp(f"hostile-{request.param}"))
    server = NginxFront(app, tls_cert).start() if request.param == "nginx" else app.start()
    # Something to protect: a unit with data and an update waiting.
    unit = server.data_dir / HW
    (unit / "errors").mkdir(parents=True)
    (unit / "errors" / "e.txt").write_bytes(b"")
    (unit / "data" / "readings").mkdir(parents=True)
    (unit / "data" / "readings" / "readings-0000.tsv").write_bytes(b"kept\n")
    (unit / "updates" / "update-1" / "flash").mkdir(parents=True)
    (unit / "updates" / "update-1" / "flash" / "main.py").write_bytes(b"print('ok')\n")
    (server.root / "etc").mkdir()
    yield server
    server.stop()


@pytest.mark.parametrize("method, path, body, status, code", CASES, ids=[f"{c[0]} {c[1][:70]!r}" for c in CASES])
def test_refused_precisely_and_nothing_changes(hostile_server, method, path, body, status, code):
    through_nginx = hasattr(hostile_server, "nginx_log")
    refused_by_front = through_nginx and (path in FRONT_REFUSES or len(body or b"") > FRONT_REFUSES_BODIES_OVER)
    before = snapshot(hostile_server.root)
    log_start = log_size(hostile_server)
    requests_before = app_requests(hostile_server)
    front_lines = len(hostile_server.nginx_log("co2unit-units.log").splitlines()) if refused_by_front else 0
    reply = http_request(hostile_server.port, method, path, body)
    assert_plain_answer(reply)
    assert reply.status == status, reply.body
    payload = json.loads(reply.body)
    assert payload["error"] == (FRONT_REFUSES.get(path, code) if refused_by_front else code)
    assert payload["message"]
    if status == 416:
        assert payload["ack_file"] == ["e.txt", 0, 0]
    assert snapshot(hostile_server.root) == before
    if refused_by_front:
        # Never reached uWSGI; nginx logged it, with the client address and no upstream.
        assert app_requests(hostile_server) == requests_before
        # This request's line: nginx writes it after the answer has gone, so wait for a new one.
        line = wait_until(lambda: hostile_server.nginx_log("co2unit-units.log").splitlines()[front_lines:])[0]
        assert line.startswith("127.0.0.1 ") and f'" {status} ' in line and "upstream=- " in line, line
        return
    # Logged with the reason, by this request (the module's server log is shared by every case).
    # The unit as the URL names it: the segment after /ou/, if any.
    unit = path.split("?")[0].split("/")[2] if path.startswith("/ou/") else "-"
    # A first segment that may be a URL key ('/etc/passwd': 'etc') is logged as '*'.
    first = path.split("?")[0].split("/")[1]
    message = payload["message"] if first in ("", "ou", "status", "data") else payload["message"].replace(first, "*")
    assert rejections_since(hostile_server, log_start) == [(method, unit, f"status={status} {code}: {message}")]
    wait_until(lambda: app_requests(hostile_server) == requests_before + 1, timeout=5)


# Pings with odd values are never refused (the firmware would abandon its whole
# cycle, every cycle): recorded with the values made safe, and answered 200.
# (query, the TSV line's nickname and signal fields)
ODD_PINGS = [
    ("rssi_dbm=loud", ["None", "None", "None", "None"]),
    ("rssi_raw=1&rssi_raw=2", ["None", "None", "None", "None"]),
    ("site_code=a%09b", ["a\N{REPLACEMENT CHARACTER}b", "None", "None", "None"]),
    ("site_code=a%0Ab", ["a\N{REPLACEMENT CHARACTER}b", "None", "None", "None"]),
    ("site_code=" + "x" * 65, ["x" * 63 + "\N{HORIZONTAL ELLIPSIS}", "None", "None", "None"]),
    ("ber_raw=100001&rssi_raw=-8", ["None", "-8", "None", "None"]),
]


@pytest.mark.parametrize("query, fields", ODD_PINGS, ids=[q[:40] for q, _ in ODD_PINGS])
def test_odd_ping_values_are_recorded_safely(hostile_server, query, fields):
    pings = hostile_server.var_dir / "pings"
    before = snapshot(hostile_server.root)
    reply = http_request(hostile_server.port, "POST", f"/ou/{HW}/alive?{query}")
    assert_plain_answer(reply)
    assert (reply.status, reply.body) == (200, b"OK\n")
    last = sorted(pings.glob("pings-*.tsv"))[-1].read_text(encoding="utf-8").splitlines()[-1].split("\t")
    assert last[1:] == [HW, *fields]
    after = snapshot(hostile_server.root)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed and all(k.startswith(("var/pings", "var/ping-repairs.tsv")) for k in changed), changed


def app_requests(server) -> int:
    """How many requests uWSGI has logged so far (its request log: '"METHOD /path PROTO" status ...')."""
    return len(re.findall(r'^\[[^]]+\] \S+ "[A-Z]+ ', server.log(), re.M))


def log_size(server) -> int:
    return server.log_path.stat().st_size


_REJECTED = re.compile(r" rejected (\S+) .*? unit=(\S+) (status=\d+ [A-Z_]+: .*)$")


def rejections_since(server, start: int) -> list[tuple[str, str, str]]:
    """(method, unit, 'status=N CODE: message') of each rejection logged after byte `start` of the server log."""
    def found():
        with open(server.log_path, "rb") as f:
            f.seek(start)
            lines = f.read().decode(errors="replace").splitlines()
        return [m.groups() for m in map(_REJECTED.search, lines) if m]

    wait_until(found, timeout=5)  # logged before the answer; allow for the file being read mid-write
    return found()


def test_uploads_into_updates_are_refused_in_their_own_words(hostile_server):
    """The unit is named in the log, and the message says updates/ is never written to by a unit."""
    for path in (f"{P}/updates/x?offset=0", f"{P}/updates/update-9/flash/main.py?offset=0"):
        start = log_size(hostile_server)
        reply = http_request(hostile_server.port, "PUT", path, b"x")
        assert (reply.status, reply.json()) == (
            403, {"error": "PUSH_NOT_ALLOWED", "message": "uploads into updates/ are never accepted"})
        assert rejections_since(hostile_server, start) == [
            ("PUT", HW, "status=403 PUSH_NOT_ALLOWED: uploads into updates/ are never accepted")]


def test_a_file_may_not_grow_past_the_limit(make_server):
    server = make_server(CO2_MAX_FILE_BYTES=10_000, CO2_MAX_CHUNK_BYTES=8192)
    assert http_request(server.port, "PUT", f"{P}/errors/e.txt?offset=0", b"a" * 8192).status == 200
    before = snapshot(server.root)
    reply = http_request(server.port, "PUT", f"{P}/errors/e.txt?offset=8192", b"b" * 8192)
    assert (reply.status, reply.json()["error"]) == (413, "FILE_TOO_LARGE")
    big = http_request(server.port, "PUT", f"{P}/errors/e.txt?offset=8192", b"b" * 8193)
    assert (big.status, big.json()["error"]) == (413, "CHUNK_TOO_LARGE")
    assert snapshot(server.root) == before


def test_chunked_upload_is_refused(server):
    reply = http_request(server.port, "PUT", f"{P}/errors/e.txt?offset=0", None,
                         extra_headers={"Transfer-Encoding": "chunked"})
    assert (reply.status, reply.json()["error"]) == (411, "LENGTH_REQUIRED")
    assert not (server.data_dir / HW / "errors" / "e.txt").exists()


def test_a_body_cut_short_writes_nothing(server):
    import socket

    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(f"PUT {P}/errors/e.txt?offset=0 HTTP/1.0\r\nHost: x\r\nContent-Length: 4096\r\n\r\n".encode()
                     + b"y" * 1000)
        sock.shutdown(socket.SHUT_WR)  # LTE dropped: the rest never comes
        sock.recv(65536)
    assert not (server.data_dir / HW / "errors" / "e.txt").exists()


@pytest.mark.parametrize("where", ["unit", "data", "file", "updates"])
def test_planted_symlinks_are_never_followed(server, tmp_path, where):
    outside = tmp_path / "outside"
    (outside / "readings").mkdir(parents=True)
    (outside / "secret").write_bytes(b"secret")
    unit = server.data_dir / HW
    server.data_dir.mkdir(exist_ok=True)
    if where == "unit":
        unit.symlink_to(outside)
        path = f"{P}/data/readings/r.tsv?offset=0"
    elif where == "data":
        unit.mkdir()
        (unit / "data").symlink_to(outside)
        path = f"{P}/data/readings/r.tsv?offset=0"
    elif where == "file":
        (unit / "errors").mkdir(parents=True)
        (unit / "errors" / "e.txt").symlink_to(outside / "secret")
        path = f"{P}/errors/e.txt?offset=0"
    else:
        unit.mkdir()
        (unit / "updates").symlink_to(outside)
        path = f"/ou/{HW}/updates"
    before = snapshot(tmp_path)
    reply = http_request(server.port, "GET" if where == "updates" else "PUT", path, None if where == "updates" else b"x")
    assert reply.status == 403, reply.body
    assert reply.json()["error"] == "SYMLINK_REFUSED"
    assert snapshot(tmp_path) == before
