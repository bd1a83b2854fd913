"""The Makefile: empty inputs, markers, clean, web (real make, real files)."""

from __future__ import annotations

import importlib.util
import os
import subprocess

import pytest

from datagen import (
    DATABASE_DIR,
    U1,
    build_tree,
    new_tree,
    ping_line,
    query,
    run_make,
    summary,
)


def test_import_with_no_inputs_at_all(tmp_path):
    tree = new_tree(tmp_path)  # no data dir, no pings, no deployments file
    proc = run_make(tree, "import")
    assert summary(proc, "readings") == ("readings: 0 files (0 changed), 0 lines imported, skipped: none")
    assert summary(proc, "errors") == (
        "errors: 0 files (0 changed), 0 lines imported (0 entries written), skipped: none"
    )
    assert summary(proc, "pings") == ("pings: 0 files (0 changed), 0 lines imported (0 new rows), skipped: none")
    assert summary(proc, "deployments") == f"deployments: no file {tree.deploy_tsv} (table empty)"
    for table in ("co2_readings", "error_logs", "pings", "deploy_durations_tiered"):
        assert query(tree.db_file, f"SELECT count(*) FROM {table}") == [(0,)]
    markers = sorted(p.name for p in (tmp_path / "var/db.sqlite3.markers").iterdir())
    assert markers == ["deployments", "errors", "pings", "readings"]


def test_import_with_empty_folders(tmp_path):
    tree = new_tree(tmp_path)
    tree.data_dir.mkdir()
    tree.pings_dir.mkdir(parents=True)
    (tree.data_dir / U1 / "data/readings").mkdir(parents=True)
    proc = run_make(tree, "import")
    assert "0 lines imported" in summary(proc, "readings")


def test_markers_change_only_when_the_database_changed(tmp_path):
    tree = build_tree(tmp_path)
    run_make(tree, "import")
    markers = tree.db_file.parent / "db.sqlite3.markers"
    for marker in markers.iterdir():
        os.utime(marker, ns=(1, 1))
    with open(tree.pings_dir / "pings-0002.tsv", "wb") as fh:
        fh.write(ping_line(__import__("datetime").datetime(2020, 1, 1), U1, "v", 1, -90, 99))
    run_make(tree, "import")
    changed = {m.name for m in markers.iterdir() if m.stat().st_mtime_ns != 1}
    assert changed == {"pings"}


def test_clean_removes_outputs_and_markers_never_data_or_database(tmp_path):
    tree = build_tree(tmp_path)
    run_make(tree, "import")
    tree.pub_dir.mkdir(parents=True)
    (tree.pub_dir / "pings_all_tiered.svg").write_text("<svg/>")
    (tree.pub_dir / "served-by-someone-else.txt").write_text("keep")
    proc = run_make(tree, "clean")
    assert not (tree.pub_dir / "pings_all_tiered.svg").exists()
    assert (tree.pub_dir / "served-by-someone-else.txt").exists()
    assert not (tree.db_file.parent / "db.sqlite3.markers").exists()
    assert tree.db_file.exists() and tree.deploy_tsv.exists()
    assert "rm " in proc.stdout  # visible


def test_reimport_gives_the_same_database(tmp_path):
    tree = build_tree(tmp_path)
    run_make(tree, "import")
    before = query(tree.db_file, "SELECT count(*) FROM co2_readings")
    proc = run_make(tree, "reimport")
    assert "156 lines imported" in summary(proc, "readings")
    assert query(tree.db_file, "SELECT count(*) FROM co2_readings") == before


def test_make_must_run_in_its_folder(tmp_path):
    proc = subprocess.run(
        ["make", "-f", str(DATABASE_DIR / "Makefile"), "import"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "make -C database" in proc.stderr


PLOTTING_READY = all(importlib.util.find_spec(m) for m in ("co2db.plot_pings", "co2db.plot_co2", "co2db.pages"))


@pytest.mark.skipif(not PLOTTING_READY, reason="plot and page commands not there yet")
def test_web_redraws_only_what_changed(tmp_path):
    tree = build_tree(tmp_path)
    run_make(tree)  # the default target: web
    outputs = [
        "pings_all_tiered.svg",
        "co2_tiered_recent_hires.svg",
        "co2_tiered_all_hires.svg",
        "pings_summary.html",
        "co2_summary.html",
    ]
    for name in outputs:
        assert (tree.pub_dir / name).stat().st_size > 0
    proc = run_make(tree)
    assert "co2db.plot" not in proc.stdout and "co2db.pages" not in proc.stdout
    with open(tree.pings_dir / "pings-0002.tsv", "wb") as fh:
        fh.write(ping_line(__import__("datetime").datetime(2020, 1, 1), U1, "v", 1, -90, 99))
    proc = run_make(tree)
    assert "co2db.plot_pings" in proc.stdout and "co2db.pages" in proc.stdout
    assert "co2db.plot_co2" not in proc.stdout
