"""GET / (a short text) and GET /healthz (can we store data?).

/healthz answers 503 when a folder is not writable, the data or var disk has
less free space than CO2_MIN_FREE_MB, or the database cannot be read (a
fresh connection each time). Behind nginx, the units' door (CO2_DOOR=units,
set by nginx, never by a client) gets the status alone; the details (free
space included) are for the people's door.
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
from .unit_keys import describe_mode


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".healthz-"):
            pass
        return True
    except OSError:
        return False


def disk_space(folder: Path, min_free_bytes: int) -> dict:
    """Free and total bytes of the file system holding `folder` (what an unprivileged writer may use)."""
    try:
        st = os.statvfs(folder)
    except OSError as exc:
        return {"error": exc.strerror or str(exc), "low": True}
    free = st.f_bavail * st.f_frsize
    return {"free_bytes": free, "total_bytes": st.f_blocks * st.f_frsize, "low": free < min_free_bytes}


class Home(Resource):
    def get(self):
        return Response("CO2 Observation Unit server. Status: /status/units, /healthz, /metrics\n", mimetype="text/plain")


class Health(Resource):
    def get(self):
        cfg = config()
        min_free = int(cfg.min_free_mb * 2**20)
        checks = {
            "data_dir_writable": _writable(cfg.data_dir),
            "var_dir_writable": _writable(cfg.var_dir),
            "database": db.check(cfg.db_path),
            "data_disk": disk_space(cfg.data_dir, min_free),
            "var_disk": disk_space(cfg.var_dir, min_free),
            "min_free_bytes": min_free,
        }
        healthy = (checks["data_dir_writable"] and checks["var_dir_writable"] and checks["database"] == "ok"
                   and not checks["data_disk"]["low"] and not checks["var_disk"]["low"])
        checks["status"] = "ok" if healthy else "unhealthy"
        if request.environ.get("CO2_DOOR") == "units":  # nginx's units' door: the status only
            return json_response({"status": checks["status"]}, status=200 if healthy else 503)
        checks["unit_keys"] = describe_mode(cfg)
        checks["pid"] = os.getpid()
        return json_response(checks, status=200 if healthy else 503)
