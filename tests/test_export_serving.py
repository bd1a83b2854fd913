"""The research dataset served from var/pub/export/: the page, the files, and what is refused.

The export here is built by the test from real files (CSV, a Parquet part
written by pyarrow, a JSON file) with a datapackage.json whose bytes,
sha256 and rows are computed from those files; the lead's end-to-end test
runs the real `make export` in front of the same routes.
"""

from __future__ import annotations

import base64
import hashlib
import html
import http.client
import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from firmware import assert_plain_answer, wait_until

SECRET = b"SECRET-OUTSIDE-THE-EXPORT"
CSV_TYPE = "text/csv; charset=utf-8"
PARQUET_TYPE = "application/vnd.apache.parquet"


def _csv(rows: int, site: str) -> bytes:
    lines = ["ts,unit_id,site,co2_mean_ppm,qc_flags"]
    lines += [f"2020-01-{1 + i // 1440:02d}T{i // 60 % 24:02d}:{i % 60:02d}:00Z,co2unit-30aea42a50bc,{site},{400 + i % 97}.5,"
              for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def build_export(pub: Path, description: str = "Readings at site vj_re_sn_3") -> dict[str, bytes]:
    """A real export folder in `pub`/export; returns its files' bytes by path."""
    export = pub / "export"
    files: dict[str, bytes] = {
        "csv/site-vj_re_sn_3.csv": _csv(12_000, "vj_re_sn_3"),  # ~600 KB: several blocks
        "csv/unit-co2unit-30aea4ab12cd.csv": _csv(3, ""),
        "daily/daily.csv": b"unit_id,day,n\nco2unit-30aea42a50bc,2020-01-01,1440\n",
    }
    part = export / "parquet" / "site=vj_re_sn_3" / "year=2020" / "part-0.parquet"
    part.parent.mkdir(parents=True)
    pq.write_table(pa.table({"ts": pa.array([0, 60, 120], pa.timestamp("s", tz="UTC")),
                             "co2_mean_ppm": [401.5, None, 402.0]}), part)
    for path, data in files.items():
        (export / path).parent.mkdir(parents=True, exist_ok=True)
        (export / path).write_bytes(data)
    files["parquet/site=vj_re_sn_3/year=2020/part-0.parquet"] = part.read_bytes()
    rows = {p: (d.count(b"\n") - 1 if p.endswith(".csv") else pq.read_metadata(export / p).num_rows) for p, d in files.items()}
    package = {
        "name": "co2-readings", "created": "2026-12-04T10:20:00Z", "version": "0.9.1+test",
        "temporal": {"start": "2020-01-01T00:00:00Z", "end": "2020-01-09T07:59:00Z"},
        "resources": [
            {"name": re.sub(r"[^a-z0-9]+", "-", p.lower()), "path": p,
             "format": p.rsplit(".", 1)[1], "mediatype": CSV_TYPE if p.endswith(".csv") else PARQUET_TYPE,
             "bytes": len(d), "hash": "sha256:" + hashlib.sha256(d).hexdigest(), "rows": rows[p],
             "description": description if p.startswith("csv/site") else "a file of the export",
             "schema": {"fields": []}}
            for p, d in files.items()
        ],
    }
    (export / "datapackage.json").write_text(json.dumps(package, indent=1))
    files["datapackage.json"] = (export / "datapackage.json").read_bytes()
    return files


class FilesTable(HTMLParser):
    """The rows of the page's table#files: link, path text, data-rows, data-bytes, hash, description."""

    def __init__(self):
        super().__init__()
        self.rows, self.cell, self.in_table = [], None, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("id") == "files":
            self.in_table = True
        elif self.in_table and tag == "tr":
            self.rows.append({"cells": [], "attrs": [], "link": None, "cls": attrs.get("class")})
        elif self.in_table and tag == "td":
            self.rows[-1]["cells"].append("")
            self.rows[-1]["attrs"].append(attrs)
        elif self.in_table and tag == "a" and self.rows:
            self.rows[-1]["link"] = attrs.get("href")

    def handle_endtag(self, tag):
        if tag == "table":
            self.in_table = False

    def handle_data(self, data):
        if self.in_table and self.rows and self.rows[-1]["cells"]:
            self.rows[-1]["cells"][-1] += data


def page_rows(body: bytes) -> dict[str, dict]:
    table = FilesTable()
    table.feed(body.decode())
    listed = {}
    for row in table.rows[1:]:  # after the head row
        path = row["cells"][0].split("\n")[0].strip()
        cells = [cell.strip() for cell in row["cells"]]
        listed[path] = {"link": row["link"], "rows": row["attrs"][1]["data-rows"], "bytes": row["attrs"][2]["data-bytes"],
                        "rows_text": cells[1], "hash": cells[3], "description": cells[4],
                        "cell": cells[0], "class": row["cls"]}
    return listed


def test_the_page_lists_every_file_and_every_link_downloads_it(server):
    files = build_export(server.var_dir / "pub")
    package = json.loads(files["datapackage.json"])
    reply = server.request("GET", "/data/export/")
    assert_plain_answer(reply)
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/html")
    text = reply.body.decode()
    for shown in ("2020-01-01T00:00:00Z", "2020-01-09T07:59:00Z", "2026-12-04T10:20:00Z", "0.9.1+test",
                  'href="/data/export/datapackage.json"', "database/README.md"):
        assert shown in text
    listed = page_rows(reply.body)
    assert sorted(listed) == sorted(r["path"] for r in package["resources"])
    for path, data in files.items():
        if path == "datapackage.json":
            continue
        row = listed[path]
        assert int(row["bytes"]) == len(data)
        assert row["hash"] == hashlib.sha256(data).hexdigest()
        expected_rows = data.count(b"\n") - 1 if path.endswith(".csv") else 3
        assert int(row["rows"]) == expected_rows and row["rows_text"].replace(",", "") == str(expected_rows)
        assert row["class"] is None and "missing" not in row["cell"]
    assert listed["csv/site-vj_re_sn_3.csv"]["description"].startswith("Readings at site vj_re_sn_3")
    # Every link (and the package's own) downloads the very bytes, typed and sized.
    links = {path: row["link"] for path, row in listed.items()} | {"datapackage.json": "/data/export/datapackage.json"}
    for path, link in links.items():
        reply = server.request("GET", link)
        assert_plain_answer(reply)
        assert reply.status == 200, (link, reply.body[:200])
        assert reply.body == files[path], link
        assert int(reply.headers["content-length"]) == len(files[path])
        expected = {"csv": CSV_TYPE, "parquet": PARQUET_TYPE, "json": "application/json"}[path.rsplit(".", 1)[1]]
        assert reply.headers["content-type"] == expected, link
        assert reply.headers["etag"] and reply.headers["last-modified"] and reply.headers["accept-ranges"] == "bytes"
    # The Parquet part really is one: pyarrow reads what was downloaded.
    downloaded = server.root / "downloaded.parquet"
    downloaded.write_bytes(server.request("GET", links["parquet/site=vj_re_sn_3/year=2020/part-0.parquet"]).body)
    assert pq.read_table(downloaded).column("co2_mean_ppm").to_pylist() == [401.5, None, 402.0]


def test_range_and_conditional_requests(server):
    files = build_export(server.var_dir / "pub")
    data = files["csv/site-vj_re_sn_3.csv"]
    url = "/data/export/csv/site-vj_re_sn_3.csv"
    first = server.request("GET", url)
    etag = first.headers["etag"]
    for wanted, (start, end) in [("bytes=100-199", (100, 200)), ("bytes=-10", (len(data) - 10, len(data))),
                                 ("bytes=300000-", (300000, len(data)))]:
        reply = server.request("GET", url, extra_headers={"Range": wanted})
        assert_plain_answer(reply)
        assert reply.status == 206, wanted
        assert reply.body == data[start:end], wanted
        assert reply.headers["content-range"] == f"bytes {start}-{end - 1}/{len(data)}"
        assert int(reply.headers["content-length"]) == end - start
    head = server.request("HEAD", url)
    assert (head.status, head.body, int(head.headers["content-length"])) == (200, b"", len(data))
    reply = server.request("GET", url, extra_headers={"Range": f"bytes={len(data)}-"})
    assert reply.status == 416 and reply.headers["content-range"] == f"bytes */{len(data)}"
    assert reply.json()["error"] == "RANGE_NOT_SATISFIABLE"
    assert server.request("GET", url, extra_headers={"If-None-Match": etag}).status == 304
    assert server.request("GET", url, extra_headers={"If-None-Match": '"other"'}).body == data
    # If-Range with the current validator: the range; with a stale one: the whole file.
    assert server.request("GET", url, extra_headers={"Range": "bytes=0-9", "If-Range": etag}).body == data[:10]
    stale = server.request("GET", url, extra_headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert (stale.status, stale.body) == (200, data)
    # A new export changes the validator.
    os.utime(server.var_dir / "pub" / "export" / "csv" / "site-vj_re_sn_3.csv", (1_600_000_000, 1_600_000_000))
    assert server.request("GET", url, extra_headers={"If-None-Match": etag}).status == 200


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else "-")
            for p in sorted(folder.rglob("*")) if not (p.is_fifo())}


def test_hostile_paths_are_refused_and_logged(server):
    pub = server.var_dir / "pub"
    build_export(pub)
    export = pub / "export"
    (server.var_dir / "secret.txt").write_bytes(SECRET)
    outside = server.root / "outside"
    outside.mkdir()
    (outside / "x.csv").write_bytes(SECRET)
    (pub / "secret.csv").write_bytes(SECRET)
    (export / ".hidden.csv").write_bytes(SECRET)
    os.symlink(server.var_dir / "secret.txt", export / "csv" / "link.csv")  # a symlink as the file
    os.symlink(outside, export / "linked")  # a symlink as a folder on the way
    os.mkfifo(export / "csv" / "fifo.csv")
    before = _tree(export)
    cases = {
        # raw path: (status, error code)
        "/data/export/../secret.csv": None,  # resolved by uWSGI before routing: any 4xx
        "/data/export/..%2fsecret.csv": (400, "BAD_PATH"),
        "/data/export/%2e%2e/secret.csv": (400, "BAD_PATH"),
        "/data/export/%2e%2e%2f%2e%2e%2fsecret.txt": (400, "BAD_PATH"),
        "/data/export/csv/%2e%2e/%2e%2e/secret.csv": (400, "BAD_PATH"),
        "/data/export//etc/passwd": (404, "NOT_FOUND"),  # no route: a file's path never starts with '/'
        "/data/export/%2fetc%2fpasswd": (404, "NOT_FOUND"),  # decoded before routing: the same
        "/data/export/csv%5c..%5c..%5csecret.csv": (400, "BAD_PATH"),
        "/data/export/csv\\..\\..\\secret.csv": (400, "BAD_PATH"),
        "/data/export/csv/site-vj_re_sn_3.csv%00.json": (400, "BAD_PATH"),
        "/data/export/.hidden.csv": (400, "BAD_PATH"),
        "/data/export/%2ehidden.csv": (400, "BAD_PATH"),
        "/data/export/%ff%fe.csv": (400, "BAD_PATH"),
        "/data/export/csv/link.csv": (403, "SYMLINK_REFUSED"),
        "/data/export/linked/x.csv": (403, "SYMLINK_REFUSED"),
        "/data/export/csv/fifo.csv": (404, "NOT_A_FILE"),
        "/data/export/csv": (404, "NOT_A_FILE"),
        "/data/export/csv/": (404, "NOT_A_FILE"),
        "/data/export/parquet/site=vj_re_sn_3": (404, "NOT_A_FILE"),
        "/data/export/csv/site-vj_re_sn_3.csv/x": (404, "NOT_FOUND"),
        "/data/export/csv/none.csv": (404, "NOT_FOUND"),
    }
    for path, expected in cases.items():
        reply = server.request("GET", path, timeout=5)  # the FIFO answers at once, or this times out
        assert_plain_answer(reply)
        assert 400 <= reply.status < 500, (path, reply.status)
        assert SECRET not in reply.body, path
        assert reply.headers["content-type"] == "application/json", path
        if expected:
            assert (reply.status, reply.json()["error"]) == expected, (path, reply.body)
    for path, expected in cases.items():
        if expected:
            assert f"GET {path} from=127.0.0.1 unit=- status={expected[0]} {expected[1]}" in server.log(), path
    assert "(refused: link.csv is a symbolic link)" in server.log()
    assert "(refused: linked is a symbolic link)" in server.log()
    assert "(refused: a FIFO)" in server.log()
    assert "Traceback" not in server.log()
    assert _tree(export) == before  # nothing changed
    assert server.request("GET", "/healthz", timeout=5).status == 200

    # The export folder itself swapped for a symlink: refused too, the page included.
    shutil.move(export, pub / "real-export")
    os.symlink(pub / "real-export", export)
    reply = server.request("GET", "/data/export/csv/site-vj_re_sn_3.csv")
    assert (reply.status, reply.json()["error"]) == (403, "SYMLINK_REFUSED")
    reply = server.request("GET", "/data/export/")
    assert reply.status == 503 and b"symbolic link" in reply.body


def test_no_export_yet_says_how_to_make_one(server):
    for path in ("/data/export/", "/data/export"):
        reply = server.request("GET", path)
        assert_plain_answer(reply)
        assert reply.status == 200 and reply.headers["content-type"].startswith("text/html"), path
        text = reply.body.decode()
        assert "has not been exported yet" in text and "make -C database export" in text
        assert "Traceback" not in text
    reply = server.request("GET", "/data/export/datapackage.json")
    assert (reply.status, reply.json()["error"]) == (404, "NOT_FOUND")


def test_a_broken_package_is_a_clear_503(server):
    pub = server.var_dir / "pub"
    build_export(pub)
    package = pub / "export" / "datapackage.json"
    for content, says in [
        (b'{"resources": [', "not valid UTF-8 JSON"),
        (b"\xff\xfe{}", "not valid UTF-8 JSON"),
        (b'{"resources": {"path": "x"}}', 'a "resources" list'),
        (b"[1, 2]", 'a "resources" list'),
        (None, "a FIFO"),
    ]:
        package.unlink()
        if content is None:
            os.mkfifo(package)
        else:
            package.write_bytes(content)
        reply = server.request("GET", "/data/export/", timeout=5)
        assert_plain_answer(reply)
        assert reply.status == 503, content
        assert reply.headers["content-type"].startswith("text/html")
        text = html.unescape(reply.body.decode())
        assert "cannot be listed right now" in text and says in text and "make -C database export" in text, content
    assert server.log().count("export page: ") == 5
    assert "Traceback" not in server.log()
    # The files themselves are still served.
    assert server.request("GET", "/data/export/daily/daily.csv").status == 200


def test_missing_or_changed_files_are_marked_and_field_text_is_escaped(server):
    pub = server.var_dir / "pub"
    build_export(pub, description='<script>alert("x")</script> & co')
    export = pub / "export"
    (export / "daily" / "daily.csv").unlink()
    with open(export / "csv" / "unit-co2unit-30aea4ab12cd.csv", "ab") as f:
        f.write(b"more\n")
    package = json.loads((export / "datapackage.json").read_text())
    package["resources"].append({"path": "../../secret<b>.csv", "rows": "many", "bytes": -1})
    package["resources"].append("not an object")
    package.pop("version")
    package["software"] = {"name": "co2unit-server", "version": "1.4.0"}
    (export / "datapackage.json").write_text(json.dumps(package))
    reply = server.request("GET", "/data/export/")
    assert reply.status == 200
    text = reply.body.decode()
    assert "<script>alert" not in text and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; co" in text
    assert "secret<b>" not in text and "secret&lt;b&gt;.csv" in text
    assert "1.4.0" in text
    listed = page_rows(reply.body)
    assert "missing on disk" in listed["daily/daily.csv"]["cell"] and listed["daily/daily.csv"]["link"] is None
    changed = listed["csv/unit-co2unit-30aea4ab12cd.csv"]
    assert re.search(r"changed on disk: \d+ bytes, not \d+", changed["cell"]) and changed["class"] == "missing"
    assert listed["../../secret<b>.csv"]["link"] is None and listed["../../secret<b>.csv"]["rows"] == ""
    assert "4 of the files listed" in text


# --- through the production front -------------------------------------------------

OPERATOR = ("ada", "snow under the tundra")


def https_get(front, path, headers=None, auth=True):
    conn = http.client.HTTPSConnection("127.0.0.1", front.people_port, context=front.tls.client_context(), timeout=60)
    headers = dict(headers or {})
    if auth:
        headers["Authorization"] = https_get.auth
    conn.request("GET", path, headers=headers)
    reply = conn.getresponse()
    body = reply.read()
    conn.close()
    return reply.status, {k.lower(): v for k, v in reply.getheaders()}, body


https_get.auth = "Basic " + base64.b64encode(":".join(OPERATOR).encode()).decode()


def test_export_through_nginx_peoples_door_only(make_front):
    front = make_front()
    front.add_operator(*OPERATOR)
    files = build_export(front.var_dir / "pub")
    big_path = "csv/site-big.csv"
    big = front.var_dir / "pub" / "export" / big_path
    with open(big, "wb") as f:  # 50 MB, written in blocks
        block = _csv(20_000, "big")
        while f.tell() < 50_000_000:
            f.write(block)
    size = big.stat().st_size
    digest = hashlib.sha256(big.read_bytes()).hexdigest()
    # The people's door, behind the login.
    assert https_get(front, "/data/export/", auth=False)[0] == 401
    assert https_get(front, f"/data/export/{big_path}", auth=False)[0] == 401
    status, _, body = https_get(front, "/data/export/")
    assert status == 200 and set(page_rows(body)) == {p for p in files if p != "datapackage.json"}
    # A client that reads slowly holds nginx, not uWSGI: uWSGI has sent (and logged) the whole
    # 50 MB answer while the client has read 1 MB of it.
    conn = http.client.HTTPSConnection("127.0.0.1", front.people_port, context=front.tls.client_context(), timeout=60)
    conn.request("GET", f"/data/export/{big_path}", headers={"Authorization": https_get.auth})
    slow = conn.getresponse()
    assert slow.status == 200 and len(slow.read(1 << 20)) == 1 << 20
    assert wait_until(lambda: f'"GET /data/export/{big_path} ' in front.log(), timeout=30), front.log()[-2000:]
    conn.close()
    status, headers, body = https_get(front, f"/data/export/{big_path}")
    assert status == 200 and len(body) == size == int(headers["content-length"])
    assert hashlib.sha256(body).hexdigest() == digest and headers["content-type"] == CSV_TYPE
    status, headers, body = https_get(front, f"/data/export/{big_path}", {"Range": "bytes=40000000-40000099"})
    assert status == 206 and body == big.read_bytes()[40_000_000:40_000_100]
    (front.var_dir / "pub" / "secret.csv").write_bytes(SECRET)
    for path in ("/data/export/csv/%2e%2e/%2e%2e/secret.csv", "/data/export/..%2fsecret.csv"):
        status, _, body = https_get(front, path)  # nginx resolves the first for its routing; the app sees it raw
        assert 400 <= status < 500 and SECRET not in body and json.loads(body)["error"], path
    # The units' door: none of it.
    for path in ("/data/export/", "/data/export/datapackage.json", f"/data/export/{big_path}"):
        reply = front.request("GET", path)
        assert (reply.status, reply.json()["error"]) == (404, "NOT_FOUND"), path
        assert b"vj_re_sn_3" not in reply.body
