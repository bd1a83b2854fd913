"""Readers for query parameters: strict ones (no reqparse: its docs deprecate it), tolerant ones for the ping.

The query string is parsed once per request. Units send plain values, so the
common case is split by hand; anything percent-encoded goes through
urllib's parse_qs, which decodes it.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import parse_qs, unquote_to_bytes

from flask import current_app, request

from .config import Config
from .errors import ApiError

_INT_RE = re.compile(r"-?[0-9]{1,30}")
_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_HTTP_VERSION_RE = re.compile(r"HTTP/\d\.\d")
# Characters never kept in a nickname: controls (TAB, newlines, DEL, C1),
# invisible format characters (bidi overrides, zero-width) and line separators.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
REPLACED = "\N{REPLACEMENT CHARACTER}"


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


# ---------------------------------------------------------------- tolerant readers (the alive ping)
#
# A ping is never refused for its values (the firmware abandons its whole
# cycle on anything but 200): these readers repair what they are given and
# say what they repaired, for the log and the dashboard.


def query_bytes() -> dict[bytes, list[bytes]]:
    """The query as the client sent its bytes: name -> values, percent-decoded.

    The environ holds the bytes as latin-1 text (PEP 3333). uWSGI's own HTTP
    parser ends the query at a raw space (a nickname the firmware sends
    unencoded) and takes the rest of the request line as the protocol; that
    part is joined back here.
    """
    environ = request.environ
    query = environ.get("QUERY_STRING", "")
    protocol = environ.get("SERVER_PROTOCOL", "")
    if protocol and not _HTTP_VERSION_RE.fullmatch(protocol):
        rest, _, version = protocol.rpartition(" ")
        if rest and _HTTP_VERSION_RE.fullmatch(version):
            query = f"{query} {rest}"
    parsed: dict[bytes, list[bytes]] = {}
    for pair in query.encode("latin-1", errors="replace").split(b"&"):
        if pair:
            name, _, value = pair.partition(b"=")
            parsed.setdefault(unquote_to_bytes(name.replace(b"+", b" ")), []).append(
                unquote_to_bytes(value.replace(b"+", b" ")))
    return parsed


def _one(values: list[bytes] | None, name: str, notes: list[str]) -> bytes | None:
    if not values:
        return None
    if len(values) > 1:
        notes.append(f"{name} given {len(values)} times: the first kept")
    return values[0]


def tolerant_text(values: list[bytes] | None, name: str, notes: list[str], *, max_len: int = 64) -> str | None:
    """UTF-8 text safe for a TSV field and a page: unsafe characters replaced, capped at `max_len`.

    Absent, empty or the literal None: None. Repairs are appended to `notes`.
    """
    raw = _one(values, name, notes)
    if raw is None or raw in (b"", b"None"):
        return None
    text = raw.decode("utf-8", errors="replace")
    if REPLACED in text and REPLACED.encode() not in raw:
        notes.append(f"{name} is not UTF-8: bad bytes replaced by {REPLACED}")
    safe = "".join(REPLACED if unicodedata.category(c) in _UNSAFE_CATEGORIES else c for c in text)
    if safe != text:
        notes.append(f"{name} held control or invisible characters: replaced by {REPLACED}")
    if len(safe) > max_len:
        notes.append(f"{name} is {len(safe)} characters long: cut to {max_len}")
        safe = safe[:max_len - 1] + "\N{HORIZONTAL ELLIPSIS}"
    if safe != text:
        notes[-1] += f" (sent {ascii(text[:80])})"
    return safe


def tolerant_int(values: list[bytes] | None, name: str, notes: list[str], *, limit: int) -> int | None:
    """An integer within +-`limit`, or None: absent, empty, None, or anything else (noted)."""
    if values is not None and len(values) > 1:
        notes.append(f"{name} given {len(values)} times: stored as missing")
        return None
    raw = _one(values, name, notes)
    if raw is None or raw in (b"", b"None"):
        return None
    text = raw.decode("utf-8", errors="replace")
    if _INT_RE.fullmatch(text) and -limit <= int(text) <= limit:
        return int(text)
    notes.append(f"{name}={ascii(text[:40])} is not an integer within +-{limit}: stored as missing")
    return None
