#!/usr/bin/env python3
"""The unit API through the production front (nginx before uWSGI), against the bare app behind the same front.

Run on demand (never part of the tests):

    .venv/bin/python bench/bench_front.py [--slow 2000] [--seconds 10]

In one run it starts two fronts as the tests do (tests/front.py: Debian's
nginx from nginx-co2unit.conf.example on free loopback ports, uWSGI from
server.ini.example on its own unix socket behind each):
- the real server;
- the bare Flask-RESTful app (bench/bare_app.py: the same ini with only
  chdir/module overridden, as bench_server.py starts it). It routes only
  GET /, so it answers the unit requests with Flask's own 404 without doing
  any work: what nginx, uWSGI and Flask cost for that very request, the
  ceiling of any app behind this front.

Then it measures on the units' door (plain HTTP):
1. alive pings/s (POST /ou/<hw_id>/alive?...) and 4 KiB chunks/s (PUT
   /ou/<hw_id>/push-sequential/data/readings/readings-0000.tsv?offset=N, one
   unit and file per connection slot, offset += 4096 on every 200), for the
   bare app and the real one, and each real figure as a fraction of the bare;
2. ping latency p50/p99 for the real app (--probe-rate pings/s, open loop),
   first with no slow clients (the baseline), then while --slow clients
   trickle uploads: a PUT with Content-Length 4096 whose body is sent 5 bytes
   every 100 ms (50 B/s), all driven from one thread with non-blocking
   sockets (tests/trickle.py, paced to a 100 ms grid) in a process of its own; it prints how many
   were connected and still trickling before and after the measurement, and
   how many connections nginx held on the units' door;
3. checks that the real app stored every acknowledged chunk byte for byte
   and logged one pings TSV line per ping answered 200.

Load: as the firmware does, every request on a fresh TCP connection with
HTTP/1.0. nginx limits each client address to 32 connections and 10
requests/s (bursts of 200), so every request and every slow client is bound
to its own source address in 127.0.0.0/8 (Linux loopback answers on all of
it). Throughput: --procs processes x --conns requests in flight (epoll
loops); the request plans and the integrity checks are bench_server.py's.
Everything goes to loopback only; nginx, uWSGI and the load processes are
stopped at the end, even on errors. See bench/README.md.
"""

from __future__ import annotations

import argparse
import errno
import multiprocessing as mp
import os
import resource
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"

sys.path[:0] = [str(BENCH), str(ROOT / "tests")]
from bench_server import (  # noqa: E402  (request plans, the uWSGI runner with CPU accounting, checks)
    BARE_BODY,
    HOST,
    Uwsgi,
    _requests_for,
    check_files,
    count_ping_lines,
    hw_ids,
    judge_answer,
    pump,
)
from front import WORKER_CONNECTIONS, NginxFront, TlsCert, nginx_binary  # noqa: E402
from trickle import Trickler, source_address  # noqa: E402

from firmware import http_request  # noqa: E402

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # port chosen at connect()
ADDRESSES_PER_NET = 64000  # 127.<net>.0.1 .. 127.<net>.255.250 (trickle.source_address)
SLOW_NET = 1  # the slow clients: 127.1.x.y
REQUEST_TIMEOUT = 30.0


def note(*parts) -> None:
    """Progress, on stderr."""
    print(*parts, file=sys.stderr, flush=True)


def tree_cpu(pid: int) -> float:
    """CPU seconds used so far by a process and its live children (nginx: master and workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    for p in [pid, *map(int, kids)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def established_on(port: int) -> int:
    """TCP connections nginx holds open (ESTABLISHED) on 127.0.0.1:`port`, from /proc/net/tcp."""
    local = f"0100007F:{port:04X}"
    n = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split(None, 4)
            if fields[1] == local and fields[3] == "01":
                n += 1
    return n


# --------------------------------------------------------------------------- load generator


class BarePlan:
    """A bench_server plan sent to the bare app: its answer is Flask's 404 (checked byte for byte)."""

    def __init__(self, plan, answer_404: bytes):
        self.plan, self.answer_404 = plan, answer_404

    def next(self):
        return self.plan.next()

    def judge(self, status, body):
        if status != 404 or body != self.answer_404:
            return f"bare app: status {status} body {body[:120]!r}"
        if hasattr(self.plan, "k"):  # chunks: advance the offset as a 200 would
            self.plan.k += 1
        return None


def _load_process(job: dict, queue) -> None:
    try:
        queue.put(_load_loop(**job))
    except BaseException as exc:  # report, never hang the parent
        queue.put({"fatal": repr(exc)})


def _load_loop(kind, port, units, answer_404, net, proc, procs, slots, first_slot, rate, start_at, end_at):
    """One load process, an epoll loop; every request on a fresh connection from a source address of its own.

    rate None: closed loop, `slots` requests in flight. rate R: open loop, one
    request every 1/R s whatever is in flight (latency probe).
    """
    ep = select.epoll()

    def plan_for(slot):
        plan = _requests_for(kind, port, slot, units)
        return BarePlan(plan, answer_404) if answer_404 is not None else plan

    plans = [plan_for(first_slot + s) for s in range(slots)]
    conns = {}  # fd -> [sock, slot, out_bytes, in_parts, t0]
    counted = ok = n_errors = conn_errors = 0
    failures: dict[str, int] = {}
    samples: list[str] = []
    latencies: list[float] = []
    launched = 0

    def fail(what: str) -> None:
        nonlocal n_errors
        n_errors += 1
        key = what.split(":")[0][:60]
        failures[key] = failures.get(key, 0) + 1
        if len(samples) < 3:
            samples.append(what)

    def launch(slot):
        nonlocal launched
        raw = plans[slot].next()
        if raw is None:
            return
        i = launched * procs + proc
        launched += 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source_address(i % ADDRESSES_PER_NET, net), 0))
        sock.setblocking(False)
        err = sock.connect_ex((HOST, port))
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            raise OSError(err, os.strerror(err))
        conns[sock.fileno()] = [sock, slot, raw, [], time.monotonic()]
        ep.register(sock.fileno(), select.EPOLLOUT)

    def finish(fd, c, failed):
        nonlocal ok, counted, conn_errors
        ep.unregister(fd)
        c[0].close()
        del conns[fd]
        now = time.monotonic()
        if failed is None:
            status, failed = judge_answer(c[3], plans[c[1]])
            if failed and status != 200:
                failed = f"status {status}: {failed}"
        else:
            conn_errors += 1
        if failed is None:
            ok += 1
            if now <= mono_end:
                counted += 1
                latencies.append(now - c[4])
        else:
            fail(failed)
        if rate is None and now < mono_end:
            launch(c[1])

    while time.time() < start_at:
        time.sleep(0.001)
    mono_end = time.monotonic() + (end_at - time.time())
    t_start = time.monotonic()
    next_at = t_start
    if rate is None:
        for slot in range(slots):
            launch(slot)
    while conns or (rate is not None and time.monotonic() < mono_end):
        now = time.monotonic()
        if rate is not None:
            while next_at <= now and next_at < mono_end:
                launch(0)
                next_at += 1.0 / rate
            wait = max(0.0, min(next_at, mono_end) - time.monotonic())
        else:
            wait = 0.5
        for fd, events in ep.poll(min(wait, 0.5)):
            c = conns[fd]
            done, failed = pump(ep, fd, c, events)
            if done or failed:
                finish(fd, c, failed)
        now = time.monotonic()
        for fd, c in list(conns.items()):
            if now - c[4] > REQUEST_TIMEOUT:
                finish(fd, c, f"timeout: no answer in {REQUEST_TIMEOUT:g} s")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "ok": ok,
        "counted": counted,
        "launched": launched,
        "errors": n_errors,
        "failures": failures,
        "samples": samples,
        "conn_errors": conn_errors,
        "latencies": latencies,
        "elapsed": min(time.monotonic(), mono_end) - t_start,
        "client_cpu": usage.ru_utime + usage.ru_stime,
    }
    if kind == "chunks":
        result["acked"] = {p.plan.hw if isinstance(p, BarePlan) else p.hw: (p.plan.k if isinstance(p, BarePlan) else p.k)
                           for p in plans}
    return result


class Nets:
    """A fresh 127.<net>.0.0/16 for every measurement, so nginx's per-address counts start empty."""

    def __init__(self, first: int = 10):
        self.n = first

    def take(self) -> int:
        self.n += 1
        if self.n > 255:
            raise RuntimeError("out of 127.<net> blocks")
        return self.n


def drive(kind, front: NginxFront, seconds, procs, conns, units, nets: Nets, answer_404=None, rate=None) -> dict:
    """Load the units' door for `seconds`; the figures of all processes, with the server's CPU per request."""
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    start_at = time.time() + 0.3
    end_at = start_at + seconds
    net = nets.take()
    jobs = [
        dict(kind=kind, port=front.port, units=units, answer_404=answer_404, net=net, proc=p, procs=procs,
             slots=conns if rate is None else 1, first_slot=p * conns, rate=None if rate is None else rate / procs,
             start_at=start_at, end_at=end_at)
        for p in range(procs)
    ]
    workers = [ctx.Process(target=_load_process, args=(job, queue)) for job in jobs]
    for w in workers:
        w.start()
    while time.time() < start_at:
        time.sleep(0.005)
    cpu0, nginx0, t0 = sum(front.app.cpu_seconds()), tree_cpu(front.proc.pid), time.monotonic()
    results = []
    try:
        for _ in workers:
            results.append(queue.get(timeout=seconds + REQUEST_TIMEOUT + 60))
    finally:
        for w in workers:
            w.join(timeout=5)
            if w.is_alive():
                w.kill()
    cpu1, nginx1, t1 = sum(front.app.cpu_seconds()), tree_cpu(front.proc.pid), time.monotonic()
    fatal = [r["fatal"] for r in results if "fatal" in r]
    if fatal:
        raise RuntimeError(f"load generator failed: {fatal}")
    lat = sorted(x for r in results for x in r["latencies"])
    counted = sum(r["counted"] for r in results)
    elapsed = max(r["elapsed"] for r in results)
    failures: dict[str, int] = {}
    for r in results:
        for k, v in r["failures"].items():
            failures[k] = failures.get(k, 0) + v
    out = {
        "ok": sum(r["ok"] for r in results),
        "counted": counted,
        "launched": sum(r["launched"] for r in results),
        "rate": counted / elapsed if elapsed > 0 else 0.0,
        "errors": sum(r["errors"] for r in results),
        "conn_errors": sum(r["conn_errors"] for r in results),
        "failures": failures,
        "samples": [s for r in results for s in r["samples"]][:4],
        "p50_ms": 1000 * statistics.median(lat) if lat else float("nan"),
        "p99_ms": 1000 * lat[int(0.99 * (len(lat) - 1))] if lat else float("nan"),
        "max_ms": 1000 * lat[-1] if lat else float("nan"),
        "uwsgi_ms": 1000 * (cpu1 - cpu0) / max(1, counted),
        "nginx_ms": 1000 * (nginx1 - nginx0) / max(1, counted),
        "client_ms": 1000 * sum(r["client_cpu"] for r in results) / max(1, counted),
        "wall": t1 - t0,
    }
    if kind == "chunks":
        out["acked"] = {hw: k for r in results for hw, k in r["acked"].items()}
    return out


def show(label: str, r: dict) -> None:
    note(
        f"  {label}: {r['rate']:.1f}/s ({r['counted']} in the window, {r['ok']} in all), errors {r['errors']}"
        f" (connection {r['conn_errors']}); p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms;"
        f" CPU per request: uWSGI {r['uwsgi_ms']:.2f} ms, nginx {r['nginx_ms']:.2f} ms, load {r['client_ms']:.2f} ms"
    )
    for s in r["samples"]:
        note(f"  ! {s}")


# --------------------------------------------------------------------------- slow clients


class _Ticks(threading.Event):
    """The stop event of a Trickler whose wait() ends on a 100 ms grid instead of 100 ms after a round.

    tests/trickle.py sends a round (5 bytes to every client), then waits its
    interval: with 2000 clients a round takes 20-30 ms, so each would send
    about 40 B/s. Waiting until the next tick keeps 5 bytes per 100 ms, 50 B/s;
    a round that overruns its tick starts the next one at once, never in a burst.
    The rate each client really got is measured and printed.
    """

    def __init__(self, period: float):
        super().__init__()
        self.period = period
        self.next_tick: float | None = None

    def wait(self, timeout: float | None = None) -> bool:
        now = time.monotonic()
        self.next_tick = max(now, (self.next_tick or now) + self.period)
        return super().wait(self.next_tick - now)


class PacedTrickler(Trickler):
    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self._stop = _Ticks(self.interval)


def _slow_process(port: int, count: int, path: str, conn) -> None:
    """The slow clients, in a process of their own (one thread: tests/trickle.py), told what to do over `conn`."""
    slow = None
    try:
        t0 = time.monotonic()
        slow = PacedTrickler(port, count, path, net=SLOW_NET).start(settle=60)
        took = time.monotonic() - t0
        prev = {"sent": slow.sent.copy(), "t": time.monotonic(), "cpu": time.process_time()}

        def status() -> dict:
            sent = slow.sent.copy()
            socks = list(slow.socks)
            poller = select.poll()
            for s in socks:
                poller.register(s.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
            answered = {fd for fd, _ in poller.poll(0)}  # nginx answered or hung up: no longer waiting on a body
            now, cpu = time.monotonic(), time.process_time()
            grew = [sent[fd] - prev["sent"][fd] for fd in sent if fd in prev["sent"] and sent[fd] > prev["sent"][fd] >= 0]
            span = now - prev["t"]
            out = {
                "open": len(socks),
                "trickling": sum(1 for fd, n in sent.items() if n > 0 and fd not in answered),
                "answered": len(answered),
                "failed": slow.failed,
                "progressed": len(grew),
                "bytes_per_s": statistics.mean(grew) / span if grew and span > 0 else 0.0,
                "min_sent": min((n for n in sent.values() if n >= 0), default=0),
                "max_sent": max(sent.values(), default=0),
                "cpu_share": (cpu - prev["cpu"]) / span if span > 0 else 0.0,
                "settle_s": took,
            }
            prev.update(sent=sent, t=now, cpu=cpu)
            return out

        conn.send(status())
        while True:
            cmd = conn.recv()
            if cmd == "status":
                conn.send(status())
            else:
                break
    except BaseException as exc:
        conn.send({"fatal": repr(exc)})
    finally:
        if slow is not None:
            slow.stop()
        conn.close()


class SlowClients:
    def __init__(self, port: int, count: int, path: str):
        ctx = mp.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_slow_process, args=(port, count, path, child))

    def start(self) -> dict:
        self.proc.start()
        return self._recv(timeout=90)  # the child reports once all are trickling

    def ask(self, timeout: float = 30) -> dict:
        if self.proc.is_alive() and not self.conn.closed:
            try:
                self.conn.send("status")
            except OSError:
                pass
        return self._recv(timeout)

    def _recv(self, timeout: float) -> dict:
        if not self.conn.poll(timeout):
            raise RuntimeError("the slow clients' process did not answer")
        reply = self.conn.recv()
        if "fatal" in reply:
            raise RuntimeError(f"slow clients failed: {reply['fatal']}")
        return reply

    def stop(self) -> None:
        try:
            if not self.conn.closed:
                self.conn.send("stop")
        except OSError:
            pass
        if self.proc.pid is not None:
            self.proc.join(timeout=15)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join(timeout=5)
        self.conn.close()


def describe_slow(s: dict) -> str:
    return (
        f"{s['open']} connected, {s['trickling']} trickling (body started, no answer from nginx),"
        f" {s['answered']} answered or closed by nginx, {s['failed']} failed;"
        f" body bytes sent each: {s['min_sent']}-{s['max_sent']} of 4096"
    )


# --------------------------------------------------------------------------- main


def pct(a: float, b: float) -> str:
    return f"{100 * a / b:.1f}%" if b else "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="duration of each measurement (default 10, at most 60)")
    ap.add_argument("--warmup", type=float, default=1.5, help="unmeasured pings before the first measurement of each app")
    ap.add_argument("--procs", type=int, default=2, help="load generator processes (default 2)")
    ap.add_argument("--conns", type=int, default=16, help="requests in flight per process (default 16)")
    ap.add_argument("--units", type=int, default=50, help="hardware IDs the pings are spread over (default 50)")
    ap.add_argument("--slow", type=int, default=2000, help="slow clients trickling uploads at 50 B/s (default 2000)")
    ap.add_argument("--probe-rate", type=float, default=100.0, help="latency probe: pings/s, open loop (default 100)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (data, logs of nginx and uWSGI)")
    args = ap.parse_args()
    # A slow client never completes its body: after 819 steps of 5 bytes (>= 82 s) it falls
    # silent, and nginx drops it 90 s later (client_body_timeout). The attack must outlast the window.
    if not 1 <= args.seconds <= 60:
        ap.error("--seconds must be between 1 and 60 (a slow client's body is all but sent after 82 s)")
    if not 0 <= args.slow <= 60000:
        ap.error("--slow must be between 0 and 60000")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.slow + 1000:
        want = min(hard, args.slow + 1000)
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        if want < args.slow + 1000:
            ap.error(f"--slow {args.slow} needs {args.slow + 1000} descriptors; ulimit -n allows {hard}")

    tmp = Path(tempfile.mkdtemp(prefix="co2-bench-front-"))
    fronts: list[NginxFront] = []
    slow: SlowClients | None = None
    nets = Nets()
    nginx_version = subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True).stderr.strip()
    note(f"temp folder {tmp}; {nginx_version}; {os.cpu_count()} CPUs; {args.seconds:g} s per measurement")
    try:
        tls = TlsCert.make(tmp)
        real_app = Uwsgi("real", tmp, [], {})
        bare_app = Uwsgi("bare", tmp, ["--chdir", str(BENCH), "--module", "bare_app:app"], {})
        real, bare = NginxFront(real_app, tls), NginxFront(bare_app, tls)
        for label, front in (("real", real), ("bare", bare)):
            note(f"starting the {label} app behind nginx ...")
            fronts.append(front)
            front.start()
            note(f"  units' door 127.0.0.1:{front.port}, uWSGI on {front.app.uwsgi_socket}")
        if real.app.uwsgi_socket == bare.app.uwsgi_socket:
            raise RuntimeError("both apps on one socket")
        workers = len(subprocess.run(["pgrep", "-P", str(real.proc.pid)], capture_output=True, text=True).stdout.split())

        # Each front serves its own app.
        reply = http_request(bare.port, "GET", "/", source="127.2.0.1")
        if reply.status != 200 or reply.body.decode(errors="replace") != BARE_BODY:
            raise RuntimeError(f"the bare front does not serve bench/bare_app.py: {reply.status} {reply.body[:80]!r}")
        reply = http_request(real.port, "GET", "/", source="127.2.0.1")
        if reply.status != 200 or reply.body.decode(errors="replace") == BARE_BODY:
            raise RuntimeError(f"the real front does not answer GET / as the real app: {reply.status} {reply.body[:80]!r}")
        # The bare app's answer to a unit request: Flask's 404, passed through by nginx (upstream=404).
        probe = http_request(bare.port, "POST", f"/ou/{hw_ids(1)[0]}/alive?site_code=x", source="127.2.0.2")
        nginx_404 = b"no such resource on the units' address"
        if probe.status != 404 or nginx_404 in probe.body:
            raise RuntimeError(f"the bare app's answer is not Flask's 404: {probe.status} {probe.body[:120]!r}")
        answer_404 = probe.body
        time.sleep(0.2)
        if "upstream=404" not in bare.nginx_log("co2unit-units.log"):
            raise RuntimeError("nginx did not pass the unit request to the bare app")

        units = hw_ids(args.units)
        upload_units = hw_ids(args.units + args.procs * args.conns)[args.units:]
        load = (args.procs, args.conns)
        results: dict[tuple[str, str], dict] = {}
        real_pings_ok = 0

        # 1. Throughput, bare then real for each kind.
        for label, front, a404 in (("bare", bare, answer_404), ("real", real, None)):
            note(f"warm-up: {label} app, {args.warmup:g} s of pings")
            warm = drive("pings", front, args.warmup, *load, units, nets, a404)
            if label == "real":
                real_pings_ok += warm["ok"]
        for kind, kind_units in (("pings", units), ("chunks", upload_units)):
            for label, front, a404 in (("bare", bare, answer_404), ("real", real, None)):
                note(f"{kind}: {label} app, {args.procs} x {args.conns} in flight, {args.seconds:g} s ...")
                r = drive(kind, front, args.seconds, *load, kind_units, nets, a404)
                show(f"{kind}, {label}", r)
                results[(kind, label)] = r
                if (kind, label) == ("pings", "real"):
                    real_pings_ok += r["ok"]

        # 2. Ping latency, real app: baseline, then under the slow clients.
        note(f"latency baseline: real app, {args.probe_rate:g} pings/s, no slow clients, {args.seconds:g} s ...")
        base = drive("pings", real, args.seconds, 1, 1, units, nets, rate=args.probe_rate)
        show("latency baseline", base)
        real_pings_ok += base["ok"]
        attack = before = after = None
        held = (0, 0)
        if args.slow:
            note(f"slow clients: opening {args.slow} connections from 127.{SLOW_NET}.x.y, 5 bytes every 100 ms each ...")
            slow = SlowClients(real.port, args.slow, f"/ou/{hw_ids(1)[0]}/push-sequential/data/readings/slow.tsv?offset=0")
            settled = slow.start()
            note(f"  after {settled['settle_s']:.1f} s: {describe_slow(settled)}")
            time.sleep(1.0)
            before = slow.ask()
            held_before = established_on(real.port)
            note(f"  before the measurement: {describe_slow(before)}; nginx holds {held_before} connections")
            note(f"latency under attack: real app, {args.probe_rate:g} pings/s, {args.seconds:g} s ...")
            attack = drive("pings", real, args.seconds, 1, 1, units, nets, rate=args.probe_rate)
            after = slow.ask()
            held = (held_before, established_on(real.port))
            note(f"  after the measurement: {describe_slow(after)}; nginx holds {held[1]} connections")
            show("latency under attack", attack)
            real_pings_ok += attack["ok"]
            slow.stop()
            slow = None

        # 3. Integrity of the real app's storage (after it stopped: everything flushed).
        for front in fronts:
            front.stop()
        lines = count_ping_lines(real.var_dir)
        problems = check_files(real.data_dir, results[("chunks", "real")]["acked"])
        acked = sum(results[("chunks", "real")]["acked"].values())

        # 4. The table.
        print()
        print(f"Through the front: {nginx_version}, {workers} workers x {WORKER_CONNECTIONS} connections, units' door on"
              f" loopback; uWSGI from server.ini.example on a unix socket; {os.cpu_count()} CPUs.")
        print(f"Throughput: {args.procs} x {args.conns} requests in flight, each on a fresh connection (HTTP/1.0) from"
              f" its own 127/8 address, {args.seconds:g} s each.")
        print()
        print(f"| {'':<22} | {'real app':>10} | {'bare app':>10} | {'real/bare':>9} |")
        print(f"| {'-' * 22} | {'-' * 10} | {'-' * 10} | {'-' * 9} |")
        for kind, name in (("pings", "pings/s"), ("chunks", "4 KiB chunks/s")):
            r, b = results[(kind, "real")], results[(kind, "bare")]
            print(f"| {name:<22} | {r['rate']:>10.1f} | {b['rate']:>10.1f} | {pct(r['rate'], b['rate']):>9} |")
            for key, what in (("uwsgi_ms", "uWSGI CPU/request"), ("nginx_ms", "nginx CPU/request")):
                print(f"| {'  ' + what:<22} | {r[key]:>7.2f} ms | {b[key]:>7.2f} ms | {'':>9} |")
            print(f"| {'  p50 / p99 ms':<22} | {r['p50_ms']:>4.1f}/{r['p99_ms']:<5.1f} | {b['p50_ms']:>4.1f}/{b['p99_ms']:<5.1f} |"
                  f" {'':>9} |")
            print(f"| {'  errors':<22} | {r['errors']:>10} | {b['errors']:>10} | {'':>9} |")
        print("(bare app: the same requests, answered with Flask's 404 without any work)")
        print()
        print(f"Ping latency, real app, {args.probe_rate:g} pings/s open loop, each from its own address:")
        print()
        print(f"| {'':<34} | {'p50':>8} | {'p99':>8} | {'max':>8} | {'answered 200':>14} |")
        print(f"| {'-' * 34} | {'-' * 8} | {'-' * 8} | {'-' * 8} | {'-' * 14} |")
        rows = [("no slow clients (baseline)", base)]
        if attack:
            rows.append((f"{args.slow} slow clients trickling", attack))
        for name, r in rows:
            print(f"| {name:<34} | {r['p50_ms']:>5.1f} ms | {r['p99_ms']:>5.1f} ms | {r['max_ms']:>5.1f} ms |"
                  f" {str(r['counted']) + '/' + str(r['launched']):>14} |")
        for name, r in rows:
            if r["failures"]:
                print(f"  {name}: failures {r['failures']}")
        if attack:
            print()
            print(f"Slow clients ({args.slow} asked, each from its own 127.{SLOW_NET}.x.y, PUT with Content-Length 4096,"
                  f" 5 bytes every 100 ms, one thread):")
            print(f"  before the measurement: {describe_slow(before)}")
            print(f"  after the measurement:  {describe_slow(after)}")
            print(f"  during it: {after['progressed']} sent more body bytes, {after['bytes_per_s']:.1f} B/s each on"
                  f" average; their thread used {100 * after['cpu_share']:.0f}% of a CPU")
            print(f"  TCP connections nginx held open on the units' door: {held[0]} before, {held[1]} after")
        print()
        print(f"Integrity (real app): pings TSV {lines} lines for {real_pings_ok} pings answered 200"
              f" ({'match' if lines == real_pings_ok else 'MISMATCH'}); {acked} chunks acknowledged over"
              f" {len(results[('chunks', 'real')]['acked'])} units, stored files"
              f" {'match byte for byte' if not problems else 'DIFFER'}")
        for p in problems[:10]:
            print(f"  ! {p}")
    finally:
        if slow is not None:
            slow.stop()
        for front in fronts:
            try:
                front.stop()
            except Exception as exc:  # stop the others too
                note(f"stopping {front.app.root.name}: {exc}")
        if args.keep:
            note(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
