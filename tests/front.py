"""The production front for tests: Debian's nginx from nginx-co2unit.conf.example, before a real uWSGI.

The site file runs as shipped, with only its ports and paths replaced by free
loopback ports and files under the test's folder; every replacement must find
its text, so a changed example fails here loudly instead of testing
something else. The main nginx.conf is a small stand-in for Debian's
/etc/nginx/nginx.conf (same http settings that matter: sendfile, gzip on,
mime types), with the worker_connections the README tells operators to set.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "nginx-co2unit.conf.example"
OPERATORS = ROOT / "scripts" / "operators.sh"
WORKER_CONNECTIONS = 4096  # README, "Deploy": raise Debian's 768


def nginx_binary() -> str:
    """Debian's nginx (installed by scripts/run-tests.sh); skipped outside CI when missing."""
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)
    if found:
        return found
    if os.environ.get("CI") == "true":
        raise AssertionError("nginx is missing; scripts/run-tests.sh installs it as root")
    pytest.skip("nginx is not installed (as root: apt-get install nginx-light)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class TlsCert:
    """A self-signed certificate for 127.0.0.1 and localhost, made with openssl."""

    cert: Path
    key: Path

    @classmethod
    def make(cls, folder: Path) -> TlsCert:
        if shutil.which("openssl") is None:
            if os.environ.get("CI") == "true":
                raise AssertionError("openssl is missing; scripts/run-tests.sh installs it as root")
            pytest.skip("openssl is not installed (as root: apt-get install openssl)")
        cert, key = folder / "cert.pem", folder / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
            check=True, capture_output=True,
        )
        return cls(cert, key)

    def client_context(self) -> ssl.SSLContext:
        """A client that trusts this certificate only, and checks the host name."""
        return ssl.create_default_context(cafile=str(self.cert))


def render_site(text: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        if old not in text:
            raise AssertionError(f"{SITE.name} no longer contains {old!r}; update tests/front.py")
        text = text.replace(old, new)
    return text


@dataclass
class NginxFront:
    """nginx on two free loopback ports (units' door, people's door) before `app`, a UwsgiServer on a unix socket.

    Everything else (data_dir, log_path, log(), worker_pids, traced, ...) is the app's.
    """

    app: object
    tls: TlsCert
    units_port: int = 0
    people_port: int = 0
    proc: subprocess.Popen | None = None
    sock_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="co2-", dir="/tmp")))

    def __getattr__(self, name):
        if name == "app":  # not set yet (dataclass init): no recursion
            raise AttributeError(name)
        return getattr(self.app, name)

    @property
    def port(self) -> int:
        return self.units_port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.units_port}"

    @property
    def people_url(self) -> str:
        return f"https://127.0.0.1:{self.people_port}"

    @property
    def dir(self) -> Path:
        return self.app.root / "nginx"

    @property
    def htpasswd(self) -> Path:
        return self.dir / "co2unit.htpasswd"

    def nginx_log(self, name: str) -> str:
        """A log nginx wrote: co2unit-units.log, co2unit-people.log, the two -error.log, main-error.log."""
        path = self.dir / "logs" / name
        return path.read_text(errors="replace") if path.exists() else ""

    def all_logs(self) -> str:
        """Every line nginx and uWSGI logged."""
        return "".join(p.read_text(errors="replace") for p in sorted((self.dir / "logs").glob("*.log"))) + self.app.log()

    def add_operator(self, name: str, password: str) -> None:
        subprocess.run([str(OPERATORS), "add", name], input=password + "\n", text=True, check=True,
                       capture_output=True, env={**os.environ, "CO2_HTPASSWD": str(self.htpasswd)})

    def config_text(self) -> str:
        return render_site(SITE.read_text(), {
            "listen 8080;": f"listen 127.0.0.1:{self.units_port};",
            "    listen [::]:8080;\n": "",
            "listen 443 ssl;": f"listen 127.0.0.1:{self.people_port} ssl;",
            "    listen [::]:443 ssl;\n": "",
            "unix:/run/co2unit-server/uwsgi.sock": f"unix:{self.app.uwsgi_socket}",
            "/etc/letsencrypt/live/co2.example.org/fullchain.pem": str(self.tls.cert),
            "/etc/letsencrypt/live/co2.example.org/privkey.pem": str(self.tls.key),
            "/etc/nginx/co2unit.htpasswd": str(self.htpasswd),
            "/var/log/nginx/": f"{self.dir}/logs/",
        })

    def _write_config(self) -> Path:
        for sub in ("logs", "tmp"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.htpasswd.touch()
        shutil.copy("/etc/nginx/uwsgi_params", self.dir / "uwsgi_params")
        shutil.copy("/etc/nginx/mime.types", self.dir / "mime.types")
        (self.dir / "co2unit.conf").write_text(self.config_text())
        temp = " ".join(f"{kind}_temp_path {self.dir}/tmp/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        main = self.dir / "nginx.conf"
        main.write_text(
            ("user root;\n" if os.geteuid() == 0 else "")  # reads the test's root-owned htpasswd and socket
            + f"worker_processes auto;\npid {self.dir}/nginx.pid;\ndaemon off;\n"
            f"error_log {self.dir}/logs/main-error.log info;\n"
            f"events {{ worker_connections {WORKER_CONNECTIONS}; }}\n"
            "http {\n"
            "  sendfile on; tcp_nopush on; types_hash_max_size 2048;\n"
            "  include mime.types; default_type application/octet-stream;\n"
            "  gzip on;\n"  # as in Debian's nginx.conf
            f"  {temp}\n"
            f"  include {self.dir}/co2unit.conf;\n"
            "}\n"
        )
        return main

    def start(self, start_app: bool = True, timeout: float = 20.0) -> NginxFront:
        nginx = nginx_binary()
        if self.app.uwsgi_socket is None:
            self.app.uwsgi_socket = self.sock_dir / "uwsgi.sock"
        if start_app:
            self.app.start()
        for _attempt in range(3):
            self.units_port, self.people_port = _free_port(), _free_port()
            main = self._write_config()
            test = subprocess.run([nginx, "-t", "-p", str(self.dir), "-c", str(main), "-e", str(self.dir / "logs" / "startup.log")],
                                  capture_output=True, text=True)
            if test.returncode != 0:
                raise AssertionError(f"nginx -t refused the rendered {SITE.name}:\n{test.stderr}")
            self.proc = subprocess.Popen(
                [nginx, "-p", str(self.dir), "-c", str(main), "-e", str(self.dir / "logs" / "startup.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
            )
            if self._wait_listening(timeout):
                return self
            self.stop_nginx()
        raise RuntimeError("nginx did not start:\n" + self.nginx_log("startup.log") + self.nginx_log("main-error.log"))

    def _wait_listening(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                for port in (self.units_port, self.people_port):
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                time.sleep(0.05)
        return False

    def stop_nginx(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def stop(self) -> None:
        try:
            self.stop_nginx()
        finally:
            self.app.stop()
            shutil.rmtree(self.sock_dir, ignore_errors=True)

    def request(self, method: str, path: str, body: bytes | None = None, **kw):
        from firmware import http_request

        return http_request(self.units_port, method, path, body, **kw)
