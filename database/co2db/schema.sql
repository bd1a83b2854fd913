-- Schema of the database/ pipeline's SQLite database.
--
-- The first part is a copy of src/co2server/schema.sql (the tables of
-- DATA-FORMATS.md, shared with the server). The pipeline never imports server
-- code, so that a copy of database/ works beside an archived data set; keep
-- the copy identical: tests/test_schema.py fails when the two disagree.
-- The second part holds the pipeline's own bookkeeping.
-- Every statement is idempotent: this file is applied on every run.

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

-- Bookkeeping of make export: the database's generation (a random value
-- drawn when the database is made) and a count of the changes to
-- co2_readings other than added rows (a re-imported, moved or hand-edited
-- file, by any program). While both stay the same, the rows with a rowid
-- above the export's last are exactly the rows added since it ran.
CREATE TABLE IF NOT EXISTS co2_readings_edits (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    generation TEXT NOT NULL,
    edits INTEGER NOT NULL
);
INSERT OR IGNORE INTO co2_readings_edits VALUES (1, lower(hex(randomblob(16))), 0);
CREATE TRIGGER IF NOT EXISTS co2_readings_deleted AFTER DELETE ON co2_readings
BEGIN UPDATE co2_readings_edits SET edits = edits + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS co2_readings_updated AFTER UPDATE ON co2_readings
BEGIN UPDATE co2_readings_edits SET edits = edits + 1 WHERE id = 1; END;

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

-- ---------------------------------------------------------------------------
-- Pipeline bookkeeping (not part of the researchers' contract).

-- One row per input file: how far it was imported. The importers compare
-- size and mtime_ns with stat() first and read nothing when both are equal;
-- otherwise check_hash (SHA-1 of the first and last 4 KiB of the imported
-- part, bytes [0, done_bytes)) tells an append (re-read from done_bytes)
-- from a rewrite (delete the file's rows, re-import it whole).
CREATE TABLE IF NOT EXISTS import_state (
    file       TEXT PRIMARY KEY,  -- label: path relative to DATA_DIR, or PINGS_DIR/<name>
    kind       TEXT NOT NULL,     -- readings, errors, pings or deployments
    size       INTEGER NOT NULL,  -- st_size when last looked at
    mtime_ns   INTEGER NOT NULL,  -- st_mtime_ns when last looked at
    done_bytes INTEGER NOT NULL,  -- end of the last complete line imported
    done_lines INTEGER NOT NULL,  -- complete lines imported (= last line_no)
    check_hash TEXT NOT NULL,     -- see above
    carry      TEXT               -- importer-specific JSON (error logs: dates carried over)
);

-- ---------------------------------------------------------------------------
-- Derived data (not part of the researchers' contract, but readable): rebuilt
-- and kept up to date by the readings importer (co2db/daily.py); never edit.

-- One row per unit and day of co2_readings (rows with a NULL unit_id or date
-- left out): what the all-time CO2 plot needs to bin days without reading
-- every reading. A reading's CO2 is the mean of its ten values leaving out
-- NULLs and the sensor-limit codes (0, >= 200000); temperature leaves out
-- NULL, text and 85.0. Mean of a bin of days: sum(co2_sum) / sum(co2_n).
CREATE TABLE IF NOT EXISTS co2_daily (
    unit_id  TEXT NOT NULL,
    date     TEXT NOT NULL,     -- YYYY-MM-DD as in co2_readings
    n        INTEGER NOT NULL,  -- readings (rows of co2_readings)
    co2_sum  REAL,              -- sum of the readings' CO2 means (NULL if co2_n = 0)
    co2_n    INTEGER NOT NULL,  -- readings with at least one valid CO2 value
    temp_sum REAL,              -- sum of valid temperatures (NULL if temp_n = 0)
    temp_n   INTEGER NOT NULL,  -- readings with a valid temperature
    PRIMARY KEY (unit_id, date)
) WITHOUT ROWID;

-- Derived tables that are complete, and the version of their definition
-- (a database from before co2_daily, or from another version, is rebuilt).
CREATE TABLE IF NOT EXISTS derived_state (
    name    TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
