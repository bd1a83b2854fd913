"""A file on disk as a download: streamed, with Content-Length, Range and conditional GET.

The file is already open (safe_paths.open_regular_below decided it may be
served); its bytes go out in blocks read with pread, so a file of any size
costs one block of memory, and the fd is closed once the server is done
with the answer (also for HEAD, 304 and a client that hangs up).

What a download client expects (RFC 9110): an ETag and Last-Modified from
the file's size and mtime; If-None-Match / If-Modified-Since answer 304;
Range: bytes=a-b answers 206 with Content-Range, a range past the end 416;
several ranges, another unit or a malformed header are ignored (RFC 9110
14.2: the whole file, 200); If-Range with a stale validator gets the whole
file.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from email.utils import format_datetime

from flask import Response, request
from werkzeug.http import is_resource_modified, parse_range_header

from .errors import ApiError, error_response

BLOCK = 256 * 1024


class FileBlocks:
    """The bytes [start, start + length) of an open fd, as a WSGI iterable that closes the fd."""

    def __init__(self, fd: int, start: int, length: int):
        self.fd, self.offset, self.left = fd, start, length

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        if self.left <= 0 or self.fd < 0:
            raise StopIteration
        block = os.pread(self.fd, min(BLOCK, self.left), self.offset)
        if not block:  # the file shrank since the answer's Content-Length was sent
            raise StopIteration
        self.offset += len(block)
        self.left -= len(block)
        return block

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _validators(st: os.stat_result) -> tuple[str, str]:
    etag = f"{st.st_size:x}-{st.st_mtime_ns:x}"
    last_modified = format_datetime(datetime.fromtimestamp(int(st.st_mtime), UTC), usegmt=True)
    return etag, last_modified


def file_download(fd: int, st: os.stat_result, content_type: str, headers: dict[str, str] | None = None) -> Response:
    """The answer for a GET or HEAD of the open regular file `fd` (this takes ownership of fd)."""
    try:
        return _answer(fd, st, content_type, dict(headers or {}))
    except BaseException:
        os.close(fd)
        raise


def _answer(fd: int, st: os.stat_result, content_type: str, headers: dict[str, str]) -> Response:
    size = st.st_size
    etag, last_modified = _validators(st)
    headers.update({"ETag": f'"{etag}"', "Last-Modified": last_modified, "Accept-Ranges": "bytes"})
    environ = request.environ
    if not is_resource_modified(environ, etag, last_modified=last_modified):
        os.close(fd)
        return Response(status=304, headers=headers)
    start, length, status = 0, size, 200
    if "HTTP_RANGE" in environ and size > 0 and not (
        "HTTP_IF_RANGE" in environ
        and is_resource_modified(environ, etag, last_modified=last_modified, ignore_if_range=False)
    ):
        wanted = parse_range_header(environ["HTTP_RANGE"])
        one = wanted is not None and wanted.units == "bytes" and len(wanted.ranges) == 1
        span = wanted.range_for_length(size) if one else None
        if one and span is None:
            os.close(fd)
            refused = error_response(ApiError(
                416, "RANGE_NOT_SATISFIABLE",
                f"the file has {size} bytes; ask for one range inside them, e.g. Range: bytes=0-1023",
            ))
            refused.headers["Content-Range"] = f"bytes */{size}"
            return refused
        if span is not None:
            start, length, status = span[0], span[1] - span[0], 206
            headers["Content-Range"] = f"bytes {span[0]}-{span[1] - 1}/{size}"
    headers["Content-Length"] = str(length)
    return Response(FileBlocks(fd, start, length), status=status, headers=headers,
                    content_type=content_type, direct_passthrough=True)
