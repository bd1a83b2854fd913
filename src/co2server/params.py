"""Small, strict readers for query parameters (no reqparse: its docs deprecate it)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs

from flask import current_app, request

from .config import Config
from .errors import ApiError

_INT_RE = re.compile(r"-?[0-9]{1,30}")
_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def config() -> Config:
    return current_app.config["CO2"]


def _query() -> dict[str, list[str]]:
    """The query string, parsed once per request (lighter than request.args)."""
    environ = request.environ
    parsed = environ.get("co2server.query")
    if parsed is None:
        parsed = environ["co2server.query"] = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    return parsed


def _single(name: str) -> str | None:
    values = _query().get(name, ())
    if len(values) > 1:
        raise ApiError(400, "BAD_QUERY", f"query parameter {name!r} is given {len(values)} times")
    return values[0] if values else None


def query_int(name: str, *, required: bool = False, minimum: int | None = None,
              maximum: int | None = None, default: int | None = None,
              none_literal: bool = False) -> int | None:
    raw = _single(name)
    if raw is None or (none_literal and raw in ("", "None")):
        if required:
            raise ApiError(400, "BAD_QUERY", f"query parameter {name!r} is required")
        return default
    if not _INT_RE.fullmatch(raw):
        raise ApiError(400, "BAD_QUERY", f"query parameter {name}={raw[:40]!r} is not an integer")
    value = int(raw)
    if minimum is not None and value < minimum:
        raise ApiError(400, "BAD_QUERY", f"query parameter {name}={value} is below {minimum}")
    if maximum is not None and value > maximum:
        raise ApiError(400, "BAD_QUERY", f"query parameter {name}={value} is above {maximum}")
    return value


def query_bool(name: str, default: bool) -> bool:
    raw = _single(name)
    if raw is None:
        return default
    value = _BOOLS.get(raw.lower())
    if value is None:
        raise ApiError(400, "BAD_QUERY", f"query parameter {name}={raw[:40]!r} is not True or False")
    return value


def query_text(name: str, *, max_len: int = 64) -> str | None:
    """Printable ASCII without spaces or tabs (it goes into a TSV line), or None."""
    raw = _single(name)
    if raw is None:
        return None
    if not raw or len(raw) > max_len or not all("!" <= c <= "~" for c in raw):
        raise ApiError(
            400, "BAD_QUERY",
            f"query parameter {name!r} must be 1 to {max_len} printable ASCII characters without spaces",
        )
    return raw
