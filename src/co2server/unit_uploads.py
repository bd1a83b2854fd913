"""PUT /ou/<hw_id>/push-sequential/<dir>/<file>?offset=N: one chunk of a file."""

from __future__ import annotations

import logging

from flask import request
from flask_restful import Resource

from .chunks import store_chunk
from .errors import ApiError, json_response
from .params import config, query_int
from .safe_paths import push_target

log = logging.getLogger("co2server")

MAX_OFFSET = 10**12


def _discard(stream, length: int) -> None:
    """Read and drop a refused body (uWSGI's limit-post caps it), so the
    client gets our answer instead of a connection reset."""
    left = length
    try:
        while left > 0:
            part = stream.read(min(left, 65536))
            if not part:
                return
            left -= len(part)
    except OSError:
        return


def read_body(limit: int) -> bytes:
    """The whole request body, refusing one over `limit` before reading it."""
    environ = request.environ
    if environ.get("HTTP_TRANSFER_ENCODING"):
        raise ApiError(411, "LENGTH_REQUIRED", "send the chunk with a Content-Length, not chunked")
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = -1
    if length < 0:
        raise ApiError(400, "BAD_CONTENT_LENGTH", "Content-Length is not a number of bytes")
    stream = environ["wsgi.input"]
    if length > limit:
        _discard(stream, length)
        raise ApiError(413, "CHUNK_TOO_LARGE", f"chunk of {length} bytes is over the limit of {limit} (CO2_MAX_CHUNK_BYTES)")
    parts, got = [], 0
    try:
        while got < length:
            part = stream.read(length - got)
            if not part:
                break
            parts.append(part)
            got += len(part)
    except OSError as exc:  # uWSGI: the client went away or timed out mid-body
        raise ApiError(400, "INCOMPLETE_BODY", f"the connection ended after {got} of {length} bytes: {exc}") from None
    if got != length:
        raise ApiError(400, "INCOMPLETE_BODY", f"the body ended after {got} of {length} bytes")
    return parts[0] if len(parts) == 1 else b"".join(parts)


class PushSequential(Resource):
    def put(self, hw_id: str, relpath: str):
        cfg = config()
        target = push_target(cfg, hw_id, relpath)
        offset = query_int("offset", required=True, minimum=0, maximum=MAX_OFFSET)
        data = read_body(cfg.max_chunk_bytes)
        result = store_chunk(target, offset, data, cfg.max_file_bytes, (cfg.unit_max_bytes, cfg.unit_max_files))
        if result.written:  # uWSGI's request log has every chunk; this is for debugging
            log.debug("stored %s %s offset=%d +%d bytes", hw_id, relpath, offset, result.written)
        return json_response({"ack_file": result.ack_file})
