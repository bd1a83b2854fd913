"""POST /ou/<hw_id>/alive: the unit's alive ping."""

from __future__ import annotations

from flask import Response
from flask_restful import Resource

from .db import insert_ping
from .params import config, query_int, query_text
from .pinglog import Ping, record_ping
from .safe_paths import check_hw_id

SIGNAL_LIMIT = 100_000
# The signal parameters: integers, absent or 'None' when the unit could not read them.
_SIGNAL = {"minimum": -SIGNAL_LIMIT, "maximum": SIGNAL_LIMIT, "none_literal": True}


class AlivePing(Resource):
    def post(self, hw_id: str):
        cfg = config()
        check_hw_id(cfg, hw_id)
        nickname = query_text("site_code")
        ping = Ping.arriving_now(
            hw_id,
            None if nickname == "None" else nickname,
            query_int("rssi_raw", **_SIGNAL),
            query_int("rssi_dbm", **_SIGNAL),
            query_int("ber_raw", **_SIGNAL),
        )
        record_ping(cfg, ping)
        insert_ping(cfg.db_path, ping.db_row())  # queued: the TSV line above is the record
        return Response("OK\n", mimetype="text/plain")
