"""Range requests a server must ignore rather than refuse (RFC 9110 14.2), on a
file of the export served by the real uWSGI: several ranges, another unit or
a malformed header get the whole file (200), while one range past the end
is still 416."""

from __future__ import annotations

from test_export_serving import build_export

from firmware import assert_plain_answer


def test_ranges_that_cannot_be_served_as_one_are_ignored(server):
    data = build_export(server.var_dir / "pub")["csv/site-vj_re_sn_3.csv"]
    url = "/data/export/csv/site-vj_re_sn_3.csv"
    for wanted in ("bytes=0-9,100-109", "items=0-9", "bytes=abc", "bytes=20-10", "bytes 0-9"):
        reply = server.request("GET", url, extra_headers={"Range": wanted})
        assert_plain_answer(reply)
        assert (reply.status, reply.body) == (200, data), wanted
        assert int(reply.headers["content-length"]) == len(data) and "content-range" not in reply.headers, wanted
    reply = server.request("GET", url, extra_headers={"Range": f"bytes={len(data) + 5}-{len(data) + 9}"})
    assert (reply.status, reply.json()["error"]) == (416, "RANGE_NOT_SATISFIABLE")
    assert f"GET {url} from=127.0.0.1 unit=- status=416 RANGE_NOT_SATISFIABLE" in server.log()
    reply = server.request("GET", url, extra_headers={"Range": "bytes=5-14"})
    assert (reply.status, reply.body) == (206, data[5:15])
