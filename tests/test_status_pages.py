"""The pages the pipeline renders into var/pub/, served with refresh and cache headers."""

from __future__ import annotations

import os

import pytest

from firmware import assert_plain_answer

PAGES = [
    # (page URL, file in var/pub, Refresh, a file beside it, its URL, max-age)
    ("/status/alive/summary", "pings_summary.html", "600", "pings_all_tiered.svg", "/status/alive/", "540"),
    ("/data/co2/summary", "co2_summary.html", "3600", "co2_tiered_recent_hires.svg", "/data/co2/", "3300"),
]

SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>\n'


@pytest.mark.parametrize(("url", "page", "refresh", "plot", "files_url", "max_age"), PAGES)
def test_page_not_rendered_yet_is_friendly(server, url, page, refresh, plot, files_url, max_age):
    reply = server.request("GET", url)
    assert_plain_answer(reply)
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/html")
    assert reply.headers["refresh"] == "60"
    text = reply.body.decode()
    assert "has not been rendered yet" in text
    assert page in text
    assert "make -C database" in text and "scripts/make-summaries.sh" in text
    assert "Traceback" not in text


@pytest.mark.parametrize(("url", "page", "refresh", "plot", "files_url", "max_age"), PAGES)
def test_rendered_page_and_its_files(server, url, page, refresh, plot, files_url, max_age):
    pub = server.var_dir / "pub"
    pub.mkdir(parents=True, exist_ok=True)
    html = f'<!doctype html><title>t</title><img src="{plot}">\n'.encode()
    (pub / page).write_bytes(html)
    (pub / plot).write_bytes(SVG)

    reply = server.request("GET", url)
    assert_plain_answer(reply)
    assert (reply.status, reply.body) == (200, html)
    assert reply.headers["refresh"] == refresh
    assert int(reply.headers["content-length"]) == len(html)

    reply = server.request("GET", files_url + plot)
    assert_plain_answer(reply)
    assert (reply.status, reply.body) == (200, SVG)
    assert reply.headers["content-type"].startswith("image/svg+xml")
    assert reply.headers["cache-control"] == f"max-age={max_age}"
    assert "last-modified" in reply.headers

    reply = server.request("GET", files_url + "missing.svg")
    assert reply.status == 404
    assert reply.json()["error"] == "NOT_FOUND"


def test_files_outside_pub_are_never_served(server):
    pub = server.var_dir / "pub"
    pub.mkdir(parents=True, exist_ok=True)
    secret = b"SECRET-DB-CONTENT"
    (server.var_dir / "secret.txt").write_bytes(secret)
    (pub / ".hidden.svg").write_bytes(secret)
    (pub / "sub").mkdir()
    (pub / "sub" / "x.svg").write_bytes(secret)
    os.symlink(server.var_dir / "secret.txt", pub / "link.svg")
    for base in ("/status/alive/", "/data/co2/"):
        for name in ("..%2fsecret.txt", "%2e%2e%2fsecret.txt", "..%2F..%2Fvar%2Fsecret.txt", ".hidden.svg",
                     "%2ehidden.svg", "link.svg", "sub", "sub/x.svg", "sub%2fx.svg", "..", "%2e%2e"):
            reply = server.request("GET", base + name)
            assert 400 <= reply.status < 500, (base, name, reply.status)
            assert secret not in reply.body, (base, name)
            assert reply.headers["content-type"] == "application/json", (base, name)
    assert server.request("GET", "/status/alive/link.svg").status == 403


@pytest.mark.parametrize(("url", "page", "refresh", "plot", "files_url", "max_age"), PAGES)
def test_unchanged_files_answer_a_conditional_get_with_304(server, url, page, refresh, plot, files_url, max_age):
    pub = server.var_dir / "pub"
    pub.mkdir(parents=True, exist_ok=True)
    (pub / page).write_bytes(b"<!doctype html><title>t</title>\n")
    (pub / plot).write_bytes(SVG)
    rendered = 1_570_000_000  # 2019-10-02T07:06:40Z, set by hand on both files
    for name in (page, plot):
        os.utime(pub / name, (rendered, rendered))
    for path in (url, files_url + plot):
        first = server.request("GET", path)
        assert first.status == 200
        assert first.headers["last-modified"] == "Wed, 02 Oct 2019 07:06:40 GMT"
        for since, status in [
            ("Wed, 02 Oct 2019 07:06:40 GMT", 304),  # the same copy
            ("Wed, 02 Oct 2019 08:00:00 GMT", 304),  # a later copy
            ("Wed, 02 Oct 2019 07:06:39 GMT", 200),  # one second older than the file
        ]:
            reply = server.request("GET", path, extra_headers={"If-Modified-Since": since})
            assert_plain_answer(reply)
            assert reply.status == status, (path, since)
            assert reply.body == (b"" if status == 304 else first.body), (path, since)
        # The pipeline re-renders: the file is newer than the client's copy.
        os.utime(pub / (page if path == url else plot), (rendered + 600, rendered + 600))
        reply = server.request("GET", path, extra_headers={"If-Modified-Since": "Wed, 02 Oct 2019 07:06:40 GMT"})
        assert reply.status == 200 and reply.body == first.body


def test_a_fifo_in_pub_never_holds_a_worker(server):
    """A FIFO planted in var/pub is refused at once instead of blocking the thread that opens it."""
    pub = server.var_dir / "pub"
    pub.mkdir(parents=True, exist_ok=True)
    os.mkfifo(pub / "fifo.svg")
    os.mkfifo(pub / "co2_summary.html")
    for path in ("/status/alive/fifo.svg", "/data/co2/fifo.svg"):
        reply = server.request("GET", path, timeout=5)
        assert reply.status == 404 and reply.json()["error"] == "NOT_FOUND", path
    reply = server.request("GET", "/data/co2/summary", timeout=5)
    assert reply.status == 200 and b"has not been rendered yet" in reply.body
    assert server.request("GET", "/healthz", timeout=5).status == 200
