"""Requests and refusals counted across all uWSGI worker processes (prometheus_client's multiprocess mode).

Each worker process writes its counters to its own small memory-mapped file
(prometheus_client's `counter_<pid>.db`) in one folder shared by the
workers of one uWSGI master: `var/metrics/uwsgi-<master pid>-<start time>/`.
GET /metrics (any worker) sums every file of that folder, so the totals
cover both processes and the workers uWSGI recycled (max-requests, harakiri)
since the master started.

Start-up: the first worker to load the app after a (re)start of uWSGI makes
the folder of its master and removes the folders of masters that are gone
(a stopped or crashed server), so the counters start from zero with each
new master, as Prometheus expects of a counter after a restart. A folder of
a master that still runs is never touched, and a worker recycled by a
running master keeps writing into the same folder. The start time in the
name keeps a reused pid (after a reboot) from reviving old counts.

Counted in one place, `count(response)` (an after_request hook: every
answer of the app, errors included), by the Flask endpoint name (the URL
rule's resource, never the path, so no URL key can reach a label) and the
status; refusals (4xx/5xx) also by the error CODE of the answer. What uWSGI
or nginx refuse before the app sees a request (limit-post, the units' door's
own 404s) is not counted here.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

from flask import g, request
from prometheus_client.values import MultiProcessValue

from .errors import log

try:  # only under uWSGI
    import uwsgi
except ImportError:
    uwsgi = None

REQUESTS = "co2server_http_requests"
REFUSALS = "co2server_http_refusals"
_REQUESTS_HELP = "HTTP requests answered by the app, by Flask endpoint and status (all worker processes)"
_REFUSALS_HELP = "Requests refused (4xx/5xx) by Flask endpoint, status and error code (all worker processes)"
UNMATCHED = "unmatched"  # no URL rule matched (a 404 of routing)
# prometheus_client maps each process's file and writes into it; a page of a
# sparse file that the disk has no room for is a SIGBUS, the worker's death.
# So the file is allocated for real before the first counter, at the size
# prometheus_client starts with (64 KiB: some 400 endpoint/status pairs).
PREALLOCATED_BYTES = 1 << 16


def _process_start(pid: int) -> str:
    """The start time of process `pid` in clock ticks since boot (/proc), '' when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _alive(name: str) -> bool:
    """Whether the master that a folder `uwsgi-<pid>-<start>` belongs to still runs."""
    parts = name.split("-")
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    return _process_start(pid) == parts[2] and parts[2] != ""


def preallocate(folder: Path) -> None:
    """This process's counter file, its blocks allocated (OSError, and no file, when the disk is full)."""
    path = folder / f"counter_{os.getpid()}.db"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        if os.fstat(fd).st_size < PREALLOCATED_BYTES:
            os.posix_fallocate(fd, 0, PREALLOCATED_BYTES)
    except OSError:
        if os.fstat(fd).st_size < PREALLOCATED_BYTES:
            os.unlink(path)  # never leave a short file for prometheus_client to extend sparsely
        raise
    finally:
        os.close(fd)


def master_pid() -> int:
    """uWSGI's master (the workers' common parent), or this process when not under uWSGI."""
    if uwsgi is not None:
        try:
            return int(uwsgi.masterpid()) or os.getpid()
        except AttributeError:
            pass
    return os.getpid()


def prepare_folder(var_dir: Path) -> Path:
    """This master's counter folder, made; the folders of masters no longer running removed."""
    top = var_dir / "metrics"
    pid = master_pid()
    mine = f"uwsgi-{pid}-{_process_start(pid) or 'x'}"
    folder = top / mine
    folder.mkdir(parents=True, exist_ok=True)
    for entry in os.scandir(top):
        if entry.name != mine and entry.is_dir(follow_symlinks=False) and not _alive(entry.name):
            shutil.rmtree(entry.path, ignore_errors=True)  # another worker may be removing it too
    return folder


class RequestCounter:
    """The app's request counters, in `folder` (shared by the worker processes of one master)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._value_class = MultiProcessValue()
        self._values: dict[tuple, object] = {}
        self._lock = threading.Lock()

    def _value(self, name: str, help_text: str, labels: tuple[str, ...], values: tuple[str, ...]):
        key = (name, values)
        value = self._values.get(key)
        if value is None:
            with self._lock:
                value = self._values.get(key)
                if value is None:
                    # prometheus_client opens this process's file in the folder this variable
                    # names when a value of the class is first made (read there, not at import).
                    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(self.folder)
                    if not self._values:
                        preallocate(self.folder)
                    value = self._values[key] = self._value_class(
                        "counter", name, name + "_total", labels, values, help_text)
        return value

    def count(self, endpoint: str | None, status: int, code: str | None) -> None:
        endpoint = endpoint or UNMATCHED
        self._value(REQUESTS, _REQUESTS_HELP, ("endpoint", "status"), (endpoint, str(status))).inc(1)
        if status >= 400:
            self._value(REFUSALS, _REFUSALS_HELP, ("endpoint", "status", "code"),
                        (endpoint, str(status), code or "-")).inc(1)


def install(app, var_dir: Path) -> RequestCounter | None:
    """Count every answer of `app`; None (and nothing counted) when the folder cannot be made."""
    try:
        counter = RequestCounter(prepare_folder(var_dir))
    except OSError as exc:
        log.error("request counting is off: cannot use %s: %s", var_dir / "metrics", exc)
        return None

    @app.after_request
    def count_request(response):
        try:
            counter.count(request.endpoint, response.status_code, g.get("co2_error_code"))
        except OSError as exc:  # the var disk full: the answer matters more than its count
            log.error("request not counted: %s", exc)
        return response

    app.extensions["co2_request_counter"] = counter
    return counter
