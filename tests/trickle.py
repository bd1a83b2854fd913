"""Slow clients, as an attacker (or CAT-M1 at its worst) makes them: uploads that trickle in.

One thread drives every connection with non-blocking sockets: each sends
the headers of a PUT with `Content-Length: 4096`, then 5 bytes of body every
100 ms (50 B/s), so none finishes for over a minute. Each client has its own
source address in 127.0.0.0/8 (Linux answers on all of it), as an attack from
many machines would, so nginx's per-address limits do not stop it early.
"""

from __future__ import annotations

import errno
import selectors
import socket
import threading
import time


def source_address(i: int, net: int = 1) -> str:
    """The i-th distinct loopback address 127.<net>.x.y (y in 1..250)."""
    return f"127.{net}.{i // 250}.{i % 250 + 1}"


class Trickler:
    def __init__(self, port: int, count: int, path: str, net: int = 1, length: int = 4096,
                 step: bytes = b"xxxxx", interval: float = 0.1, spread: int | None = None):
        self.port, self.count, self.path, self.net = port, count, path, net
        self.length, self.step, self.interval = length, step, interval
        self.spread = count if spread is None else spread  # distinct source addresses
        self.socks: list[socket.socket] = []
        self.sent: dict[int, int] = {}  # fd -> body bytes sent
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self, settle: float = 20.0) -> Trickler:
        """Open every connection and wait until all of them have sent their headers and some body."""
        self._thread.start()
        deadline = time.monotonic() + settle
        while self.trickling() < self.count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def trickling(self) -> int:
        """Connections still open that have sent their headers and started the body."""
        return sum(1 for sent in self.sent.copy().values() if sent > 0)

    def _open(self, i: int) -> socket.socket | None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((source_address(i % self.spread, self.net), 0))
        sock.setblocking(False)
        err = sock.connect_ex(("127.0.0.1", self.port))
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self.failed += 1
            return None
        self.socks.append(sock)
        self.sent[sock.fileno()] = -1  # headers not sent yet
        return sock

    def _run(self) -> None:
        head = f"PUT {self.path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {self.length}\r\n\r\n".encode()
        waiting = selectors.DefaultSelector()  # epoll: no limit of 1024 descriptors
        for i in range(self.count):
            sock = self._open(i)
            if sock is not None:
                waiting.register(sock, selectors.EVENT_WRITE)
        while not self._stop.is_set():
            if waiting.get_map():
                for key, _ in waiting.select(timeout=0):
                    waiting.unregister(key.fileobj)
                    self._send(key.fileobj, head, first=True)
            for sock in list(self.socks):
                if self.sent.get(sock.fileno(), -1) >= 0:
                    self._send(sock, self.step)
            self._stop.wait(self.interval)
        waiting.close()

    def _send(self, sock: socket.socket, data: bytes, first: bool = False) -> None:
        fd = sock.fileno()
        if not first and self.sent[fd] + len(data) >= self.length:
            return  # never complete the body
        try:
            sock.send(data)
        except BlockingIOError:
            return
        except OSError:  # refused, reset or closed by the server
            self.sent.pop(fd, None)
            self.socks.remove(sock)
            sock.close()
            self.failed += 1
            return
        self.sent[fd] = 0 if first else self.sent[fd] + len(data)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for sock in self.socks:
            sock.close()
