"""Idempotent call creation (AGENT.md section 5): `Idempotency-Key` on POST /sfvopi/calls.

The same key with the same body (equal after RFC 8785 canonicalisation) gets the first answer
again, byte for byte, with `Idempotent-Replayed: true`, and places no call; another body gets
422; a key still being answered gets 409; only 200 and 400 answers are kept; keys are per
organisation, kept a day, and a claim abandoned mid-request (its node died) is free again after a
minute. Ages are made by editing the stored key in the database (idem_helper), never by waiting.

Every test runs on both backends except the race (20 requests at one instant across two nodes on
one PostgreSQL), which runs once: on PostgreSQL, outside the sanitizer build. SIPp plays the trunk
where INVITEs are counted; elsewhere the trunk is a port nothing listens on.
"""

import http.client
import json
import os
import re
import socket
import subprocess
import threading
import uuid

import pytest
import requests

from conftest import (ASAN, PG_URL, STRICT, RawResponse, assert_error, fresh_db, ok, raw_http,
                      wait_until)
from idem_helper import (DAY_MS, MSG_IN_PROGRESS, MSG_REUSED, STALE_MS, age_key, body_hash,
                         keys_of, plant_pending)
from openapi_check import check_operation
from sipp_helper import SIPP, Sipp, free_udp_port

if SIPP is None:
    if STRICT:
        raise RuntimeError("sipp (package sip-tester) is not installed (SFVOPI_TEST_STRICT=1)")
    pytest.skip("sipp (package sip-tester) is not installed", allow_module_level=True)

import test_calls_sip as base  # noqa: E402  (skips the module too when there is no call engine)

CALLEE = "+14155550123"
N_RACE = 20


def engine(tmp, db_url=None, trunk_port=None):
    """A server with the call engine (test_calls_sip's), four HTTP threads so that racing
    requests overlap; nodes share db_url and trunk_port."""
    return base.engine_server(tmp, db_url=db_url, trunk_port=trunk_port, threads=4)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with engine(tmp_path_factory.mktemp("idem")) as s:
        yield s


class Line:
    """An organisation with a number linked to an app."""

    def __init__(self, srv):
        self.srv = srv
        self.org = srv.make_org()
        self.api = self.org.client()
        self.number = self.org.add_numbers(1)[0]
        app = self.api.create_app(name="idem", answer_url="https://example.com/answer")
        self.api.link(app["app_id"], self.number)

    def body(self, **extra):
        b = {"from": self.number, "to": CALLEE, "answer_url": "https://example.com/answer"}
        b.update(extra)
        return b

    def post(self, key, body=None, raw=None, **kw):
        """POST /calls with an Idempotency-Key (None: none); raw: the body's exact bytes."""
        headers = {} if key is None else {"Idempotency-Key": key}
        if raw is not None:
            headers["Content-Type"] = "application/json"
            return self.api.post("/calls", data=raw.encode(), headers=headers, **kw)
        return self.api.post("/calls", json=self.body() if body is None else body,
                             headers=headers, **kw)

    def calls(self):
        return ok(self.api.get("/calls?limit=100"))


@pytest.fixture
def line(srv):
    return Line(srv)


def replayed(r):
    return r.headers.get("Idempotent-Replayed")


def new_key():
    return "idem-" + uuid.uuid4().hex


# ---------------------------------------------------------------------------------------------
# Replay.

def test_sequential_replay_places_one_call(tmp_path):
    """The retry of a call that was placed gets the same answer and no second call: SIPp as
    the trunk sees one INVITE, the org has one call record."""
    with engine(tmp_path) as s:
        line = Line(s)
        key = new_key()
        with Sipp("out_busy", tmp_path, port=s.trunk_port) as uas:
            uas.wait_listening()
            first = line.post(key)
            data = ok(first)
            check_operation("/calls", "POST", first, 200)
            assert replayed(first) is None, first.headers
            second = line.post(key)
            check_operation("/calls", "POST", second, 200)
            assert replayed(second) == "true", second.headers
            assert second.content == first.content
            assert second.headers["X-Request-Id"] != first.headers["X-Request-Id"]
            assert uas.wait(20) == 0, uas.report()
        invites = {m.header("call-id") for m in uas.received("INVITE")}
        assert len(invites) == 1, uas.report()
        calls = line.calls()
        assert [c["call_uuid"] for c in calls] == [data["call_uuid"]], calls
        assert calls[0]["request_uuid"] == data["request_uuid"]
        # Still the same answer once the call is over.
        assert wait_until(lambda: line.calls()[0]["call_status"] == "BUSY", timeout=5)
        third = line.post(key)
        assert replayed(third) == "true" and third.content == first.content
        assert len(line.calls()) == 1
        assert keys_of(s.db_url, line.org.id) == {key: ("DONE", 200)}


def test_canonically_equal_bodies_replay(line):
    """Member order, whitespace, escapes and 60 vs 60.0 vs 6e1 are the same request."""
    key = new_key()
    first = line.post(key, raw='{"from":"%s","to":"%s","answer_url":"https://example.com/answer",'
                               '"ring_timeout":60}' % (line.number, CALLEE))
    ok(first)
    variants = [
        '{ "ring_timeout": 60.0, "answer_url": "https://example.com/answer",\n'
        '  "to": "%s", "from": "%s" }' % (CALLEE, line.number),
        '{"to":"\\u002b%s","ring_timeout":6e1,"from":"%s",'
        '"answer_url":"https:\\/\\/example.com\\/answer"}' % (CALLEE[1:], line.number),
    ]
    for raw in variants:
        r = line.post(key, raw=raw)
        assert r.status_code == 200, r.text
        assert replayed(r) == "true" and r.content == first.content, raw
    assert len(line.calls()) == 1


def test_different_body_is_422(line):
    key = new_key()
    data = ok(line.post(key))
    r = line.post(key, body=line.body(ring_timeout=30))
    check_operation("/calls", "POST", r, 422, MSG_REUSED)
    assert_error(r, 422, MSG_REUSED)
    assert replayed(r) is None
    # The first answer is still the key's.
    again = line.post(key)
    assert replayed(again) == "true" and ok(again) == data
    assert len(line.calls()) == 1


def test_kept_400_is_replayed(line):
    """A 400 is an answer too: the same body gets it again, another body 422."""
    key = new_key()
    bad = line.body(ring_timeout=0)
    first = line.post(key, body=bad)
    check_operation("/calls", "POST", first, 400, "Invalid request body")
    assert first.json()["errors"], first.text
    second = line.post(key, body=bad)
    assert second.status_code == 400 and replayed(second) == "true"
    assert second.content == first.content
    assert_error(line.post(key), 422, MSG_REUSED)
    # The not-linked 400 is kept the same way.
    key2 = new_key()
    stranger = line.body(**{"from": "+918000099999"})
    r1 = line.post(key2, body=stranger)
    assert_error(r1, 400, "VoIP number +918000099999 is not linked to any SFVoPI app")
    r2 = line.post(key2, body=stranger)
    assert replayed(r2) == "true" and r2.content == r1.content
    assert line.calls() == []
    assert keys_of(line.srv.db_url, line.org.id) == {key: ("DONE", 400), key2: ("DONE", 400)}


def test_without_key_nothing_is_kept(line):
    a, b = ok(line.post(None)), ok(line.post(None))
    assert a["call_uuid"] != b["call_uuid"]
    assert len(line.calls()) == 2
    assert keys_of(line.srv.db_url, line.org.id) == {}


# ---------------------------------------------------------------------------------------------
# Answers that are not kept.

def test_5xx_and_401_leave_the_key_free(server, tmp_path):
    """A server without a SIP trunk answers 500: the key stays free (another body is not 422).
    A 401 never reaches the key."""
    org = server.make_org()
    api = org.client()
    number = org.add_numbers(1)[0]
    app = api.create_app(name="idem", answer_url="https://example.com/answer")
    api.link(app["app_id"], number)
    key = new_key()
    body = {"from": number, "to": CALLEE, "answer_url": "https://example.com/answer"}
    msg = "Failed to initiate outbound call: calling is not configured"
    r = api.post("/calls", json=body, headers={"Idempotency-Key": key})
    check_operation("/calls", "POST", r, 500, msg)
    r = api.post("/calls", json=dict(body, ring_timeout=5), headers={"Idempotency-Key": key})
    assert_error(r, 500, msg)
    assert replayed(r) is None
    r = api.post("/calls", json=body, headers={"Idempotency-Key": key}, key="sfvopi_" + "x" * 40)
    assert r.status_code == 401, r.text
    assert keys_of(server.db_url, org.id) == {}
    # A kept 400 on the same server still is kept: the key is the org's again.
    r = api.post("/calls", json=dict(body, ring_timeout=0), headers={"Idempotency-Key": key})
    assert r.status_code == 400
    assert keys_of(server.db_url, org.id) == {key: ("DONE", 400)}


# ---------------------------------------------------------------------------------------------
# Malformed keys.

@pytest.mark.parametrize("key", [
    b"",                            # empty
    b"k" * 256,                     # one over 255
    b"caf\xc3\xa9",                 # not ASCII (UTF-8)
    b"caf\xe9",                     # not ASCII (Latin-1)
    b"a\tb",                        # a control character
    b"a\x7fb",                      # DEL
    b"a\x01b",
], ids=["empty", "256", "utf8", "latin1", "tab", "del", "ctl"])
def test_malformed_key_is_400(line, key):
    r = line.post(key)
    check_operation("/calls", "POST", r, 400, "Invalid request body")
    assert r.json() == {"message": "Invalid request body"}
    # Checked before the body's fields: an invalid body gets the same answer.
    r = line.post(key, body=line.body(ring_timeout=0))
    assert r.json() == {"message": "Invalid request body"}
    assert line.calls() == []
    assert keys_of(line.srv.db_url, line.org.id) == {}


def test_key_sent_twice_is_400(line):
    body = json.dumps(line.body()).encode()
    r = raw_http(line.srv, b"POST /sfvopi/calls HTTP/1.1\r\nHost: x\r\nX-API-Key: "
                 + line.org.key.encode() + b"\r\nContent-Type: application/json\r\n"
                 b"Idempotency-Key: a\r\nIdempotency-Key: a\r\nContent-Length: "
                 + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
    assert r.status_code == 400 and r.json() == {"message": "Invalid request body"}, r.content
    assert line.calls() == []


def test_longest_and_spaced_keys_are_valid(line):
    for key in ("k" * 255, "a b ~!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}", "x"):
        a = line.post(key)
        b = line.post(key)
        assert ok(a) == ok(b) and replayed(b) == "true", key
    assert len(line.calls()) == 3


# ---------------------------------------------------------------------------------------------
# Organisations, time.

def test_keys_are_per_organisation(srv):
    a, b = Line(srv), Line(srv)
    key = new_key()
    da, db = ok(a.post(key)), ok(b.post(key))
    assert da["call_uuid"] != db["call_uuid"]
    assert [c["call_uuid"] for c in a.calls()] == [da["call_uuid"]]
    assert [c["call_uuid"] for c in b.calls()] == [db["call_uuid"]]
    # Each org's retry gets its own answer back.
    assert ok(a.post(key)) == da and ok(b.post(key)) == db


def test_expired_key_is_free_and_purged(line):
    """A day after its claim a key is free again; expired keys are deleted as new keys come."""
    db = line.srv.db_url
    key, old = new_key(), new_key()
    first = ok(line.post(key))
    ok(line.post(old))
    age_key(db, line.org.id, key, DAY_MS - 5000)  # not yet a day: still kept
    assert ok(line.post(key)) == first
    age_key(db, line.org.id, key, 10000)          # now past a day
    again = line.post(key, body=line.body(ring_timeout=30))  # another body: not 422
    fresh = ok(again)
    assert replayed(again) is None and fresh["call_uuid"] != first["call_uuid"]
    assert len(line.calls()) == 3
    assert ok(line.post(key, body=line.body(ring_timeout=30))) == fresh
    # An expired key that nobody reuses goes with the next claims.
    age_key(db, line.org.id, old, DAY_MS + 1000)
    ok(line.post(new_key()))
    assert old not in keys_of(db, line.org.id)


def test_in_progress_is_409_then_abandoned_after_a_minute(line):
    """A claim still being answered (planted as another node leaves it): 409 for the same body,
    422 for another; a claim left PENDING a minute is abandoned and may be taken."""
    db = line.srv.db_url
    key = new_key()
    body = line.body()
    plant_pending(db, line.org.id, key, body)
    r = line.post(key, body=body)
    check_operation("/calls", "POST", r, 409, MSG_IN_PROGRESS)
    assert_error(r, 409, MSG_IN_PROGRESS)
    assert_error(line.post(key, body=line.body(ring_timeout=9)), 422, MSG_REUSED)
    assert line.calls() == []
    age_key(db, line.org.id, key, STALE_MS - 5000)
    assert_error(line.post(key, body=body), 409, MSG_IN_PROGRESS)
    age_key(db, line.org.id, key, 10000)
    data = ok(line.post(key, body=body))
    assert [c["call_uuid"] for c in line.calls()] == [data["call_uuid"]]
    assert keys_of(db, line.org.id) == {key: ("DONE", 200)}


def test_hash_is_of_the_canonical_body(line):
    """The stored hash is SHA-256 of the RFC 8785 form, computed here independently."""
    key = new_key()
    body = line.body(ring_timeout=45)
    ok(line.post(key, raw=json.dumps(body, indent=3)))
    plant = new_key()
    plant_pending(line.srv.db_url, line.org.id, plant, body)  # this test's own hash
    assert_error(line.post(plant, body=body), 409, MSG_IN_PROGRESS)
    assert_error(line.post(plant, body=line.body()), 422, MSG_REUSED)
    assert body_hash(body) == body_hash(json.loads(json.dumps(body, indent=3)))


# ---------------------------------------------------------------------------------------------
# The race: 20 identical requests at one instant, across two nodes on one PostgreSQL.

@pytest.mark.skipif(not PG_URL or ASAN, reason="once: on PostgreSQL, outside the sanitizer build")
def test_race_across_two_nodes_places_one_call(tmp_path):
    with fresh_db(tmp_path, "race") as url:
        trunk = free_udp_port()
        with engine(tmp_path, url, trunk) as a, engine(tmp_path, url, trunk) as b:
            line = Line(a)
            key = new_key()
            body = line.body()
            barrier = threading.Barrier(N_RACE)
            results = [None] * N_RACE

            payload = json.dumps(body).encode()
            wire = (b"POST /sfvopi/calls HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: "
                    + line.org.key.encode() + b"\r\nIdempotency-Key: " + key.encode()
                    + b"\r\nContent-Type: application/json\r\nContent-Length: "
                    + str(len(payload)).encode() + b"\r\nConnection: close\r\n\r\n"
                    + payload)

            def go(i):
                # Connected before the barrier and one write after it, so that the 20
                # requests reach the nodes within a fraction of a millisecond.
                node = (a, b)[i % 2]
                sock = socket.create_connection(("127.0.0.1", node.port), timeout=15)
                try:
                    barrier.wait(timeout=10)
                    sock.sendall(wire)
                    resp = http.client.HTTPResponse(sock)
                    resp.begin()
                    results[i] = RawResponse(resp.status, resp.headers, resp.read())
                finally:
                    sock.close()

            with Sipp("out_busy", tmp_path, port=trunk) as uas:
                uas.wait_listening()
                threads = [threading.Thread(target=go, args=(i,)) for i in range(N_RACE)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(20)
                assert uas.wait(20) == 0, uas.report()
            assert all(r is not None for r in results), results
            placed = [r for r in results if r.status_code == 200 and replayed(r) is None]
            replays = [r for r in results if r.status_code == 200 and replayed(r) == "true"]
            busy = [r for r in results if r.status_code == 409]
            assert len(placed) == 1, [(r.status_code, r.text) for r in results]
            assert len(placed) + len(replays) + len(busy) == N_RACE, \
                [(r.status_code, r.text) for r in results]
            for r in replays:
                assert r.content == placed[0].content
            for r in busy:
                assert r.json() == {"message": MSG_IN_PROGRESS}
            data = ok(placed[0])
            calls = line.calls()
            assert [c["call_uuid"] for c in calls] == [data["call_uuid"]], calls
            assert len({m.header("call-id") for m in uas.received("INVITE")}) == 1, uas.report()
            # Afterwards every node answers the kept answer.
            for node in (a, b):
                r = requests.post(node.url + "/sfvopi/calls", json=body, timeout=15,
                                  headers={"X-API-Key": line.org.key, "Idempotency-Key": key})
                assert replayed(r) == "true" and r.content == placed[0].content
            summary = (f"race: {len(placed)} placed, {len(replays)} replayed, "
                       f"{len(busy)} in progress (409) of {N_RACE}")
            print(summary)
            with open(os.environ.get("SFVOPI_IDEM_RACE_LOG", os.devnull), "a") as f:
                f.write(summary + "\n")


# ---------------------------------------------------------------------------------------------
# The README's example.

def test_readme_retry_curl(tmp_path):
    """README "Retrying call creation safely.": its curl, run twice as written (address made
    the test server's, $H the demo key's header), prints the same answer and places one call."""
    from test_docs import (CALLS_HEADING, DOC_URL, README, call_server, demo_key, doc_item,
                           doc_section, logical_lines, one_block)
    from conftest import Client

    item = doc_item(doc_section(README.read_text(encoding="utf-8"), CALLS_HEADING),
                    "Retrying call creation safely.")
    body, _ = one_block(item, "sh", "'- **Retrying call creation safely.**'")
    steps = logical_lines(body)
    assert len(steps) == 1 and steps[0].startswith("curl ") and "Idempotency-Key" in steps[0]
    curl = steps[0].replace(DOC_URL, "URL")
    sent = json.loads(re.search(r"-d '([^']*)'", curl).group(1))
    with call_server(tmp_path) as srv:
        key = demo_key(srv)
        api = Client(srv, key)
        app = api.create_app(name="Retry", answer_url="https://example.com/answer")
        api.link(app["app_id"], sent["from"])
        script = (f"set -eu\nH='X-API-Key: {key}'\n{curl.replace('URL', srv.url)}\necho\n"
                  f"{curl.replace('URL', srv.url)}\n")
        cp = subprocess.run(["bash", "--noprofile", "--norc", "-c", script],
                            capture_output=True, text=True, timeout=30, cwd=tmp_path,
                            stdin=subprocess.DEVNULL)
        assert cp.returncode == 0, cp.stderr
        first, second = cp.stdout.split("\n")
        assert first == second and json.loads(first)["message"] == "success", cp.stdout
        calls = ok(api.get("/calls"))
        assert [c["call_uuid"] for c in calls] == [json.loads(first)["data"]["call_uuid"]]
