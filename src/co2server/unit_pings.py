"""POST /ou/<hw_id>/alive: the unit's alive ping.

The firmware abandons its whole cycle on any answer but 200, so a ping from
a well-formed hardware ID is never refused for its values: the nickname is
kept as UTF-8 text made safe for the TSV log and the pages, signal values
that are not integers are stored as missing, and what was repaired is
logged and kept in var/ping-repairs.tsv for the dashboard.
"""

from __future__ import annotations

import logging

from flask import Response
from flask_restful import Resource

from .db import insert_ping
from .errors import scrub
from .params import config, query_bytes, tolerant_int, tolerant_text
from .pinglog import Ping, record_ping, record_repairs
from .safe_paths import check_hw_id

log = logging.getLogger("co2server")

SIGNAL_LIMIT = 100_000
NICKNAME_MAX = 64


class AlivePing(Resource):
    def post(self, hw_id: str):
        cfg = config()
        check_hw_id(cfg, hw_id)
        query = query_bytes()
        notes: list[str] = []
        ping = Ping.arriving_now(
            hw_id,
            tolerant_text(query.get(b"site_code"), "site_code", notes, max_len=NICKNAME_MAX),
            *(tolerant_int(query.get(name.encode()), name, notes, limit=SIGNAL_LIMIT)
              for name in ("rssi_raw", "rssi_dbm", "ber_raw")),
        )
        record_ping(cfg, ping)
        insert_ping(cfg.db_path, ping.db_row())  # queued: the TSV line above is the record
        if notes:
            log.warning("repaired ping unit=%s: %s", hw_id, scrub("; ".join(notes)))
            record_repairs(cfg, ping, notes)
        return Response("OK\n", mimetype="text/plain")
