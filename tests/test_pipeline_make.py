"""The Makefile: empty inputs, markers, clean, web (real make, real files)."""

from __future__ import annotations

import os
import subprocess

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
    assert "236 lines imported" in summary(proc, "readings")
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


def test_pages_are_rerendered_when_older_than_pages_max_age(tmp_path):
    """Silent units depend on the clock and on live pings: pages go stale without new imports."""
    tree = build_tree(tmp_path)
    run_make(tree)
    pages = [tree.pub_dir / "pings_summary.html", tree.pub_dir / "co2_summary.html"]
    proc = run_make(tree)
    assert "co2db.pages" not in proc.stdout  # fresh: nothing to do
    ten_minutes_ago = pages[0].stat().st_mtime - 600
    os.utime(pages[0], (ten_minutes_ago, ten_minutes_ago))
    proc = run_make(tree)
    assert "co2db.pages" in proc.stdout and "co2db.plot" not in proc.stdout
    assert all(p.stat().st_mtime > ten_minutes_ago + 300 for p in pages)
    proc = run_make(tree, "PAGES_MAX_AGE=0")  # on every run
    assert "co2db.pages" in proc.stdout and "co2db.plot" not in proc.stdout


ROOT = DATABASE_DIR.parent


def test_missing_venv_is_created_by_make(tmp_path):
    """With the default PYTHON, a missing venv is made by scripts/setup-venv.sh (dry run here)."""
    venv_python = tmp_path / "no-venv/bin/python"
    proc = subprocess.run(
        ["make", "-C", str(DATABASE_DIR), "-n", "import", f"VENV_PYTHON={venv_python}", f"PYTHON={venv_python}"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "../scripts/setup-venv.sh" in proc.stdout
    proc = subprocess.run(["make", "-C", str(DATABASE_DIR), "-n", "import"], capture_output=True, text=True)
    assert "setup-venv" not in proc.stdout  # the checkout's venv exists


def test_make_summaries_uses_the_servers_settings_and_a_lock(tmp_path):
    tree = build_tree(tmp_path)
    db_file = tmp_path / "elsewhere" / "co2.sqlite3"
    env = {
        **os.environ,
        "CO2_DATA_DIR": str(tree.data_dir),
        "CO2_VAR_DIR": str(tmp_path / "var"),
        "CO2_DB_PATH": str(db_file),
    }
    script = str(ROOT / "scripts/make-summaries.sh")
    # Two runs at once: the lock makes the second wait for the first.
    first = subprocess.Popen([script, "import"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.run([script, "import"], env=env, capture_output=True, text=True)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0 and second.returncode == 0, err + second.stderr
    assert query(db_file, "SELECT count(*) FROM co2_readings") == [(236,)]
    assert query(db_file, "SELECT count(*) FROM pings") == [(35,)]
    lines = [s for s in (out + second.stdout).splitlines() if s.startswith("readings: ")]
    assert sorted(lines)[0].startswith("readings: 9 files (0 changed), 0 lines imported")
    assert sorted(lines)[1].startswith("readings: 9 files (8 changed), 236 lines imported")
    assert (tmp_path / "var/locks/make-summaries.lock").exists()
    help_text = subprocess.run([script, "--help"], capture_output=True, text=True).stdout
    assert "CO2_DATA_DIR" in help_text


def test_a_failing_plot_does_not_stop_the_other_plots_or_the_pages(tmp_path):
    """One plot fails for real (its output path is a folder): the rest is written, the
    page says which plot failed, a summary line reports it and make exits non-zero."""
    tree = build_tree(tmp_path)
    broken = tree.pub_dir / "co2_tiered_all_hires.svg"
    broken.mkdir(parents=True)
    proc = run_make(tree, check=False)
    assert proc.returncode != 0
    for name in ("pings_all_tiered.svg", "co2_tiered_recent_hires.svg", "pings_summary.html", "co2_summary.html"):
        assert (tree.pub_dir / name).is_file(), name
    assert "co2_tiered_all_hires.svg" in proc.stderr and "Is a directory" in proc.stderr
    plots_line = [line for line in proc.stdout.splitlines() if line.startswith("plots: ")]
    assert plots_line == ["plots: 3 plots, failed: co2_tiered_all_hires.svg"], proc.stdout
    page = (tree.pub_dir / "co2_summary.html").read_text()
    assert 'src="co2_tiered_recent_hires.svg"' in page and 'src="co2_tiered_all_hires.svg"' not in page
    assert "co2_tiered_all_hires.svg could not be drawn" in page and "Is a directory" in page
    assert "could not be drawn" not in (tree.pub_dir / "pings_summary.html").read_text()

    # Every run tries the failed plot again (and says so again) ...
    proc = run_make(tree, check=False)
    assert proc.returncode != 0 and "co2db.plot_co2" in proc.stdout
    assert "co2db.plot_pings" not in proc.stdout
    # ... until it is drawn: the note goes, the page shows the plot, make exits 0.
    broken.rmdir()
    proc = run_make(tree)
    assert "plots: 3 plots, failed: none" in proc.stdout.splitlines()
    page = (tree.pub_dir / "co2_summary.html").read_text()
    assert 'src="co2_tiered_all_hires.svg"' in page and "could not be drawn" not in page
    assert broken.is_file()
