"""In CI (CI=true) nothing is skipped: the tools the strace, nginx and browser tests need must be there.

Those tests skip with a reason on a developer's machine that lacks the tool,
and fail under CI=true themselves; this test says so up front, in one place,
so a CI run that lost strace or Chromium cannot look green.
"""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest


def missing_tools() -> list[str]:
    """What the strace tests (conftest.traced), the browser tests (test_browser.py) and the full-disk tests would skip for."""
    missing = []
    if shutil.which("strace") is None:
        missing.append("strace (the tests that check fsync before the answer)")
    if shutil.which("nginx") is None and not os.path.exists("/usr/sbin/nginx"):
        missing.append("nginx (the tests of the production front, tests/front.py)")
    if shutil.which("openssl") is None:
        missing.append("openssl (the front's TLS certificate, scripts/operators.sh)")
    for tool in ("prometheus", "promtool", "amtool"):
        if shutil.which(tool) is None:
            missing.append(
                f"{tool} (tests/test_prometheus.py: the real Prometheus, the alert rules, Alertmanager's config)"
            )
    if shutil.which("Rscript") is None:
        missing.append("Rscript (tests/test_export_files.py: database/README.md's R snippet on the dataset)")
    if os.environ.get("CO2_BROWSER_SKIP"):
        missing.append(f"the browser: CO2_BROWSER_SKIP={os.environ['CO2_BROWSER_SKIP']!r}")
    if not (os.environ.get("CO2_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")):
        missing.append("Chromium (the browser tests)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright Python package (the browser tests)")
    if os.geteuid() != 0:
        missing.append("root (tests/test_full_disk.py and tests/test_export_files.py mount a small tmpfs)")
    return missing


def test_ci_has_every_tool_the_skippable_tests_need():
    missing = missing_tools()
    if os.environ.get("CI") == "true":
        assert missing == [], "CI=true, so these tests would have to skip, which CI must never do"
    elif missing:
        pytest.skip("not CI; these tests will skip: " + "; ".join(missing))
