"""Per-unit keys against the real uWSGI: enroll, sync, refusals that write nothing, rotation over the
update channel, revocation, the migration from a shared key, quotas, and no key in any log."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conftest import ROOT
from firmware import UnitSim, http_request, wait_until

A, B, UNKNOWN = "co2unit-aaaaaaaaaaa1", "co2unit-bbbbbbbbbbb2", "co2unit-ccccccccccc3"
PUBLIC = "http://co2.example.org:8080"
SHARED = "sharedkey-2024"


def units_sh(server, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, **server.env(), "CO2_PUBLIC_URL": PUBLIC}
    done = subprocess.run([str(ROOT / "scripts" / "units.sh"), *args], env=env, capture_output=True, text=True)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def dest_of(output: str) -> list[str]:
    return json.loads(output.strip().splitlines()[-1])["sync_dest"]


def key_of(dest: list[str]) -> str:
    return urlsplit(dest[0]).path.strip("/")


def enroll(server, hw_id: str, *extra: str) -> str:
    return key_of(dest_of(units_sh(server, "enroll", hw_id, "--nickname", hw_id[-4:], *extra).stdout))


def unit(server, tmp_path: Path, hw_id: str, key: str) -> UnitSim:
    sim = UnitSim(hw_id, tmp_path / f"sd-{hw_id}", server.port, prefix=f"/{key}")
    sim.write_sd("data/readings", "readings-0000.tsv", f"2026-01-01T00:00:00Z\t{hw_id}\t400\n".encode() * 300)
    sim.write_sd("errors", "errors-0000.txt", b"boot\n")
    return sim


def install(sim: UnitSim, files: dict[str, bytes], config: dict) -> None:
    """What the firmware does with an update: merge conf patches into its config, use the new sync_dest."""
    config.update(json.loads(files["conf-patch/ou-comm-config.json"]))
    sim.prefix = urlsplit(config["sync_dest"][0]).path.rstrip("/")


def state(server) -> tuple:
    """Everything a unit request could change: every file under data and var/pings, with sizes."""
    files = []
    for top in (server.data_dir, server.var_dir / "pings"):
        for p in sorted(top.rglob("*")) if top.exists() else []:
            files.append((str(p), p.stat().st_size if p.is_file() else None))
    return tuple(files)


def server_matches(sim: UnitSim, server) -> None:
    for folder in ("data/readings", "errors"):
        for name in sim.local_files(folder):
            assert (server.data_dir / sim.hw_id / folder / name).read_bytes() == (sim.sd / folder / name).read_bytes()


def assert_no_key_logged(server, *keys: str) -> None:
    text = server.log()
    for key in keys:
        assert key not in text


REFUSED_REQUESTS = [
    ("POST", "alive?site_code=x&rssi_raw=1&rssi_dbm=-90&ber_raw=0", None),
    ("PUT", "push-sequential/data/readings/readings-0000.tsv?offset=0", b"2026\tforged\n"),
    ("PUT", "push-sequential/errors/errors-0000.txt?offset=0", b"forged\n"),
    ("GET", "updates?recursive=False", None),
    ("GET", "updates/update-1?recursive=True", None),
    ("GET", "updates/update-1/flash/main.py", None),
]


@pytest.fixture
def per_unit(make_server):
    return make_server(CO2_KEY_MODE="per-unit")


def test_enrolled_units_sync_and_every_other_key_or_unit_gets_the_404_of_a_missing_path(per_unit, tmp_path):
    key_a, key_b = enroll(per_unit, A), enroll(per_unit, B)
    assert len(key_a) >= 22 and re.fullmatch(r"[A-Za-z0-9_-]+", key_a) and key_a != key_b  # >= 128 bits
    a, b = unit(per_unit, tmp_path, A, key_a), unit(per_unit, tmp_path, B, key_b)
    assert a.cycle() == "ok" and b.cycle() == "ok"
    server_matches(a, per_unit)
    server_matches(b, per_unit)
    (per_unit.data_dir / B / "updates" / "update-1" / "flash").mkdir(parents=True)
    (per_unit.data_dir / B / "updates" / "update-1" / "flash" / "main.py").write_bytes(b"print(1)\n")
    units_sh(per_unit, "revoke", B)
    missing = http_request(per_unit.port, "POST", f"/{key_a}/ou/{A}/no-such-endpoint")  # a path that is not there
    assert missing.json() == {"error": "NOT_FOUND", "message": f"no such resource: /*/ou/{A}/no-such-endpoint"}
    cases = {
        "A's key for B": (key_a, B),
        "unknown unit": (key_a, UNKNOWN),
        "wrong key": ("x" * 32, A),
        "revoked unit": (key_b, B),
        "no key": ("", A),
    }
    for why, (key, hw_id) in cases.items():
        for method, rest, body in REFUSED_REQUESTS:
            before = state(per_unit)
            log_before = len(per_unit.log())
            path = f"/{key}/ou/{hw_id}/{rest}" if key else f"/ou/{hw_id}/{rest}"
            reply = http_request(per_unit.port, method, path, body)
            assert reply.status == 404, (why, path, reply.body)
            shown = path.split("?")[0].replace(f"/{key}/", "/*/", 1) if key else path.split("?")[0]
            assert reply.json() == {"error": "NOT_FOUND", "message": f"no such resource: {shown}"}  # no key echoed
            assert state(per_unit) == before, (why, path)
            assert not (per_unit.data_dir / UNKNOWN).exists()
            if key:  # logged with the client address and the reason, never the key
                line = wait_until(
                    lambda start=log_before: [x for x in per_unit.log()[start:].splitlines() if " rejected " in x]
                )[0]
                assert "from=127.0.0.1" in line and "(refused: " in line and key not in line, line
    # B's data stays after the revocation; A still syncs.
    server_matches(b, per_unit)
    a.write_sd("errors", "errors-0000.txt", b"more\n")
    assert a.cycle() == "ok"
    server_matches(a, per_unit)
    listing = units_sh(per_unit, "list").stdout
    assert A in listing and "revoked" in listing and key_a not in listing and key_b not in listing
    assert_no_key_logged(per_unit, key_a, key_b)


def test_rotation_through_the_update_channel_keeps_every_byte_and_retires_the_old_key(per_unit, tmp_path):
    old = enroll(per_unit, A, "--also-sync", "http://other.example.org:8080/theirs")
    a = unit(per_unit, tmp_path, A, old)
    config = {"sync_dest": [f"{PUBLIC}/{old}", "http://other.example.org:8080/theirs"], "interval": 3600}
    assert a.push_folder("errors")  # part of the data is up; then the operator rotates
    out = units_sh(per_unit, "rotate", A).stdout
    new = key_of(dest_of(out))
    assert new != old and dest_of(out)[1:] == ["http://other.example.org:8080/theirs"]
    a.write_sd("data/readings", "readings-0000.tsv", b"2026-01-02T00:00:00Z\tmore\t401\n")
    assert a.ping().status == 200  # the cycle under the old key, which still works: ping, then the update
    install(a, a.pull_updates(), config)
    assert config["interval"] == 3600 and config["sync_dest"][1] == "http://other.example.org:8080/theirs"
    assert a.prefix == f"/{new}"
    assert a.cycle() == "ok"
    server_matches(a, per_unit)
    # Seen with the new key: the old one is retired.
    old_ping = http_request(per_unit.port, "POST", f"/{old}/ou/{A}/alive?site_code=x")
    assert old_ping.status == 404
    registry = json.loads((per_unit.var_dir / "units.json").read_text())
    assert [k["state"] for k in registry["units"][A]["keys"]] == ["retired", "current"]
    assert (
        old not in (per_unit.var_dir / "units.json").read_text()
        and new not in (per_unit.var_dir / "units.json").read_text()
    )
    assert_no_key_logged(per_unit, old, new)


def test_migration_from_the_shared_key_loses_no_upload(make_server, tmp_path):
    root = tmp_path / "srv"
    shared = make_server(root, CO2_URL_KEY=SHARED)
    a = unit(shared, tmp_path, A, SHARED)
    a.chunk_size = 1024
    assert a.ping().status == 200
    a.push_folder("errors")
    # Mid-upload: only the first chunk of the readings file is up.
    name = "readings-0000.tsv"
    first = (a.sd / "data" / "readings" / name).read_bytes()[:1024]
    assert a.request("PUT", f"push-sequential/data/readings/{name}?offset=0", first).status == 200
    a.positions["data/readings"] = (name, 1024)
    out = units_sh(shared, "enroll", A, "--publish").stdout
    new = key_of(dest_of(out))
    shared.stop()
    per_unit = make_server(root, CO2_KEY_MODE="per-unit", CO2_URL_KEY=SHARED)
    a.port = per_unit.port
    config = {"sync_dest": [f"{PUBLIC}/{SHARED}"]}
    assert a.ping().status == 200  # still on the shared key: accepted for this unit
    files = a.pull_updates()
    install(a, files, config)
    assert a.prefix == f"/{new}"
    assert a.cycle() == "ok"
    server_matches(a, per_unit)
    # Seen with its own key, the unit can no longer use the shared one; an unenrolled unit never could.
    assert http_request(per_unit.port, "POST", f"/{SHARED}/ou/{A}/alive?site_code=x").status == 404
    assert http_request(per_unit.port, "POST", f"/{SHARED}/ou/{B}/alive?site_code=x").status == 404
    assert_no_key_logged(per_unit, new, SHARED)


def test_quotas_refuse_with_a_precise_403_and_write_nothing_past_the_cap(make_server, tmp_path):
    server = make_server(CO2_UNIT_MAX_BYTES=3000, CO2_UNIT_MAX_FILES=2)
    base = f"/ou/{A}/push-sequential"
    assert http_request(server.port, "PUT", f"{base}/errors/e-0.txt?offset=0", b"x" * 2000).status == 200
    over = http_request(server.port, "PUT", f"{base}/errors/e-0.txt?offset=2000", b"y" * 1001)
    assert over.status == 403 and over.json()["error"] == "UNIT_QUOTA_BYTES", over.body
    assert "3000" in over.json()["message"] and "CO2_UNIT_MAX_BYTES" in over.json()["message"]
    assert (server.data_dir / A / "errors" / "e-0.txt").read_bytes() == b"x" * 2000
    assert http_request(server.port, "PUT", f"{base}/errors/e-0.txt?offset=2000", b"y" * 1000).status == 200
    assert http_request(server.port, "PUT", f"{base}/errors/e-0.txt?offset=0", b"x" * 2000).status == 200  # a repeat
    # A unit at its quota is flagged on the dashboard.
    board = {u["hw_id"]: u for u in http_request(server.port, "GET", "/status/units.json").json()["units"]}
    assert board[A]["quota_full"] and board[A]["quota_used_bytes"] == 3000
    assert "QUOTA FULL" in http_request(server.port, "GET", "/status/units").body.decode()
    # Files: a second file fits, a third does not (and leaves no file or folder).
    assert http_request(server.port, "PUT", f"{base}/errors/e-0.txt?offset=3000", b"").status == 200
    server2 = make_server(tmp_path / "two", CO2_UNIT_MAX_FILES=2)
    b2 = f"/ou/{B}/push-sequential"
    assert http_request(server2.port, "PUT", f"{b2}/errors/e-0.txt?offset=0", b"a").status == 200
    assert http_request(server2.port, "PUT", f"{b2}/errors/e-1.txt?offset=0", b"b").status == 200
    third = http_request(server2.port, "PUT", f"{b2}/data/readings/r-0.tsv?offset=0", b"c")
    assert third.status == 403 and third.json()["error"] == "UNIT_QUOTA_FILES", third.body
    assert not (server2.data_dir / B / "data" / "readings" / "r-0.tsv").exists()
    line = wait_until(lambda: [x for x in server2.log().splitlines() if "UNIT_QUOTA_FILES" in x])[0]
    assert f"unit={B}" in line
    board = {u["hw_id"]: u for u in http_request(server2.port, "GET", "/status/units.json").json()["units"]}
    assert board[B]["quota_full"] and board[B]["quota_used_files"] == 2


def test_the_mode_is_shown_at_start_up_and_a_bad_mode_is_refused(make_server, tmp_path):
    server = make_server(CO2_KEY_MODE="per-unit")
    assert "unit API: per-unit mode" in server.log()
    enroll(server, A)
    health = http_request(server.port, "GET", "/healthz").json()
    assert health["unit_keys"].startswith("per-unit mode") and "1 units enrolled" in health["unit_keys"]
    bad = subprocess.run(
        [str(ROOT / "scripts" / "units.sh"), "list"],
        capture_output=True,
        text=True,
        env={**os.environ, **server.env(), "CO2_KEY_MODE": "shared"},
    )
    assert bad.returncode == 1 and "CO2_KEY_MODE=shared needs CO2_URL_KEY" in bad.stderr


def test_a_unit_cannot_add_another_units_readings_through_the_server_and_make(per_unit, tmp_path):
    """other_unit (DATA-FORMATS.md): a line naming another unit, uploaded under A's own key, is kept in
    rejected_lines by `make`, never imported as B's reading; A's own lines are imported."""
    key_a = enroll(per_unit, A)
    enroll(per_unit, B)
    a = UnitSim(A, tmp_path / "sd-a", per_unit.port, prefix=f"/{key_a}")
    line = "{hw}\tnick\t2019-08-01\t{h:02d}:00:10\t12.5\t0\t" + "\t".join(["600"] * 10) + "\n"
    own = "".join(line.format(hw=A, h=h) for h in range(3))
    forged = line.format(hw=B, h=5).replace("600", "9999")
    a.write_sd("data/readings", "readings-0000.tsv", (own + forged).encode())
    assert a.cycle() == "ok"
    env = {**os.environ, "CO2_DATA_DIR": str(per_unit.data_dir), "CO2_VAR_DIR": str(per_unit.var_dir)}
    done = subprocess.run([str(ROOT / "scripts/make-summaries.sh"), "import"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "other_unit=1" in done.stdout + done.stderr
    conn = sqlite3.connect(per_unit.db_path)
    assert conn.execute("SELECT DISTINCT unit_id FROM co2_readings").fetchall() == [(A,)]
    assert conn.execute("SELECT count(*) FROM co2_readings").fetchone() == (3,)
    assert conn.execute("SELECT reason, raw FROM rejected_lines").fetchall() == [("other_unit", forged[:-1].encode())]


def test_a_flood_of_invented_ids_writes_nothing_in_per_unit_mode(per_unit, tmp_path):
    """A few hundred invented hardware IDs under guessed keys: no folder, no ping line, and the dashboard
    still answers (its budget is bench/bench_dashboard.py's)."""
    enroll(per_unit, A)
    before = state(per_unit)
    for i in range(300):
        hw = f"co2unit-{i:012x}"
        assert http_request(per_unit.port, "POST", f"/{'k' * 32}/ou/{hw}/alive?site_code=x").status == 404
        reply = http_request(per_unit.port, "PUT", f"/{'k' * 32}/ou/{hw}/push-sequential/errors/e.txt?offset=0", b"x")
        assert reply.status == 404
    assert state(per_unit) == before
    assert sorted(p.name for p in per_unit.data_dir.iterdir()) == []
    page = http_request(per_unit.port, "GET", "/status/units.json")
    # Only the enrolled unit is listed (never seen yet), none of the invented ones.
    assert page.status == 200
    assert [(u["hw_id"], u["liveness_state"]) for u in page.json()["units"]] == [(A, "never_seen")]
