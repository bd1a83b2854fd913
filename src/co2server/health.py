"""GET / (a short text) and GET /healthz (can we store data?)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from flask import Response
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
        checks["pid"] = os.getpid()
        return json_response(checks, status=200 if healthy else 503)
