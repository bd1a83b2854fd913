"""Deployments import: header, comments, blanks, short and bad lines (real make)."""

from __future__ import annotations

import pytest

from datagen import U1, U2, U3, build_tree, query, run_make, summary

LABEL = "manual/deploy_durations_tiered.tsv"


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    tree = build_tree(tmp_path_factory.mktemp("deploy"))
    return tree, run_make(tree, "import")


def test_rows_nulls_and_types(imported):
    tree, proc = imported
    assert summary(proc, "deployments") == (
        f"deployments: {LABEL} read, 5 rows imported, skipped: bad_field_count=1"
        " no_unit_id=1 bad_tier=1 bad_status=1 bad_timestamp=1"
    )
    rows = query(tree.db_file, "SELECT * FROM deploy_durations_tiered ORDER BY rowid")
    assert rows == [
        (U1, "varanger-03", "vj_re_sn_3", 23, "deployed", "2019-08-13T12:00:00", "2019-09-26T08:00:00", None),
        (U2, "varanger-01", "vj_re_sn_4", 22, "deployed", "2019-08-13", None, "still out"),
        (U3, "lab-unit", "lab", 1, "lab_check", "2019-07-01", None, None),
        (U2, "varanger-01", None, 5, "en_route", "2019-08-01T08:00", "2019-08-13T12:00:00", "by boat"),
        (U3, "last line without newline", "lab", None, None, None, None, None),
    ]
    assert query(tree.db_file, "SELECT DISTINCT typeof(tier) FROM deploy_durations_tiered WHERE tier IS NOT NULL") == [
        ("integer",)
    ]
    assert query(
        tree.db_file,
        "SELECT line_no, reason FROM rejected_lines WHERE file = ? ORDER BY line_no",
        LABEL,
    ) == [
        (10, "bad_tier"),
        (11, "bad_status"),
        (12, "bad_timestamp"),
        (13, "bad_field_count"),
        (14, "no_unit_id"),
    ]


def test_edited_file_replaces_the_table_and_missing_file_empties_it(tmp_path):
    tree = build_tree(tmp_path)
    run_make(tree, "import")
    tree.deploy_tsv.write_text(
        "unit_id\tnickname\tsite\ttier\tstatus\tstart_ts\tend_ts\tnote\n"
        f"{U1}\tvaranger-03\tvj_re_sn_3\t23\tdeployed\t2019-08-13\n"
    )
    proc = run_make(tree, "import")
    assert "1 rows imported, skipped: none" in summary(proc, "deployments")
    assert query(tree.db_file, "SELECT count(*) FROM deploy_durations_tiered") == [(1,)]
    assert query(tree.db_file, "SELECT count(*) FROM rejected_lines WHERE file = ?", LABEL) == [(0,)]
    tree.deploy_tsv.unlink()
    proc = run_make(tree, "import")
    assert summary(proc, "deployments") == (f"deployments: no file {tree.deploy_tsv} (table emptied)")
    assert query(tree.db_file, "SELECT count(*) FROM deploy_durations_tiered") == [(0,)]
    proc = run_make(tree, "import")
    assert summary(proc, "deployments").endswith("(table empty)")


def test_deployments_file_outside_data_dir(tmp_path):
    tree = build_tree(tmp_path)
    other = tmp_path / "elsewhere.tsv"
    other.write_text("header\n\n# only comments\n")
    tree.deploy_tsv = other
    proc = run_make(tree, "import")
    assert summary(proc, "deployments") == (f"deployments: {other} read, 0 rows imported, skipped: none")
