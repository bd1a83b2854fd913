"""Fixtures: a real uWSGI started from server.ini.example on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from firmware import http_request, wait_until

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
UWSGI = VENV_BIN / "uwsgi"
SERVER_INI = ROOT / "server.ini.example"

HW_IDS = ["co2unit-30aea42a50bc", "co2unit-30aea42a5268", "co2unit-30aea4ab12cd"]


def ini_processes() -> int:
    """The number of uWSGI worker processes server.ini.example asks for."""
    import re

    return int(re.search(r"^processes = (\d+)", SERVER_INI.read_text(), re.M).group(1))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class UwsgiServer:
    """A running uWSGI with its own data, var and database under tmp_path."""

    root: Path
    env_overrides: dict[str, str] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)  # after the ini (the benchmark's bare app)
    port: int = 0
    proc: subprocess.Popen | None = None
    workers: int = field(default_factory=lambda: ini_processes())
    # Set: uWSGI speaks the uwsgi protocol on this unix socket (CO2_UWSGI_SOCKET,
    # for nginx in front; tests/front.py) instead of HTTP on `port`.
    uwsgi_socket: Path | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "remote_data"

    @property
    def var_dir(self) -> Path:
        return self.root / "var"

    @property
    def db_path(self) -> Path:
        return self.var_dir / "db.sqlite3"

    @property
    def log_path(self) -> Path:
        return self.root / "uwsgi.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CO2_")}
        if self.uwsgi_socket:
            env["CO2_UWSGI_SOCKET"] = str(self.uwsgi_socket)
        else:
            env["CO2_HTTP_SOCKET"] = f"127.0.0.1:{self.port}"
        env.update(CO2_DATA_DIR=str(self.data_dir), CO2_VAR_DIR=str(self.var_dir))
        env.update(self.env_overrides)
        return env

    def start(self, timeout: float = 30.0) -> UwsgiServer:
        self.root.mkdir(parents=True, exist_ok=True)
        for _attempt in range(3):
            self.port = free_port()
            self.log_path.unlink(missing_ok=True)
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                [str(UWSGI), "--ini", str(SERVER_INI), *self.extra_args],
                env=self.env(), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                start_new_session=True,
            )
            log.close()
            if self._wait_ready(timeout):
                return self
            self.stop()
        raise RuntimeError(f"uWSGI did not start; log:\n{self.log()}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            # Ready once every worker has loaded the app (uWSGI hangs on a
            # SIGTERM that arrives while a worker is still loading).
            if self.log().count("WSGI app 0 (mountpoint='') ready") >= self.workers:
                if self.uwsgi_socket:
                    if self.uwsgi_socket.is_socket():
                        return True
                else:
                    try:
                        if http_request(self.port, "GET", "/", timeout=2).status == 200:
                            # uWSGI logs a request after answering it: wait for that line, so
                            # that a test counting request lines starts from a settled log.
                            return bool(wait_until(lambda: re.search(r'"GET \S+ HTTP/1\.[01]" ', self.log()), timeout=5))
                    except OSError:
                        pass
            time.sleep(0.05)
        return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def kill_all(self) -> None:
        """SIGKILL the master and every worker: a crash, not a shutdown."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill_all()
            raise AssertionError("uWSGI did not stop within 15 s of SIGTERM; log tail:\n" + self.log()[-3000:]) from None

    def request(self, method: str, path: str, body: bytes | None = None, **kw):
        return http_request(self.port, method, path, body, **kw)

    @contextlib.contextmanager
    def traced(self, syscalls: str) -> Iterator[SyscallTrace]:
        """Record the workers' `syscalls` (strace, every thread) while the block runs."""
        strace = shutil.which("strace")
        if strace is None:
            if os.environ.get("CI") == "true":
                raise AssertionError("strace is missing; scripts/run-tests.sh installs it as root")
            pytest.skip("strace is not installed (as root: apt-get install strace)")
        out, err = self.root / "strace.txt", self.root / "strace.err"
        args = [strace, "-f", "-tt", "-y", "-s", "80", "-e", f"trace={syscalls}", "-o", str(out)]
        pids = self.worker_pids()
        for pid in pids:
            args += ["-p", str(pid)]
        with open(err, "w") as err_file:
            proc = subprocess.Popen(args, stderr=err_file)
        trace = SyscallTrace()
        try:
            deadline = time.monotonic() + 10
            while err.read_text().count(" attached") < len(pids):  # "Process N attached with M threads"
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"strace did not attach: {err.read_text()[-500:]}")
                time.sleep(0.02)
            yield trace
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        trace.lines = out.read_text().splitlines()


# One strace line: "<tid> <time> <syscall>(<args>) = <result>" (strace pads
# short thread IDs with more spaces), or the halves
# of a call that another thread interrupted ("... <unfinished ...>" and
# "<... fsync resumed>...").
_TRACE_RE = re.compile(r"(\d+)\s+\S+ (?:<\.\.\. (\w+) resumed>|(\w+)\()(.*)")


def _writes_an_answer(call: str) -> bool:
    """A write whose data starts with an HTTP status line (not a log line that quotes one)."""
    quote = call.find('"')
    return quote >= 0 and call.startswith("HTTP/1.", quote + 1)


@dataclass
class SyscallTrace:
    lines: list[str] = field(default_factory=list)

    def before_answers(self) -> list[list[str]]:
        """Per HTTP answer the workers wrote: the completed calls its thread made since its previous answer."""
        done: dict[str, list[str]] = {}
        started: dict[str, str] = {}  # tid -> first half of a call another thread interrupted
        answers = []
        for line in self.lines:
            match = _TRACE_RE.match(line)
            if not match:
                continue
            tid, resumed, call, rest = match.groups()
            if line.endswith(" <unfinished ...>"):
                started[tid] = f"{call}({rest.removesuffix(' <unfinished ...>')}"
                continue
            text = started.pop(tid, f"{resumed}(") + rest if resumed else f"{call}({rest}"
            if text.startswith(("write(", "writev(", "sendto(", "sendmsg(")) and _writes_an_answer(text):
                answers.append(done.pop(tid, []))
            else:
                done.setdefault(tid, []).append(text)
        return answers


@pytest.fixture
def make_server(tmp_path):
    """Factory: make_server(**CO2_ENV) starts a fresh uWSGI; all are stopped after the test."""
    servers = []

    def start(root: Path | None = None, **env_overrides) -> UwsgiServer:
        server = UwsgiServer(root or tmp_path, {k: str(v) for k, v in env_overrides.items()})
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def server(request, make_server, make_front):
    """uWSGI alone (the quick start); with @direct_and_through_nginx, also behind nginx's units' door."""
    return make_front() if getattr(request, "param", "direct") == "nginx" else make_server()


# Runs a test that takes `server` twice: against uWSGI alone, and through the
# production front (the firmware's view must be the same byte for byte).
direct_and_through_nginx = pytest.mark.parametrize("server", ["direct", "nginx"], indirect=True)


# The production front (tests/front.py): nginx from nginx-co2unit.conf.example.
from front import NginxFront, TlsCert  # noqa: E402


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory) -> TlsCert:
    return TlsCert.make(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def make_front(tmp_path, tls_cert):
    """Factory: make_front(**CO2_ENV) starts uWSGI on a unix socket and nginx's two doors before it."""
    fronts = []

    def start(root: Path | None = None, **env_overrides) -> NginxFront:
        app = UwsgiServer(root or tmp_path, {k: str(v) for k, v in env_overrides.items()})
        front = NginxFront(app, tls_cert)
        fronts.append(front)
        return front.start()

    yield start
    for front in fronts:
        front.stop()


@pytest.fixture
def front(make_front) -> NginxFront:
    return make_front()
