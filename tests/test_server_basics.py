"""Health, the URL key, configuration and slow links, on the real uWSGI."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from co2server.config import Config, ConfigError
from firmware import http_request

HW = "co2unit-30aea42a50bc"


def test_home_and_health(server):
    home = http_request(server.port, "GET", "/")
    assert home.status == 200 and b"CO2" in home.body
    health = http_request(server.port, "GET", "/healthz")
    assert health.status == 200
    assert health.json()["status"] == "ok"
    assert health.json()["data_dir_writable"] is True and health.json()["database"] == "ok"


def test_health_is_503_when_data_folder_is_unusable(make_server, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    server = make_server(CO2_DATA_DIR=blocker / "remote_data")
    health = http_request(server.port, "GET", "/healthz")
    assert health.status == 503
    assert health.json()["data_dir_writable"] is False


def test_url_key_prefixes_every_unit_request(make_server):
    server = make_server(CO2_URL_KEY="s3cret")
    assert http_request(server.port, "POST", f"/s3cret/ou/{HW}/alive").status == 200
    reply = http_request(server.port, "POST", f"/ou/{HW}/alive")
    assert reply.status == 404
    assert http_request(server.port, "PUT", f"/ou/{HW}/push-sequential/errors/e.txt?offset=0", b"x").status == 404
    assert not (server.data_dir / HW / "errors").exists()
    ok = http_request(server.port, "PUT", f"/s3cret/ou/{HW}/push-sequential/errors/e.txt?offset=0", b"x")
    assert ok.json() == {"ack_file": ["e.txt", 1, 1]}


def test_config_defaults_and_errors(tmp_path):
    cfg = Config.from_environ({})
    assert cfg.data_dir.name == "remote_data" and cfg.db_path == cfg.var_dir / "db.sqlite3"
    assert (cfg.max_chunk_bytes, cfg.max_file_bytes, cfg.url_key) == (65536, 16 * 1024 * 1024, "")
    cfg = Config.from_environ({"CO2_VAR_DIR": str(tmp_path), "CO2_URL_KEY": "/abc/"})
    assert cfg.db_path == tmp_path / "db.sqlite3" and cfg.url_key == "abc"
    for env in ({"CO2_MAX_CHUNK_BYTES": "big"}, {"CO2_MAX_FILE_BYTES": "0"}, {"CO2_URL_KEY": "a/b"},
                {"CO2_HW_ID_PATTERN": "("}, {"CO2_SILENT_HOURS": "-1"}):
        with pytest.raises(ConfigError):
            Config.from_environ(env)


def test_bad_configuration_stops_uwsgi_with_a_clear_message(tmp_path):
    from conftest import UwsgiServer

    server = UwsgiServer(tmp_path, {"CO2_MAX_CHUNK_BYTES": "lots"})
    with pytest.raises(RuntimeError):
        server.start(timeout=10)
    assert "CO2_MAX_CHUNK_BYTES='lots' is not an integer" in server.log()


def trickle_chunk(port, hw_id, n, results, rate=500, size=4096):
    """Send one 4 KiB chunk at `rate` bytes/s, as a unit in poor coverage does."""
    body = bytes([65 + n % 26]) * size
    head = (f"PUT /ou/{hw_id}/push-sequential/data/readings/readings-0000.tsv?offset=0 HTTP/1.0\r\n"
            f"Host: x\r\nContent-Length: {size}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head)
        step = rate // 10
        for i in range(0, size, step):
            sock.sendall(body[i:i + step])
            time.sleep(0.1)
        data = b""
        while part := sock.recv(65536):
            data += part
    results[n] = (time.monotonic(), data.split(b"\r\n", 1)[0])


def test_slow_links_do_not_starve_a_ping(server):
    results = {}
    slow = [threading.Thread(target=trickle_chunk, args=(server.port, f"co2unit-{n:012x}", n, results)) for n in range(20)]
    for t in slow:
        t.start()
    time.sleep(1.0)  # all 20 are connected and trickling
    reply = http_request(server.port, "POST", f"/ou/{HW}/alive?site_code=fast", timeout=5)
    ping_done = time.monotonic()
    for t in slow:
        t.join()
    assert reply.status == 200
    # The ping was answered while every slow upload was still sending...
    assert ping_done < min(done for done, _ in results.values())
    # ...and every slow upload was stored in full.
    assert all(status.endswith(b"200 OK") for _, status in results.values())
    for n in range(20):
        stored = (server.data_dir / f"co2unit-{n:012x}" / "data/readings/readings-0000.tsv").read_bytes()
        assert stored == bytes([65 + n % 26]) * 4096
