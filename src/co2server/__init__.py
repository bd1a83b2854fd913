"""The CO2 Observation Unit server: a Flask-RESTful app (uWSGI loads server:app)."""

from __future__ import annotations

import logging
import re

try:  # only under uWSGI (not the development server)
    import uwsgi
except ImportError:
    uwsgi = None

from flask import Flask, request
from flask_restful import Api

from . import db
from .config import Config
from .errors import any_error_response, log, logged_path, register_error_handlers
from .export_pages import ExportFile, ExportPage
from .health import Health, Home
from .metrics import Metrics
from .request_metrics import install as count_requests
from .safe_paths import check_raw_path
from .status_pages import AliveFile, AliveRecent, AliveSummary, Co2File, Co2Summary
from .status_units import UnitsJson, UnitsPage
from .unit_keys import authorize, describe_mode
from .unit_pings import AlivePing
from .unit_updates import UpdatesIndex, UpdatesItem
from .unit_uploads import PushSequential


class ServerApi(Api):
    """Flask-RESTful, answering its errors in the server's one error shape."""

    def handle_error(self, e):
        return any_error_response(e)


def _configure_logging() -> None:
    logger = logging.getLogger("co2server")
    if not logger.handlers:
        handler = logging.StreamHandler()  # stderr: uWSGI's log, the journal under systemd
        handler.setFormatter(logging.Formatter("co2server %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _ensure_folders(config: Config) -> None:
    """Create the server's folders and database up front, so requests only ever add files."""
    for folder in (config.data_dir, config.pings_dir, config.locks_dir, config.pub_dir, config.db_path.parent):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # reported by /healthz; requests touching it fail with 500
            log.error("cannot create %s: %s", folder, exc)
    db.prepare(config.db_path)


def create_app(config: Config | None = None) -> Flask:
    config = config or Config.from_environ()
    _configure_logging()
    _ensure_folders(config)
    app = Flask(__name__)
    app.config["CO2"] = config
    # The firmware's HTTP client fails on redirects: never merge or add slashes.
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    register_error_handlers(app)
    count_requests(app, config.var_dir)

    # open: /ou/<hw_id>/...; shared and per-unit: /<key>/ou/<hw_id>/... (unit_keys.py decides).
    unit = "/ou" if config.key_mode == "open" else "/<unit_key>/ou"
    unit_path = re.compile(r"/ou/" if config.key_mode == "open" else r"/[^/]*/ou/")
    log.info("unit API: %s", describe_mode(config))

    @app.url_value_preprocessor
    def check_unit_key(endpoint, values):
        if uwsgi is not None:  # uWSGI's request log shows this, never the URL key (log-format in server.ini)
            uwsgi.set_logvar("co2path", logged_path())
        if values is not None and "hw_id" in values:
            authorize(config, values.pop("unit_key", None), values["hw_id"])

    @app.before_request
    def refuse_odd_unit_paths():
        environ = request.environ
        raw = environ.get("REQUEST_URI") or environ.get("RAW_URI") or request.path
        raw_path = raw.split("?", 1)[0]
        # Check the raw path too: uWSGI resolves '..' before routing.
        if unit_path.match(raw_path) or unit_path.match(request.path):
            check_raw_path(raw_path)

    api = ServerApi(app)
    # The URL map, in one place.
    api.add_resource(AlivePing, f"{unit}/<hw_id>/alive")
    api.add_resource(PushSequential, f"{unit}/<hw_id>/push-sequential/<path:relpath>")
    api.add_resource(UpdatesIndex, f"{unit}/<hw_id>/updates")
    api.add_resource(UpdatesItem, f"{unit}/<hw_id>/updates/<path:relpath>")
    api.add_resource(Home, "/")
    api.add_resource(Health, "/healthz")
    api.add_resource(Metrics, "/metrics")
    api.add_resource(AliveRecent, "/status/alive/recent")
    api.add_resource(AliveSummary, "/status/alive/summary")
    api.add_resource(AliveFile, "/status/alive/<name>")
    api.add_resource(Co2Summary, "/data/co2/summary")
    api.add_resource(Co2File, "/data/co2/<name>")
    api.add_resource(ExportPage, "/data/export/")
    api.add_resource(ExportFile, "/data/export/<path:relpath>")
    api.add_resource(UnitsPage, "/status/units")
    api.add_resource(UnitsJson, "/status/units.json")
    return app
