"""GET /status/units (HTML) and /status/units.json: the units dashboard, live."""

from __future__ import annotations

from flask import Response, render_template
from flask_restful import Resource

from .dashboard import build_dashboard, iso_seconds
from .errors import json_response
from .params import config, query_int

REFRESH_MAX = 86400


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


class UnitsPage(Resource):
    def get(self):
        refresh = query_int("refresh", minimum=10, maximum=REFRESH_MAX)
        board = build_dashboard(config())
        rows = board.as_json()
        body = render_template(
            "units.html", board=rows, human_bytes=human_bytes, refresh=refresh,
            generated_at=iso_seconds(board.generated_at),
        ).encode("utf-8")
        headers = {"Cache-Control": "no-store"}
        if refresh is not None:
            headers["Refresh"] = str(refresh)
        return Response(body, headers=headers, mimetype="text/html")


class UnitsJson(Resource):
    def get(self):
        return json_response(build_dashboard(config()).as_json(), headers={"Cache-Control": "no-store"})
