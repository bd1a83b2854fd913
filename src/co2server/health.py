"""GET / (a short text) and GET /healthz (can we store data?).

Behind nginx, the units' door (CO2_DOOR=units, set by nginx, never by a
client) gets the status alone; the details are for the people's door.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from flask import Response, request
from flask_restful import Resource

from . import db
from .errors import json_response
from .params import config


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".healthz-"):
            pass
        return True
    except OSError:
        return False


class Home(Resource):
    def get(self):
        return Response("CO2 Observation Unit server. Status: /status/units, /healthz\n", mimetype="text/plain")


class Health(Resource):
    def get(self):
        cfg = config()
        checks = {
            "data_dir_writable": _writable(cfg.data_dir),
            "var_dir_writable": _writable(cfg.var_dir),
            "database": db.check(cfg.db_path),
        }
        healthy = checks["data_dir_writable"] and checks["var_dir_writable"] and checks["database"] == "ok"
        checks["status"] = "ok" if healthy else "unhealthy"
        if request.environ.get("CO2_DOOR") == "units":  # nginx's units' door: the status only
            return json_response({"status": checks["status"]}, status=200 if healthy else 503)
        checks["pid"] = os.getpid()
        return json_response(checks, status=200 if healthy else 503)
