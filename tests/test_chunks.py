"""chunks.store_chunk and pinglog.record_ping called from several OS processes at once."""

from __future__ import annotations

import multiprocessing

from co2server.chunks import store_chunk
from co2server.config import Config
from co2server.pinglog import Ping, record_ping
from co2server.safe_paths import push_target

HW = "co2unit-30aea42a50bc"
DATA = b"".join(f"{HW}\tnick\t2019-08-01\t{i:08d}\n".encode() for i in range(3000))
CHUNKS = [(off, DATA[off:off + 4096]) for off in range(0, len(DATA), 4096)]

def _push_all(root: str) -> list[int]:
    from pathlib import Path

    config = Config(Path(root) / "rd", Path(root) / "var", Path(root) / "db")
    target = push_target(config, HW, "data/readings/readings-0000.tsv")
    written = []
    for off, chunk in CHUNKS:
        try:
            written.append(store_chunk(target, off, chunk, 1 << 24, config.locks_dir).written)
        except Exception as exc:  # a 416 when another process is behind: fine, but count it
            written.append(-1 if getattr(exc, "status", None) == 416 else -2)
    return written

def _ping_many(args) -> None:
    from pathlib import Path

    root, k = args
    for i in range(150):
        ping = Ping.arriving_now(HW, f"p{k}-{i}", i, -90, 99)
        record_ping(Path(root) / "var" / "pings", Path(root) / "var" / "locks", ping, roll_bytes=4096)

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
