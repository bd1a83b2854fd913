#!/usr/bin/env python3
"""Throughput of the unit API under the real uWSGI settings, against a ceiling.

Run on demand (never part of the tests):

    .venv/bin/python bench/bench_server.py [--seconds 10] [--procs 2] [--conns 16]

In one run it:
1. starts a bare Flask-RESTful app (bench/bare_app.py) under uWSGI from
   server.ini.example with only chdir/module overridden, checks that it really
   serves the bare app, and measures GET / requests/s: the ceiling; when the
   ini pins workers to CPUs (cpu-affinity), the same app unpinned too, and
   the higher of the two is the ceiling;
2. starts the real server from server.ini.example (data and var dirs in a temp
   folder, a free loopback port) and measures
   - alive pings/s: POST /ou/<hw_id>/alive?... over --units hardware IDs,
   - 4 KiB upload chunks/s: PUT /ou/<hw_id>/push-sequential/data/readings/
     readings-0000.tsv?offset=N, one unit per connection slot, each appending
     sequentially (offset += 4096 on every 200, ack_file checked on each);
   then the same two loads on a second real server in per-unit key mode
   (CO2_KEY_MODE=per-unit, every unit enrolled, each request under its
   unit's key), in the order open, per-unit, per-unit, open, so that a
   drift of the machine weighs on both modes alike; the means are compared;
3. checks integrity: each stored file holds exactly the bytes acknowledged,
   and the pings TSV logs have one line per 200 ping;
4. prints each figure, its fraction of the ceiling, the targets (pings >= 60%,
   chunks >= 50% of the ceiling; per-unit >= 90% of open) and PASS/FAIL; exit status 1 on any FAIL.

Load: --procs processes, each an epoll loop keeping --conns requests in
flight, every request on a fresh TCP connection with HTTP/1.0 (like the
units). Everything goes to 127.0.0.1 only, each measurement lasts --seconds,
and the servers are stopped at the end, even on errors. See bench/README.md.
"""

from __future__ import annotations

import argparse
import errno
import json
import multiprocessing as mp
import os
import re
import resource
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
UWSGI = ROOT / ".venv" / "bin" / "uwsgi"
HOST = "127.0.0.1"

sys.path[:0] = [str(BENCH), str(ROOT / "tests"), str(ROOT / "src")]
from bare_app import BODY as BARE_BODY  # noqa: E402

from conftest import UwsgiServer  # noqa: E402  (the tests' real-uWSGI runner)
from firmware import http_request  # noqa: E402

PING_TARGET = 0.60
CHUNK_TARGET = 0.50
KEYED_TARGET = 0.90  # per-unit mode against open mode
# port -> {hw_id: "/<its key>"} of the per-unit server (the load processes are forked: they see it).
KEYS: dict[int, dict[str, str]] = {}
CHUNK = 4096
READINGS = "data/readings"
FILE_ROLL_BYTES = 16 * 1024 * 1024  # the server's default CO2_MAX_FILE_BYTES


def ini_pins_workers() -> bool:
    """Whether server.ini.example pins each worker process to a CPU."""
    match = re.search(r"^cpu-affinity = (\d+)", (ROOT / "server.ini.example").read_text(), re.M)
    return bool(match and int(match.group(1)))


def hw_ids(n: int) -> list[str]:
    return [f"co2unit-{0xBE0C00000000 + i:012x}" for i in range(n)]


def readings_name(number: int) -> str:
    return f"readings-{number:04d}.tsv"


def chunk_bytes(hw_id: str, k: int) -> bytes:
    """The k-th 4 KiB chunk a unit sends: deterministic, so the files can be checked."""
    line = f"{hw_id}\tchunk\t{k:09d}\t".encode()
    return (line * (CHUNK // len(line) + 1))[: CHUNK - 1] + b"\n"


# --------------------------------------------------------------------------- servers


class Uwsgi(UwsgiServer):
    """The tests' real-uWSGI runner (server.ini.example), plus CPU accounting."""

    def __init__(self, name: str, workdir: Path, extra_args: list[str], env: dict[str, str]):
        super().__init__(workdir / name, env, extra_args)
        self.root.mkdir(parents=True, exist_ok=True)

    def cpu_seconds(self) -> tuple[float, float]:
        """(user, system) CPU seconds used so far by the master, its live and its reaped workers."""
        ticks = os.sysconf("SC_CLK_TCK")

        def stat(pid: int) -> list[str]:
            try:
                raw = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                return []
            return raw.rsplit(")", 1)[1].split()

        user = system = 0
        master = stat(self.proc.pid)
        if master:  # utime stime cutime cstime
            user += int(master[11]) + int(master[13])
            system += int(master[12]) + int(master[14])
        for pid in self.worker_pids():
            fields = stat(pid)
            if fields:
                user += int(fields[11])
                system += int(fields[12])
        return user / ticks, system / ticks


def enroll_all(var_dir: Path, units: list[str]) -> dict[str, str]:
    """Enroll `units` in the registry of `var_dir` (as scripts/units.sh does); {hw_id: "/<key>"}."""
    from co2server.registry import ACTIVE, CURRENT, KeyRecord, Registry, UnitRecord, key_hash, new_key, utc_stamp

    keys = {}

    def edit(records):
        for hw in units:
            key = new_key()
            keys[hw] = f"/{key}"
            records[hw] = UnitRecord(hw, "", ACTIVE, utc_stamp(), keys=[KeyRecord(key_hash(key), CURRENT, utc_stamp())])

    Registry(var_dir).change(edit)
    return keys


def authorize_cost(var_dir: Path, keys: dict[str, str], calls: int = 20000) -> float:
    """Microseconds one per-unit key check (unit_keys.authorize, a registry hit) costs in this process."""
    from co2server import create_app
    from co2server.config import Config
    from co2server.unit_keys import authorize

    cfg = Config.from_environ({"CO2_DATA_DIR": str(var_dir / "cost-data"), "CO2_VAR_DIR": str(var_dir),
                               "CO2_KEY_MODE": "per-unit"})
    hw, key = next(iter(keys.items()))
    with create_app(cfg).test_request_context(f"{key}/ou/{hw}/alive"):
        authorize(cfg, key[1:], hw)  # the registry read and the unit's last-seen write, once
        start = time.perf_counter()
        for _ in range(calls):
            authorize(cfg, key[1:], hw)
        return (time.perf_counter() - start) / calls * 1e6


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


# --------------------------------------------------------------------------- load generator


def _requests_for(kind: str, port: int, slot: int, units: list[str]):
    """Per connection slot: an object giving the next request and judging the answer."""
    host = f"Host: {HOST}:{port}\r\n"

    class Ceiling:
        raw = f"GET / HTTP/1.0\r\n{host}\r\n".encode()

        def next(self):
            return self.raw

        def judge(self, status, body):
            if status != 200 or body.decode(errors="replace") != BARE_BODY:
                return f"status {status} body {body[:60]!r}"
            return None

    class Pings:
        def __init__(self):
            self.i = slot

        def next(self):
            hw = units[self.i % len(units)]
            self.i += 7
            return (
                f"POST {KEYS.get(port, {}).get(hw, '')}/ou/{hw}/alive?site_code=bench-{self.i % 100:02d}&rssi_raw={self.i % 32}"
                f"&rssi_dbm=-{50 + self.i % 60}&ber_raw=99 HTTP/1.0\r\n{host}\r\n"
            ).encode()

        def judge(self, status, body):
            if status != 200 or body != b"OK\n":
                return f"status {status} body {body[:120]!r}"
            return None

    class Chunks:
        """One unit per slot, appending its readings file chunk by chunk."""

        def __init__(self):
            self.hw = units[slot]
            self.k = 0  # chunks acknowledged
            self.stopped = False

        def position(self):
            per_file = FILE_ROLL_BYTES // CHUNK
            return readings_name(self.k // per_file), (self.k % per_file) * CHUNK

        def next(self):
            if self.stopped:
                return None
            name, offset = self.position()
            body = chunk_bytes(self.hw, self.k)
            return (
                f"PUT {KEYS.get(port, {}).get(self.hw, '')}/ou/{self.hw}/push-sequential/{READINGS}/{name}?offset={offset} HTTP/1.0\r\n"
                f"{host}Content-Length: {len(body)}\r\n\r\n"
            ).encode() + body

        def judge(self, status, body):
            name, offset = self.position()
            want = [name, offset + CHUNK, offset + CHUNK]
            try:
                ack = json.loads(body).get("ack_file")
            except ValueError:
                ack = None
            if status == 200 and ack == want:
                self.k += 1
                return None
            self.stopped = True  # the file no longer follows the plan: stop this unit
            return f"{self.hw} offset {offset}: status {status} ack {ack} (want {want}) body {body[:160]!r}"

    return {"ceiling": Ceiling, "pings": Pings, "chunks": Chunks}[kind]()


def pump(ep, fd: int, c: list, events: int) -> tuple[bool, str | None]:
    """One epoll event of a load connection c = [sock, slot, unsent bytes, received parts, started]:
    send what is left of the request, then read the answer. (answer complete, connection failure)."""
    sock = c[0]
    try:
        if c[2]:
            if events & (select.EPOLLERR | select.EPOLLHUP) and not events & select.EPOLLIN:
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                raise OSError(err, os.strerror(err or errno.ECONNRESET))
            sent = sock.send(c[2])
            c[2] = c[2][sent:]
            if not c[2]:
                ep.modify(fd, select.EPOLLIN)
            return False, None
        while True:
            try:
                part = sock.recv(65536)
            except BlockingIOError:
                return False, None
            if not part:
                return True, None
            c[3].append(part)
    except OSError as exc:
        return False, f"connection: {exc}"


def judge_answer(parts: list[bytes], plan) -> tuple[int, str | None]:
    """(status, failure or None) of a whole answer: HTTP/1.0 framing the firmware takes, then the plan's verdict."""
    head, _, body = b"".join(parts).partition(b"\r\n\r\n")
    try:
        status = int(head.split(None, 2)[1])
    except (IndexError, ValueError):
        status = 0
    if b"chunked" in head.lower() or b"\nlocation:" in head.lower():
        return status, f"answer the firmware cannot take: {head[:200]!r}"
    return status, plan.judge(status, body)


def _gen_process(kind, port, slots, first_slot, units, start_at, end_at, queue):
    """One load process: an epoll loop keeping `slots` fresh-connection requests in flight."""
    try:
        queue.put(_gen_loop(kind, port, slots, first_slot, units, start_at, end_at))
    except BaseException as exc:  # report, never hang the parent
        queue.put({"fatal": repr(exc)})


def _gen_loop(kind, port, slots, first_slot, units, start_at, end_at):
    ep = select.epoll()
    plans = [_requests_for(kind, port, first_slot + s, units) for s in range(slots)]
    conns = {}  # fd -> [sock, slot, out_bytes, in_parts, t0]
    ok = counted = 0
    errors: list[str] = []
    n_errors = 0
    latencies: list[float] = []
    conn_errors = 0

    def launch(slot):
        raw = plans[slot].next()
        if raw is None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        err = sock.connect_ex((HOST, port))
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            raise OSError(err, os.strerror(err))
        conns[sock.fileno()] = [sock, slot, raw, [], time.monotonic()]
        ep.register(sock.fileno(), select.EPOLLOUT)

    while time.time() < start_at:
        time.sleep(0.001)
    mono_end = time.monotonic() + (end_at - time.time())
    t_start = time.monotonic()
    for slot in range(slots):
        launch(slot)
    while conns:
        for fd, events in ep.poll(1.0):
            c = conns[fd]
            sock = c[0]
            done, failed = pump(ep, fd, c, events)
            if not (done or failed):
                continue
            ep.unregister(fd)
            sock.close()
            del conns[fd]
            now = time.monotonic()
            slot = c[1]
            if failed is None:
                _status, failed = judge_answer(c[3], plans[slot])
            else:
                conn_errors += 1
            if failed is None:
                ok += 1
                if now <= mono_end:
                    counted += 1
                    latencies.append(now - c[4])
            else:
                n_errors += 1
                if len(errors) < 5:
                    errors.append(failed)
            if now < mono_end:
                launch(slot)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "ok": ok,
        "counted": counted,
        "errors": n_errors,
        "error_samples": errors,
        "conn_errors": conn_errors,
        "latencies": latencies,
        "elapsed": min(time.monotonic(), mono_end) - t_start,
        "client_cpu": usage.ru_utime + usage.ru_stime,
    }
    if kind == "chunks":
        result["acked"] = {p.hw: p.k for p in plans}
    return result


def drive(kind: str, server: Uwsgi, seconds: float, procs: int, conns: int, units: list[str]) -> dict:
    """Run the load for `seconds`; aggregate the processes' results and the CPU they all used."""
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    start_at = time.time() + 0.3
    end_at = start_at + seconds
    workers = [
        ctx.Process(target=_gen_process, args=(kind, server.port, conns, p * conns, units, start_at, end_at, queue))
        for p in range(procs)
    ]
    for w in workers:
        w.start()
    while time.time() < start_at:
        time.sleep(0.005)
    cpu0, mach0, t0 = server.cpu_seconds(), machine_cpu(), time.monotonic()
    results = []
    try:
        for _ in workers:
            results.append(queue.get(timeout=seconds + 60))
    finally:
        for w in workers:
            w.join(timeout=5)
            if w.is_alive():
                w.kill()
    cpu1, mach1, t1 = server.cpu_seconds(), machine_cpu(), time.monotonic()
    fatal = [r["fatal"] for r in results if "fatal" in r]
    if fatal:
        raise RuntimeError(f"load generator failed: {fatal}")
    lat = sorted(x for r in results for x in r["latencies"])
    counted = sum(r["counted"] for r in results)
    elapsed = max(r["elapsed"] for r in results)
    out = {
        "kind": kind,
        "ok": sum(r["ok"] for r in results),
        "counted": counted,
        "rate": counted / elapsed if elapsed > 0 else 0.0,
        "errors": sum(r["errors"] for r in results),
        "conn_errors": sum(r["conn_errors"] for r in results),
        "error_samples": [e for r in results for e in r["error_samples"]][:8],
        "p50_ms": 1000 * statistics.median(lat) if lat else float("nan"),
        "p99_ms": 1000 * lat[int(0.99 * (len(lat) - 1))] if lat else float("nan"),
        "server_cpu_ms_per_req": 1000 * (sum(cpu1) - sum(cpu0)) / max(1, counted),
        "server_sys_ms_per_req": 1000 * (cpu1[1] - cpu0[1]) / max(1, counted),
        "client_cpu_ms_per_req": 1000 * sum(r["client_cpu"] for r in results) / max(1, counted),
        "machine_busy": (mach1[0] - mach0[0]) / max(1, mach1[1] - mach0[1]),
        # CPUs' worth used by neither the server nor the load generator: kernel threads
        # (journal commits, writeback) and any other process on the machine.
        "rest_cpus": (os.cpu_count() or 1) * (mach1[0] - mach0[0]) / max(1, mach1[1] - mach0[1])
        - (sum(cpu1) - sum(cpu0) + sum(r["client_cpu"] for r in results)) / (t1 - t0),
    }
    if kind == "chunks":
        acked = {}
        for r in results:
            acked.update(r["acked"])
        out["acked"] = acked
    return out


def run_ab(port: int, seconds: float, concurrency: int) -> float | None:
    """Cross-check of the ceiling with ApacheBench (HTTP/1.0, no keep-alive), if installed."""
    ab = shutil.which("ab")
    if not ab:
        return None
    proc = subprocess.run(
        [ab, "-q", "-t", str(int(max(1, seconds))), "-n", "10000000", "-c", str(concurrency), f"http://{HOST}:{port}/"],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    match = re.search(r"Requests per second:\s+([\d.]+)", proc.stdout)
    failed = re.search(r"Failed requests:\s+(\d+)", proc.stdout)
    if not match or (failed and int(failed.group(1))):
        print(f"  ab cross-check unusable:\n{proc.stdout[-600:]}{proc.stderr[-300:]}")
        return None
    return float(match.group(1))


# --------------------------------------------------------------------------- py-spy (optional)


class PySpy:
    """`--py-spy DIR`: record the uWSGI workers' Python stacks during one measurement."""

    def __init__(self, out_dir: Path | None, gil: bool = False):
        self.out_dir = out_dir
        self.mode = ["--gil"] if gil else ["--idle"]
        self.procs: list[subprocess.Popen] = []

    def start(self, server: Uwsgi, label: str, seconds: float) -> None:
        if self.out_dir is None:
            return
        spy = shutil.which("py-spy", path=str(UWSGI.parent)) or shutil.which("py-spy")
        if not spy:
            raise SystemExit("--py-spy: py-spy is not installed (.venv/bin/pip install py-spy)")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for pid in server.worker_pids():
            out = self.out_dir / f"{label}-{pid}.txt"
            self.procs.append(
                subprocess.Popen(
                    [
                        spy,
                        "record",
                        "--pid",
                        str(pid),
                        "--duration",
                        str(int(seconds)),
                        "--rate",
                        "200",
                        "--format",
                        "raw",
                        *self.mode,
                        "--threads",
                        "--nonblocking",
                        "--output",
                        str(out),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

    def stop(self) -> None:
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs.clear()


# --------------------------------------------------------------------------- fsync on this disk


def fsync_probe(folder: Path, seconds: float = 1.0) -> None:
    """What an fsync costs where the server writes: alone, and from 32 threads at once."""
    import threading

    folder.mkdir(parents=True, exist_ok=True)

    def appender(name: str, size: int, stop_at: float, out: list) -> None:
        fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        data, n, cpu0 = b"x" * size, 0, time.thread_time()
        try:
            while time.monotonic() < stop_at:
                os.write(fd, data)
                os.fsync(fd)
                n += 1
        finally:
            os.close(fd)
        out.append((n, time.thread_time() - cpu0))

    for size in (70, CHUNK):
        for threads in (1, 32):
            out: list = []
            stop_at = time.monotonic() + seconds
            ts = [
                threading.Thread(target=appender, args=(f"probe-{size}-{threads}-{i}", size, stop_at, out))
                for i in range(threads)
            ]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            n = sum(x[0] for x in out)
            cpu = sum(x[1] for x in out)
            print(
                f"  append {size:>4} B + fsync, {threads:>2} thread(s), own files: {n / seconds:7.0f}/s,"
                f" {1000 * seconds * threads / max(1, n):.3f} ms each, {1000 * cpu / max(1, n):.3f} ms CPU each"
            )
    shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------- checks


def check_files(data_dir: Path, acked: dict[str, int]) -> list[str]:
    """Every unit's readings files hold exactly the chunks acknowledged, byte for byte."""
    problems = []
    per_file = FILE_ROLL_BYTES // CHUNK
    for hw, n in acked.items():
        folder = data_dir / hw / READINGS
        expected = {}
        for k in range(n):
            expected.setdefault(readings_name(k // per_file), []).append(chunk_bytes(hw, k))
        present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        if sorted(expected) != present:
            problems.append(f"{hw}: files {present}, expected {sorted(expected)}")
            continue
        for name, chunks in expected.items():
            got = (folder / name).read_bytes()
            want = b"".join(chunks)
            if got != want:
                where = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), None)
                problems.append(
                    f"{hw}/{name}: {len(got)} bytes stored, {len(want)} acknowledged, first difference at {where}"
                )
    return problems


def count_ping_lines(var_dir: Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in (var_dir / "pings").glob("pings-*.tsv"))


def merge_rounds(first: tuple, second: tuple) -> tuple[int, dict, dict]:
    """Two rounds (pings answered, pings run, chunks run) of one mode as one: mean rates, summed counts."""
    merged = []
    for a, b in ((first[1], second[1]), (first[2], second[2])):
        r = dict(a)
        r["rate"] = (a["rate"] + b["rate"]) / 2
        for key in ("ok", "counted", "errors", "conn_errors"):
            r[key] = a[key] + b[key]
        if "acked" in a:
            r["acked"] = {**a["acked"], **b["acked"]}
        merged.append(r)
    return first[0] + second[0], merged[0], merged[1]


def show(label: str, r: dict, ceiling: float | None = None) -> None:
    line = f"{label:<28} {r['rate']:8.1f}/s"
    if ceiling:
        line += f"  = {100 * r['rate'] / ceiling:5.1f}% of ceiling"
    print(line)
    print(
        f"  {r['counted']} answered 200 in the window ({r['ok']} in all), errors {r['errors']}"
        f" (connection {r['conn_errors']}); latency p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms"
    )
    print(
        f"  CPU per request: server {r['server_cpu_ms_per_req']:.2f} ms"
        f" ({r['server_sys_ms_per_req']:.2f} in the kernel), load generator"
        f" {r['client_cpu_ms_per_req']:.2f} ms; machine busy {100 * r['machine_busy']:.0f}%,"
        f" of which {r['rest_cpus']:.2f} CPUs outside both (softirq, kernel threads, other processes)"
    )
    for e in r["error_samples"]:
        print(f"  ! {e}")


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="duration of each measurement (default 10)")
    ap.add_argument("--warmup", type=float, default=1.5, help="unmeasured load before each measurement")
    ap.add_argument("--procs", type=int, default=2, help="load generator processes (default 2)")
    ap.add_argument("--conns", type=int, default=16, help="requests in flight per process (default 16)")
    ap.add_argument("--units", type=int, default=50, help="hardware IDs the pings are spread over (default 50)")
    ap.add_argument("--no-ab", action="store_true", help="skip the ApacheBench cross-check of the ceiling")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (data, var, uWSGI logs)")
    ap.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="record the workers' stacks with py-spy into DIR (diagnosis; slows the server)",
    )
    ap.add_argument(
        "--py-spy-gil",
        action="store_true",
        help="with --py-spy: sample only the thread holding the GIL (CPU), not every thread (wall time)",
    )
    args = ap.parse_args()
    if not 1 <= args.seconds <= 600:
        ap.error("--seconds must be between 1 and 600")
    slots = args.procs * args.conns

    tmp = Path(tempfile.mkdtemp(prefix="co2-bench-"))
    spy = PySpy(args.py_spy, args.py_spy_gil)
    servers: list[Uwsgi] = []
    failures: list[str] = []
    print(
        f"load: {args.procs} processes x {args.conns} in flight, fresh TCP connection and HTTP/1.0 per request,"
        f" {args.seconds:g} s per measurement on {HOST}; {os.cpu_count()} CPUs"
    )
    try:
        print(f"fsync on this disk ({tmp}):")
        fsync_probe(tmp / "fsync-probe")
        # All servers run from the start; those not being measured sit idle.
        # The bare app: the same ini, only chdir/module overridden (checked below).
        bare_args = ["--chdir", str(BENCH), "--module", "bare_app:app"]
        bare = Uwsgi(
            "bare",
            tmp,
            bare_args,
            {"CO2_DATA_DIR": str(tmp / "bare-data"), "CO2_VAR_DIR": str(tmp / "bare-var")},
        )
        # server.ini.example pins each worker to a CPU, which helps the unit API
        # (a thread woken from its fsync resumes where its caches are) but
        # costs the bare app: the same app without the pinning is measured
        # too, and the ratios use whichever ceiling is higher.
        bare_free = None
        if ini_pins_workers():
            bare_free = Uwsgi(
                "bare-unpinned",
                tmp,
                [*bare_args, "--cpu-affinity", "0"],
                {"CO2_DATA_DIR": str(tmp / "bare-free-data"), "CO2_VAR_DIR": str(tmp / "bare-free-var")},
            )
        data_dir, var_dir = tmp / "remote_data", tmp / "var"
        real = Uwsgi("server", tmp, [], {"CO2_DATA_DIR": str(data_dir), "CO2_VAR_DIR": str(var_dir)})
        # The same server in per-unit mode, its units enrolled in its registry.
        keyed_data, keyed_var = tmp / "keyed-data", tmp / "keyed-var"
        keyed = Uwsgi("keyed", tmp, [], {"CO2_DATA_DIR": str(keyed_data), "CO2_VAR_DIR": str(keyed_var),
                                         "CO2_KEY_MODE": "per-unit"})
        keyed_keys = enroll_all(keyed_var, hw_ids(args.units + 8 * slots))
        for server in (bare, bare_free, real, keyed):
            if server is not None:
                servers.append(server)
                server.start()
        KEYS[keyed.port] = keyed_keys
        for server in (bare, bare_free):
            if server is None:
                continue
            reply = http_request(server.port, "GET", "/")
            status, body = reply.status, reply.body
            if status != 200 or body.decode() != BARE_BODY:
                raise RuntimeError(f"the ceiling server does not serve bench/bare_app.py: {status} {body[:80]!r}")
        reply = http_request(real.port, "GET", "/")
        status, body = reply.status, reply.body
        if status != 200 or body.decode(errors="replace") == BARE_BODY:
            raise RuntimeError(f"the real server does not answer GET / as expected: {status} {body[:80]!r}")

        def ceiling_run(label, server=bare):
            drive("ceiling", server, args.warmup, args.procs, args.conns, [])
            spy.start(server, label, args.seconds)
            r = drive("ceiling", server, args.seconds, args.procs, args.conns, [])
            spy.stop()
            show(f"{label}: bare GET /", r)
            if r["errors"]:
                failures.append(f"{label}: errors")
            return r

        # 1. The ceiling, before (and again after) the real server's measurements.
        ceiling_a = ceiling_run("ceiling")
        free_a = ceiling_run("unpinned ceiling", bare_free) if bare_free else None
        ab_rate = None if args.no_ab else run_ab(bare.port, args.seconds, slots)
        if ab_rate:
            print(
                f"  cross-check, ApacheBench -c {slots} (HTTP/1.0, no keep-alive): {ab_rate:.1f}/s"
                f" ({100 * ab_rate / ceiling_a['rate']:.0f}% of the figure above)"
            )

        # 2. The real server in open mode (A) and in per-unit mode (B), in the order A B B A
        # so that a drift of the machine's speed during the run weighs on both alike.
        units = hw_ids(args.units)
        fresh = iter(range(args.units, args.units + 8 * slots, slots))  # chunk units: fresh folders each run

        def mode_round(server, label, spy_on):
            def measured(kind, title, who):
                warm = drive("pings", server, args.warmup, args.procs, args.conns, who)
                if spy_on:
                    spy.start(server, kind, args.seconds)
                r = drive(kind, server, args.seconds, args.procs, args.conns, who)
                spy.stop()
                show(f"{title}{label}", r)
                return warm["ok"], r

            warm, p = measured("pings", "alive pings", units)
            first = next(fresh)
            # As in the field, a unit pings before it uploads (its first sight is not in the window).
            seen, c = measured("chunks", "4 KiB upload chunks", hw_ids(first + slots)[first:])
            return warm + seen + p["ok"], p, c

        open_1 = mode_round(real, "", True)
        keyed_1 = mode_round(keyed, ", per-unit keys", False)
        keyed_2 = mode_round(keyed, ", per-unit keys (again)", False)
        open_2 = mode_round(real, " (again)", False)
        ping_ok, pings, chunks = merge_rounds(open_1, open_2)
        keyed_ping_ok, keyed_pings, keyed_chunks = merge_rounds(keyed_1, keyed_2)
        print(
            f"open mode: pings {pings['rate']:.1f}/s, chunks {chunks['rate']:.1f}/s;"
            f" per-unit mode: pings {keyed_pings['rate']:.1f}/s, chunks {keyed_chunks['rate']:.1f}/s"
            " (means of the two rounds)"
        )

        ceiling_b = ceiling_run("ceiling again")
        free_b = ceiling_run("unpinned ceiling again", bare_free) if bare_free else None
        for server in servers:
            server.stop()
        ceilings = [("ceiling", ceiling_a, ceiling_b)]
        if bare_free:
            ceilings.append(("unpinned ceiling (the same app with --cpu-affinity 0)", free_a, free_b))
        ceil = 0.0
        for label, before, after in ceilings:
            mean = (before["rate"] + after["rate"]) / 2
            ceil = max(ceil, mean)
            drift = abs(before["rate"] - after["rate"]) / mean
            print(f"{label}: {mean:.1f}/s (mean of {before['rate']:.1f} before and {after['rate']:.1f} after)")
            if drift > 0.15:
                print(
                    f"  WARNING: it moved by {100 * drift:.0f}% during the run:"
                    " something else is using this machine's CPUs; the ratios below are unreliable, run again"
                    " on a quiet machine"
                )
        if bare_free:
            print(f"the ratios below are against the higher: {ceil:.1f}/s")

        # 3. Integrity.
        lines = count_ping_lines(var_dir)
        print(f"pings TSV: {lines} lines for {ping_ok} pings answered 200 ({'OK' if lines == ping_ok else 'MISMATCH'})")
        if lines != ping_ok:
            failures.append("pings TSV line count")
        problems = check_files(data_dir, chunks["acked"])
        total = sum(chunks["acked"].values())
        print(
            f"uploads: {total} chunks ({total * CHUNK / 2**20:.1f} MiB) acknowledged over {len(chunks['acked'])}"
            f" units; stored files {'match byte for byte' if not problems else 'DIFFER'}"
        )
        for p in problems[:10]:
            print(f"  ! {p}")
        if problems:
            failures.append("upload integrity")

        lines = count_ping_lines(keyed_var)
        problems = check_files(keyed_data, keyed_chunks["acked"])
        print(f"per-unit server: pings TSV {lines} lines for {keyed_ping_ok} pings answered 200;"
              f" stored files {'match byte for byte' if not problems else 'DIFFER'}")
        if lines != keyed_ping_ok or problems:
            failures.append("per-unit integrity")

        cost = authorize_cost(keyed_var, keyed_keys)
        print(f"per-unit key check in-process: {cost:.1f} us per request"
              f" ({100 * cost / 1000 / pings['server_cpu_ms_per_req']:.1f}% of a ping's server CPU in open mode)")

        # 4. Verdict.
        for label, r, base in (("per-unit pings", keyed_pings, pings), ("per-unit chunks", keyed_chunks, chunks)):
            ratio = r["rate"] / base["rate"] if base["rate"] else 0.0
            verdict = "PASS" if ratio >= KEYED_TARGET and not r["errors"] else "FAIL"
            if verdict == "FAIL":
                failures.append(label)
            print(
                f"{verdict}: {label} {r['rate']:.1f}/s = {100 * ratio:.1f}% of open mode's {base['rate']:.1f}/s"
                f" (target >= {100 * KEYED_TARGET:.0f}%){'; with errors' if r['errors'] else ''}"
            )
        for label, r, target in (("pings", pings, PING_TARGET), ("upload chunks", chunks, CHUNK_TARGET)):
            ratio = r["rate"] / ceil if ceil else 0.0
            verdict = "PASS" if ratio >= target and not r["errors"] else "FAIL"
            if verdict == "FAIL":
                failures.append(label)
            print(
                f"{verdict}: {label} {r['rate']:.1f}/s = {100 * ratio:.1f}% of ceiling {ceil:.1f}/s"
                f" (target >= {100 * target:.0f}%){'; with errors' if r['errors'] else ''}"
            )
    finally:
        spy.stop()
        for s in servers:
            s.stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("RESULT:", "FAIL (" + ", ".join(failures) + ")" if failures else "PASS")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
