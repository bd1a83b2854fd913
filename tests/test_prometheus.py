"""The real Prometheus (Debian's package, installed by scripts/run-tests.sh) with the shipped rules and /metrics.

- promtool checks prometheus-co2unit-rules.yml and runs its unit tests
  (tests/prometheus/co2unit-rules.test.yml: each alert fires, its near miss stays quiet);
- a Prometheus on a free loopback port scrapes the real uWSGI (2 processes,
  server.ini.example) every second while firmware-like clients run their
  cycles, and its HTTP API answers the series and the request counts summed
  over both worker processes;
- the same Prometheus with the example scrape job logs in at the real nginx
  people's door (HTTPS, basic auth), as README "Monitoring with Prometheus" says;
- amtool checks the example Alertmanager config and its routes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, free_port
from firmware import UnitSim, http_request, read_reply, wait_until

RULES = ROOT / "prometheus-co2unit-rules.yml"
RULES_TEST = ROOT / "tests" / "prometheus" / "co2unit-rules.test.yml"
UNITS = ["co2unit-30aea42a50bc", "co2unit-30aea42a5268", "co2unit-30aea4ab12cd"]
# One request line of uWSGI's log (server.ini.example's log-format).
REQUEST_LINE = re.compile(r'"(?:GET|POST|PUT|HEAD) (\S+) HTTP/1\.[01]" (\d{3}) .* pid=(\d+) ')


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI") == "true":
            raise AssertionError(f"{name} is missing; scripts/run-tests.sh installs Debian's prometheus as root")
        pytest.skip(f"{name} is not installed (as root: apt-get install prometheus)")
    return found


def test_promtool_checks_the_shipped_rules():
    out = subprocess.run([tool("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 10 rules found" in out.stdout


def test_promtool_unit_tests_fire_each_alert_and_spare_the_near_misses():
    tested = set(re.findall(r"alertname: (\w+)", RULES_TEST.read_text()))
    assert tested == set(re.findall(r"- alert: (\w+)", RULES.read_text())), "every shipped alert has a unit test"
    out = subprocess.run([tool("promtool"), "test", "rules", str(RULES_TEST)], capture_output=True, text=True,
                         cwd=RULES_TEST.parent)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_example_config_is_valid():
    """prometheus-co2unit.yml.example, with its rule file beside it, passes promtool check config."""
    out = subprocess.run([tool("promtool"), "check", "config", "--syntax-only",
                          str(ROOT / "prometheus-co2unit.yml.example")],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_example_alertmanager_config_mails_each_alert_to_its_receiver():
    """alertmanager-co2unit.yml.example is valid, and routes critical alerts to the admins, the rest to the field."""
    example = str(ROOT / "alertmanager-co2unit.yml.example")
    out = subprocess.run([tool("amtool"), "check-config", example], capture_output=True, text=True)
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr
    alerts = re.findall(r"- alert: (\w+)\n.*?severity: (\w+)", RULES.read_text(), re.S)
    assert len(alerts) == 10 and {s for _, s in alerts} == {"critical", "warning", "info"}
    for alert, severity in alerts:
        routed = subprocess.run([tool("amtool"), "config", "routes", "test", f"--config.file={example}",
                                 f"alertname={alert}", f"severity={severity}", "hw_id=co2unit-30aea42a50bc"],
                                capture_output=True, text=True)
        expected = "server-admins" if severity == "critical" else "field-team"
        assert routed.stdout.strip() == expected, (alert, severity, routed.stdout, routed.stderr)


def direct_config(target_port: int) -> str:
    """Scrape uWSGI itself (plain HTTP, no login), every second, with the shipped rules."""
    return ("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {RULES}\n"
            "scrape_configs:\n  - job_name: co2unit-server\n    metrics_path: /metrics\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n")


def example_config(people_port: int, password_file: Path, ca_file: Path) -> str:
    """prometheus-co2unit.yml.example itself, pointed at the test's people's door, every second."""
    text = (ROOT / "prometheus-co2unit.yml.example").read_text()
    for old, new in [("scrape_interval: 1m", "scrape_interval: 1s"), ("evaluation_interval: 1m", "evaluation_interval: 1s"),
                     ("scrape_timeout: 20s", "scrape_timeout: 1s"),
                     ("/etc/prometheus/prometheus-co2unit-rules.yml", str(RULES)),
                     ("/etc/prometheus/co2unit-password", str(password_file)),
                     ('"co2.example.org:443"', f'"127.0.0.1:{people_port}"'),
                     ("    scheme: https\n", f"    scheme: https\n    tls_config:\n      ca_file: {ca_file}\n")]:
        assert old in text, f"prometheus-co2unit.yml.example no longer has {old!r}"
        text = text.replace(old, new)
    return text


class Prometheus:
    def __init__(self, root: Path, config_text: str):
        self.port = free_port()
        self.root = root
        config = root / "prometheus.yml"
        config.write_text(config_text)
        self.log = open(root / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [tool("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={root / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def api(self, path: str, **params) -> dict:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=5) as reply:
            answer = json.loads(reply.read())
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str) -> list[dict]:
        return self.api("query", query=expr)["result"]

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if len(result) == 1 else None

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as reply:
                return reply.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def http_request_status(port: int, path: str) -> int:
    return http_request(port, "GET", path).status


def counted_requests(log: str) -> tuple[int, set[int]]:
    """Requests other than the scrapes in uWSGI's log, and the worker pids that answered them."""
    lines = [m for m in REQUEST_LINE.finditer(log) if m.group(1) != "/metrics"]
    return len(lines), {int(m.group(3)) for m in lines}


def held_requests(port: int, count: int) -> list[int]:
    """`count` GET /healthz held open half-sent at once (more than one process's 32 threads), then finished."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(count)]
    try:
        for sock in socks:
            sock.sendall(b"GET /healthz HTTP/1.0\r\n")
        time.sleep(1.0)  # every connection accepted by a worker thread, waiting for the rest
        for sock in socks:
            sock.sendall(b"Host: 127.0.0.1\r\n\r\n")
        return [read_reply(sock).status for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def test_real_prometheus_scrapes_both_worker_processes(make_server, tmp_path):
    server = make_server()
    assert server.workers == 2
    prom = Prometheus(tmp_path, direct_config(server.port))
    try:
        assert wait_until(prom.ready, timeout=30), (tmp_path / "prometheus.log").read_text()[-2000:]
        # Three units run cycles side by side, on fresh connections each: both processes answer.
        sims = [UnitSim(hw, tmp_path / f"sd-{i}", server.port, nickname=f"tana-{i}", chunk_size=512)
                for i, hw in enumerate(UNITS)]
        for i, sim in enumerate(sims):
            sim.write_sd("data/readings", "readings-0001.tsv", (f"{sim.hw_id}\tx\t2026-01-02\t03:15:10\t2\n" * (20 + i)).encode())
            sim.write_sd("errors", "errors-0001.txt", b"----- 2026-01-02 03:15:00 INFO  ok\n")
        results = []

        def run(sim):
            results.extend(sim.cycle() for _ in range(3))

        threads = [threading.Thread(target=run, args=(sim,)) for sim in sims]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == ["ok"] * 9
        assert server.request("GET", "/nowhere").status == 404
        assert held_requests(server.port, 40) == [200] * 40

        made, pids = counted_requests(server.log()) if wait_until(
            lambda: counted_requests(server.log())[0] >= sum(s.requests for s in sims) + 42) else (None, None)
        assert made == sum(s.requests for s in sims) + 42  # + the fixture's GET /, the 404 and the 40 held
        assert pids == set(server.worker_pids()), "both worker processes answered requests"

        total = 'sum(co2server_http_requests_total{endpoint!="metrics"})'
        assert wait_until(lambda: prom.value(total) == made, timeout=30), (prom.query(total), made)
        assert prom.value('sum(co2server_http_requests_total{endpoint="aliveping",status="200"})') == 9
        assert prom.value('co2server_http_refusals_total{endpoint="unmatched",status="404",code="NOT_FOUND"}') == 1
        assert prom.value('up{job="co2unit-server"}') == 1
        assert prom.value("co2server_database_up") == 1
        assert prom.value("co2server_units") == 3
        for i, sim in enumerate(sims):
            labels = f'hw_id="{sim.hw_id}",nickname="tana-{i}",folder="data/readings"'
            size = (sim.sd / "data" / "readings" / "readings-0001.tsv").stat().st_size
            assert prom.value(f"co2unit_uploaded_bytes{{{labels}}}") == size
            assert prom.value(f'co2unit_pings_24h{{hw_id="{sim.hw_id}"}}') == 3
            assert prom.value(f'co2unit_rssi_dbm{{hw_id="{sim.hw_id}"}}') == -97
        # The shipped rules are loaded and evaluate without error against the real series.
        groups = prom.api("rules")["groups"]
        assert {g["name"] for g in groups} == {"co2unit-units", "co2unit-server"}
        assert wait_until(lambda: all(r.get("lastEvaluation", "").startswith("20") and r["health"] == "ok"
                                      for g in prom.api("rules")["groups"] for r in g["rules"]), timeout=30)
    finally:
        prom.stop()


def test_prometheus_logs_in_at_the_peoples_door_as_the_readme_says(make_front, tmp_path):
    """The example scrape job (HTTPS, basic auth) through the real nginx front: up, and the series are there."""
    front = make_front()
    front.add_operator("prometheus", "scrape-me-7f3a")
    password = tmp_path / "co2unit-password"
    password.write_text("scrape-me-7f3a\n")  # as typed into the file, newline and all
    assert http_request_status(front.port, "/metrics") == 404  # never on the units' door
    prom = Prometheus(tmp_path, example_config(front.people_port, password, front.tls.cert))
    try:
        assert wait_until(prom.ready, timeout=30), (tmp_path / "prometheus.log").read_text()[-2000:]
        assert wait_until(lambda: prom.value('up{job="co2unit-server"}') == 1, timeout=30), prom.api("targets")
        assert prom.value("co2server_database_up") == 1
        # Each scrape is counted by the next one.
        assert wait_until(lambda: (prom.value('co2server_http_requests_total{endpoint="metrics",status="200"}')
                                   or 0) >= 1, timeout=30)
    finally:
        prom.stop()
    assert "prometheus" in front.nginx_log("co2unit-people.log")  # logged in as its own operator
