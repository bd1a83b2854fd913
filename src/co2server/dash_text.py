"""Text the operators' pages show: times (ISO, "3 h ago", "in 3 h") and field data made safe."""

from __future__ import annotations

from datetime import UTC, datetime

MAX_LINE_CHARS = 300


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def iso_seconds(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S")


def parse_iso(text: str | None) -> datetime | None:
    """A naive UTC datetime from the ISO times we write, or None."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.strip().replace("Z", ""))
    except ValueError:
        return None


def ago_text(seconds: float | None) -> str:
    """'just now', '12 min ago', '3 h ago', '5 d ago' (or 'never')."""
    if seconds is None:
        return "never"
    if seconds < 0:
        return "in the future"
    return "just now" if seconds < 60 else f"{span_text(seconds)} ago"


def span_text(seconds: float) -> str:
    """'12 min', '3 h', '5 d': a duration of a minute or more, rounded down."""
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 48 * 3600:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} d"


def printable(raw: bytes, limit: int = MAX_LINE_CHARS) -> str:
    """A line of field data made safe to show: ASCII, no control characters, capped."""
    text = raw.decode("ascii", errors="replace").replace("\t", " ")
    text = "".join(c if " " <= c <= "~" else "\N{REPLACEMENT CHARACTER}" for c in text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "\N{HORIZONTAL ELLIPSIS}"


def printable_text(text: str, limit: int = MAX_LINE_CHARS) -> str:
    """`printable` for text that may be UTF-8: control characters replaced, capped."""
    text = "".join("\N{REPLACEMENT CHARACTER}" if c < " " or "\x7f" <= c <= "\x9f" else c for c in text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "\N{HORIZONTAL ELLIPSIS}"



def as_int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None



def until_text(seconds: float | None) -> str | None:
    """'in 3 h', 'in 12 min', 'in 2 d' for a time ahead; `ago_text` for one past; None when unknown."""
    if seconds is None:
        return None
    if seconds < 0:
        return ago_text(-seconds)
    return "in under a minute" if seconds < 60 else f"in {span_text(seconds)}"


def iso_z(ts: datetime | None) -> str | None:
    """An aware or naive-UTC datetime as ISO UTC with a Z, to the second, or None."""
    if ts is None:
        return None
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")
