-- The tables of DATA-FORMATS.md ("The SQLite database"), shared by the server
-- (which inserts pings live) and the database/ pipeline (which imports all
-- the rest). Column names are a contract with researchers' queries: new
-- columns go at the end only. database/co2db/schema.sql carries the same
-- table definitions; tests/test_schema.py fails when the two disagree.
-- Every statement is idempotent: this file is applied on every start.

CREATE TABLE IF NOT EXISTS pings (
    ping_ts   TEXT NOT NULL,   -- arrival time, UTC, ISO 8601 with microseconds
    ping_date TEXT,
    ping_time TEXT,
    unit_id   TEXT NOT NULL,
    nickname  TEXT,
    rssi_raw  INTEGER,
    rssi_dbm  INTEGER,
    ber_raw   INTEGER
);
-- One row per ping, whether inserted live by the server or imported from the
-- TSV log by the pipeline (INSERT OR IGNORE on this key).
CREATE UNIQUE INDEX IF NOT EXISTS pings_ts_unit ON pings (ping_ts, unit_id);
CREATE INDEX IF NOT EXISTS pings_unit_ts ON pings (unit_id, ping_ts);

CREATE TABLE IF NOT EXISTS co2_readings (
    unit_id TEXT,
    nickname TEXT,
    date TEXT,
    time TEXT,
    temp REAL,
    flash_count INTEGER,
    co2_01 INTEGER, co2_02 INTEGER, co2_03 INTEGER, co2_04 INTEGER, co2_05 INTEGER,
    co2_06 INTEGER, co2_07 INTEGER, co2_08 INTEGER, co2_09 INTEGER, co2_10 INTEGER,
    co2_output_filtered REAL,
    led_normalized_filtered REAL,
    led_signal_filtered REAL,
    zero_point REAL,
    sensor_temp_filtered REAL,
    source_file TEXT,     -- path relative to the data folder, for re-imports
    line_no INTEGER       -- 1-based line number in source_file
);
CREATE INDEX IF NOT EXISTS co2_readings_unit_date ON co2_readings (unit_id, date, time);
CREATE INDEX IF NOT EXISTS co2_readings_source ON co2_readings (source_file);

CREATE TABLE IF NOT EXISTS error_logs (
    unit_id TEXT,
    idate TEXT,           -- inferred date (= odate unless the unit wrote 1970)
    itime TEXT,
    etype TEXT,           -- uncaught, watchdog, signal, backoff, transmit or NULL
    odate TEXT,           -- date as written by the unit, normalised YYYY-MM-DD
    otime TEXT,
    level TEXT,
    message TEXT,         -- summary line text, then any following lines
    source_file TEXT,
    line_no INTEGER
);
CREATE INDEX IF NOT EXISTS error_logs_unit_date ON error_logs (unit_id, idate, itime);
CREATE INDEX IF NOT EXISTS error_logs_source ON error_logs (source_file);

CREATE TABLE IF NOT EXISTS deploy_durations_tiered (
    unit_id TEXT,
    nickname TEXT,
    site TEXT,
    tier INTEGER,
    status TEXT,          -- deployed, en_route or lab_check
    start_ts TEXT,
    end_ts TEXT,
    note TEXT
);

CREATE TABLE IF NOT EXISTS rejected_lines (
    file TEXT,
    line_no INTEGER,
    reason TEXT,          -- readings: non_printing, not_unit_line, other_unit, date_1970, bad_field_count
    raw BLOB              -- the line's exact bytes, without its newline
);
CREATE INDEX IF NOT EXISTS rejected_lines_file ON rejected_lines (file);
