"""The research dataset (database/: make export) for download.

GET /data/export/          the files of var/pub/export/datapackage.json: path,
                           rows, size, sha256, a link each; the time span,
                           export time and software version
GET /data/export/<path>    a file of the export, streamed (file_answers.py)

Only what is below var/pub/export/ is served, through a walk that follows
no symbolic link and never blocks (safe_paths.open_regular_below). The page
reads only the package's "created", "temporal", "version" (or a software
version nested one level down) and each resource's name, path, format,
bytes, hash, rows and description, tolerating anything else.
"""

from __future__ import annotations

import json
import mimetypes
import os
from dataclasses import dataclass
from urllib.parse import quote

from flask import Response, render_template, request
from flask_restful import Resource

from .dashboard import iso_seconds, utc_now
from .errors import ApiError, log
from .file_answers import file_download
from .params import config
from .safe_paths import open_regular_below, pub_parts
from .status_pages import not_rendered

PREFIX = "/data/export/"
PACKAGE = "datapackage.json"
PACKAGE_MAX_BYTES = 64 << 20
CONTENT_TYPES = {
    ".csv": "text/csv; charset=utf-8",
    ".parquet": "application/vnd.apache.parquet",
    ".json": "application/json",
}


def content_type(name: str) -> str:
    ext = os.path.splitext(name)[1].lower()
    return CONTENT_TYPES.get(ext) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def _open_in_export(parts: list[str], shown: str) -> tuple[int, os.stat_result]:
    return open_regular_below(config().pub_dir, ["export", *parts], shown)


class BrokenPackage(Exception):
    """datapackage.json is there but cannot be used; the message says why."""


def _read_package() -> dict | None:
    """The parsed datapackage.json, None when there is no export yet."""
    try:
        fd, st = _open_in_export([PACKAGE], f"export/{PACKAGE}")
    except ApiError as exc:
        if exc.code == "NOT_FOUND":
            return None
        raise BrokenPackage(exc.message) from exc
    try:
        if st.st_size > PACKAGE_MAX_BYTES:
            raise BrokenPackage(f"it has {st.st_size} bytes, more than the {PACKAGE_MAX_BYTES} this page reads")
        blocks, got = [], 0
        while got <= PACKAGE_MAX_BYTES:
            block = os.read(fd, 1 << 20)
            if not block:
                break
            blocks.append(block)
            got += len(block)
        data = b"".join(blocks)
    except OSError as exc:
        raise BrokenPackage(f"reading it failed: {exc.strerror}") from exc
    finally:
        os.close(fd)
    try:
        package = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BrokenPackage(f"it is not valid UTF-8 JSON ({str(exc)[:200]})") from exc
    if not isinstance(package, dict) or not isinstance(package.get("resources"), list):
        raise BrokenPackage('it is not a data package (a JSON object with a "resources" list)')
    return package


def _text(value) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def software_version(package: dict) -> str | None:
    """A top-level "version" string, or a "version" inside a top-level object (e.g. "software")."""
    if _text(package.get("version")):
        return package["version"]
    for key, value in package.items():
        if isinstance(value, dict) and _text(value.get("version")) and key not in ("temporal", "spatial"):
            return value["version"]
        if "version" in key and _text(value):
            return value
    return None


@dataclass
class Listed:
    """One resource of the package, as the page shows it."""

    path: str
    link: str | None
    name: str | None
    description: str | None
    format: str | None
    rows: int | None
    bytes: int | None
    sha256: str | None
    problem: str | None  # None: on disk with the listed size


def _listed(resource) -> Listed:
    if not isinstance(resource, dict) or not _text(resource.get("path")):
        return Listed(str(resource)[:200] if not isinstance(resource, dict) else "?", None, None, None,
                      None, None, None, None, "no path given in datapackage.json")
    path = resource["path"]
    digest = _text(resource.get("hash"))
    if digest and digest.startswith("sha256:"):
        digest = digest[len("sha256:"):]
    listed = Listed(path, None, _text(resource.get("name")), _text(resource.get("description")),
                    _text(resource.get("format")), _int(resource.get("rows")), _int(resource.get("bytes")),
                    digest, None)
    try:
        fd, st = _open_in_export(pub_parts(path, url=False), path)
    except ApiError as exc:
        listed.problem = "missing on disk" if exc.code == "NOT_FOUND" else exc.message
        return listed
    os.close(fd)
    listed.link = PREFIX + quote(path)
    if listed.bytes is not None and st.st_size != listed.bytes:
        listed.problem = f"changed on disk: {st.st_size} bytes, not {listed.bytes}"
    return listed


def human_size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return "?"


def _page(template_args: dict, status: int = 200) -> Response:
    body = render_template("export.html", human_size=human_size, now=iso_seconds(utc_now()),
                           **template_args).encode("utf-8")
    return Response(body, status=status, headers={"Cache-Control": "no-cache"}, mimetype="text/html")


class ExportPage(Resource):
    def get(self):
        try:
            package = _read_package()
        except BrokenPackage as exc:
            log.error("export page: %s/export/%s cannot be read: %s", config().pub_dir, PACKAGE, exc)
            response = _page({"broken": str(exc)}, status=503)
            response.headers["Retry-After"] = "600"
            return response
        if package is None:
            return not_rendered(f"export/{PACKAGE}", heading="The research dataset has not been exported yet",
                                commands=["make -C database export"])
        temporal = package.get("temporal") if isinstance(package.get("temporal"), dict) else {}
        files = [_listed(r) for r in package["resources"]]
        return _page({
            "files": files,
            "problems": sum(1 for f in files if f.problem),
            "created": _text(package.get("created")),
            "start": _text(temporal.get("start")),
            "end": _text(temporal.get("end")),
            "version": software_version(package),
            "total_bytes": sum(f.bytes or 0 for f in files),
            "package_link": PREFIX + PACKAGE,
        })


def _raw_rest() -> str:
    """The URL path below /data/export/ as the client sent it (before any '..' was resolved)."""
    raw = (request.environ.get("REQUEST_URI") or request.environ.get("RAW_URI") or request.path).split("?", 1)[0]
    if not raw.startswith(PREFIX):
        raise ApiError(400, "BAD_PATH", f"files of the export are at {PREFIX}<path>; {raw[:120]!r} is not such a path")
    rest = raw[len(PREFIX):]
    return rest[:-1] if rest.endswith("/") else rest  # a folder, asked as one: refused as a folder below


class ExportFile(Resource):
    def get(self, relpath: str):
        rest = _raw_rest()
        parts = pub_parts(rest)
        fd, st = _open_in_export(parts, "/".join(parts))
        return file_download(fd, st, content_type(parts[-1]), {"Cache-Control": "no-cache"})
