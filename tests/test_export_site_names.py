"""The export of the real `make export`, served: sites are researchers' free
text, so its file names carry '~XX' (CSV, export_write.safe_name) and '%XX'
(Parquet's hive folders, URL-quoted); the page lists each such file as on
disk and its link downloads exactly it, while the hostile spellings of the
same names stay refused."""

from __future__ import annotations

import hashlib
import json
from urllib.parse import quote

from test_export import HEADER, line
from test_export_serving import page_rows

from datagen import U1, U2, U3, new_tree, run_make
from firmware import assert_plain_answer

SITES = {U1: "Col du Lautaret", U2: "Ås/fjell ../x 100%", U3: "Å" * 40}  # U3: names of 245-249 bytes


def test_files_of_sites_with_any_name_are_listed_as_on_disk_and_download(tmp_path, make_server):
    tree = new_tree(tmp_path)
    for unit in SITES:
        folder = tree.data_dir / unit / "data/readings"
        folder.mkdir(parents=True)
        (folder / "readings-0000.tsv").write_text("".join(line(unit, "2020-01-02", f"{h:02d}:00:00") for h in range(6)))
    tree.deploy_tsv.parent.mkdir(parents=True, exist_ok=True)
    tree.deploy_tsv.write_text(
        HEADER + "".join(f"{unit}\tn\t{site}\t5\tdeployed\t2020-01-01\t\t\n" for unit, site in SITES.items())
    )
    run_make(tree, "export")
    export = tree.pub_dir / "export"
    package = json.loads((export / "datapackage.json").read_text())
    paths = [r["path"] for r in package["resources"]]
    assert any("~" in p for p in paths) and any("%" in p for p in paths), paths  # the names this is about

    server = make_server(tmp_path)
    assert server.var_dir / "pub" == tree.pub_dir
    reply = server.request("GET", "/data/export/")
    assert reply.status == 200
    listed = page_rows(reply.body)
    assert sorted(listed) == sorted(paths)
    for path in paths:
        data = (export / path).read_bytes()
        row = listed[path]
        assert row["class"] is None, (path, row["cell"])  # not marked missing or refused
        assert row["hash"] == hashlib.sha256(data).hexdigest() and int(row["bytes"]) == len(data)
        assert row["link"] == "/data/export/" + quote(path), path
        got = server.request("GET", row["link"])
        assert_plain_answer(got)
        assert (got.status, got.body) == (200, data), path
    # The same names spelled as a way out are still refused, and logged.
    for hostile in (
        "/data/export/parquet/site=%2e%2e%2fx",
        "/data/export/csv/%2e%2e%2fdatapackage.json",
        "/data/export/%2e%2e/export/datapackage.json",
    ):
        got = server.request("GET", hostile)
        assert (got.status, got.json()["error"]) == (400, "BAD_PATH"), hostile
        assert f"GET {hostile} from=127.0.0.1 unit=- status=400 BAD_PATH" in server.log()
