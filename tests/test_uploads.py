"""Sequential push through the real uWSGI, driven the way the firmware does."""

from __future__ import annotations

import threading

import pytest

from conftest import direct_and_through_nginx
from firmware import UnitSim, assert_plain_answer, http_request

HW = "co2unit-30aea42a50bc"
HW2 = "co2unit-30aea42a5268"


def reading_lines(hw_id: str, start: int, count: int) -> bytes:
    """Readings lines shaped like the firmware's (21 columns)."""
    lines = []
    for i in range(start, start + count):
        day, minute = divmod(i * 30, 24 * 60)
        lines.append(
            f"{hw_id}\tvaranger-03\t2019-08-{1 + day % 28:02d}\t{minute // 60:02d}:{minute % 60:02d}:10\t"
            f"{10 + i % 7}.4375\t{i % 3}\t" + "\t".join(str(600 + (i + k) % 90) for k in range(10))
            + "\t684\t0.91\t12000\t1.02\t11.5\n"
        )
    return "".join(lines).encode()


def push(port, hw_id, relpath, offset, body, **kw):
    reply = http_request(port, "PUT", f"/ou/{hw_id}/push-sequential/{relpath}?offset={offset}", body, **kw)
    assert_plain_answer(reply)
    return reply


def stored(server, hw_id, relpath):
    return (server.data_dir / hw_id / relpath).read_bytes()


@direct_and_through_nginx
def test_several_files_over_several_cycles_with_appends(server, tmp_path):
    unit = UnitSim(HW, tmp_path / "sd", server.port)
    puts: list[tuple[str, int, int]] = []  # (relpath, offset, body length) of every PUT answered 200
    request = unit.request

    def counting_request(method, path, body=None):
        reply = request(method, path, body)
        if method == "PUT" and reply.status == 200:
            relpath, _, offset = path.removeprefix("push-sequential/").partition("?offset=")
            puts.append((relpath, int(offset), len(body)))
        return reply

    unit.request = counting_request
    unit.write_sd("data/readings", "readings-0000.tsv", reading_lines(HW, 0, 400))
    unit.write_sd("errors", "errors-0000.txt", b"----- 2019-09-16 10:55:57 INFO  Self-test\n")
    assert unit.cycle() == "ok"
    # Between cycles the unit appends, rolls over to a new file, logs errors.
    unit.write_sd("data/readings", "readings-0000.tsv", reading_lines(HW, 400, 50))
    unit.write_sd("data/readings", "readings-0001.tsv", reading_lines(HW, 450, 300))
    unit.write_sd("errors", "errors-0000.txt", b"----- 2019-09-16 11:25:57 WARN  Skipping comm due to backoff: 1/5\n")
    assert unit.cycle() == "ok"
    unit.write_sd("data/readings", "readings-0001.tsv", reading_lines(HW, 750, 3))
    unit.write_sd("data/readings", "readings-0002.tsv", reading_lines(HW, 753, 1))
    assert unit.cycle() == "ok"
    sizes = {}
    for folder in ("data/readings", "errors"):
        names = unit.local_files(folder)
        assert sorted(p.name for p in (server.data_dir / HW / folder).iterdir()) == names
        for name in names:
            assert stored(server, HW, f"{folder}/{name}") == (unit.sd / folder / name).read_bytes()
            sizes[f"{folder}/{name}"] = (unit.sd / folder / name).stat().st_size
    # Nothing was sent twice: per file, the chunks answered 200 follow each
    # other from offset 0 to its size, with no overlap and no gap.
    for relpath, size in sizes.items():
        chunks = [(offset, n) for rel, offset, n in puts if rel == relpath]
        assert [offset for offset, _ in chunks] == [sum(n for _, n in chunks[:k]) for k in range(len(chunks))]
        assert sum(n for _, n in chunks) == size, relpath
    assert {rel for rel, _, _ in puts} == set(sizes)
    # And no request was wasted: one ping and one update check per cycle, plus the chunks.
    assert unit.requests == 3 * 2 + len(puts)


@direct_and_through_nginx
def test_ack_brings_a_unit_that_lost_its_sync_state_back_in_step(server, tmp_path):
    unit = UnitSim(HW, tmp_path / "sd", server.port)
    for n in range(3):
        unit.write_sd("data/readings", f"readings-{n:04d}.tsv", reading_lines(HW, n * 200, 200))
    assert unit.cycle() == "ok"
    before = {n: stored(server, HW, f"data/readings/{n}") for n in unit.local_files("data/readings")}
    # The unit reboots without its positions; it starts from its first file.
    amnesiac = UnitSim(HW, unit.sd, server.port)
    first = push(server.port, HW, "data/readings/readings-0000.tsv", 0,
                 (unit.sd / "data/readings/readings-0000.tsv").read_bytes()[:4096])
    assert first.status == 200
    last_size = len(before["readings-0002.tsv"])
    assert first.json() == {"ack_file": ["readings-0002.tsv", last_size, last_size]}
    unit.write_sd("data/readings", "readings-0002.tsv", reading_lines(HW, 600, 5))
    assert amnesiac.cycle() == "ok"
    # One chunk to learn the position, then only the new lines: few requests.
    assert amnesiac.requests <= 2 + 1 + 2 + 1
    assert stored(server, HW, "data/readings/readings-0000.tsv") == before["readings-0000.tsv"]
    assert stored(server, HW, "data/readings/readings-0002.tsv") == (unit.sd / "data/readings/readings-0002.tsv").read_bytes()


@direct_and_through_nginx
def test_a_chunk_whose_answer_was_lost_is_repeated_harmlessly(server):
    data = reading_lines(HW, 0, 100)
    a, b = data[:4096], data[4096:8192]
    assert push(server.port, HW, "data/readings/readings-0000.tsv", 0, a).status == 200
    again = push(server.port, HW, "data/readings/readings-0000.tsv", 0, a)
    assert again.status == 200
    assert again.json() == {"ack_file": ["readings-0000.tsv", 4096, 4096]}
    assert stored(server, HW, "data/readings/readings-0000.tsv") == a
    # A bigger chunk overlapping what is held: only its new tail is appended.
    both = push(server.port, HW, "data/readings/readings-0000.tsv", 0, a + b)
    assert both.json() == {"ack_file": ["readings-0000.tsv", 8192, 8192]}
    assert stored(server, HW, "data/readings/readings-0000.tsv") == a + b
    # A chunk inside what is held, same bytes: nothing changes.
    assert push(server.port, HW, "data/readings/readings-0000.tsv", 100, data[100:200]).status == 200
    assert stored(server, HW, "data/readings/readings-0000.tsv") == a + b


@direct_and_through_nginx
def test_gap_is_refused_with_an_ack_that_moves_the_unit(server):
    assert push(server.port, HW, "errors/errors-0000.txt", 0, b"0123456789").status == 200
    for offset in (11, 4096, 10**12):
        reply = push(server.port, HW, "errors/errors-0000.txt", offset, b"abc")
        assert reply.status == 416
        assert reply.json()["error"] == "SKIPPED_PART_OF_FILE"
        assert reply.json()["ack_file"] == ["errors-0000.txt", 10, 10]
    # Strict: offset = size + 1 is a gap too; a NUL byte must never appear.
    assert push(server.port, HW, "errors/errors-0000.txt", 11, b"x").status == 416
    missing = push(server.port, HW, "errors/errors-0001.txt", 5, b"abc")
    assert (missing.status, missing.json()["ack_file"]) == (416, ["errors-0001.txt", 0, 0])
    assert stored(server, HW, "errors/errors-0000.txt") == b"0123456789"
    assert not (server.data_dir / HW / "errors/errors-0001.txt").exists()


@direct_and_through_nginx
def test_replaced_sd_card_keeps_old_files_and_takes_the_new_stream(server, tmp_path):
    old = UnitSim(HW, tmp_path / "old-sd", server.port)
    for n in range(3):
        old.write_sd("data/readings", f"readings-{n:04d}.tsv", reading_lines(HW, n * 300, 300))
    old.write_sd("errors", "errors-0000.txt", b"----- 2019-09-16 10:55:57 INFO  old card\n")
    assert old.cycle() == "ok"
    old_files = {f"{f}/{n}": (old.sd / f / n).read_bytes() for f in ("data/readings", "errors") for n in old.local_files(f)}

    # New card: numbering restarts, contents differ.
    new = UnitSim(HW, tmp_path / "new-sd", server.port)
    new.write_sd("data/readings", "readings-0000.tsv", reading_lines(HW, 5000, 20))
    new.write_sd("errors", "errors-0000.txt", b"----- 2020-01-02 03:04:05 INFO  new card, fresh start\n")
    assert new.cycle() == "ok"  # no livelock: the cycle finishes
    unit_dir = server.data_dir / HW
    assert stored(server, HW, "data/readings/readings-0000.tsv") == (new.sd / "data/readings/readings-0000.tsv").read_bytes()
    assert sorted(p.name for p in (unit_dir / "data/readings").iterdir()) == ["readings-0000.tsv"]
    assert stored(server, HW, "errors/errors-0000.txt") == (new.sd / "errors/errors-0000.txt").read_bytes()
    # Every acknowledged byte of the old card is kept, byte for byte.
    kept = {str(p.relative_to(s)): p.read_bytes()
            for s in (unit_dir / "superseded").iterdir() for p in s.rglob("*") if p.is_file()}
    assert kept == old_files
    assert "SD CARD REPLACED" in server.log()
    # Later cycles append normally: nothing more is moved aside.
    new.write_sd("data/readings", "readings-0000.tsv", reading_lines(HW, 5020, 10))
    stamps = sorted(p.name for p in (unit_dir / "superseded").iterdir())
    assert new.cycle() == "ok"
    assert sorted(p.name for p in (unit_dir / "superseded").iterdir()) == stamps
    assert stored(server, HW, "data/readings/readings-0000.tsv") == (new.sd / "data/readings/readings-0000.tsv").read_bytes()


def test_conflict_in_the_middle_of_a_file_rewinds_the_new_card_to_zero(server):
    data = reading_lines(HW, 0, 200)
    assert push(server.port, HW, "data/readings/readings-0000.tsv", 0, data[:8192]).status == 200
    other = reading_lines(HW, 9000, 200)
    reply = push(server.port, HW, "data/readings/readings-0000.tsv", 4096, other[4096:8192])
    assert reply.status == 416
    assert reply.json()["ack_file"] == ["readings-0000.tsv", 0, 0]
    [stamp] = (server.data_dir / HW / "superseded").iterdir()
    assert (stamp / "data/readings/readings-0000.tsv").read_bytes() == data[:8192]
    assert push(server.port, HW, "data/readings/readings-0000.tsv", 0, other[:4096]).status == 200


def test_concurrent_retries_and_units_never_interleave_or_lose_bytes(make_server):
    server = make_server()
    data = reading_lines(HW, 0, 2000)
    chunks = [(off, data[off:off + 4096]) for off in range(0, len(data), 4096)]
    errors = []

    def pusher():
        # Each thread pushes the whole file in order, as a retrying unit would;
        # several do so at once against two uWSGI processes.
        try:
            for off, chunk in chunks:
                reply = push(server.port, HW, "data/readings/readings-0000.tsv", off, chunk)
                if reply.status not in (200, 416):
                    errors.append(reply)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def pinger(hw_id, n):
        for i in range(n):
            reply = http_request(server.port, "POST", f"/ou/{hw_id}/alive?site_code=u{i}&rssi_raw={i}&rssi_dbm=-90&ber_raw=99")
            if reply.status != 200:
                errors.append(reply)

    threads = [threading.Thread(target=pusher) for _ in range(6)]
    threads += [threading.Thread(target=pinger, args=(h, 60)) for h in (HW, HW2, "co2unit-30aea4ab12cd")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert stored(server, HW, "data/readings/readings-0000.tsv") == data
    lines = b"".join(p.read_bytes() for p in sorted((server.var_dir / "pings").iterdir())).splitlines()
    assert len(lines) == 180
    assert all(len(line.split(b"\t")) == 6 for line in lines)
    assert len({line.split(b"\t")[0] + line.split(b"\t")[1] for line in lines}) == 180
    # Both uWSGI processes took part.
    assert len(set(server.worker_pids())) == 2


def test_crashed_server_leaves_acked_bytes_whole_and_folder_locks_free(server, tmp_path):
    """SIGKILL every uWSGI process while a unit pushes; then restart and finish the push.

    What this shows is consistency after a crashed worker: every byte acked
    with a 200 is in the file as the unit sent it (no partial or interleaved
    chunks), and the restarted server takes the push on (the folder's lock
    died with its holder) to a byte-exact copy. It is no proof of durability:
    the page cache survives a killed process, so this passes without any
    fsync; that proof is test_bytes_are_fsynced_before_the_answer.
    """
    unit = UnitSim(HW, tmp_path / "sd", server.port)
    unit.write_sd("data/readings", "readings-0000.tsv", reading_lines(HW, 0, 3000))  # ~450 KiB
    unit.write_sd("data/readings", "readings-0001.tsv", reading_lines(HW, 3000, 1000))
    acked = {}
    original_request = unit.request

    def request_and_count(method, path, body=None):
        reply = original_request(method, path, body)
        if reply.status == 200 and method == "PUT":
            name, size, _ = reply.json()["ack_file"]
            acked[name] = size
            if sum(acked.values()) > 150_000 and not killed.is_set():
                killed.set()
                server.kill_all()
        return reply

    killed = threading.Event()
    unit.request = request_and_count
    with pytest.raises(OSError):
        unit.cycle()
    assert killed.is_set()
    for name, size in acked.items():
        assert stored(server, HW, f"data/readings/{name}")[:size] == (unit.sd / "data/readings" / name).read_bytes()[:size]
    server.start()
    unit.port = server.port
    assert unit.cycle() == "ok"
    for name in unit.local_files("data/readings"):
        assert stored(server, HW, f"data/readings/{name}") == (unit.sd / "data/readings" / name).read_bytes()


def test_bytes_are_fsynced_before_the_answer(server):
    """The thread that stores a chunk fsyncs the file (and a new file's folder) before it answers."""
    relpath = "errors/errors-0000.txt"
    with server.traced("fsync,fdatasync,write,writev,sendto,sendmsg") as trace:
        assert push(server.port, HW, relpath, 0, b"abc\n").status == 200  # a new file
        assert push(server.port, HW, relpath, 4, b"def\n").status == 200  # an append
    new_file, append = trace.before_answers()
    path = f"{server.data_dir / HW / relpath}>"
    assert any(c.startswith("fsync(") and path + ") = 0" in c for c in new_file), new_file
    assert any(c.startswith("fsync(") and f"{server.data_dir / HW / 'errors'}>) = 0" in c for c in new_file), new_file
    assert any(c.startswith("fsync(") and path + ") = 0" in c for c in append), append
    assert stored(server, HW, relpath) == b"abc\ndef\n"


def _limit_file_size(server, limit: int | None) -> None:
    """Cap (or uncap) the size of any file the uWSGI workers write: their writes past it fail (EFBIG)."""
    import resource

    for pid in server.worker_pids():
        soft = resource.RLIM_INFINITY if limit is None else limit
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, resource.prlimit(pid, resource.RLIMIT_FSIZE)[1]))


def test_a_failed_write_leaves_no_unacknowledged_bytes(server):
    """The disk refuses part of a chunk: a 500, the file as it was, and the resent chunk lands whole."""
    relpath = "errors/errors-0000.txt"
    assert push(server.port, HW, relpath, 0, b"a" * 8000).status == 200
    _limit_file_size(server, 12_000)  # room for half of the next chunk
    try:
        reply = push(server.port, HW, relpath, 8000, b"b" * 8000)
        assert (reply.status, reply.json()["error"]) == (500, "INTERNAL_ERROR")
        assert stored(server, HW, relpath) == b"a" * 8000
    finally:
        _limit_file_size(server, None)
    reply = push(server.port, HW, relpath, 8000, b"b" * 8000)
    assert (reply.status, reply.json()["ack_file"]) == (200, ["errors-0000.txt", 16000, 16000])
    assert stored(server, HW, relpath) == b"a" * 8000 + b"b" * 8000
