"""The operators' shell scripts over the pings logs: exact output on real files."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT

A, B, C = "co2unit-30aea42a50bc", "co2unit-30aea42a5268", "co2unit-30aea4ab12cd"
SCRIPTS = ["units-last-seen.sh", "pings-date-range-by-unit.sh", "push-server-data.sh", "new-update.sh",
           "import-sd-card.sh", "units.sh"]

LOG_0 = (
    f"2019-10-06T23:59:59.000001\t{A}\tvaranger-03\t8\t-97\t99\n"
    f"2019-10-07T03:23:39.980794\t{B}\tvaranger-01\t9\t-95\t99\n"
    "garbage line without tabs\n"
    f"2019-10-08T10:00:00.000000\t{A}\tvaranger-03\t8\t-97\t99\n"
)
LOG_1 = (
    f"2019-10-09T11:00:00.500000\t{C}\tNone\tNone\tNone\tNone\n"
    f"2019-10-31T08:00:00.000000\t{B}\tvaranger-01b\t7\t-99\t99\n"
    f"2019-11-01T00:00:00.000000\t{A}\tvaranger-03\t8\t-97"  # 5 columns, no newline yet
)


@pytest.fixture
def var_dir(tmp_path) -> Path:
    pings = tmp_path / "var" / "pings"
    pings.mkdir(parents=True)
    (pings / "pings-0000.tsv").write_text(LOG_0)
    (pings / "pings-0001.tsv").write_text(LOG_1)
    return tmp_path / "var"


def run(script: str, *args: str, **env_vars: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CO2_")}
    env.update(env_vars)
    return subprocess.run([str(ROOT / "scripts" / script), *args], env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_and_style(script):
    result = run(script, "--help")
    assert result.returncode == 0 and result.stdout.strip(), result.stderr
    text = (ROOT / "scripts" / script).read_text()
    assert text.startswith("#!/bin/bash\n#")
    assert "set -euo pipefail" in text and text.rstrip().endswith('main "$@"')


def test_units_last_seen(var_dir):
    result = run("units-last-seen.sh", CO2_VAR_DIR=str(var_dir))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"None\t2019-10-09T11:00:00\t{C}",
        f"varanger-01b\t2019-10-31T08:00:00\t{B}",
        f"varanger-03\t2019-11-01T00:00:00\t{A}",
    ]


def test_units_last_seen_without_logs(tmp_path):
    result = run("units-last-seen.sh", CO2_VAR_DIR=str(tmp_path))
    assert (result.returncode, result.stdout) == (0, "")
    assert "no pings logs" in result.stderr


def test_pings_date_range_by_unit(var_dir):
    result = run("pings-date-range-by-unit.sh", "2019-10-07", "2019-10-31", CO2_VAR_DIR=str(var_dir))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{A}\tvaranger-03\t1\t2019-10-08T10:00:00\t2019-10-08T10:00:00",
        f"{B}\tvaranger-01b\t2\t2019-10-07T03:23:39\t2019-10-31T08:00:00",
        f"{C}\tNone\t1\t2019-10-09T11:00:00\t2019-10-09T11:00:00",
    ]
    result = run("pings-date-range-by-unit.sh", CO2_VAR_DIR=str(var_dir))
    assert result.stdout.splitlines()[0] == f"{A}\tvaranger-03\t3\t2019-10-06T23:59:59\t2019-11-01T00:00:00"
    result = run("pings-date-range-by-unit.sh", "2019-11-01", CO2_VAR_DIR=str(var_dir))
    assert result.stdout.splitlines() == [f"{A}\tvaranger-03\t1\t2019-11-01T00:00:00\t2019-11-01T00:00:00"]


@pytest.mark.parametrize(("args", "message"), [
    (["2019-13"], "is not a date"),
    (["2019-10-31", "2019-10-01"], "is after END"),
    (["2019-10-01", "2019-10-02", "x"], "at most two dates"),
])
def test_pings_date_range_refuses_bad_dates(var_dir, args, message):
    result = run("pings-date-range-by-unit.sh", *args, CO2_VAR_DIR=str(var_dir))
    assert result.returncode == 2 and message in result.stderr


def test_push_server_data_is_idempotent(var_dir, tmp_path):
    data = tmp_path / "remote_data"
    result = run("push-server-data.sh", "--host", "lab1", CO2_VAR_DIR=str(var_dir), CO2_DATA_DIR=str(data))
    assert result.returncode == 0, result.stderr
    dest = data / "server-lab1" / "var" / "pings"
    assert sorted(p.name for p in dest.iterdir()) == ["pings-0000.tsv", "pings-0001.tsv"]
    assert (dest / "pings-0001.tsv").read_text() == LOG_1

    with open(var_dir / "pings" / "pings-0001.tsv", "a") as f:
        f.write("\n")
    again = run("push-server-data.sh", "--host", "lab1", CO2_VAR_DIR=str(var_dir), CO2_DATA_DIR=str(data))
    assert again.returncode == 0, again.stderr
    assert (dest / "pings-0001.tsv").read_text() == LOG_1 + "\n"
    assert sorted(p.name for p in dest.iterdir()) == ["pings-0000.tsv", "pings-0001.tsv"]  # no temp files

    elsewhere = tmp_path / "shared"
    result = run("push-server-data.sh", "--dest", str(elsewhere), CO2_VAR_DIR=str(var_dir))
    assert result.returncode == 0, result.stderr
    assert len(list(elsewhere.glob("server-*/var/pings/pings-*.tsv"))) == 2

    bad = run("push-server-data.sh", "--host", "../x", CO2_VAR_DIR=str(var_dir), CO2_DATA_DIR=str(data))
    assert bad.returncode == 2 and "not a plain name" in bad.stderr


def path_without(tmp_path: Path, *missing: str) -> str:
    """A PATH with every command of this machine except `missing` (to force a fallback)."""
    bin_dir = tmp_path / f"bin-without-{'-'.join(missing)}"
    bin_dir.mkdir()
    for folder in os.environ.get("PATH", "/usr/bin:/bin").split(":"):
        if not os.path.isdir(folder):
            continue
        for entry in os.scandir(folder):
            target = bin_dir / entry.name
            if entry.name in missing or target.exists() or not os.access(entry.path, os.X_OK):
                continue
            target.symlink_to(entry.path)
    return str(bin_dir)


def test_push_server_data_cp_fallback_never_writes_through_a_planted_link(var_dir, tmp_path):
    data = tmp_path / "remote_data"
    dest = data / "server-lab1" / "var" / "pings"
    dest.mkdir(parents=True)
    outside = tmp_path / "outside.txt"
    outside.write_text("not the data folder's\n")
    for name in ("pings-0000.tsv", "pings-0001.tsv"):
        (dest / f".{name}.tmp").symlink_to(outside)  # the temporary name the cp fallback used
    result = run("push-server-data.sh", "--host", "lab1", CO2_VAR_DIR=str(var_dir), CO2_DATA_DIR=str(data),
                 PATH=path_without(tmp_path, "rsync"))
    assert result.returncode == 0, result.stderr
    assert outside.read_text() == "not the data folder's\n"
    assert (dest / "pings-0000.tsv").read_text() == LOG_0 and not (dest / "pings-0000.tsv").is_symlink()
    assert (dest / "pings-0001.tsv").read_text() == LOG_1
    # Nothing of its own left behind (the planted links are not its to remove).
    assert sorted(p.name for p in dest.iterdir()) == [
        ".pings-0000.tsv.tmp", ".pings-0001.tsv.tmp", "pings-0000.tsv", "pings-0001.tsv"]


def test_push_server_data_cp_fallback_leaves_nothing_after_a_failure(var_dir, tmp_path):
    data = tmp_path / "remote_data"
    dest = data / "server-lab1" / "var" / "pings"
    (dest / "pings-0001.tsv").mkdir(parents=True)  # a folder where a log goes: the rename fails
    result = run("push-server-data.sh", "--host", "lab1", CO2_VAR_DIR=str(var_dir), CO2_DATA_DIR=str(data),
                 PATH=path_without(tmp_path, "rsync"))
    assert result.returncode != 0
    assert sorted(p.name for p in dest.iterdir()) == ["pings-0000.tsv", "pings-0001.tsv"]
    assert (dest / "pings-0001.tsv").is_dir() and not list((dest / "pings-0001.tsv").iterdir())


def test_push_server_data_refuses_a_linked_destination(var_dir, tmp_path):
    data = tmp_path / "remote_data"
    data.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (data / "server-lab1").symlink_to(elsewhere)
    result = run("push-server-data.sh", "--host", "lab1", CO2_VAR_DIR=str(var_dir), CO2_DATA_DIR=str(data),
                 PATH=path_without(tmp_path, "rsync"))
    assert result.returncode == 1 and "symbolic link" in result.stderr
    assert list(elsewhere.iterdir()) == []
