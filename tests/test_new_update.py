"""scripts/new-update.sh: updates are published whole, sort last, and reach the unit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from firmware import UnitSim

SCRIPT = ROOT / "scripts" / "new-update.sh"
A, B, C = "co2unit-30aea42a50bc", "co2unit-30aea42a5268", "co2unit-30aea4ab12cd"


def run(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CO2_")}
    env["CO2_DATA_DIR"] = str(data_dir)
    return subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60)


def tree(folder: Path) -> list[str]:
    """Every path below `folder`, hidden ones included."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.fixture
def sources(tmp_path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "main.py").write_bytes(b"print('new firmware')\n")
    (src / "comm.py").write_bytes(b"# comm\n")
    (src / "ou-id.json").write_text(json.dumps({"site_code": "varanger-09"}))
    (src / "broken.json").write_text('{"site_code": ')
    (src / "list.json").write_text("[1, 2]")
    return src


def test_help():
    result = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert "usage: new-update.sh" in result.stdout and "--conf-patch" in result.stdout


def test_published_update_reaches_the_unit(server, sources, tmp_path):
    (server.data_dir / A / "errors").mkdir(parents=True)
    result = run(server.data_dir, A, "20260105-fix", "--flash", f"{sources}/main.py:main.py",
                 "--flash", f"{sources}/comm.py:lib/comm.py", "--conf-patch", f"{sources}/ou-id.json")
    assert result.returncode == 0, result.stderr
    assert f'{A}: GET /ou/{A}/updates will answer ["update-20260105-fix"]' in result.stdout
    assert "    flash/lib/comm.py (7 bytes)" in result.stdout

    reply = server.request("GET", f"/ou/{A}/updates?recursive=False")
    assert (reply.status, reply.json()) == (200, ["update-20260105-fix"])
    reply = server.request("GET", f"/ou/{A}/updates/update-20260105-fix?recursive=True")
    assert reply.json() == ["conf-patch/ou-id.json", "flash/lib/comm.py", "flash/main.py"]

    unit = UnitSim(A, tmp_path / "sd", server.port)
    assert unit.pull_updates() == {
        "conf-patch/ou-id.json": (sources / "ou-id.json").read_bytes(),
        "flash/lib/comm.py": b"# comm\n",
        "flash/main.py": b"print('new firmware')\n",
    }
    assert not [p for p in tree(server.data_dir / A / "updates") if p.startswith(".")]

    # A later one sorts last and is what the unit gets next.
    result = run(server.data_dir, A, "20260106-conf", "--conf-patch", f"{sources}/ou-id.json")
    assert result.returncode == 0, result.stderr
    assert '["update-20260105-fix", "update-20260106-conf"]' in result.stdout
    assert unit.pull_updates() == {"conf-patch/ou-id.json": (sources / "ou-id.json").read_bytes()}


REFUSALS = [
    # (arguments after the unit, part of the message)
    (["20260105-x", "--conf-patch", "{src}/broken.json"], "not valid JSON"),
    (["20260105-x", "--conf-patch", "{src}/list.json"], "must be a JSON object"),
    (["20260105-x", "--conf-patch", "{src}/ou-id.json", "--conf-patch", "{src}/broken.json"], "not valid JSON"),
    (["20260101-older", "--flash", "{src}/main.py:main.py"], "'update-20260102-existing' sorts after it"),
    (["20260102-existing", "--flash", "{src}/main.py:main.py"], "already exists"),
    (["20260105-x", "--flash", "{src}/main.py:../main.py"], "not a safe relative path"),
    (["20260105-x", "--flash", "{src}/main.py:/etc/passwd"], "not a safe relative path"),
    (["20260105-x", "--flash", "{src}/missing.py:main.py"], "not a readable file"),
    (["20260105-x"], "at least one file"),
    (["../x", "--flash", "{src}/main.py:main.py"], "not a plain name"),
    (["20260105-x.tmp", "--flash", "{src}/main.py:main.py"], "not a plain name"),
    (["20260105-x", "--flash", "{src}/main.py:lib", "--flash", "{src}/comm.py:lib/comm.py"], "both a file and a folder"),
    (["20260105-x", "--flash", "{src}/comm.py:lib/comm.py", "--flash", "{src}/main.py:lib"], "both a file and a folder"),
]


@pytest.mark.parametrize(("args", "message"), REFUSALS)
def test_refused_and_nothing_left_behind(tmp_path, sources, args, message):
    data = tmp_path / "remote_data"
    existing = data / A / "updates" / "update-20260102-existing" / "flash"
    existing.mkdir(parents=True)
    (existing / "main.py").write_text("old\n")
    before = tree(data)
    result = run(data, A, *[a.format(src=sources) for a in args])
    assert result.returncode == 2, result.stdout
    assert message in result.stderr, result.stderr
    assert result.stderr.startswith("new-update: error: ")
    assert "Traceback" not in result.stderr
    assert tree(data) == before  # no new folder, no hidden temp folder


def test_refused_names_suggest_a_date_based_name(tmp_path, sources):
    data = tmp_path / "remote_data"
    (data / A / "updates" / "update-1-old" / "flash").mkdir(parents=True)
    (data / A / "updates" / "update-1-old" / "flash" / "main.py").write_text("x")
    result = run(data, A, "0-fix", "--flash", f"{sources}/main.py:main.py")
    assert result.returncode == 2
    assert "'update-1-old' sorts after it" in result.stderr and "e.g. '20" in result.stderr


def test_unknown_unit_and_bad_id(tmp_path, sources):
    data = tmp_path / "remote_data"
    data.mkdir()
    result = run(data, A, "x", "--flash", f"{sources}/main.py:main.py")
    assert result.returncode == 2 and "--new-unit" in result.stderr
    assert tree(data) == []
    result = run(data, "co2unit-XYZ", "x", "--flash", f"{sources}/main.py:main.py")
    assert result.returncode == 2 and "neither 'all' nor a hardware ID" in result.stderr
    result = run(data, A, "x", "--new-unit", "--flash", f"{sources}/main.py:main.py")
    assert result.returncode == 0, result.stderr
    assert tree(data) == [A, f"{A}/updates", f"{A}/updates/update-x", f"{A}/updates/update-x/flash",
                          f"{A}/updates/update-x/flash/main.py"]


def test_all_units_get_it_or_none_does(tmp_path, sources):
    data = tmp_path / "remote_data"
    for unit in (A, B, C):
        (data / unit / "data" / "readings").mkdir(parents=True)
    (data / "manual").mkdir()
    result = run(data, "all", "20260105-conf", "--conf-patch", f"{sources}/ou-id.json")
    assert result.returncode == 0, result.stderr
    assert "published update-20260105-conf for 3 units" in result.stdout
    for unit in (A, B, C):
        assert tree(data / unit / "updates") == [
            "update-20260105-conf", "update-20260105-conf/conf-patch", "update-20260105-conf/conf-patch/ou-id.json"]
    assert tree(data / "manual") == []

    # One unit has a later update: nobody gets the new one.
    (data / B / "updates" / "update-zzz" / "flash").mkdir(parents=True)
    (data / B / "updates" / "update-zzz" / "flash" / "main.py").write_text("x")
    before = tree(data)
    result = run(data, "all", "20260106-conf", "--conf-patch", f"{sources}/ou-id.json")
    assert result.returncode == 2 and "'update-zzz' sorts after it" in result.stderr
    assert tree(data) == before

    result = run(data, "all", "20260107-x", "--dry-run", "--flash", f"{sources}/main.py:main.py")
    assert result.returncode == 2  # update-zzz still blocks B
    result = run(data, C, "20260107-x", "--dry-run", "--flash", f"{sources}/main.py:main.py")
    assert result.returncode == 0 and "dry run: nothing written" in result.stdout
    assert tree(data) == before


def test_a_failure_while_building_leaves_nothing_behind(tmp_path, monkeypatch):
    """Whatever fails once the hidden folder exists (here: a payload the checks would refuse), it goes."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("new_update", ROOT / "scripts" / "new_update.py")
    new_update = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "new_update", new_update)  # dataclasses look their module up
    spec.loader.exec_module(new_update)
    data = tmp_path / "remote_data"
    (data / A / "errors").mkdir(parents=True)
    monkeypatch.setenv("CO2_DATA_DIR", str(data))
    payload = new_update.Payload({"flash/lib": b"x", "flash/lib/comm.py": b"y"})
    before = tree(data)
    with pytest.raises(OSError):
        new_update.publish(new_update.Config.from_environ(), A, "20260105-x", payload, allow_new=False)
    assert tree(data) == before  # no updates/, no .tmp-update-*
