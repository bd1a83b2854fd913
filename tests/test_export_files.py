"""make export, the files: datapackage.json (Frictionless validator, sha256
and rows of every file), the README's snippets, incremental runs that keep
unchanged files, and a failing run that leaves the previous export intact."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta
from pathlib import Path

import frictionless
import pyarrow.parquet as pq
import pytest
from test_export import csv_rows

from co2db.export_package import file_hash
from datagen import DATABASE_DIR, U1, U2, U3, build_tree, copy_tree, reading_line, run_make

README = (DATABASE_DIR / "README.md").read_text()
ROOT = DATABASE_DIR.parent


def files_of(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file below folder: relative path -> (bytes, mtime_ns)."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def check_package(export: Path) -> dict:
    """datapackage.json is valid and describes exactly the files beside it."""
    package = json.loads((export / "datapackage.json").read_text())
    report = frictionless.Package.validate_descriptor(package)
    assert report.valid, report.flatten(["type", "note"])
    paths = sorted(r["path"] for r in package["resources"])
    on_disk = sorted(k for k in files_of(export) if k != "datapackage.json")
    assert paths == on_disk
    for res in package["resources"]:
        assert (res["bytes"], res["hash"]) == file_hash(export / res["path"])
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", res["hash"])
        if res["format"] == "csv":
            # The validator reads the file: its types, bytes, sha256 and row count.
            checked = frictionless.Resource(res, basepath=str(export)).validate()
            assert checked.valid, (res["path"], checked.flatten(["type", "note"])[:5])
        else:
            assert res["mediatype"] == "application/vnd.apache.parquet"
            assert pq.ParquetFile(export / res["path"]).metadata.num_rows == res["rows"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", package["created"])
    return package


@pytest.fixture
def exported(tmp_path):
    tree = build_tree(tmp_path)
    run_make(tree, "export")
    return tree


def test_datapackage_is_valid_and_matches_every_file(exported):
    package = check_package(exported.pub_dir / "export")
    ts = [row["ts"] for row in csv_rows(exported) if row["ts"]]
    assert package["temporal"] == {"start": min(ts), "end": max(ts)}
    assert [f["name"] for f in package["co2db:flags"]] == [
        "bad_time",
        "sensor_limit",
        "missing",
        "repeat_time",
        "close_pair",
        "not_deployed",
    ]
    assert package["co2db:sites"] == ["lab"] and len(package["co2db:units"]) == 3
    version = package["co2db:software"]["version"]
    assert version == package["version"] and version.startswith("0.1.0")
    fields = {f["name"]: f for f in package["resources"][0]["schema"]["fields"]}
    assert fields["co2_mean_ppm"]["unit"] == "ppm" and fields["ts"]["type"] == "datetime"
    assert sum(r["rows"] for r in package["resources"] if r["path"].startswith("csv/")) == exported.expected.readings


def test_a_wrong_hash_or_row_count_is_caught_by_the_validator(exported):
    export = exported.pub_dir / "export"
    res = json.loads((export / "datapackage.json").read_text())["resources"][0]
    assert frictionless.Resource({**res, "rows": res["rows"] + 1}, basepath=str(export)).validate().valid is False
    (export / res["path"]).write_bytes((export / res["path"]).read_bytes() + b"\n")
    assert frictionless.Resource(res, basepath=str(export)).validate().valid is False


def readme_snippets(language: str) -> list[str]:
    section = README.split("## Using the dataset", 1)[1]
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


def test_the_readme_snippets_load_the_exported_files(exported, monkeypatch):
    snippets = readme_snippets("python")
    assert len(snippets) == 2 and len(readme_snippets("r")) == 1
    monkeypatch.chdir(exported.pub_dir / "export")
    pandas_ns: dict = {}
    exec(snippets[0], pandas_ns)
    n = exported.expected.readings
    assert len(pandas_ns["readings"]) == n and len(pandas_ns["parquet_readings"]) == n
    assert str(pandas_ns["readings"]["ts"].dtype).startswith("datetime64")
    unflagged = int(pandas_ns["readings"]["qc_flags"].isna().sum())
    assert len(pandas_ns["clean"]) == unflagged
    assert len(pandas_ns["daily"]) > 0
    duckdb_ns: dict = {}
    exec(snippets[1], duckdb_ns)
    assert int(duckdb_ns["monthly"]["readings"].sum()) == unflagged


def test_the_readme_r_snippet_loads_the_exported_files(exported):
    """The base-R lines, run by the real Rscript in the export folder."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        if os.environ.get("CI") == "true":
            raise AssertionError("Rscript is missing in CI (scripts/run-tests.sh installs r-base-core)")
        pytest.skip("R is not installed (as root: apt-get install r-base-core)")
    # Text that needs quotes and a reading without a time, appended to the export.
    rng = random.Random(3)
    when = datetime(2020, 1, 20, 12, 0, 0)
    lines = [reading_line(U3, 'la "b",3', when, 16, rng), reading_line(U3, "lab-3", when, 16, rng, time="25:00:00")]
    (exported.data_dir / U3 / "data/readings/readings-0098.tsv").write_bytes(b"".join(lines))
    assert "2 rows appended" in run_make(exported, "export").stdout
    (snippet,) = readme_snippets("r")
    check = snippet + textwrap.dedent(
        """
        stopifnot(inherits(readings$ts, "POSIXct"), identical(attr(readings$ts, "tzone"), "UTC"))
        cat(nrow(readings), sum(is.na(readings$ts)), nrow(clean), nrow(daily), sum(daily$n_readings), "\n")
        """
    )
    proc = subprocess.run(
        [rscript, "--vanilla", "-e", check],
        cwd=exported.pub_dir / "export",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    package = check_package(exported.pub_dir / "export")
    rows = {r["path"]: r["rows"] for r in package["resources"]}
    bad_time = rows.get("csv/bad_time.csv", 0)  # rows without ts: NA in R
    flagged = sum(1 for row in csv_rows(exported) if row["qc_flags"])
    n = exported.expected.readings + 2
    got = [int(v) for v in proc.stdout.split()]
    assert bad_time >= 1
    assert got == [n, bad_time, n - flagged, rows["daily/daily.csv"], n - bad_time]


def test_nothing_new_touches_nothing(exported):
    export = exported.pub_dir / "export"
    before = files_of(export)
    proc = run_make(exported, "export")
    assert "export: nothing new, 7 files kept" in proc.stdout
    assert files_of(export) == before


def append_day(tree, when: datetime) -> None:
    """One more day of U3's readings, in a new file."""
    rng = random.Random(7)
    folder = tree.data_dir / U3 / "data/readings"
    lines = [reading_line(U3, "lab-3", when + i * timedelta(minutes=30), 16, rng) for i in range(48)]
    (folder / "readings-0099.tsv").write_bytes(b"".join(lines))


def test_a_new_day_rewrites_only_what_changed_and_equals_a_fresh_export(exported, tmp_path):
    export = exported.pub_dir / "export"
    before = files_of(export)
    append_day(exported, datetime(2020, 1, 15, 0, 0, 10))
    proc = run_make(exported, "export")
    after = files_of(export)
    changed = {k for k in after if before.get(k) != after[k]}
    assert changed == {
        "csv/site-lab.csv",
        "parquet/site=lab/year=2020/part-0.parquet",  # new
        "daily/daily.csv",
        "daily/daily.parquet",
        "datapackage.json",
    }
    assert "48 rows appended, 8 files (4 written, 4 kept)" in proc.stdout
    check_package(export)
    fresh = copy_tree(exported, tmp_path / "fresh")
    shutil.copy(exported.deploy_tsv, fresh.deploy_tsv)
    run_make(fresh, "export")
    fresh_files = files_of(fresh.pub_dir / "export")
    assert {k: v[0] for k, v in fresh_files.items() if k != "datapackage.json"} == {
        k: v[0] for k, v in after.items() if k != "datapackage.json"
    }
    strip = ("created", "co2db:fingerprint", "co2db:readings")  # the database's generation differs
    ours, theirs = (
        {k: v for k, v in json.loads(files[("datapackage.json")][0]).items() if k not in strip}
        for files in (after, fresh_files)
    )
    assert ours == theirs


def test_export_dir_that_is_a_symlink_is_refused(tmp_path):
    tree = build_tree(tmp_path)
    real = tmp_path / "elsewhere"
    real.mkdir()
    tree.pub_dir.mkdir(parents=True)
    (tree.pub_dir / "export").symlink_to(real)
    proc = run_make(tree, "export", check=False)
    assert proc.returncode != 0
    assert "is a symlink; the server refuses those: make it a real folder" in proc.stderr
    assert list(real.iterdir()) == []


def require_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            raise AssertionError("CI must run the full-disk export test as root (it mounts a tmpfs)")
        pytest.skip("mounting a small tmpfs needs root (CI runs this as root)")


def test_a_run_failing_midway_leaves_the_previous_export_intact(tmp_path):
    require_root()
    tree = build_tree(tmp_path)
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(disk)], check=True)
    try:
        make_var = f"EXPORT_DIR={disk / 'export'}"
        run_make(tree, "export", make_var)
        before = files_of(disk / "export")
        append_day(tree, datetime(2020, 1, 15, 0, 0, 10))
        # Fill the disk, then leave 16 KiB: the new export fails part way through.
        with open(disk / "filler", "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        os.truncate(disk / "filler", max(os.path.getsize(disk / "filler") - 16384, 0))
        proc = run_make(tree, "export", make_var, check=False)
        assert proc.returncode != 0, proc.stdout
        assert "cannot write the export beside" in proc.stderr and "the previous export is unchanged" in proc.stderr
        assert files_of(disk / "export") == before
        assert sorted(p.name for p in disk.iterdir()) == [".export.lock", "export", "filler"]  # no staging left
        check_package(disk / "export")
        os.unlink(disk / "filler")
        proc = run_make(tree, "export", make_var)
        assert "48 rows appended, 8 files (4 written, 4 kept)" in proc.stdout
        check_package(disk / "export")
    finally:
        if subprocess.run(["umount", str(disk)]).returncode != 0:
            subprocess.run(["umount", "-l", str(disk)], check=True)


def test_the_summaries_script_runs_web_and_export_and_marks_success(tmp_path):
    tree = build_tree(tmp_path)
    env = {
        **os.environ,
        "CO2_DATA_DIR": str(tree.data_dir),
        "CO2_VAR_DIR": str(tmp_path / "var"),
    }
    proc = subprocess.run(
        [str(ROOT / "scripts/make-summaries.sh")], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "plots: 3 plots, failed: none" in proc.stdout and "export: 236 rows" in proc.stdout
    assert (tmp_path / "var/pub/export/datapackage.json").is_file()
    assert (tmp_path / "var/pipeline-last-ok").is_file()


def test_a_batch_of_units_at_a_time_writes_the_same_files(tmp_path, monkeypatch):
    """From scratch the export holds one batch of units at a time (memory);
    one unit per batch gives the very same files as make's run."""
    from test_export import PERIODS, exported_tree, line

    from co2db import export_build
    from co2db.export import export as run_export

    hours = [datetime(2019, 12, 30) + timedelta(hours=7 * i) for i in range(60)]  # before, in and after periods
    readings = {u: [line(u, t.strftime("%Y-%m-%d"), t.strftime("%H:%M:%S")) for t in hours] for u in (U1, U2, U3)}
    tree, proc = exported_tree(tmp_path / "tree", readings, PERIODS)
    assert "180 rows, 18 files" in proc.stdout, proc.stdout[-400:]  # 6 sites and the units' own files
    monkeypatch.setattr(export_build, "BATCH_UNITS", 1)
    assert "180 rows, 18 files (18 written, 0 kept)" in run_export(tree.db_file, tmp_path / "one_by_one")
    assert_same_exports(tmp_path / "one_by_one", tree.pub_dir / "export")
    # And an append run in this process (pytest makes any warning an error) as make's.
    append_day(tree, datetime(2020, 1, 15, 0, 0, 10))
    run_make(tree, "export")
    assert "48 rows appended" in run_export(tree.db_file, tmp_path / "one_by_one")
    assert_same_exports(tmp_path / "one_by_one", tree.pub_dir / "export")


def assert_same_exports(one: Path, other: Path) -> None:
    ours, theirs = files_of(one), files_of(other)
    assert sorted(ours) == sorted(theirs)
    for path in ours:
        if path != "datapackage.json":
            assert ours[path][0] == theirs[path][0], path
    packages = [json.loads(files["datapackage.json"][0]) for files in (ours, theirs)]
    assert [p.pop("created") for p in packages] and packages[0] == packages[1]


def test_units_that_shared_a_site_are_in_one_batch():
    from co2db.deployments import Period, build_layout
    from co2db.export_build import unit_batches

    def period(unit, site):
        return Period(unit_id=unit, nickname=None, site=site, tier=1, status="deployed", start=None, end=None)

    layout = build_layout([period("a", "s1"), period("b", "s1"), period("b", "s2"), period("c", "s2"), period("e", None)])
    assert unit_batches(layout, ["a", "d", "c", "b", "e", None], size=1) == [["a", "c", "b"], ["d"], ["e"], [None]]
    assert unit_batches(layout, ["a", "d", "c", "b", "e", None], size=4) == [["a", "c", "b", "d"], ["e", None]]


def test_a_second_export_waits_for_the_first(exported):
    """The timer's run and one by hand never write the same staging folder at once."""
    import fcntl

    export = exported.pub_dir / "export"
    append_day(exported, datetime(2020, 1, 15, 0, 0, 10))
    with open(export.with_name(".export.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as a first run holds it
        cmd = ["make", "-C", str(DATABASE_DIR), *exported.make_vars(), f"PYTHON={sys.executable}", "export"]
        second = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            waiting = b""
            deadline = time.monotonic() + 60
            while b"waiting for it" not in waiting and time.monotonic() < deadline and second.poll() is None:
                waiting += os.read(second.stderr.fileno(), 4096)
            assert b"another export into" in waiting and second.poll() is None, waiting
            assert not export.with_name(".export.staging").exists()  # it has not started
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
        out, _ = second.communicate(timeout=120)
    assert second.returncode == 0 and "48 rows appended" in out
    check_package(export)
