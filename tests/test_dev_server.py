"""`python server.py`: the same app on Flask's development server, with a loud warning.

uWSGI imports server.py (`module = server:app`); run as a script it must
serve the app built from the same CO2_* settings, answer the firmware's
requests the same way, and say on stderr that it is for debugging only.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, free_port
from firmware import assert_plain_answer, http_request, wait_until

PYTHON = ROOT / ".venv" / "bin" / "python"
SRC = ROOT / "src"
HW = "co2unit-30aea42a50bc"
WARNING = ("server.py: Flask's development server on http://127.0.0.1:{port}/ -- for debugging only, "
           "NOT for the internet or the units in the field; run the real server with "
           'scripts/start-server.sh (uWSGI) behind nginx (README, "Deploy")')


def dev_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CO2_")}
    env.update(CO2_DATA_DIR=str(tmp_path / "remote_data"), CO2_VAR_DIR=str(tmp_path / "var"))
    return env


def answers(port: int) -> bool:
    try:
        return http_request(port, "GET", "/", timeout=2).status == 200
    except OSError:
        return False


@pytest.fixture
def dev_server(tmp_path):
    """(process, port, stderr file) of a running `python server.py --port N`; terminated afterwards."""
    stderr_path = tmp_path / "stderr.txt"
    proc = None
    try:
        for _attempt in range(3):  # another process may take the free port first
            port = free_port()
            with open(stderr_path, "wb") as stderr:
                proc = subprocess.Popen([str(PYTHON), "server.py", "--port", str(port)], cwd=SRC,
                                        env=dev_env(tmp_path), stdout=subprocess.DEVNULL, stderr=stderr)
            deadline = time.monotonic() + 30
            while proc.poll() is None and not answers(port) and time.monotonic() < deadline:
                time.sleep(0.05)
            if proc.poll() is None and answers(port):
                break
            proc.kill()
            proc.wait(timeout=10)
        else:
            raise AssertionError("server.py did not answer; stderr:\n" + stderr_path.read_text(errors="replace"))
        yield proc, port, stderr_path
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
                raise AssertionError("server.py did not stop within 10 s of SIGTERM") from None


def test_dev_server_stores_a_ping_and_warns(dev_server, tmp_path):
    proc, port, stderr_path = dev_server
    reply = http_request(port, "POST", f"/ou/{HW}/alive?site_code=varanger-03&rssi_raw=8&rssi_dbm=-97&ber_raw=99")
    assert (reply.status, reply.body) == (200, b"OK\n")
    assert_plain_answer(reply)

    # The same configuration as under uWSGI: the CO2_* folders in tmp_path, nothing in the checkout.
    [log] = (tmp_path / "var" / "pings").glob("pings-*.tsv")
    [line] = log.read_text().splitlines()
    assert line.split("\t")[1:] == [HW, "varanger-03", "8", "-97", "99"]
    db = tmp_path / "var" / "db.sqlite3"

    def rows():
        with contextlib.closing(sqlite3.connect(db)) as conn:  # filled by a background thread after the 200
            return conn.execute("SELECT unit_id, nickname FROM pings").fetchall()

    assert wait_until(rows) == [(HW, "varanger-03")]
    assert (tmp_path / "remote_data").is_dir()
    assert http_request(port, "GET", "/status/alive/recent").status == 200

    assert stderr_path.read_text().splitlines()[0] == WARNING.format(port=port)
    assert proc.poll() is None


def test_help_and_bad_port():
    result = subprocess.run([str(PYTHON), "server.py", "--help"], cwd=SRC, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "--port" in result.stdout and "--host" in result.stdout
    result = subprocess.run([str(PYTHON), "server.py", "--port", "70000"], cwd=SRC, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2 and "not a TCP port" in result.stderr


def test_without_the_venv_says_what_to_do(tmp_path):
    # -S: no site-packages, as for a system python without Flask.
    result = subprocess.run([sys.executable, "-S", "server.py", "--port", str(free_port())], cwd=SRC,
                            env=dev_env(tmp_path), capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "scripts/setup-venv.sh" in result.stderr and ".venv/bin/python server.py" in result.stderr
    assert "Traceback" not in result.stderr


def test_imported_as_by_uwsgi_it_only_builds_the_app(tmp_path):
    code = "import server; print(type(server.app).__name__, server.app.config['CO2'].var_dir)"
    result = subprocess.run([str(PYTHON), "-c", code], cwd=SRC, env=dev_env(tmp_path), capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"Flask {tmp_path / 'var'}\n"
    assert "development server" not in result.stderr
