"""The server says when it cannot keep data: a full data disk, a broken database.

The full disk is real: a small tmpfs mounted as the data folder (needs root;
CI runs as root, and tests/test_ci_nothing_skipped.py fails there if it could
not run).
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess

import pytest

from firmware import UnitSim, http_request
from tree import snapshot

HW = "co2unit-30aea42a50bc"
P = f"/ou/{HW}/push-sequential"
DISK_BYTES = 256 * 1024


def require_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            raise AssertionError("CI must run the full-disk tests as root (they mount a tmpfs)")
        pytest.skip("mounting a small tmpfs as the data disk needs root (CI runs these as root)")


@contextlib.contextmanager
def tmpfs_at(folder, size: int):
    """`folder` (made here) as a tmpfs of `size` bytes while the block runs; needs root (require_root)."""
    require_root()
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)]).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], check=True)


@pytest.fixture
def small_data_disk(tmp_path):
    """<tmp_path>/remote_data as a 256 KiB tmpfs; unmounted afterwards (after the server stopped)."""
    with tmpfs_at(tmp_path / "remote_data", DISK_BYTES) as data:
        yield data


def fill(folder) -> None:
    """Write a file into `folder` until the disk has no room left."""
    with open(folder / "filler", "wb", buffering=0) as f:
        while True:
            try:
                f.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                return


def test_a_full_data_disk_refuses_chunks_with_507_and_healthz_says_so(small_data_disk, make_server, tmp_path):
    # 0.1 MiB: the empty 256 KiB disk is above the threshold, the full one below.
    server = make_server(CO2_MIN_FREE_MB="0.1")
    health = http_request(server.port, "GET", "/healthz")
    assert health.status == 200, health.body
    disk = health.json()["data_disk"]
    assert 0.1 * 2**20 < disk["free_bytes"] <= DISK_BYTES and disk["total_bytes"] == DISK_BYTES
    assert health.json()["var_disk"]["free_bytes"] > 2**20

    unit = UnitSim(HW, tmp_path / "sd", server.port)
    unit.write_sd("errors", "errors-0000.txt", b"----- 2019-09-16 10:55:57 INFO  first\n")
    assert unit.cycle() == "ok"
    fill(small_data_disk)
    before = snapshot(server.root)
    held = len(b"----- 2019-09-16 10:55:57 INFO  first\n")
    for path, body in (
        (f"{P}/errors/errors-0000.txt?offset={held}", b"e" * 16384),  # an append: part of it would fit a page
        (f"{P}/errors/errors-0001.txt?offset=0", b"f" * 4096),  # a new file
        (f"{P}/data/readings/readings-0000.tsv?offset=0", b"r" * 4096),  # a new folder and file
    ):
        reply = http_request(server.port, "PUT", path, body)
        assert reply.status == 507, (path, reply.status, reply.body)
        payload = reply.json()
        assert payload["error"] == "INSUFFICIENT_STORAGE"
        assert "space" in payload["message"] and "not stored" in payload["message"]
        assert snapshot(server.root) == before, path  # nothing partial kept, no empty file or folder
    assert "status=507 INSUFFICIENT_STORAGE" in server.log()

    health = http_request(server.port, "GET", "/healthz")
    assert health.status == 503, health.body
    checks = health.json()
    assert checks["status"] == "unhealthy" and checks["data_disk"]["low"] is True
    assert checks["data_disk"]["free_bytes"] < 0.1 * 2**20 and checks["var_disk"]["low"] is False
    assert checks["min_free_bytes"] == int(0.1 * 2**20)

    # The var disk has room: pings are still answered and logged (the cycle then stops at the push).
    assert unit.ping().status == 200
    pings = (server.var_dir / "pings" / "pings-0000.tsv").read_text().splitlines()
    assert len(pings) == 2 and pings[-1].split("\t")[1] == HW
    unit.write_sd("errors", "errors-0000.txt", b"more\n" * 2000)  # more than the page the file has on the disk
    assert unit.cycle() == "push of errors aborted"

    # Room again: the unit continues from the server's position, and /healthz recovers.
    (small_data_disk / "filler").unlink()
    assert unit.cycle() == "ok"
    assert (server.data_dir / HW / "errors" / "errors-0000.txt").read_bytes() == (unit.sd / "errors" / "errors-0000.txt").read_bytes()
    assert http_request(server.port, "GET", "/healthz").status == 200


def test_healthz_sees_a_database_overwritten_under_the_running_server(server):
    assert http_request(server.port, "POST", f"/ou/{HW}/alive?site_code=x").status == 200
    health = http_request(server.port, "GET", "/healthz")
    assert (health.status, health.json()["database"]) == (200, "ok")
    size = server.db_path.stat().st_size
    with open(server.db_path, "r+b") as f:  # in place, as a failing disk or a stray dd would
        f.write(b"garbage!" * (size // 8 + 1))
    for _ in range(2):  # every request looks afresh, in whichever worker
        health = http_request(server.port, "GET", "/healthz")
        assert health.status == 503, health.body
        assert health.json()["database"].startswith("error"), health.body
    assert http_request(server.port, "POST", f"/ou/{HW}/alive?site_code=y").status == 200  # still recorded
