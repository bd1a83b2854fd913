"""chunks.store_chunk and pinglog.record_ping called from several OS processes at once."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import threading
import time
from pathlib import Path

from co2server.chunks import FOLDERS_MAX, store_chunk
from co2server.config import Config
from co2server.errors import ApiError
from co2server.pinglog import Ping, record_ping
from co2server.safe_paths import push_target

HW = "co2unit-30aea42a50bc"
DATA = b"".join(f"{HW}\tnick\t2019-08-01\t{i:08d}\n".encode() for i in range(3000))
CHUNKS = [(off, DATA[off:off + 4096]) for off in range(0, len(DATA), 4096)]

def _push_all(root: str) -> list[int]:
    config = Config(Path(root) / "rd", Path(root) / "var", Path(root) / "db")
    target = push_target(config, HW, "data/readings/readings-0000.tsv")
    written = []
    for off, chunk in CHUNKS:
        try:
            written.append(store_chunk(target, off, chunk, 1 << 24).written)
        except Exception as exc:  # a 416 when another process is behind: fine, but count it
            written.append(-1 if getattr(exc, "status", None) == 416 else -2)
    return written

def _ping_many(args) -> None:
    root, k = args
    config = Config(Path(root) / "rd", Path(root) / "var", Path(root) / "db", pings_roll_bytes=4096)
    for i in range(150):
        record_ping(config, Ping.arriving_now(HW, f"p{k}-{i}", i, -90, 99))

def test_processes_pushing_the_same_file_never_corrupt_it(tmp_path):
    with multiprocessing.get_context("fork").Pool(4) as pool:
        results = pool.map(_push_all, [str(tmp_path)] * 4)
    assert -2 not in [w for r in results for w in r]
    assert (tmp_path / "rd" / HW / "data/readings/readings-0000.tsv").read_bytes() == DATA
    # Every byte was written exactly once, whichever process got there first.
    assert sum(w for r in results for w in r if w > 0) == len(DATA)

def test_processes_pinging_at_once_keep_whole_lines_and_roll_files(tmp_path):
    with multiprocessing.get_context("fork").Pool(4) as pool:
        pool.map(_ping_many, [(str(tmp_path), k) for k in range(4)])
    files = sorted((tmp_path / "var" / "pings").iterdir())
    assert len(files) > 5  # rolled over many times at 4 KiB
    lines = [line for f in files for line in f.read_text().splitlines()]
    assert sorted(line.split("\t")[2] for line in lines) == sorted(f"p{k}-{i}" for k in range(4) for i in range(150))
    assert all(len(line.split("\t")) == 6 for line in lines)
    # Only the last file may be under the roll size; none grew far past it.
    assert all(f.stat().st_size >= 4096 for f in files[:-1])
    assert all(f.stat().st_size < 4096 + 100 for f in files)


# What one process remembers of a folder (chunks._Folder: its last file name
# and an open descriptor) is trusted only while the folder is unchanged and
# its mtime has settled. The folders below are made to look settled by
# setting their mtime an hour back, so the remembered state is really used.

def _settle(folder) -> None:
    old = time.time() - 3600
    os.utime(folder, (old, old))


def _in_other_process(fn, *args):
    with multiprocessing.get_context("fork").Pool(1) as pool:
        return pool.apply(fn, args)


def _push(root: str, name: str, offset: int, data: bytes):
    config = Config(Path(root) / "rd", Path(root) / "var", Path(root) / "db")
    try:
        return store_chunk(push_target(config, HW, f"data/readings/{name}"), offset, data, 1 << 24).ack_file
    except ApiError as exc:
        return exc.status, exc.extra.get("ack_file")


def test_a_file_another_process_adds_to_a_settled_folder_is_acknowledged(tmp_path):
    folder = tmp_path / "rd" / HW / "data/readings"
    assert _push(str(tmp_path), "readings-0000.tsv", 0, b"a\n") == ["readings-0000.tsv", 2, 2]
    _settle(folder)
    assert _push(str(tmp_path), "readings-0000.tsv", 2, b"b\n") == ["readings-0000.tsv", 4, 4]
    assert _push(str(tmp_path), "readings-0000.tsv", 4, b"c\n") == ["readings-0000.tsv", 6, 6]  # from memory
    assert _in_other_process(_push, str(tmp_path), "readings-0001.tsv", 0, b"x\n") == ["readings-0001.tsv", 2, 2]
    # This process must not answer from what it remembered: 0001 is the last file now.
    assert _push(str(tmp_path), "readings-0000.tsv", 6, b"d\n") == ["readings-0001.tsv", 2, 2]
    assert (folder / "readings-0000.tsv").read_bytes() == b"a\nb\nc\nd\n"


def test_a_folder_superseded_by_another_process_is_not_written_through_a_kept_descriptor(tmp_path):
    folder = tmp_path / "rd" / HW / "data/readings"
    assert _push(str(tmp_path), "readings-0000.tsv", 0, b"old card\n") == ["readings-0000.tsv", 9, 9]
    _settle(folder)
    assert _push(str(tmp_path), "readings-0000.tsv", 9, b"more\n") == ["readings-0000.tsv", 14, 14]
    # Another process sees a new card's first bytes: it moves the folder aside and starts afresh.
    assert _in_other_process(_push, str(tmp_path), "readings-0000.tsv", 0, b"NEW\n") == ["readings-0000.tsv", 4, 4]
    # This process still has the old file open; its next chunk must go by the new one.
    assert _push(str(tmp_path), "readings-0000.tsv", 14, b"late\n") == (416, ["readings-0000.tsv", 4, 4])
    assert _push(str(tmp_path), "readings-0000.tsv", 4, b"next\n") == ["readings-0000.tsv", 9, 9]
    assert (folder / "readings-0000.tsv").read_bytes() == b"NEW\nnext\n"
    [old] = (tmp_path / "rd" / HW / "superseded").glob("*/data/readings/readings-0000.tsv")
    assert old.read_bytes() == b"old card\nmore\n"


def test_many_folders_keep_a_bounded_number_of_files_open(tmp_path):
    config = Config(tmp_path / "rd", tmp_path / "var", tmp_path / "db")
    before = len(os.listdir("/proc/self/fd"))
    units = [f"co2unit-{i:012x}" for i in range(3 * FOLDERS_MAX)]
    for rounds in range(2):
        for hw in units:
            target = push_target(config, hw, "errors/errors-0000.txt")
            store_chunk(target, rounds * 2, b"e\n", 1000)
    assert len(os.listdir("/proc/self/fd")) - before <= 2 * FOLDERS_MAX
    assert all((config.data_dir / hw / "errors/errors-0000.txt").read_bytes() == b"e\ne\n" for hw in units)


def test_a_deleted_lock_file_is_replaced_by_the_one_now_at_its_path(tmp_path):
    """Someone cleans var/locks while the server runs: the next chunk locks the new file, as others will."""
    config = Config(tmp_path / "rd", tmp_path / "var", tmp_path / "db")
    target = push_target(config, HW, "data/readings/readings-0000.tsv")
    store_chunk(target, 0, b"a\n", 1000)
    lock = Path(target.lock_path)
    lock.unlink()
    store_chunk(target, 2, b"b\n", 1000)
    assert lock.exists()
    fd = os.open(lock, os.O_RDWR)
    try:  # the file at the path is the one this process now holds while it writes
        fcntl.flock(fd, fcntl.LOCK_EX)
        done = []
        thread = threading.Thread(target=lambda: done.append(store_chunk(target, 4, b"c\n", 1000)))
        thread.start()
        thread.join(0.3)
        assert not done  # waiting for our lock
        fcntl.flock(fd, fcntl.LOCK_UN)
        thread.join(5)
        assert done and done[0].ack_file == ["readings-0000.tsv", 6, 6]
    finally:
        os.close(fd)
