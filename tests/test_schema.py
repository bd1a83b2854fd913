"""database/co2db/schema.sql must define the shared tables exactly as the server does."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVER_SCHEMA = ROOT / "src/co2server/schema.sql"
PIPELINE_SCHEMA = ROOT / "database/co2db/schema.sql"
SHARED_TABLES = ("pings", "co2_readings", "error_logs", "deploy_durations_tiered", "rejected_lines")


def applied(schema: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.executescript(schema.read_text())
    return conn


@pytest.mark.parametrize("table", SHARED_TABLES)
def test_shared_table_has_identical_columns(table):
    server, pipeline = applied(SERVER_SCHEMA), applied(PIPELINE_SCHEMA)
    columns = f"PRAGMA table_info({table})"
    assert server.execute(columns).fetchall()  # the table exists
    assert pipeline.execute(columns).fetchall() == server.execute(columns).fetchall()


@pytest.mark.parametrize("table", SHARED_TABLES)
def test_shared_table_has_identical_indexes(table):
    def indexes(conn):
        return {
            name: (unique, conn.execute(f"PRAGMA index_info({name})").fetchall())
            for _seq, name, unique, *_ in conn.execute(f"PRAGMA index_list({table})")
        }

    assert indexes(applied(PIPELINE_SCHEMA)) == indexes(applied(SERVER_SCHEMA))


def test_pipeline_schema_is_idempotent_over_a_server_database():
    conn = applied(SERVER_SCHEMA)
    conn.executescript(PIPELINE_SCHEMA.read_text())
    conn.executescript(PIPELINE_SCHEMA.read_text())
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    # The pipeline's own: bookkeeping, and derived data rebuilt by the importer.
    assert tables == {*SHARED_TABLES, "import_state", "co2_daily", "derived_state", "co2_readings_edits"}
