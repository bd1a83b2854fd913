"""The one error shape: JSON {"error": CODE, "message": "..."} plus extras.

Every rejection goes through `error_response`, which also logs it with the
unit ID (when the URL names one) and the reason, so an operator following the
journal sees why a unit was turned away. Logged paths are masked by
`logged_path`: the first segment of a unit URL is its key, a secret that
never reaches a log.
"""

from __future__ import annotations

import errno
import json
import logging

from flask import Response, g, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger("co2server")

# First path segments that are never a unit's URL key: logged as they are.
PUBLIC_SEGMENTS = frozenset({"", "ou", "status", "data", "healthz", "metrics", "favicon.ico", "robots.txt"})
MASK = "*"


def _raw_uri() -> str:
    return request.environ.get("REQUEST_URI") or request.full_path


def _secret_segment() -> str:
    """The URL's first path segment when it may be a key (anything not public), else ''."""
    first = _raw_uri().split("?", 1)[0].split("/")[1:2]
    return first[0] if first and first[0] not in PUBLIC_SEGMENTS else ""


def scrub(text: str) -> str:
    """`text` with the request's possible key replaced by '*' wherever it occurs."""
    secret = _secret_segment()
    return text.replace(secret, MASK) if secret else text


def logged_path() -> str:
    """The request's raw URI as logs show it: '/*/ou/<hw_id>/alive' for '/<key>/ou/...'."""
    return scrub(_raw_uri())[:300]


class ApiError(Exception):
    """A request we refuse: HTTP status, a stable CODE and a human message."""

    def __init__(self, status: int, code: str, message: str, *, log_reason: str | None = None, **extra):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.log_reason = log_reason  # logged, never sent (why a 404 that tells nothing was answered)
        self.extra = extra


def json_response(payload, status: int = 200, headers: dict | None = None) -> Response:
    """A JSON answer with a plain body and Content-Length (never chunked)."""
    body = json.dumps(payload) + "\n"
    return Response(body, status=status, headers=headers, mimetype="application/json")


def _unit_in_path() -> str:
    """The segment after /ou/ in the URL as sent (request.path has '..' already resolved)."""
    parts = request.environ.get("REQUEST_URI", request.path).split("?", 1)[0].split("/")
    if "ou" in parts:
        idx = parts.index("ou")
        if idx + 1 < len(parts):
            return parts[idx + 1][:80]
    return "-"


def error_response(exc: ApiError) -> Response:
    level = logging.ERROR if exc.status >= 500 else logging.WARNING
    log.log(
        level,
        "rejected %s %s from=%s unit=%s status=%d %s: %s%s",
        request.method,
        logged_path(),
        request.remote_addr or "-",
        scrub(_unit_in_path()),
        exc.status,
        exc.code,
        scrub(exc.message),
        f" (refused: {exc.log_reason})" if exc.log_reason else "",
    )
    g.co2_error_code = exc.code  # request_metrics.py counts refusals by code
    payload = {"error": exc.code, "message": exc.message}
    payload.update(exc.extra)
    return json_response(payload, status=exc.status)


# Stable codes for the HTTP errors Werkzeug raises on its own (routing, methods).
_HTTP_CODES = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "TOO_LARGE",
    414: "URI_TOO_LONG",
    431: "HEADERS_TOO_LARGE",
}


def from_http_exception(exc: HTTPException) -> ApiError:
    status = exc.code or 500
    code = _HTTP_CODES.get(status, "HTTP_ERROR")
    message = exc.description or exc.name
    if status == 405:
        allowed = sorted(m for m in (exc.valid_methods or []) if m not in ("HEAD", "OPTIONS"))
        message = f"{request.method} is not allowed here; use {', '.join(allowed) or 'another URL'}"
    elif status == 404:
        message = f"no such resource: {scrub(request.path)[:200]}"  # never echoes a key
    return ApiError(status, code, message)


# A write the disk refused for lack of room (the file system, or the user's quota).
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def any_error_response(exc: Exception) -> Response:
    """The one error answer for anything raised while handling a request."""
    if isinstance(exc, ApiError):
        return error_response(exc)
    if isinstance(exc, HTTPException):
        return error_response(from_http_exception(exc))
    if isinstance(exc, OSError) and exc.errno in NO_SPACE:
        log.error("no space on %s %s: %s", request.method, logged_path(), scrub(str(exc)))
        return error_response(ApiError(
            507, "INSUFFICIENT_STORAGE",
            "no space left on the server's disk: this was not stored (nothing of it was kept); send it again later",
        ))
    log.error("internal error on %s %s", request.method, logged_path(), exc_info=exc)
    return error_response(ApiError(500, "INTERNAL_ERROR", "internal server error; see the server log"))


def register_error_handlers(app) -> None:
    """Route every error outside Flask-RESTful's resources (routing, methods) to any_error_response."""
    app.register_error_handler(Exception, any_error_response)
