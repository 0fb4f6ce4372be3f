"""POST /sfvopi/calls, GET /sfvopi/calls/:id and GET /sfvopi/calls (CALLS.md sections 2 and 8).

The server under test runs without a call engine (no --sip-listen), so a call that passes every
check ends in 500 "calling is not configured": that answer is how these tests see that a body was
accepted. Call records are seeded straight into the database, as the engine would write them.
"""

import re
import sqlite3
import subprocess
import uuid

import pytest
import requests

from conftest import (MSG_INVALID, MSG_METHOD, MSG_UNAUTH, NOT_UTF8, PREFIXES, TS_RE,
                      assert_error, assert_compact, assert_json_ct, new_number)

MSG_OFF = "Failed to initiate outbound call: calling is not configured"
MSG_CALL_NOT_FOUND = "Call not found"
CALL_FIELDS = ["call_uuid", "request_uuid", "org_id", "app_id", "from", "to", "direction",
               "call_status", "started_at", "answer_at", "ended_at", "duration", "hangup_cause",
               "rtp_packets_received", "rtp_packets_lost", "rtp_jitter_ms"]
T0 = 1770028200000  # 2026-02-02T10:30:00.000Z


def not_linked(number):
    return f"VoIP number {number} is not linked to any SFVoPI app"


# ---------------------------------------------------------------------------------------------
# Fixtures: an org with a number linked to an ACTIVE app.

@pytest.fixture(scope="module")
def caller(server):
    org = server.make_org(user=777)
    api = org.client()
    app = api.create_app(name="calls", answer_url="https://example.com/answer",
                         hangup_url="https://example.com/hangup", hangup_method="GET")["app_id"]
    number = org.add_numbers(1)[0]
    api.link(app, number)
    return org, api, app, number


def body(number, **over):
    b = {"from": number, "to": "+14155550100", "answer_url": "https://example.com/a"}
    b.update(over)
    return {k: v for k, v in b.items() if v is not _DROP}


_DROP = object()


# ---------------------------------------------------------------------------------------------
# POST /sfvopi/calls: authentication and the order of checks.

@pytest.mark.parametrize("prefix", PREFIXES)
def test_create_without_key_is_401(server, prefix):
    r = requests.post(server.url + prefix + "/calls", json={})
    assert_error(r, 401, MSG_UNAUTH)
    r = requests.post(server.url + prefix + "/calls", json={}, headers={"X-API-Key": "sfvk_x"})
    assert_error(r, 401, MSG_UNAUTH)


def test_401_comes_before_400(server):
    r = requests.post(server.url + "/sfvopi/calls", data=b"not json",
                      headers={"Content-Type": "application/json"})
    assert_error(r, 401, MSG_UNAUTH)
    r = requests.get(server.url + "/sfvopi/calls?limit=0")
    assert_error(r, 401, MSG_UNAUTH)
    r = requests.get(server.url + "/sfvopi/calls/nonsense")
    assert_error(r, 401, MSG_UNAUTH)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_create_valid_body_reaches_engine_check(caller, prefix):
    org, _, _, number = caller
    r = org.client(prefix=prefix).post("/calls", json=body(number))
    assert_error(r, 500, MSG_OFF)


# ---------------------------------------------------------------------------------------------
# POST /sfvopi/calls: every field rule.

BAD_FIELDS = [
    ("from", _DROP), ("from", None), ("from", 918000000001), ("from", "12"), ("from", "abc"),
    ("from", ""), ("from", True), ("from", ["+918000000001"]),
    ("to", _DROP), ("to", None), ("to", 14155550100), ("to", "+0123"), ("to", ""),
    ("to", "+1234567890123456"),
    ("answer_url", _DROP), ("answer_url", None), ("answer_url", 5),
    ("answer_url", "ftp://example.com/a"), ("answer_url", "example.com/a"),
    ("answer_url", "https://exa mple.com/a"), ("answer_url", "https://"),
    ("answer_url", "https://example.com/" + "a" * 2100),
    ("answer_method", None), ("answer_method", "PUT"), ("answer_method", 1),
    ("answer_method", "POSTX"), ("answer_method", ""),
    ("ring_url", 5), ("ring_url", "mailto:x@example.com"), ("ring_url", ""),
    ("ring_method", "DELETE"), ("ring_method", None), ("ring_method", True),
    ("hangup_url", "nope"), ("hangup_url", {}), ("hangup_url", "http://\u0001.example.com/"),
    ("hangup_method", "PATCH"), ("hangup_method", None), ("hangup_method", 2),
    ("call_time_limit", 0), ("call_time_limit", 86401), ("call_time_limit", -1),
    ("call_time_limit", 1.5), ("call_time_limit", 60.0), ("call_time_limit", "60"),
    ("call_time_limit", True), ("call_time_limit", None), ("call_time_limit", 2 ** 40),
    ("ring_timeout", 0), ("ring_timeout", 601), ("ring_timeout", -5), ("ring_timeout", 30.0),
    ("ring_timeout", "30"), ("ring_timeout", False), ("ring_timeout", None),
    ("ring_timeout", [30]),
]


@pytest.mark.parametrize("field,value", BAD_FIELDS,
                         ids=[f"{f}={v!r}"[:60] for f, v in BAD_FIELDS])
def test_create_invalid_field(caller, field, value):
    _, api, _, number = caller
    r = api.post("/calls", json=body(number, **{field: value}))
    assert_error(r, 400, MSG_INVALID)
    fields = [e["field"] for e in r.json().get("errors", [])]
    assert fields == [field], r.json()


@pytest.mark.parametrize("raw", [b"", b"[]", b"\"x\"", b"{", b"{\"from\":\"+918000000001\",}",
                                 b"null"])
def test_create_body_not_an_object(caller, raw):
    _, api, _, _ = caller
    r = api.request("POST", "/calls", data=raw, headers={"Content-Type": "application/json"})
    assert_error(r, 400, MSG_INVALID)


def test_create_wrong_content_type(caller):
    _, api, _, number = caller
    import json
    r = api.request("POST", "/calls", data=json.dumps(body(number)).encode(),
                    headers={"Content-Type": "text/plain"})
    assert_error(r, 400, MSG_INVALID)


def test_create_every_field_wrong_lists_each(caller):
    _, api, _, _ = caller
    r = api.post("/calls", json={"from": 1, "to": 2, "answer_url": 3, "answer_method": "x",
                                 "ring_url": "x", "ring_method": "x", "hangup_url": "x",
                                 "hangup_method": "x", "call_time_limit": 0, "ring_timeout": 0})
    assert_error(r, 400, MSG_INVALID)
    assert [e["field"] for e in r.json()["errors"]] == [
        "from", "to", "answer_url", "answer_method", "ring_url", "ring_method", "hangup_url",
        "hangup_method", "call_time_limit", "ring_timeout"]


GOOD_VARIANTS = [
    {"call_time_limit": 1}, {"call_time_limit": 86400}, {"call_time_limit": 14400},
    {"ring_timeout": 1}, {"ring_timeout": 600}, {"ring_timeout": 60},
    {"answer_method": "get"}, {"answer_method": "Post"}, {"answer_method": "GET"},
    {"ring_url": "http://example.com/ring", "ring_method": "get"},
    {"ring_url": None}, {"hangup_url": None},
    {"hangup_url": "https://example.com/h2"}, {"hangup_method": "post"},
    {"unknown_field": {"anything": [1, 2]}, "status": "INACTIVE"},
    {"to": "8000000001"}, {"to": "08000000001"}, {"to": "+1 (415) 555-0100"},
    {"to": "0014155550100"},
]


@pytest.mark.parametrize("over", GOOD_VARIANTS, ids=[repr(v)[:50] for v in GOOD_VARIANTS])
def test_create_accepted_variants(caller, over):
    _, api, _, number = caller
    assert_error(api.post("/calls", json=body(number, **over)), 500, MSG_OFF)


def test_create_from_is_normalised(caller):
    """Every spelling of the linked number reaches the engine check."""
    _, api, _, number = caller
    national = number[3:]  # +91 and 10 digits
    for spelling in [number, national, "0" + national, "91" + national, "00" + number[1:],
                     f"+91 {national[:5]}-{national[5:]}"]:
        assert_error(api.post("/calls", json=body(spelling)), 500, MSG_OFF)


# ---------------------------------------------------------------------------------------------
# POST /sfvopi/calls: the from-number's route.

def test_from_not_in_any_inventory(caller):
    _, api, _, _ = caller
    n = new_number()
    assert_error(api.post("/calls", json=body(n)), 400, not_linked(n))
    # The message names the normalised number.
    assert_error(api.post("/calls", json=body(n[3:])), 400, not_linked(n))


def test_from_of_another_org(server, caller):
    _, api, _, _ = caller
    other = server.make_org()
    oapi = other.client()
    oapp = oapi.create_app(name="o", answer_url="https://example.com/o")["app_id"]
    n = other.add_numbers(1)[0]
    oapi.link(oapp, n)
    assert_error(oapi.post("/calls", json=body(n)), 500, MSG_OFF)  # fine for its owner
    assert_error(api.post("/calls", json=body(n)), 400, not_linked(n))


def test_from_without_link(server):
    org = server.make_org()
    api = org.client()
    n = org.add_numbers(1)[0]
    assert_error(api.post("/calls", json=body(n)), 400, not_linked(n))
    # Linked, then unlinked: no ACTIVE link any more.
    app = api.create_app()["app_id"]
    api.link(app, n)
    assert_error(api.post("/calls", json=body(n)), 500, MSG_OFF)
    assert api.delete(f"/apps/{app}/numbers/{n.replace('+', '%2B')}").status_code == 200
    assert_error(api.post("/calls", json=body(n)), 400, not_linked(n))


def test_from_linked_to_inactive_app(server):
    org = server.make_org()
    api = org.client()
    n = org.add_numbers(1)[0]
    app = api.create_app()["app_id"]
    api.link(app, n)
    assert api.put(f"/apps/{app}", json={"status": "INACTIVE"}).status_code == 200
    assert_error(api.post("/calls", json=body(n)), 400, not_linked(n))
    assert api.put(f"/apps/{app}", json={"status": "ACTIVE"}).status_code == 200
    assert_error(api.post("/calls", json=body(n)), 500, MSG_OFF)


def test_from_of_deleted_app(server):
    org = server.make_org()
    api = org.client()
    n = org.add_numbers(1)[0]
    app = api.create_app()["app_id"]
    api.link(app, n)
    assert api.delete(f"/apps/{app}").status_code == 200
    assert_error(api.post("/calls", json=body(n)), 400, not_linked(n))


def test_body_400_comes_before_not_linked(caller):
    _, api, _, _ = caller
    r = api.post("/calls", json=body(new_number(), ring_timeout=0))
    assert_error(r, 400, MSG_INVALID)


# ---------------------------------------------------------------------------------------------
# Methods.

@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_calls_collection_405(caller, method):
    _, api, _, _ = caller
    r = api.request(method, "/calls")
    assert_error(r, 405, MSG_METHOD)
    assert r.headers["Allow"] == "GET, POST"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_call_item_405(caller, method):
    _, api, _, _ = caller
    r = api.request(method, "/calls/" + str(uuid.uuid4()))
    assert_error(r, 405, MSG_METHOD)
    assert r.headers["Allow"] == "GET"


def test_deeper_paths_not_found(caller):
    _, api, _, _ = caller
    for p in ["/calls/" + str(uuid.uuid4()) + "/x", "/calls/", "/callz"]:
        assert_error(api.get(p), 404, "Not found")


# ---------------------------------------------------------------------------------------------
# Call records, seeded into the database.

COLS = ("call_uuid, request_uuid, org_id, app_id, \"from\", \"to\", direction, status, "
        "started_at, answered_at, ended_at, duration, hangup_cause, created_at")


def seed(db_url, rows):
    """Insert call rows (dicts) in order, as the engine would."""
    def val(v):
        if v is None:
            return "NULL"
        if isinstance(v, int):
            return str(v)
        return "'" + str(v).replace("'", "''") + "'"

    keys = ["call_uuid", "request_uuid", "org_id", "app_id", "from", "to", "direction",
            "status", "started_at", "answered_at", "ended_at", "duration", "hangup_cause",
            "created_at"]
    if db_url.startswith("sqlite:"):
        con = sqlite3.connect(db_url[len("sqlite:"):], timeout=10)
        with con:
            for r in rows:
                con.execute(f"INSERT INTO calls({COLS}) VALUES ({','.join('?' * len(keys))})",
                            [r[k] for k in keys])
        con.close()
    else:
        sql = ";".join(f"INSERT INTO calls({COLS}) VALUES ({','.join(val(r[k]) for k in keys)})"
                       for r in rows)
        cp = subprocess.run(["psql", db_url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
                            capture_output=True, text=True, timeout=30)
        assert cp.returncode == 0, cp.stderr


def call_row(org_id, app_id, n, *, outbound=True, ended=True):
    cu = str(uuid.uuid4())
    row = {
        "call_uuid": cu,
        "request_uuid": f"sfv_ob_req_{uuid.uuid4().hex[:12]}" if outbound else None,
        "org_id": org_id, "app_id": app_id,
        "from": "+918000099999", "to": "+14155550100" if outbound else "anonymous",
        "direction": "OUTBOUND" if outbound else "INBOUND",
        "status": "COMPLETED" if ended else "RINGING",
        "started_at": T0 + n * 1000, "answered_at": T0 + n * 1000 + 500 if ended else None,
        "ended_at": T0 + n * 1000 + 7500 if ended else None,
        "duration": 7 if ended else 0, "hangup_cause": "16" if ended else None,
        "created_at": T0 + n * 1000,
    }
    return row


def test_get_record_fields(server, db_url, caller):
    org, api, app, _ = caller
    done = call_row(org.id, app, 1)
    alive = call_row(org.id, app, 2, ended=False)
    inbound = call_row(org.id, app, 3, outbound=False)
    seed(db_url, [done, alive, inbound])

    for prefix in PREFIXES:
        c = org.client(prefix=prefix)
        r = c.get("/calls/" + done["call_uuid"])
        assert r.status_code == 200, r.text
        assert_json_ct(r)
        assert_compact(r)
        b = r.json()
        assert list(b) == ["data", "message"] and b["message"] == "success"
        d = b["data"]
        assert list(d) == CALL_FIELDS
        assert d == {
            "call_uuid": done["call_uuid"], "request_uuid": done["request_uuid"],
            "org_id": org.id, "app_id": app, "from": "+918000099999", "to": "+14155550100",
            "direction": "OUTBOUND", "call_status": "COMPLETED",
            "started_at": "2026-02-02T10:30:01.000Z", "answer_at": "2026-02-02T10:30:01.500Z",
            "ended_at": "2026-02-02T10:30:08.500Z", "duration": 7, "hangup_cause": "16",
            # Rows written without the RTP statistics (as before they existed) read 0.
            "rtp_packets_received": 0, "rtp_packets_lost": 0, "rtp_jitter_ms": 0,
        }
        # The same record by its request_uuid.
        assert c.get("/calls/" + done["request_uuid"]).json() == b

    d = api.get("/calls/" + alive["call_uuid"]).json()["data"]
    assert d["call_status"] == "RINGING"
    assert TS_RE.match(d["started_at"])
    assert d["answer_at"] is None and d["ended_at"] is None
    assert d["duration"] is None and d["hangup_cause"] is None

    d = api.get("/calls/" + inbound["call_uuid"]).json()["data"]
    assert d["request_uuid"] is None and d["direction"] == "INBOUND" and d["to"] == "anonymous"
    # Upper-case hex names the same call.
    assert api.get("/calls/" + inbound["call_uuid"].upper()).json()["data"] == d


def test_get_not_found(server, db_url, caller):
    org, api, app, _ = caller
    other = server.make_org()
    theirs = call_row(other.id, "sfv_app_aaaaaaaaaaaa", 4)
    seed(db_url, [theirs])
    assert other.client().get("/calls/" + theirs["call_uuid"]).status_code == 200
    for cid in [theirs["call_uuid"], theirs["request_uuid"], str(uuid.uuid4()),
                "sfv_ob_req_000000000000", "nonsense", "sfv_ob_req_ABCDEFGHIJKL",
                "sfv_ob_req_00000000000", "sfv_ob_req_0000000000000",
                str(uuid.uuid4()).replace("-", ""), str(uuid.uuid4())[:-1] + "g",
                "%00", "%zz", "x" * 300, "%27%20OR%201%3D1--", *NOT_UTF8.values(),
                "sfv_ob_req_00000000000%FF", theirs["call_uuid"][:-2] + "%C3"]:
        assert_error(api.get("/calls/" + cid), 404, MSG_CALL_NOT_FOUND)


# ---------------------------------------------------------------------------------------------
# Listing.

def list_body(resp):
    assert resp.status_code == 200, resp.text
    assert_json_ct(resp)
    b = resp.json()
    assert b["message"] == "success"
    keys = list(b)
    assert keys in (["data", "message"], ["data", "next_cursor", "message"]), keys
    return b


@pytest.mark.parametrize("prefix", PREFIXES)
def test_list_empty(server, prefix):
    org = server.make_org()
    r = org.client(prefix=prefix).get("/calls")
    assert r.status_code == 200
    assert r.json() == {"data": [], "message": "success"}
    assert_compact(r)


def test_list_pagination(server, db_url):
    org = server.make_org()
    other = server.make_org()
    api = org.client()
    mine = [call_row(org.id, "sfv_app_bbbbbbbbbbbb", n, outbound=n % 2 == 0) for n in range(5)]
    theirs = [call_row(other.id, "sfv_app_cccccccccccc", 10 + n) for n in range(3)]
    # Interleave the two orgs' rows.
    seed(db_url, [mine[0], theirs[0], mine[1], mine[2], theirs[1], mine[3], theirs[2], mine[4]])
    newest_first = [r["call_uuid"] for r in reversed(mine)]

    # Default limit: everything in one page, no cursor.
    b = list_body(api.get("/calls"))
    assert [c["call_uuid"] for c in b["data"]] == newest_first
    assert "next_cursor" not in b
    assert all(list(c) == CALL_FIELDS for c in b["data"])
    assert all(c["org_id"] == org.id for c in b["data"])

    # limit=2: three pages chained by next_cursor, none repeated.
    seen, cursor, pages = [], None, 0
    while True:
        q = "/calls?limit=2" + (f"&cursor={cursor}" if cursor else "")
        b = list_body(api.get(q))
        pages += 1
        seen += [c["call_uuid"] for c in b["data"]]
        if "next_cursor" not in b:
            break
        cursor = b["next_cursor"]
        assert isinstance(cursor, str) and re.fullmatch(r"[A-Za-z0-9_]+", cursor)
        assert pages < 10
    assert pages == 3
    assert seen == newest_first

    # Exactly limit calls left: the last full page says there may be more, then an empty page.
    b = list_body(api.get("/calls?limit=5"))
    assert len(b["data"]) == 5 and "next_cursor" not in b
    b = list_body(api.get("/calls?limit=4"))
    assert len(b["data"]) == 4 and "next_cursor" in b
    last = list_body(api.get(f"/calls?limit=4&cursor={b['next_cursor']}"))
    assert [c["call_uuid"] for c in last["data"]] == newest_first[4:]
    assert "next_cursor" not in last

    # Another org's cursor value shows only the caller's calls.
    b = list_body(other.client().get("/calls?limit=1"))
    assert [c["call_uuid"] for c in b["data"]] == [theirs[2]["call_uuid"]]
    b = list_body(api.get(f"/calls?limit=100&cursor={b['next_cursor']}"))
    assert all(c["org_id"] == org.id for c in b["data"])

    # Unknown parameters are ignored, as on every other route.
    b = list_body(api.get("/calls?limit=1&foo=bar&x"))
    assert [c["call_uuid"] for c in b["data"]] == newest_first[:1]


BAD_QUERIES = [
    "limit=0", "limit=101", "limit=-1", "limit=%2B5", "limit=+5", "limit=5.0", "limit=abc",
    "limit=", "limit", "limit=1e2", "limit=99999999999999999999999", "limit=05", "limit=%00",
    "limit=1&limit=2", "limit=%201",
    "cursor=", "cursor", "cursor=abc", "cursor=sfvc_", "cursor=sfvc_0", "cursor=sfvc_-1",
    "cursor=sfvc_01", "cursor=sfvc_9223372036854775808", "cursor=sfvc_99999999999999999999",
    "cursor=sfvc_1x", "cursor=SFVC_1", "cursor=sfvc_1&cursor=sfvc_2", "cursor=%zz",
    "cursor=sfvc_1%00",
]


@pytest.mark.parametrize("q", BAD_QUERIES)
def test_list_invalid_query(caller, q):
    _, api, _, _ = caller
    assert_error(api.get("/calls?" + q), 400, MSG_INVALID)


@pytest.mark.parametrize("q", ["limit=1", "limit=100", "limit=20", "cursor=sfvc_1",
                               "cursor=sfvc_9223372036854775807", "limit=%31%30"])
def test_list_valid_query(caller, q):
    _, api, _, _ = caller
    list_body(api.get("/calls?" + q))
