"""Pages for people: the recent pings as text, and the pages the pipeline renders.

GET /status/alive/recent     plain text, the last pings (tail of the TSV log)
GET /status/alive/summary    var/pub/pings_summary.html, Refresh: 600
GET /data/co2/summary        var/pub/co2_summary.html, Refresh: 3600
GET /status/alive/<file>     files beside them in var/pub/ (plots), cached a
GET /data/co2/<file>         little shorter than the page's refresh

Every answer is built as bytes, so it carries a Content-Length and is never
chunked (PROTOCOL.md: the same rule as for the units, and cheap here). The
pipeline's files carry Last-Modified and answer a conditional GET
(If-Modified-Since) with 304 when unchanged (Werkzeug's make_conditional).
"""

from __future__ import annotations

import mimetypes
import os
import stat
from datetime import UTC, datetime
from email.utils import format_datetime

from flask import Response, render_template, request
from flask_restful import Resource

from .dashboard import iso_seconds, recent_pings, utc_now
from .errors import ApiError
from .params import config, query_bool, query_int
from .safe_paths import check_name

RECENT_DEFAULT = 20
RECENT_MAX = 1000
REFRESH_MAX = 86400
UNIT_PREFIX = "co2unit-"

# (page file in var/pub, its Refresh seconds, max-age of the files beside it).
# The files expire a minute or five before the page reloads, so a refreshed
# page always fetches fresh plots, while a page's own images load from cache.
PINGS_PAGE = ("pings_summary.html", 600, 540)
CO2_PAGE = ("co2_summary.html", 3600, 3300)
# While a page has not been rendered yet, look again every minute.
MISSING_PAGE_REFRESH = 60


def _short_unit(unit_id: str) -> str:
    return unit_id[len(UNIT_PREFIX):] if unit_id.startswith(UNIT_PREFIX) else unit_id


def _field(value: str | None) -> str:
    return "None" if value is None else value


class AliveRecent(Resource):
    """The newest pings, read from the end of the TSV log of record.

    Why the log and not the database: the log is written first (a ping is
    answered 200 once it is there, even if the insert failed), reading it
    backwards costs a few kilobytes, and it works while the pipeline holds
    the database or before the database exists.
    """

    def get(self):
        n = query_int("n", minimum=1, maximum=RECENT_MAX, default=RECENT_DEFAULT)
        ascending = query_bool("asc", default=False)
        refresh = query_int("refresh", minimum=1, maximum=REFRESH_MAX)
        pings = recent_pings(config().pings_dir, n)
        lines = [
            "\t".join((
                p.ping_ts[:19], _short_unit(p.unit_id), _field(p.nickname),
                _field(p.rssi_raw), _field(p.rssi_dbm), _field(p.ber_raw),
            ))
            for p in pings
        ]
        lines.insert(0, f"{iso_seconds(utc_now())}\t(now)")
        if ascending:
            lines.reverse()
        headers = {"Cache-Control": "no-cache"}
        if refresh is not None:
            headers["Refresh"] = str(refresh)
        body = ("\n".join(lines) + "\n").encode("utf-8")
        return Response(body, headers=headers, mimetype="text/plain")


def _open_pub_file(name: str) -> tuple[bytes, float] | None:
    """The bytes and mtime of var/pub/<name>, or None when it is not there.

    Only regular files directly in var/pub; a symlink is refused (403). The
    open never blocks (O_NONBLOCK): a FIFO or device planted in var/pub would
    otherwise hold the worker thread until something writes to it; anything
    but a regular file answers as missing.
    """
    check_name(name)
    path = config().pub_dir / name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if os.path.islink(path):
            raise ApiError(403, "SYMLINK_REFUSED", f"{name} is a symbolic link on the server") from exc
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks), st.st_mtime
    finally:
        os.close(fd)


def _conditional(data: bytes, mtime: float, headers: dict[str, str], mimetype: str) -> Response:
    """The file's answer, or a bodyless 304 when the client's If-Modified-Since copy is still current."""
    headers["Last-Modified"] = format_datetime(datetime.fromtimestamp(int(mtime), UTC), usegmt=True)
    return Response(data, headers=headers, mimetype=mimetype).make_conditional(request.environ)


def not_rendered(page: str, heading: str | None = None, commands: list[str] | None = None) -> Response:
    """A friendly page instead of a 404 while the pipeline has not run yet.

    Status 200 with a Refresh header: a phone left on this page keeps polling
    and shows the real page as soon as it exists. (The pipeline's health is
    for /healthz and the timer's own status, not for this page.)
    """
    body = render_template(
        "not_rendered.html", page=page, pub_dir=str(config().pub_dir), heading=heading,
        commands=commands or ["make -C database", "scripts/make-summaries.sh"],
        refresh=MISSING_PAGE_REFRESH, now=iso_seconds(utc_now()),
    ).encode("utf-8")
    headers = {"Refresh": str(MISSING_PAGE_REFRESH), "Cache-Control": "no-store"}
    return Response(body, headers=headers, mimetype="text/html")


def _summary(spec: tuple[str, int, int]) -> Response:
    page, refresh, _max_age = spec
    found = _open_pub_file(page)
    if found is None:
        return not_rendered(page)
    data, mtime = found
    return _conditional(data, mtime, {"Refresh": str(refresh), "Cache-Control": "no-cache"}, "text/html")


def _pub_file(spec: tuple[str, int, int], name: str) -> Response:
    found = _open_pub_file(name)
    if found is None:
        raise ApiError(404, "NOT_FOUND", f"no file {name[:80]!r} has been rendered into var/pub")
    data, mtime = found
    mimetype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return _conditional(data, mtime, {"Cache-Control": f"max-age={spec[2]}"}, mimetype)


class AliveSummary(Resource):
    def get(self):
        return _summary(PINGS_PAGE)


class AliveFile(Resource):
    def get(self, name: str):
        return _pub_file(PINGS_PAGE, name)


class Co2Summary(Resource):
    def get(self):
        return _summary(CO2_PAGE)


class Co2File(Resource):
    def get(self, name: str):
        return _pub_file(CO2_PAGE, name)
