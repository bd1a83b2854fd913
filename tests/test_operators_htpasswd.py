"""scripts/operators.sh: the htpasswd file nginx checks, on real files with the real openssl.

Every hash written is checked the way crypt(3) (nginx's auth_basic) checks
it: SHA-512 crypt recomputed from the stored salt and the password must give
the stored string, and a wrong password must not.
"""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import stat
import subprocess
import termios
import time
from pathlib import Path

import pytest

from conftest import ROOT

SCRIPT = ROOT / "scripts" / "operators.sh"
LINE_RE = re.compile(r"([^:\s]+):(\$6\$([./0-9A-Za-z]{1,16})\$[./0-9A-Za-z]{86})")



@pytest.fixture(autouse=True)
def openssl_installed():
    if shutil.which("openssl") is None:
        if os.environ.get("CI") == "true":
            raise AssertionError("openssl is missing; CI must have it (apt-get install openssl)")
        pytest.skip("openssl is not installed (as root: apt-get install openssl)")


def script_env(htpasswd: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CO2_")}
    env.update(CO2_HTPASSWD=str(htpasswd), **extra)
    return env


def run(htpasswd: Path, *args: str, stdin: str | None = None, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], input=stdin if stdin is not None else "", env=script_env(htpasswd, **extra),
                          capture_output=True, text=True, timeout=30)


def add(htpasswd: Path, name: str, password: str) -> subprocess.CompletedProcess:
    result = run(htpasswd, "add", name, stdin=password + "\n")
    assert result.returncode == 0, result.stderr
    assert password not in result.stdout + result.stderr
    return result


def entries(htpasswd: Path) -> dict[str, str]:
    """name -> stored hash; every line must be name:$6$salt$hash."""
    found = {}
    for line in htpasswd.read_text().splitlines():
        match = LINE_RE.fullmatch(line)
        assert match, f"not a name:$6$salt$hash line: {line!r}"
        assert match.group(1) not in found, f"two lines for {match.group(1)}"
        found[match.group(1)] = match.group(2)
    return found


def crypt_sha512(password: str, stored: str) -> str:
    """What crypt(3) computes for `password` with the salt of `stored`."""
    salt = stored.split("$")[2]
    out = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"], input=password + "\n",
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def verifies(htpasswd: Path, name: str, password: str) -> bool:
    stored = entries(htpasswd)[name]
    return crypt_sha512(password, stored) == stored


def snapshot(htpasswd: Path) -> tuple:
    """Content, inode and mtime of the file and the names in its folder: a refused command changes none."""
    st = htpasswd.stat() if htpasswd.exists() else None
    content = htpasswd.read_bytes() if st else None
    return content, st and (st.st_ino, st.st_mtime_ns), sorted(p.name for p in htpasswd.parent.iterdir())


@pytest.fixture
def htpasswd(tmp_path) -> Path:
    folder = tmp_path / "nginx"
    folder.mkdir()
    return folder / "co2unit.htpasswd"


def test_help_and_style(htpasswd):
    result = run(htpasswd, "--help")
    assert result.returncode == 0 and "operators.sh add NAME" in result.stdout
    assert "set -euo pipefail" not in result.stdout  # the header comment only
    text = SCRIPT.read_text()
    assert text.startswith("#!/bin/bash\n#") and "set -euo pipefail" in text and text.rstrip().endswith('main "$@"')
    assert SCRIPT.stat().st_mode & 0o111


def test_add_two_operators_with_verifiable_hashes(htpasswd):
    assert run(htpasswd, "list").stdout == ""  # no file yet: no names
    result = add(htpasswd, "alice", "correct horse")
    assert result.stdout == f"operators: added alice to {htpasswd}\n"
    add(htpasswd, "bob", "s3cr3t:with$dollar and spaces ")
    assert stat.S_IMODE(htpasswd.stat().st_mode) == 0o640
    assert run(htpasswd, "list").stdout.splitlines() == ["alice", "bob"]

    stored = entries(htpasswd)
    assert stored["alice"].split("$")[2] != stored["bob"].split("$")[2]  # a fresh salt each
    assert verifies(htpasswd, "alice", "correct horse")
    assert verifies(htpasswd, "bob", "s3cr3t:with$dollar and spaces ")
    assert not verifies(htpasswd, "alice", "correct horsE")
    assert not verifies(htpasswd, "bob", "s3cr3t:with$dollar and spaces")  # the trailing space counts
    assert sorted(p.name for p in htpasswd.parent.iterdir()) == [htpasswd.name]  # no temporary files left


def test_password_change_replaces_the_line(htpasswd):
    add(htpasswd, "alice", "old password")
    add(htpasswd, "bob", "bobs password")
    htpasswd.chmod(0o600)  # a mode chosen by hand is kept
    bob_line = htpasswd.read_text().splitlines()[1]

    result = add(htpasswd, "alice", "new password")
    assert result.stdout == f"operators: changed the password of alice in {htpasswd}\n"
    lines = htpasswd.read_text().splitlines()
    assert [line.split(":")[0] for line in lines] == ["alice", "bob"]  # one line each, order kept
    assert lines[1] == bob_line
    assert verifies(htpasswd, "alice", "new password")
    assert not verifies(htpasswd, "alice", "old password")
    assert stat.S_IMODE(htpasswd.stat().st_mode) == 0o600


def test_remove(htpasswd):
    add(htpasswd, "alice", "pw-a")
    add(htpasswd, "bob", "pw-b")
    result = run(htpasswd, "remove", "alice")
    assert (result.returncode, result.stdout) == (0, f"operators: removed alice from {htpasswd}\n")
    assert run(htpasswd, "list").stdout.splitlines() == ["bob"]
    assert verifies(htpasswd, "bob", "pw-b")
    assert stat.S_IMODE(htpasswd.stat().st_mode) == 0o640

    before = snapshot(htpasswd)
    again = run(htpasswd, "remove", "alice")
    assert again.returncode == 1 and "no operator 'alice'" in again.stderr
    assert snapshot(htpasswd) == before

    missing = run(htpasswd.parent / "absent.htpasswd", "remove", "bob")
    assert missing.returncode == 1 and "does not exist" in missing.stderr


@pytest.mark.parametrize("name", ["", "ali:ce", "ali ce", "alice\t", "ali\x01ce", "ali\x7fce", "#alice"])
def test_bad_names_are_refused(htpasswd, name):
    add(htpasswd, "bob", "pw-b")
    before = snapshot(htpasswd)
    for command in ("add", "remove"):
        result = run(htpasswd, command, name, stdin="password\n")
        assert result.returncode == 2, (command, result)
        assert "operators: error: " in result.stderr and "name" in result.stderr
        assert snapshot(htpasswd) == before


@pytest.mark.parametrize(("stdin", "message"), [
    ("", "empty password"),
    ("\n", "empty password"),
    ("x" * 257 + "\n", "at most 256"),  # openssl would silently hash only the first 256 bytes
])
def test_bad_passwords_are_refused(htpasswd, stdin, message):
    add(htpasswd, "bob", "pw-b")
    before = snapshot(htpasswd)
    result = run(htpasswd, "add", "alice", stdin=stdin)
    assert result.returncode == 2 and message in result.stderr
    assert snapshot(htpasswd) == before


def test_longest_password_and_windows_line_end(htpasswd):
    add(htpasswd, "alice", "ä" * 128)  # 256 bytes in UTF-8
    assert verifies(htpasswd, "alice", "ä" * 128)
    assert run(htpasswd, "add", "bob", stdin="pw-b\r\n").returncode == 0
    assert verifies(htpasswd, "bob", "pw-b")


def test_password_is_never_an_argument(htpasswd, tmp_path):
    refused = run(htpasswd, "add", "alice", "hunter2hunter2")
    assert refused.returncode == 2 and "never from the command line" in refused.stderr
    assert not htpasswd.exists()

    # An openssl that logs its arguments, then runs the real one.
    shim = tmp_path / "bin"
    shim.mkdir()
    argv_log = tmp_path / "openssl-argv.txt"
    (shim / "openssl").write_text(f'#!/bin/bash\nprintf "%s\\n" "$*" >> "{argv_log}"\nexec {shutil.which("openssl")} "$@"\n')
    (shim / "openssl").chmod(0o755)
    result = run(htpasswd, "add", "alice", stdin="hunter2hunter2\n", PATH=f"{shim}:{os.environ['PATH']}")
    assert result.returncode == 0, result.stderr
    assert argv_log.read_text() == "passwd -6 -stdin\n"
    assert "hunter2" not in result.stdout + result.stderr
    assert verifies(htpasswd, "alice", "hunter2hunter2")


def test_missing_openssl_says_how_to_install(htpasswd, tmp_path):
    bare = tmp_path / "bare-bin"  # a PATH with what the script needs before openssl, and no openssl
    bare.mkdir()
    (bare / "dirname").symlink_to(shutil.which("dirname"))
    result = run(htpasswd, "add", "alice", stdin="pw\n", PATH=str(bare))
    assert result.returncode == 1 and "apt-get install openssl" in result.stderr
    assert not htpasswd.exists()


def tty_add(htpasswd: Path, first: str, second: str) -> tuple[int, str]:
    """Run `add alice` on a pseudo-terminal, typing the two passwords once echo is off; (exit code, all it showed)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(SCRIPT), "add", "alice"], stdin=slave, stdout=slave, stderr=slave,
                            env=script_env(htpasswd), start_new_session=True)
    os.close(slave)
    shown = b""

    def read_until(text: bytes) -> None:
        nonlocal shown
        deadline = time.monotonic() + 10
        while text not in shown:
            assert time.monotonic() < deadline, f"no {text!r} on the terminal: {shown!r}"
            if select.select([master], [], [], 0.1)[0]:
                try:
                    shown += os.read(master, 1024)
                except OSError:  # EIO: the script exited
                    raise AssertionError(f"the script exited before {text!r}: {shown!r}") from None

    def type_without_echo(line: str) -> None:
        deadline = time.monotonic() + 10
        while termios.tcgetattr(master)[3] & termios.ECHO:
            assert time.monotonic() < deadline, "echo stays on"
            time.sleep(0.01)
        os.write(master, line.encode() + b"\n")

    try:
        read_until(b"Password for alice: ")
        type_without_echo(first)
        read_until(b"Password for alice (again): ")
        type_without_echo(second)
        code = proc.wait(timeout=30)
        while select.select([master], [], [], 0.1)[0]:
            try:
                part = os.read(master, 1024)
            except OSError:
                break
            if not part:
                break
            shown += part
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, shown.decode(errors="replace")


def test_terminal_prompts_twice_without_echo(htpasswd):
    code, shown = tty_add(htpasswd, "typed pass", "typed pass")
    assert code == 0, shown
    assert "typed pass" not in shown
    assert f"operators: added alice to {htpasswd}" in shown
    assert verifies(htpasswd, "alice", "typed pass")

    code, shown = tty_add(htpasswd, "changed one", "changed two")
    assert code == 2 and "the two passwords differ" in shown
    assert "changed one" not in shown and "changed two" not in shown
    assert verifies(htpasswd, "alice", "typed pass")
