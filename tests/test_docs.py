"""The README and the code must agree."""

from __future__ import annotations

import re
from pathlib import Path

from co2server.config import SETTINGS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_every_setting_is_documented_with_its_default():
    rows = dict(re.findall(r"^\| `(CO2_[A-Z_]+)` \| ([^|]+) \|", README, re.M))
    for setting in SETTINGS.values():
        assert setting.env in rows, f"{setting.env} missing from README's Configure table"
        shown = rows[setting.env].replace("`", "").strip()
        if setting.default:
            assert shown == setting.default, f"README shows {shown!r} as the default of {setting.env}"
    documented = set(rows) - {"CO2_HTTP_SOCKET", "CO2_UWSGI_SOCKET"}  # read by server.ini, not config.py
    assert documented == {s.env for s in SETTINGS.values()}


def test_scripts_named_in_the_readme_exist_and_are_executable():
    for script in set(re.findall(r"scripts/[\w.-]+\.sh", README)):
        path = ROOT / script
        assert path.exists(), f"README names {script}, which does not exist"
        assert path.stat().st_mode & 0o111, f"{script} is not executable"


def test_ci_runs_exactly_the_readme_test_command():
    assert "scripts/run-tests.sh" in README
    assert "exec scripts/run-tests.sh" in (ROOT / ".ci/run").read_text()


def test_example_files_named_in_the_readme_exist():
    named = set(re.findall(r"(?<![\w.])([\w-]+(?:\.[\w-]+)*\.example)(?![\w.])", README))
    assert "nginx-co2unit.conf.example" in named
    for name in named:
        assert (ROOT / name).is_file(), f"README names {name}, which does not exist"
