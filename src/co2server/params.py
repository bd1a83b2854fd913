"""Small, strict readers for query parameters (no reqparse: its docs deprecate it).

The query string is parsed once per request. Units send plain values, so the
common case is split by hand; anything percent-encoded goes through
urllib's parse_qs, which decodes it.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs

from flask import current_app, request

from .config import Config
from .errors import ApiError

_INT_RE = re.compile(r"-?[0-9]{1,30}")
_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_PRINTABLE_RE = re.compile(r"[!-~]+")  # printable ASCII without space


def config() -> Config:
    return current_app.config["CO2"]


def parse_query(query_string: str) -> dict[str, list[str]]:
    """name -> values, as parse_qs(keep_blank_values=True) gives them."""
    if "%" in query_string or "+" in query_string:
        return parse_qs(query_string, keep_blank_values=True)
    parsed: dict[str, list[str]] = {}
    for pair in query_string.split("&"):
        if pair:
            name, _, value = pair.partition("=")
            if name in parsed:
                parsed[name].append(value)
            else:
                parsed[name] = [value]
    return parsed


def _single(name: str) -> str | None:
    environ = request.environ
    parsed = environ.get("co2server.query")
    if parsed is None:
        parsed = environ["co2server.query"] = parse_query(environ.get("QUERY_STRING", ""))
    values = parsed.get(name)
    if values is None:
        return None
    if len(values) > 1:
        raise ApiError(400, "BAD_QUERY", f"query parameter {name!r} is given {len(values)} times")
    return values[0]


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
    if len(raw) > max_len or not _PRINTABLE_RE.fullmatch(raw):
        raise ApiError(
            400, "BAD_QUERY",
            f"query parameter {name!r} must be 1 to {max_len} printable ASCII characters without spaces",
        )
    return raw
