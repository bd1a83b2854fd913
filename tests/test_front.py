"""The production front: real nginx from nginx-co2unit.conf.example before the real uWSGI.

The units' door keeps the firmware's protocol byte for byte and keeps slow
or greedy clients away from uWSGI; the people's door wants TLS and a login;
no log line ever holds the units' URL key.
"""

from __future__ import annotations

import base64
import http.client
import os
import re
import ssl
import subprocess
import time

import pytest
from front import OPERATORS
from trickle import Trickler

from firmware import UnitSim, assert_plain_answer, http_request, wait_until

HW = "co2unit-30aea42a50bc"
CHUNK = f"/ou/{HW}/push-sequential/data/readings/readings-0000.tsv"
PEOPLES_PATHS = ["/status/units", "/status/units.json", "/status/alive/recent", "/status/alive/summary",
                 "/data/co2/summary", "/healthz/details", "/static/x.js", "/metrics"]


# The same conversation, once with uWSGI alone and once through the units' door.
CONVERSATION = [
    ("GET", "/", None),
    ("POST", f"/ou/{HW}/alive?site_code=varanger-03&rssi_raw=8&rssi_dbm=-97&ber_raw=99", None),
    ("GET", f"/ou/{HW}/updates?recursive=False", None),
    ("PUT", f"{CHUNK}?offset=0", b"a" * 4096),
    ("PUT", f"{CHUNK}?offset=0", b"a" * 4096),  # repeated: the answer was lost
    ("PUT", f"{CHUNK}?offset=9000", b"b" * 10),  # a gap: 416 with the ack
    ("PUT", f"{CHUNK}?offset=4096", b"c" * 65536),  # the largest chunk the app takes
    ("PUT", f"/ou/{HW}/push-sequential/errors/e.txt?offset=0", b""),
    ("PUT", f"/ou/{HW}/push-sequential/updates/x?offset=0", b"x"),  # 403
    ("DELETE", f"/ou/{HW}/alive", None),  # 405
]


def test_answers_are_the_same_byte_for_byte_through_nginx(make_server, make_front, tmp_path):
    direct = make_server(root=tmp_path / "direct")
    front = make_front(root=tmp_path / "front")
    for method, path, body in CONVERSATION:
        a, b = direct.request(method, path, body), front.request(method, path, body)
        for reply in (a, b):
            assert_plain_answer(reply)
            assert "transfer-encoding" not in reply.headers and "location" not in reply.headers
            assert int(reply.headers["content-length"]) == len(reply.body)
        assert (b.status, b.body, b.headers["content-type"]) == (a.status, a.body, a.headers["content-type"]), (method, path)
        assert b.raw_head.startswith(b"HTTP/1.1 %d " % a.status) and b"Connection: close" in b.raw_head
    stored = "data/readings/readings-0000.tsv"
    assert (front.data_dir / HW / stored).read_bytes() == (direct.data_dir / HW / stored).read_bytes() == b"a" * 4096 + b"c" * 65536


def test_the_app_sees_the_raw_path_and_the_units_address(front):
    """nginx resolves '//', '..' and '%2e' for its own routing; the app still gets the path as sent."""
    reply = http_request(front.port, "PUT", f"/ou/{HW}/push-sequential/data/readings/%2e%2e/x?offset=0", b"x", source="127.5.6.7")
    assert (reply.status, reply.json()["error"]) == (400, "BAD_PATH")
    assert "'%'" in reply.json()["message"]
    assert http_request(front.port, "POST", f"/ou/{HW}/alive", source="127.5.6.8").status == 200
    wait_until(lambda: '127.5.6.8 "POST /ou/' in front.log())
    assert '127.5.6.7 "PUT /ou/' in front.log()  # uWSGI's request log: the unit's address, not nginx's
    wait_until(lambda: front.nginx_log("co2unit-units.log").count("127.5.6.") == 2)  # nginx logs after answering


def test_units_door_hides_the_peoples_pages(front):
    for path in PEOPLES_PATHS:
        reply = front.request("GET", path)
        assert_plain_answer(reply)
        assert (reply.status, reply.json()["error"]) == (404, "NOT_FOUND"), path
    # Monitoring keeps GET / and a bare health answer.
    assert front.request("GET", "/").status == 200
    health = front.request("GET", "/healthz")
    assert (health.status, health.json()) == (200, {"status": "ok"})
    # No redirects, no merged slashes.
    assert front.request("GET", "//healthz").status == 404
    assert front.request("GET", "/healthz/").status == 404


def people_request(front, path, user=None, password=None, context=None):
    context = context or front.tls.client_context()
    conn = http.client.HTTPSConnection("127.0.0.1", front.people_port, context=context, timeout=10)
    headers = {}
    if user is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    conn.request("GET", path, headers=headers)
    reply = conn.getresponse()
    body = reply.read()
    cert = conn.sock.getpeercert(binary_form=True)
    conn.close()
    return reply.status, dict(reply.getheaders()), body, cert


def test_peoples_door_wants_tls_and_an_operator(front):
    # No login: 401 with a basic-auth challenge, for every page.
    for path in ["/status/units", "/healthz", "/", "/metrics"]:
        status, headers, _, _ = people_request(front, path)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic"), path
    front.add_operator("alice", "correct horse battery staple")
    assert people_request(front, "/status/units", "alice", "wrong")[0] == 401
    assert people_request(front, "/status/units", "bob", "correct horse battery staple")[0] == 401
    status, _, body, cert = people_request(front, "/status/units", "alice", "correct horse battery staple")
    assert status == 200 and b"<html" in body.lower()
    # The configured certificate, verified against itself as the only CA, for 127.0.0.1.
    assert cert == ssl.PEM_cert_to_DER_cert(front.tls.cert.read_text())
    # Details of /healthz are for people.
    status, _, body, _ = people_request(front, "/healthz", "alice", "correct horse battery staple")
    assert status == 200 and b'"pid"' in body and b"data_dir_writable" in body
    # So is /metrics (Prometheus logs in like an operator: README, "Monitoring with Prometheus").
    status, headers, body, _ = people_request(front, "/metrics", "alice", "correct horse battery staple")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert b"co2server_database_up 1.0" in body
    # The unit API is not served here, with or without a login.
    assert people_request(front, f"/ou/{HW}/updates", "alice", "correct horse battery staple")[0] == 404
    # An operator removed by the script is out at once.
    subprocess.run([str(OPERATORS), "remove", "alice"], check=True, capture_output=True,
                   env={**os.environ, "CO2_HTPASSWD": str(front.htpasswd)})
    assert people_request(front, "/status/units", "alice", "correct horse battery staple")[0] == 401
    # A client that trusts only the public CAs refuses our self-signed certificate: TLS is really in the way.
    with pytest.raises(ssl.SSLCertVerificationError):
        people_request(front, "/", context=ssl.create_default_context())


def test_one_address_is_limited_in_rate_and_connections(front):
    # Rate: bursts of 200 then 10/s per address; a real unit makes ~10 requests per cycle.
    answers = [http_request(front.port, "POST", f"/ou/{HW}/alive", source="127.7.0.1") for _ in range(260)]
    statuses = [a.status for a in answers]
    assert statuses[:150].count(200) == 150  # several units behind one NAT address are fine
    assert 429 in statuses
    refused = answers[statuses.index(429)]
    assert_plain_answer(refused)
    assert refused.json()["error"] == "TOO_MANY_REQUESTS"
    assert http_request(front.port, "POST", f"/ou/{HW}/alive", source="127.7.0.2").status == 200  # others unaffected
    wait_until(lambda: re.search(r'^127\.7\.0\.1 .* 429 .* rate=REJECTED', front.nginx_log("co2unit-units.log"), re.M))
    # Connections: 32 open uploads from one address, the next request from it is 503.
    slow = Trickler(front.port, 32, f"{CHUNK}?offset=0", net=8, spread=1).start()
    try:
        assert slow.trickling() == 32
        busy = http_request(front.port, "POST", f"/ou/{HW}/alive", source="127.8.0.1")
        assert (busy.status, busy.json()["error"]) == (503, "BUSY")
        assert http_request(front.port, "POST", f"/ou/{HW}/alive", source="127.8.0.2").status == 200
    finally:
        slow.stop()
    wait_until(lambda: re.search(r'^127\.8\.0\.1 .* 503 .* conn=REJECTED', front.nginx_log("co2unit-units.log"), re.M))


def test_front_answers_plainly_when_uwsgi_is_down(front):
    front.app.stop()
    reply = http_request(front.port, "POST", f"/ou/{HW}/alive", source="127.9.0.1")
    assert_plain_answer(reply)
    assert (reply.status, reply.json()["error"]) == (502, "SERVER_DOWN")
    log = r'^127\.9\.0\.1 .*"POST /ou/\S+ HTTP/1.0" 502 .* upstream=502 '
    wait_until(lambda: re.search(log, front.nginx_log("co2unit-units.log"), re.M))
    too_big = http_request(front.port, "PUT", f"{CHUNK}?offset=0", b"x" * 70000)
    assert (too_big.status, too_big.json()["error"]) == (413, "CHUNK_TOO_LARGE")


def ping_time(port: int, timeout: float) -> float | None:
    """Seconds until a ping is answered 200, or None if it is not answered within `timeout`."""
    start = time.monotonic()
    try:
        reply = http_request(port, "POST", f"/ou/{HW}/alive?site_code=fast", timeout=timeout, source="127.0.0.9")
    except (TimeoutError, ConnectionError):
        return None
    return time.monotonic() - start if reply.status == 200 else None


@pytest.mark.parametrize("through", ["nginx", "direct"])
def test_300_trickling_uploads_keep_units_out_only_without_the_front(through, make_front, make_server):
    """nginx reads every body whole before a worker sees it: 300 clients at 50 B/s cost uWSGI nothing."""
    server = make_front() if through == "nginx" else make_server()
    slow = Trickler(server.port, 300, f"{CHUNK}?offset=0").start(settle=15 if through == "nginx" else 5)
    try:
        if through == "nginx":
            assert slow.trickling() == 300
            took = ping_time(server.port, timeout=2)
            assert took is not None and took < 2, "a ping behind the front waited for slow clients"
            assert slow.trickling() == 300  # and the attack was still running
        else:
            # uWSGI alone: its 64 threads each wait on a slow body; the ping gets no answer in 2 s.
            assert slow.trickling() >= 64
            assert ping_time(server.port, timeout=2) is None
    finally:
        slow.stop()


def test_no_log_line_of_a_keyed_sync_holds_the_key(make_front, tmp_path):
    key = "Kx9-s3cr3t-unit-key"
    front = make_front(CO2_URL_KEY=key)
    unit = UnitSim(HW, tmp_path / "sd", front.port, prefix=f"/{key}")
    unit.write_sd("data/readings", "readings-0000.tsv", b"2019-10-07T00:00:00\t400\n" * 300)
    unit.write_sd("errors", "e.txt", b"boot error\n")
    assert unit.cycle() == "ok"
    stored = front.data_dir / HW / "data/readings/readings-0000.tsv"
    assert stored.read_bytes() == (tmp_path / "sd/data/readings/readings-0000.tsv").read_bytes()
    # Refusals, a gap and a too-large body on the keyed path, and a wrong key.
    for method, path, body in [
        ("PUT", f"/{key}/ou/{HW}/push-sequential/errors/e.txt?offset=999", b"x"),
        ("PUT", f"/{key}/ou/{HW}/push-sequential/data/%2e%2e/x?offset=0", b"x"),
        ("PUT", f"/{key}/ou/{HW}/push-sequential/errors/e.txt?offset=0", b"x" * 70000),
        ("GET", f"/{key}/ou/{HW}/nothing", None),
        ("POST", f"/{key}x/ou/{HW}/alive", None),
    ]:
        assert 400 <= front.request(method, path, body).status < 500
    front.app.stop()  # an upstream failure too
    assert front.request("POST", f"/{key}/ou/{HW}/alive").status == 502
    logs = front.all_logs()
    assert unit.requests >= 5 and logs.count("/*/ou/") >= unit.requests  # the requests were logged, masked
    assert key not in logs


def test_the_fronts_body_limit_is_the_apps_chunk_limit():
    """client_max_body_size in the site file is CO2_MAX_CHUNK_BYTES's default: the app's 413 and nginx's agree."""
    from front import SITE

    from co2server.config import SETTINGS

    sizes = re.findall(r"^\s*client_max_body_size (\d+)k;", SITE.read_text(), re.M)
    assert sizes and {int(k) * 1024 for k in sizes} == {int(SETTINGS["max_chunk_bytes"].default)}
