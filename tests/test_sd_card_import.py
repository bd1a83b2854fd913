"""scripts/import-sd-card.sh: a unit's SD card brought back from the field, put beside what it uploaded.

Against the real uWSGI while a firmware-like client keeps uploading the same
unit, then the real pipeline (make in database/) on the result.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from conftest import ROOT
from datagen import new_tree, query, reading_line, run_make
from firmware import UnitSim

SCRIPT = ROOT / "scripts" / "import-sd-card.sh"
A, B, C = "co2unit-30aea42a50bc", "co2unit-30aea42a5268", "co2unit-30aea4ab12cd"
T0 = datetime(2025, 11, 1, 12, 0, 0)


def readings(unit: str, start: int, count: int, seed: int = 1, nick: str = "varanger-03") -> bytes:
    rng = random.Random(seed * 1000 + start)
    return b"".join(reading_line(unit, nick, T0 + timedelta(minutes=30 * i), 21, rng)
                    for i in range(start, start + count))


def error_entry(n: int) -> bytes:
    return f"----- 2025-11-0{1 + n % 9} 12:00:{n % 60:02d} INFO  cycle {n}\n".encode()


def import_card(card: Path, data_dir: Path, var_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CO2_")}
    env.update(CO2_DATA_DIR=str(data_dir), CO2_VAR_DIR=str(var_dir))
    return subprocess.run([str(SCRIPT), str(card), *args], env=env, capture_output=True, text=True, timeout=60)


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def summary_line(result: subprocess.CompletedProcess) -> str:
    [line] = [line for line in result.stdout.splitlines() if line.startswith("summary: ")]
    return line


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every path below `folder` with its kind, bytes and mtime (hidden names too)."""
    shot = {}
    for p in sorted(folder.rglob("*")) if folder.exists() else []:
        st = p.lstat()
        body = p.read_bytes() if p.is_file() and not p.is_symlink() else None
        shot[str(p.relative_to(folder))] = (st.st_mode, st.st_mtime_ns, body)
    return shot


class Uploader(threading.Thread):
    """The unit in the field: a new error-log entry and a whole sync cycle, again and again."""

    def __init__(self, unit: UnitSim):
        super().__init__(daemon=True)
        self.unit = unit
        self.stop = threading.Event()
        self.cycles: list[str] = []

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            self.unit.write_sd("errors", "errors-0000.txt", error_entry(1000 + n))
            self.cycles.append(self.unit.cycle())

    def finish(self) -> None:
        self.stop.set()
        self.join(timeout=60)
        assert self.cycles and set(self.cycles) == {"ok"}, self.cycles


def import_while_uploading(unit: UnitSim, card: Path, server) -> subprocess.CompletedProcess:
    uploader = Uploader(unit)
    uploader.start()
    try:
        return import_card(card, server.data_dir, server.var_dir)
    finally:
        uploader.finish()


def test_help():
    result = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert "import-sd-card.sh" in result.stdout and "--hw-id" in result.stdout and "--dry-run" in result.stdout


def test_card_with_more_data_and_new_files_while_the_unit_uploads(make_server, tmp_path):
    server = make_server()
    unit = UnitSim(A, tmp_path / "unit-sd", server.port, chunk_size=512)
    unit.write_sd("data/readings", "readings-0000.tsv", readings(A, 0, 20))
    unit.write_sd("errors", "errors-0000.txt", b"".join(error_entry(n) for n in range(5)))
    assert unit.cycle() == "ok"  # the server holds 20 readings; then LTE failed

    card = tmp_path / "card"
    write(card / "data/readings/readings-0000.tsv", readings(A, 0, 40))  # 20 more than the server
    write(card / "data/readings/readings-0001.tsv", readings(A, 40, 20))  # never uploaded
    write(card / "errors/errors-0000.txt", (unit.sd / "errors/errors-0000.txt").read_bytes())
    write(card / "conf/ou-id.json", json.dumps({"site_code": "varanger-03"}).encode())
    write(card / "updates/update-1/flash/main.py", b"print('never imported')\n")
    write(card / "data/.trash/readings-0000.tsv", b"hidden\n")
    added = len(readings(A, 0, 40)) - len(readings(A, 0, 20)) + len(readings(A, 40, 20))

    result = import_while_uploading(unit, card, server)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"unit {A}" in out
    assert re.search(r"appended +data/readings/readings-0000\.tsv: \+\d+ bytes", out), out
    assert re.search(r"added +data/readings/readings-0001\.tsv", out), out
    assert re.search(r"skipped +updates/update-1/flash/main\.py", out), out
    assert re.search(r"skipped +data/\.trash/readings-0000\.tsv", out), out
    assert re.search(r"skipped +conf/ou-id\.json", out), out
    assert "KEPT ASIDE" not in out
    assert f"0 kept aside, 1 unchanged, 0 refused, 3 skipped; {added} bytes added, 0 bytes kept aside" in summary_line(result)

    held = server.data_dir / A
    assert (held / "data/readings/readings-0000.tsv").read_bytes() == readings(A, 0, 40)
    assert (held / "data/readings/readings-0001.tsv").read_bytes() == readings(A, 40, 20)
    assert unit.cycle() == "ok"
    assert (held / "errors/errors-0000.txt").read_bytes() == (unit.sd / "errors/errors-0000.txt").read_bytes()
    assert not (held / "updates").exists() and not (held / "superseded").exists()
    assert not (held / "data/.trash").exists()

    again = import_card(card, server.data_dir, server.var_dir)
    assert again.returncode == 0, again.stderr
    assert summary_line(again).startswith("summary: 0 files added, 0 appended, 0 kept aside")
    assert "0 bytes added" in summary_line(again)

    tree = new_tree(server.root)
    run_make(tree, "import")
    count = f"SELECT count(*), count(DISTINCT date || time) FROM co2_readings WHERE unit_id = '{A}'"
    assert query(tree.db_file, count) == [(60, 60)]

    # The card goes back into the unit, which measures on: its next upload
    # continues from where the server is (the ack), sending only what is new.
    (unit.sd / "data/readings/readings-0000.tsv").write_bytes(readings(A, 0, 40))
    (unit.sd / "data/readings/readings-0001.tsv").write_bytes(readings(A, 40, 23))
    before = unit.requests
    assert unit.cycle() == "ok"
    assert (held / "data/readings/readings-0001.tsv").read_bytes() == readings(A, 40, 23)
    assert unit.requests - before <= 6  # ping, updates, errors, readings-0000 (acked to 0001's end), 0001
    assert not (held / "superseded").exists()
    run_make(tree, "import")
    run_make(tree, "import")
    assert query(tree.db_file, count) == [(63, 63)]


def test_reformatted_card_is_kept_aside_never_written_over(make_server, tmp_path):
    server = make_server()
    unit = UnitSim(A, tmp_path / "unit-sd", server.port, chunk_size=512)
    unit.write_sd("data/readings", "readings-0000.tsv", readings(A, 0, 30, seed=1))
    unit.write_sd("errors", "errors-0000.txt", error_entry(0))
    assert unit.cycle() == "ok"
    held = server.data_dir / A
    server_readings = (held / "data/readings/readings-0000.tsv").read_bytes()

    card = tmp_path / "card"  # reformatted: its numbering starts again, other lines
    write(card / "data/readings/readings-0000.tsv", readings(A, 100, 12, seed=2))
    write(card / "errors/errors-0000.txt", b"----- 2025-12-01 10:00:00 WARN  reformatted card\n")
    result = import_while_uploading(unit, card, server)  # it keeps pushing errors/ and data/readings/
    assert result.returncode == 0, result.stderr
    [stamp] = [p.name for p in (held / "superseded").iterdir()]
    for rel in ("data/readings/readings-0000.tsv", "errors/errors-0000.txt"):
        assert re.search(rf"KEPT ASIDE +{re.escape(rel)}: .*superseded/{stamp}/{re.escape(rel)}", result.stdout), \
            result.stdout
        assert (held / "superseded" / stamp / rel).read_bytes() == (card / rel).read_bytes()
    assert (held / "data/readings/readings-0000.tsv").read_bytes() == server_readings  # nothing overwritten
    assert (held / "errors/errors-0000.txt").read_bytes() == (unit.sd / "errors/errors-0000.txt").read_bytes()
    assert summary_line(result).startswith("summary: 0 files added, 0 appended, 2 kept aside")

    board = server.request("GET", "/status/units.json").json()
    [row] = [u for u in board["units"] if u["hw_id"] == A]
    assert row["sd_card_replaced"] is True

    again = import_card(card, server.data_dir, server.var_dir)
    assert again.returncode == 0, again.stderr
    assert summary_line(again).startswith("summary: 0 files added, 0 appended, 0 kept aside")
    assert "already kept aside" in again.stdout
    assert [p.name for p in (held / "superseded").iterdir()] == [stamp]

    tree = new_tree(server.root)
    run_make(tree, "import")
    run_make(tree, "import")
    count = f"SELECT count(*), count(DISTINCT date || time) FROM co2_readings WHERE unit_id = '{A}'"
    assert query(tree.db_file, count) == [(42, 42)]


def card_and_server(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A server's data folder for A and a card that extends, adds to and contradicts it."""
    data, var = tmp_path / "remote_data", tmp_path / "var"
    write(data / A / "data/readings/readings-0000.tsv", readings(A, 0, 10))
    write(data / A / "errors/errors-0000.txt", error_entry(1))
    card = tmp_path / "card"
    write(card / "data/readings/readings-0000.tsv", readings(A, 0, 15))
    write(card / "data/readings/readings-0001.tsv", readings(A, 15, 5))
    write(card / "errors/errors-0000.txt", error_entry(2))
    return card, data, var


def test_dry_run_changes_nothing_and_says_what_would_happen(tmp_path):
    card, data, var = card_and_server(tmp_path)
    before = snapshot(tmp_path)
    dry = import_card(card, data, var, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert snapshot(tmp_path) == before
    assert re.search(r"would append +data/readings/readings-0000\.tsv", dry.stdout), dry.stdout
    assert re.search(r"would add +data/readings/readings-0001\.tsv", dry.stdout), dry.stdout
    assert re.search(r"would keep aside +errors/errors-0000\.txt", dry.stdout), dry.stdout
    assert summary_line(dry).endswith("(dry run: nothing written)")

    real = import_card(card, data, var)
    assert real.returncode == 0, real.stderr
    assert summary_line(real) == summary_line(dry).removesuffix(" (dry run: nothing written)")
    assert summary_line(real).startswith("summary: 1 file added, 1 appended, 1 kept aside")

    # The same card, grown (the unit wrote on before it came back): its copy grows, no second copy.
    [stamp] = [p.name for p in (data / A / "superseded").iterdir()]
    with open(card / "errors/errors-0000.txt", "ab") as f:
        f.write(error_entry(3))
    grown = import_card(card, data, var)
    assert grown.returncode == 0, grown.stderr
    assert re.search(rf"KEPT ASIDE +errors/errors-0000\.txt: .*appended to its copy kept as superseded/{stamp}/", grown.stdout)
    assert [p.name for p in (data / A / "superseded").iterdir()] == [stamp]
    assert (data / A / "superseded" / stamp / "errors/errors-0000.txt").read_bytes() == error_entry(2) + error_entry(3)
    assert (data / A / "errors/errors-0000.txt").read_bytes() == error_entry(1)


def test_a_card_naming_two_units_is_refused_unless_told_which(tmp_path):
    data, var = tmp_path / "remote_data", tmp_path / "var"
    card = tmp_path / "card"
    write(card / "data/readings/readings-0000.tsv", readings(A, 0, 3) + readings(B, 3, 2))
    result = import_card(card, data, var)
    assert result.returncode == 2
    assert A in result.stderr and B in result.stderr and "--hw-id" in result.stderr
    assert "3 readings lines" in result.stderr and "2 readings lines" in result.stderr
    assert not data.exists()

    wrong = import_card(card, data, var, "--hw-id", C)
    assert wrong.returncode == 2 and C in wrong.stderr and "does not name" in wrong.stderr
    assert not data.exists()

    told = import_card(card, data, var, "--hw-id", B)
    assert told.returncode == 0, told.stderr
    assert (data / B / "data/readings/readings-0000.tsv").read_bytes() == (card / "data/readings/readings-0000.tsv").read_bytes()
    assert not (data / A).exists()


def test_the_unit_is_told_by_conf_or_by_hand(tmp_path):
    data, var = tmp_path / "remote_data", tmp_path / "var"
    card = tmp_path / "card"
    write(card / "errors/errors-0000.txt", error_entry(1))
    nameless = import_card(card, data, var)
    assert nameless.returncode == 2 and "--hw-id" in nameless.stderr
    write(card / "conf/ou-id.json", json.dumps({"hw_id": B, "site_code": "x"}).encode())
    result = import_card(card, data, var)
    assert result.returncode == 0, result.stderr
    assert (data / B / "errors/errors-0000.txt").read_bytes() == error_entry(1)
    write(card / "data/readings/readings-0000.tsv", readings(A, 0, 2))  # conf says B, the lines A
    result = import_card(card, data, var)
    assert result.returncode == 2 and A in result.stderr and B in result.stderr


def test_never_writes_through_a_link_on_the_server(tmp_path):
    card, data, var = card_and_server(tmp_path)
    outside = tmp_path / "outside.tsv"
    outside.write_bytes(b"")
    (data / A / "data/readings/readings-0001.tsv").symlink_to(outside)
    result = import_card(card, data, var)
    assert result.returncode == 1
    assert re.search(r"refused +data/readings/readings-0001\.tsv: .*symbolic link", result.stdout), result.stdout
    assert outside.read_bytes() == b""
    assert (data / A / "data/readings/readings-0000.tsv").read_bytes() == readings(A, 0, 15)  # the rest went on


@pytest.mark.parametrize("bad", ["--hw-id", "--bogus"])
def test_bad_arguments(tmp_path, bad):
    result = import_card(tmp_path, tmp_path / "d", tmp_path / "v", bad)
    assert result.returncode == 2 and "Traceback" not in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the data folder to another user")
def test_refuses_to_write_as_another_user_than_the_data_folders_owner(tmp_path):
    card, data, var = card_and_server(tmp_path)
    os.chown(data, 65534, 65534)  # the service's user, say; this runs as root
    before = snapshot(tmp_path)
    result = import_card(card, data, var)
    assert result.returncode == 2 and "run this as that user" in result.stderr
    assert snapshot(tmp_path) == before
    assert import_card(card, data, var, "--dry-run").returncode == 0
