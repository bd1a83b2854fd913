"""The one place that decides what a unit may touch: safe_paths, on its own."""

from __future__ import annotations

import pytest

from co2server.chunks import store_chunk
from co2server.config import Config
from co2server.errors import ApiError
from co2server.safe_paths import check_hw_id, check_raw_path, push_target, update_path

HW = "co2unit-30aea42a50bc"


@pytest.fixture
def config(tmp_path):
    return Config(data_dir=tmp_path / "remote_data", var_dir=tmp_path / "var", db_path=tmp_path / "db")


@pytest.mark.parametrize("hw_id", [
    "co2unit-30aea42a50bc",
    "co2unit-000000000000",
])
def test_good_hardware_ids(config, hw_id):
    check_hw_id(config, hw_id)


@pytest.mark.parametrize("hw_id", [
    "co2unit-30AEA42A50BC", "co2unit-30aea42a50b", "co2unit-30aea42a50bc0", "co2unit-30aea42a50bg",
    "30aea42a50bc", "", "co2unit-30aea42a50bc\n", "..", "co2unit-",
])
def test_bad_hardware_ids(config, hw_id):
    with pytest.raises(ApiError) as err:
        check_hw_id(config, hw_id)
    assert (err.value.status, err.value.code) == (400, "BAD_HW_ID")


def test_custom_hardware_id_pattern(tmp_path):
    config = Config(tmp_path, tmp_path, tmp_path / "db", hw_id_pattern=r"unit-[0-9]{3}")
    check_hw_id(config, "unit-042")
    with pytest.raises(ApiError):
        check_hw_id(config, HW)


@pytest.mark.parametrize("relpath, folder, name", [
    ("errors/errors-0000.txt", ("errors",), "errors-0000.txt"),
    ("data/readings/readings-0000.tsv", ("data", "readings"), "readings-0000.tsv"),
    ("data/other_sensor/x-1_2.bin", ("data", "other_sensor"), "x-1_2.bin"),
])
def test_allowed_push_targets(config, relpath, folder, name):
    target = push_target(config, HW, relpath)
    assert (target.folder, target.name) == (folder, name)
    assert target.file_path == str(config.data_dir / HW / relpath)


@pytest.mark.parametrize("relpath, status, code", [
    ("updates/update-1/flash/main.py", 403, "PUSH_NOT_ALLOWED"),
    ("updates/x", 403, "PUSH_NOT_ALLOWED"),
    ("readings-0000.tsv", 403, "PUSH_NOT_ALLOWED"),
    ("data/readings-0000.tsv", 403, "PUSH_NOT_ALLOWED"),
    ("data/readings/sub/readings-0000.tsv", 403, "PUSH_NOT_ALLOWED"),
    ("errors/sub/errors-0000.txt", 403, "PUSH_NOT_ALLOWED"),
    ("superseded/x/errors/e.txt", 403, "PUSH_NOT_ALLOWED"),
    ("var/pings/pings-0000.tsv", 403, "PUSH_NOT_ALLOWED"),
    ("data/../updates/x", 400, "BAD_NAME"),
    ("data/readings/..", 400, "BAD_NAME"),
    ("data/readings/.hidden", 400, "BAD_NAME"),
    ("errors/", 400, "BAD_NAME"),
    ("/etc/passwd", 400, "BAD_NAME"),
    ("errors/a b", 400, "BAD_NAME"),
    ("errors/a\x00b", 400, "BAD_NAME"),
    ("errors/a\\b", 400, "BAD_NAME"),
    ("errors/" + "a" * 129, 400, "BAD_NAME"),
])
def test_refused_push_targets(config, relpath, status, code):
    with pytest.raises(ApiError) as err:
        push_target(config, HW, relpath)
    assert (err.value.status, err.value.code) == (status, code)


def test_symlinks_inside_the_data_folder_are_refused(config, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    unit = config.data_dir / HW
    unit.mkdir(parents=True)
    (unit / "data").symlink_to(outside)
    target = push_target(config, HW, "data/readings/readings-0000.tsv")  # names only
    with pytest.raises(ApiError) as err:  # the folder is checked when writing, under its lock
        store_chunk(target, 0, b"x", 1000)
    assert err.value.code == "SYMLINK_REFUSED"
    assert list(outside.iterdir()) == []
    (unit / "errors").mkdir()
    (unit / "errors" / "errors-0000.txt").symlink_to(outside / "target")
    target = push_target(config, HW, "errors/errors-0000.txt")
    with pytest.raises(ApiError) as err:  # the folder is fine, the file is opened without following links
        store_chunk(target, 0, b"x", 1000)
    assert err.value.code == "SYMLINK_REFUSED"
    assert not (outside / "target").exists()
    (unit / "updates").symlink_to(outside)
    with pytest.raises(ApiError):
        update_path(config, HW, "update-1")


def test_a_folder_swapped_for_a_symlink_after_use_is_refused(config, tmp_path):
    target = push_target(config, HW, "data/readings/readings-0000.tsv")
    store_chunk(target, 0, b"first\n", 1000)
    store_chunk(target, 6, b"second\n", 1000)  # the folder was verified and remembered
    outside = tmp_path / "outside"
    (outside / "readings").mkdir(parents=True)
    unit = config.data_dir / HW
    (unit / "data").rename(tmp_path / "moved")
    (unit / "data").symlink_to(outside)
    with pytest.raises(ApiError) as err:
        store_chunk(target, 0, b"first\n", 1000)
    assert err.value.code == "SYMLINK_REFUSED"
    assert list((outside / "readings").iterdir()) == []


def test_a_file_where_the_folder_should_be_is_refused(config):
    unit = config.data_dir / HW
    unit.mkdir(parents=True)
    (unit / "errors").write_bytes(b"not a folder")  # the upload's own folder
    (unit / "data").write_bytes(b"not a folder either")  # a folder on the way to it
    for relpath in ("errors/errors-0000.txt", "data/readings/readings-0000.tsv"):
        with pytest.raises(ApiError) as err:
            store_chunk(push_target(config, HW, relpath), 0, b"x", 1000)
        assert (err.value.status, err.value.code) == (403, "NOT_A_FOLDER")
    assert (unit / "errors").read_bytes() == b"not a folder"
    assert (unit / "data").read_bytes() == b"not a folder either"


@pytest.mark.parametrize("raw", [
    "/ou/x/push-sequential/data/%2e%2e/x", "/ou/x/a%2Fb", "/ou/x/a%00", "/ou/x/a\x01",
    "/ou/x/../y", "/ou/x/./y", "/ou/x//y", "/ou/x/a\\b", "/ou/x/a b",
])
def test_raw_paths_refused(raw):
    with pytest.raises(ApiError) as err:
        check_raw_path(raw)
    assert err.value.code == "BAD_PATH"


def test_plain_raw_path_accepted():
    check_raw_path(f"/ou/{HW}/push-sequential/data/readings/readings-0000.tsv")
