"""A small client that talks HTTP the way the units' firmware does.

PROTOCOL.md: one fresh TCP connection per request, `HTTP/1.0`, a Host header,
no Content-Type, Content-Length only with a body, the answer read until the
server closes. `UnitSim` follows the firmware's sync cycle: ping, pull
updates, push `errors` then `data/readings` in chunks, obeying `ack_file`.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    raw_head: bytes = b""

    def json(self):
        return json.loads(self.body)


def http_request(port: int, method: str, path: str, body: bytes | None = None,
                 host: str = "127.0.0.1", timeout: float = 30.0,
                 extra_headers: dict[str, str] | None = None, source: str | None = None) -> Reply:
    """Send one request on a fresh connection, the firmware's way (from address `source`, e.g. 127.2.0.1)."""
    head = f"{method} {path} HTTP/1.0\r\nHost: {host}:{port}\r\n"
    if body is not None:
        head += f"Content-Length: {len(body)}\r\n"
    for name, value in (extra_headers or {}).items():
        head += f"{name}: {value}\r\n"
    # MicroPython's str.encode() is UTF-8: a nickname such as 'vårdø-01' goes out as its UTF-8 bytes, unencoded.
    data = head.encode("utf-8") + b"\r\n" + (body or b"")
    with socket.create_connection((host, port), timeout=timeout, source_address=(source, 0) if source else None) as sock:
        sock.sendall(data)
        return read_reply(sock)


def read_reply(sock: socket.socket) -> Reply:
    chunks = []
    while True:
        part = sock.recv(65536)
        if not part:
            break
        chunks.append(part)
    raw = b"".join(chunks)
    if not raw:
        raise ConnectionResetError("the server closed the connection without an answer")
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Reply(status, headers, body, head)


def assert_plain_answer(reply: Reply) -> None:
    """What the firmware's HTTP client needs: no chunking, no redirect."""
    assert "chunked" not in reply.headers.get("transfer-encoding", "").lower()
    assert "location" not in reply.headers
    if "content-length" in reply.headers:
        assert int(reply.headers["content-length"]) == len(reply.body)


PUSH_FOLDERS = ("errors", "data/readings")


@dataclass
class UnitSim:
    """One Observation Unit: an SD card folder and its sync positions."""

    hw_id: str
    sd: Path
    port: int
    nickname: str = "varanger-03"
    prefix: str = ""  # the path part of sync_dest, e.g. "/abc"
    chunk_size: int = 4096
    positions: dict[str, tuple[str, int]] = field(default_factory=dict)
    fetched_updates: list[str] = field(default_factory=list)
    requests: int = 0

    def request(self, method, path, body=None) -> Reply:
        self.requests += 1
        reply = http_request(self.port, method, f"{self.prefix}/ou/{self.hw_id}/{path}", body)
        assert_plain_answer(reply)
        return reply

    def ping(self, rssi_raw=8, rssi_dbm=-97, ber_raw=99) -> Reply:
        query = f"site_code={self.nickname}"
        if rssi_raw is not None:
            query += f"&rssi_raw={rssi_raw}&rssi_dbm={rssi_dbm}&ber_raw={ber_raw}"
        return self.request("POST", f"alive?{query}")

    def pull_updates(self) -> dict[str, bytes] | None:
        """The firmware's update step: the last listed update, once. None if nothing new."""
        reply = self.request("GET", "updates?recursive=False")
        if reply.status == 404:
            return None
        assert reply.status == 200, reply
        names = sorted(reply.json())
        if not names or names[-1] in self.fetched_updates:
            return None
        latest = names[-1]
        listing = self.request("GET", f"updates/{latest}?recursive=True")
        assert listing.status == 200, listing
        files = {}
        for rel in listing.json():
            got = self.request("GET", f"updates/{latest}/{rel}")
            assert got.status == 200, got
            files[rel] = got.body
        if not files:
            raise AssertionError(f"update {latest} is empty: the unit would fail every cycle")
        self.fetched_updates.append(latest)
        return files

    def write_sd(self, folder: str, name: str, data: bytes) -> None:
        path = self.sd / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as f:
            f.write(data)

    def local_files(self, folder: str) -> list[str]:
        d = self.sd / folder
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []

    def push_folder(self, folder: str, max_requests: int = 500) -> bool:
        """Push one folder; True when everything was sent, False if the cycle aborted."""
        files = self.local_files(folder)
        if not files:
            return True
        name, offset = self.positions.get(folder, (files[0], 0))
        for _ in range(max_requests):
            if name not in files:
                name, offset = files[0], 0  # what the firmware does with an unknown name
            data = (self.sd / folder / name).read_bytes()[offset:offset + self.chunk_size]
            if not data:
                later = [f for f in files if f > name]
                if not later:
                    self.positions[folder] = (name, offset)
                    return True
                name, offset = later[0], 0
                continue
            reply = self.request("PUT", f"push-sequential/{folder}/{name}?offset={offset}", data)
            if reply.status == 200:
                offset += len(data)
            elif reply.status != 416:
                self.positions[folder] = (name, offset)
                return False
            ack = reply.json().get("ack_file")
            if ack and (ack[0], ack[1]) != (name, offset):
                name, offset = ack[0], ack[1]
            self.positions[folder] = (name, offset)
        raise AssertionError(f"{self.hw_id} did not finish pushing {folder} in {max_requests} requests (livelock?)")

    def cycle(self) -> str:
        """One communication cycle; returns 'ok', 'updated' or what aborted it."""
        if self.ping().status != 200:
            return "ping failed"
        if self.pull_updates() is not None:
            return "updated"
        for folder in PUSH_FOLDERS:
            if not self.push_folder(folder):
                return f"push of {folder} aborted"
        return "ok"


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)
