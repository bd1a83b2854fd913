"""Updates: only complete update-* folders are offered; files come back byte-exact."""

from __future__ import annotations

import json

from conftest import direct_and_through_nginx
from firmware import UnitSim, http_request

HW = "co2unit-30aea42a50bc"


def make_update(server, name, files):
    base = server.data_dir / HW / "updates" / name
    base.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_bytes(data)
    return base


@direct_and_through_nginx
def test_no_updates_folder_is_404(server):
    reply = http_request(server.port, "GET", f"/ou/{HW}/updates?recursive=False")
    assert reply.status == 404 and reply.json()["error"] == "NOT_FOUND"


@direct_and_through_nginx
def test_unit_pulls_the_last_update_once(server, tmp_path):
    make_update(server, "update-2019-09-01", {"flash/main.py": b"old\n"})
    files = {"flash/main.py": b"print('new')\n", "flash/lib/x.py": bytes(range(256)),
             "conf-patch/ou-id.json": b'{"sync_dest": ["http://a:8080/k"]}'}
    make_update(server, "update-2019-10-01", files)
    unit = UnitSim(HW, tmp_path / "sd", server.port)
    assert unit.pull_updates() == files
    assert unit.fetched_updates == ["update-2019-10-01"]
    listing = http_request(server.port, "GET", f"/ou/{HW}/updates/update-2019-10-01?recursive=True")
    assert listing.json() == ["conf-patch/ou-id.json", "flash/lib/x.py", "flash/main.py"]
    assert unit.pull_updates() is None  # fetched once only
    log = (server.var_dir / "update-fetches.tsv").read_text().splitlines()
    assert sorted(line.split("\t")[2] for line in log) == sorted(f"update-2019-10-01/{r}" for r in files)


@direct_and_through_nginx
def test_empty_half_built_and_hidden_updates_are_not_offered(server, tmp_path):
    make_update(server, "update-2019-09-01", {"flash/main.py": b"x\n"})
    (server.data_dir / HW / "updates" / "update-2030-empty").mkdir()
    make_update(server, "update-2030-dirs-only", {}).joinpath("flash").mkdir()
    make_update(server, "update-2030-hidden-only", {".partial": b"x"})
    make_update(server, ".tmp-update-2030-building", {"flash/main.py": b"x"})
    make_update(server, "update-2030-temp.tmp", {"flash/main.py": b"x"})
    (server.data_dir / HW / "updates" / "update-2030-file").write_bytes(b"not a folder")
    (server.data_dir / HW / "updates" / "update-2031-link").symlink_to(server.data_dir / HW / "updates" / "update-2019-09-01")
    reply = http_request(server.port, "GET", f"/ou/{HW}/updates?recursive=False")
    assert reply.json() == ["update-2019-09-01"]
    # Each refused the way its kind is everywhere: no such complete update,
    # a name that is not plain, a symlink.
    for name, status, code in (("update-2030-empty", 404, "NOT_FOUND"), (".tmp-update-2030-building", 400, "BAD_NAME"),
                               ("update-2031-link", 403, "SYMLINK_REFUSED")):
        got = http_request(server.port, "GET", f"/ou/{HW}/updates/{name}?recursive=True")
        assert (got.status, got.json()["error"]) == (status, code), name
    unit = UnitSim(HW, tmp_path / "sd", server.port)
    assert unit.cycle() == "updated"
    assert unit.fetched_updates == ["update-2019-09-01"]
    assert unit.cycle() == "ok"


def test_hidden_files_inside_an_update_are_not_listed_or_served(server):
    make_update(server, "update-1", {"flash/main.py": b"x", "flash/.swp": b"secret", ".git/config": b"x"})
    listing = http_request(server.port, "GET", f"/ou/{HW}/updates/update-1?recursive=True")
    assert listing.json() == ["flash/main.py"]
    assert http_request(server.port, "GET", f"/ou/{HW}/updates/update-1/flash/.swp").status == 400
    assert http_request(server.port, "GET", f"/ou/{HW}/updates/update-1/flash/nothing.py").status == 404


def test_non_recursive_listing_of_an_update(server):
    make_update(server, "update-1", {"flash/main.py": b"x", "conf-patch/a.json": b"{}"})
    reply = http_request(server.port, "GET", f"/ou/{HW}/updates/update-1?recursive=False")
    assert json.loads(reply.body) == ["conf-patch", "flash"]


def test_units_other_folders_are_never_served(server):
    (server.data_dir / HW / "data" / "readings").mkdir(parents=True)
    (server.data_dir / HW / "data" / "readings" / "readings-0000.tsv").write_bytes(b"x")
    make_update(server, "update-1", {"flash/main.py": b"x"})
    for path, status, code in (
        ("updates/update-1/../../data/readings/readings-0000.tsv", 400, "BAD_PATH"),  # '..' is refused as such
        ("updates/data/readings/readings-0000.tsv", 404, "NOT_FOUND"),  # not below a complete update-*
        ("data/readings/readings-0000.tsv", 404, "NOT_FOUND"),  # no URL serves data/
    ):
        reply = http_request(server.port, "GET", f"/ou/{HW}/{path}")
        assert (reply.status, reply.json()["error"]) == (status, code), path
