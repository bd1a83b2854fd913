"""A full var disk never kills a worker through its request counters (a real tmpfs as the var folder; root)."""

from __future__ import annotations

import socket
import time

import pytest
from test_full_disk import fill, tmpfs_at

VAR_BYTES = 2 * 2**20


@pytest.fixture
def small_var_disk(tmp_path):
    with tmpfs_at(tmp_path / "var", VAR_BYTES) as var:
        yield var


def held_requests(port: int, count: int, path: str) -> list[bytes]:
    """`count` requests held half-sent at once (more than one process's threads), then finished: both workers answer."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(count)]
    try:
        for sock in socks:
            sock.sendall(f"GET {path} HTTP/1.0\r\n".encode())
        time.sleep(1.0)
        for sock in socks:
            sock.sendall(b"Host: 127.0.0.1\r\n\r\n")
        answers = []
        for sock in socks:
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            answers.append(data.split(b"\r\n", 1)[0])
        return answers
    finally:
        for sock in socks:
            sock.close()


def test_new_counters_on_a_full_var_disk_never_kill_a_worker(small_var_disk, make_server):
    server = make_server()
    workers = set(server.worker_pids())
    fill(small_var_disk)
    # Labels no worker has counted yet, in both workers (one of them has counted nothing at all).
    answers = held_requests(server.port, 40, "/nowhere") + held_requests(server.port, 40, "/status/units.json")
    assert all(a.startswith(b"HTTP/1.") for a in answers), answers
    assert set(server.worker_pids()) == workers, server.log()[-3000:]
    assert "signal 7" not in server.log() and "SIGBUS" not in server.log()
