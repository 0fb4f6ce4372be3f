"""Outbound pacing (spec/AGENT.md section 6): per-app max_concurrent_calls and calls_per_second,
and the queue of calls waiting for them.

On both backends (cheap): the app fields (create, update, get, null clears, validation, absent
when unset); a waiting call's record (QUEUED with queue_position); a REST hangup, unlinking the
from-number and deleting the app each end waiting calls CANCELED "16" with their hangup webhook.
SIPp on the trunk rings and never answers, which holds the app's one place (max_concurrent_calls
1) while the others wait.

Once (PostgreSQL, two nodes, plain build): 30 calls posted at once over both nodes to an app with
max_concurrent_calls 5 and calls_per_second 2, SIPp answering each and hanging up after 2 s; the
SIPp message log shows at most 5 calls live at once, INVITEs at least 450 ms apart and at most 11
in any 5 s; every call ends COMPLETED; the last call's queue_position falls to its start. Then a
full queue (1000 waiting) answers 429 with Retry-After. The measured figures are printed and
written to pacing-figures.json in pytest's base temporary directory.
"""

import contextlib
import json
import threading
import time

import pytest

from conftest import ASAN, BIN, PG_URL, MSG_INVALID, Server, assert_error, fresh_db, ok, \
    wait_until
from openapi_check import check_operation
from sipp_helper import Sipp, free_rtp_range, free_udp_port, port_taken
from test_calls_sip import (  # noqa: F401  (fixtures)
    CALLEE, FINAL, Line, _server_alive, diag, fc, finish, get_record, line, srv, work,
)

QUEUE_FULL = "Too many queued calls for this app"


def call_body(line, fc, **extra):
    body = {"from": line.number, "to": CALLEE, "answer_url": fc.url("/answer"),
            "hangup_url": fc.url("/hangup"), "ring_timeout": 60}
    body.update(extra)
    return body


def post_call(api, body):
    data = ok(api.post("/calls", json=body))
    assert set(data) == {"request_uuid", "call_uuid", "status"} and data["status"] == "queued"
    return data


def record(api, call_id):
    return ok(api.get(f"/calls/{call_id}"))


def wait_record(api, call_id, pred, timeout=15, what="record"):
    seen = {}

    def check():
        seen["r"] = record(api, call_id)
        return pred(seen["r"])
    assert wait_until(check, timeout=timeout, interval=0.05), f"{what}: {seen.get('r')}"
    return seen["r"]


def hangups_for(fc, call_id):
    return [h for h in fc.requests("/hangup") if (h.json or {}).get("call_uuid") == call_id]


# ---------------------------------------------------------------------------------------------
# The app fields.

def test_app_pacing_fields_create_update_get_and_clear(srv):
    api = srv.make_org().client()
    plain = api.create_app(name="plain")
    # Unset: the app object is exactly as a documented client knows it.
    assert "max_concurrent_calls" not in plain and "calls_per_second" not in plain, plain
    r = api.post("/apps", json={"name": "paced", "answer_url": "https://example.com/a",
                                "max_concurrent_calls": 5, "calls_per_second": 2})
    check_operation("/apps", "POST", r, 200)
    paced = ok(r)
    assert (paced["max_concurrent_calls"], paced["calls_per_second"]) == (5, 2), paced
    got = api.get_app(paced["app_id"])
    assert (got["max_concurrent_calls"], got["calls_per_second"]) == (5, 2), got
    listed = {a["app_id"]: a for a in ok(api.get("/apps"))}
    assert listed[paced["app_id"]]["calls_per_second"] == 2
    # Update one; the other stays. null clears one.
    r = api.put(f"/apps/{paced['app_id']}", json={"calls_per_second": 100})
    check_operation("/apps/{app_id}", "PUT", r, 200)
    up = ok(r)
    assert (up["max_concurrent_calls"], up["calls_per_second"]) == (5, 100), up
    up = ok(api.put(f"/apps/{paced['app_id']}", json={"max_concurrent_calls": None}))
    assert "max_concurrent_calls" not in up and up["calls_per_second"] == 100, up
    up = ok(api.put(f"/apps/{paced['app_id']}", json={"name": "renamed"}))
    assert "max_concurrent_calls" not in up and up["calls_per_second"] == 100, up
    up = ok(api.put(f"/apps/{paced['app_id']}", json={"calls_per_second": None,
                                                      "max_concurrent_calls": 10000}))
    assert up["max_concurrent_calls"] == 10000 and "calls_per_second" not in up, up
    assert api.get_app(paced["app_id"]) == up


BAD = [
    ("max_concurrent_calls", 0, "must be an integer from 1 to 10000"),
    ("max_concurrent_calls", 10001, "must be an integer from 1 to 10000"),
    ("max_concurrent_calls", "5", "must be an integer"),
    ("max_concurrent_calls", 2.5, "must be an integer"),
    ("calls_per_second", 0, "must be an integer from 1 to 100"),
    ("calls_per_second", 101, "must be an integer from 1 to 100"),
    ("calls_per_second", True, "must be an integer"),
    ("calls_per_second", -1, "must be an integer from 1 to 100"),
]


@pytest.mark.parametrize("field,value,reason", BAD)
def test_app_pacing_fields_validation(srv, field, value, reason):
    api = srv.make_org().client()
    r = api.post("/apps", json={"name": "x", "answer_url": "https://example.com/a", field: value})
    assert_error(r, 400, MSG_INVALID)
    assert r.json()["errors"] == [{"field": field, "reason": reason}], r.text
    assert ok(api.get("/apps")) == []
    app = api.create_app(name="y", max_concurrent_calls=3)
    r = api.put(f"/apps/{app['app_id']}", json={field: value})
    assert_error(r, 400, MSG_INVALID)
    assert r.json()["errors"] == [{"field": field, "reason": reason}], r.text
    assert api.get_app(app["app_id"]) == app


# ---------------------------------------------------------------------------------------------
# Waiting calls, on one node.

@contextlib.contextmanager
def ringing_then_waiting(srv, fc, work, n):
    """An app with max_concurrent_calls 1: its first call rings at SIPp, which never answers,
    and the next n wait. Yields (line, sipp, the first call, the waiting ones) inside SIPp's
    run."""
    line = Line(srv, fc)
    ok(line.api.put(f"/apps/{line.app['app_id']}", json={"max_concurrent_calls": 1}))
    s = Sipp("out_no_answer", work, port=srv.trunk_port)
    with s:
        s.wait_listening()
        first = post_call(line.api, call_body(line, fc))
        wait_record(line.api, first["call_uuid"], lambda r: r["call_status"] == "RINGING",
                    what="first call ringing")
        yield line, s, first, [post_call(line.api, call_body(line, fc)) for _ in range(n)]


def test_waiting_calls_show_position_and_end_canceled(srv, fc, work):
    """max_concurrent_calls 1: the first call rings (SIPp never answers), the next three wait
    with positions 1, 2, 3. A REST hangup ends the first waiting one CANCELED "16" with its
    hangup webhook and moves the others up; unlinking the number ends the other two; deleting
    the app ends the ringing one (CANCEL to SIPp)."""
    with ringing_then_waiting(srv, fc, work, 3) as (line, s, first, waiting):
        api = line.api
        r = api.get(f"/calls/{waiting[0]['call_uuid']}")
        check_operation("/calls/{call_id}", "GET", r, 200)
        for i, w in enumerate(waiting):
            rec = record(api, w["call_uuid"])
            assert rec["call_status"] == "QUEUED" and rec["queue_position"] == i + 1, rec
            assert rec["started_at"] is None and rec["ended_at"] is None, rec
            assert rec["hangup_cause"] is None and rec["duration"] is None, rec
            assert rec["request_uuid"] == w["request_uuid"], rec
        # By request_uuid too; a started call shows no position.
        assert record(api, waiting[2]["request_uuid"])["queue_position"] == 3
        assert "queue_position" not in record(api, first["call_uuid"])
        # The list shows waiting calls as QUEUED.
        listed = {c["call_uuid"]: c for c in ok(api.get("/calls"))}
        assert listed[waiting[0]["call_uuid"]]["call_status"] == "QUEUED"

        r = api.post(f"/calls/{waiting[0]['call_uuid']}/hangup")
        assert ok(r) == {"call_uuid": waiting[0]["call_uuid"], "status": "QUEUED"}, r.text
        rec = record(api, waiting[0]["call_uuid"])
        assert rec["call_status"] == "CANCELED" and rec["hangup_cause"] == "16", rec
        assert rec["ended_at"] is not None and "queue_position" not in rec, rec
        assert wait_until(lambda: hangups_for(fc, waiting[0]["call_uuid"]), timeout=10)
        h = hangups_for(fc, waiting[0]["call_uuid"])[0].json
        assert (h["call_status"], h["hangup_cause"], h["direction"]) == \
            ("CANCELED", "16", "OUTBOUND"), h
        assert record(api, waiting[1]["call_uuid"])["queue_position"] == 1
        assert record(api, waiting[2]["call_uuid"])["queue_position"] == 2
        # Ended: 409, as for any ended call.
        assert_error(api.post(f"/calls/{waiting[0]['call_uuid']}/hangup"), 409,
                     "Call already ended")

        ok(api.delete(f"/apps/{line.app['app_id']}/numbers/{line.number}"))
        for w in waiting[1:]:
            rec = record(api, w["call_uuid"])
            assert (rec["call_status"], rec["hangup_cause"]) == ("CANCELED", "16"), rec
        assert wait_until(lambda: all(hangups_for(fc, w["call_uuid"]) for w in waiting),
                          timeout=10)
        # The ringing call goes on until the app goes.
        assert record(api, first["call_uuid"])["call_status"] == "RINGING"
        ok(api.delete(f"/apps/{line.app['app_id']}"))
        wait_record(api, first["call_uuid"], lambda r: r["call_status"] == "CANCELED",
                    what="ringing call cancelled by the app's deletion")
        finish(srv, s)
    assert s.received("CANCEL"), diag(srv, s)
    assert len(s.received("INVITE")) == 1, diag(srv, s)  # no waiting call ever started
    time.sleep(0.3)  # a duplicate webhook would come within this
    for w in waiting:
        assert len(hangups_for(fc, w["call_uuid"])) == 1


def test_deleting_the_app_cancels_its_waiting_calls(srv, fc, work):
    """Waiting calls of a deleted app end CANCELED "16", each with one hangup webhook."""
    with ringing_then_waiting(srv, fc, work, 2) as (line, s, first, waiting):
        api = line.api
        assert [record(api, w["call_uuid"])["queue_position"] for w in waiting] == [1, 2]
        ok(api.delete(f"/apps/{line.app['app_id']}"))
        for w in waiting:
            rec = record(api, w["call_uuid"])
            assert (rec["call_status"], rec["hangup_cause"]) == ("CANCELED", "16"), rec
        wait_record(api, first["call_uuid"], lambda r: r["call_status"] == "CANCELED")
        finish(srv, s)
    assert wait_until(lambda: all(hangups_for(fc, w["call_uuid"]) for w in waiting), timeout=10)
    time.sleep(0.3)
    assert all(len(hangups_for(fc, w["call_uuid"])) == 1 for w in waiting)
    assert len(s.received("INVITE")) == 1, diag(srv, s)


# ---------------------------------------------------------------------------------------------
# The rate and the cap, over two nodes on PostgreSQL (once).

N_CALLS = 30
MAX_CONCURRENT = 5
CPS = 2
TALK_MS = 2000


class Node:
    def __init__(self, url, work, name, trunk_port):
        self.sip_port = free_udp_port()
        rtp = free_rtp_range(60, step=7)
        argv = [BIN, "--db", url, "serve", "--listen", "127.0.0.1:0", "--threads", "4",
                "--node-id", name, "--sip-listen", f"127.0.0.1:{self.sip_port}",
                "--rtp-ports", f"{rtp[0]}-{rtp[1]}", "--sip-trunk", f"sip:127.0.0.1:{trunk_port}"]
        self.server = Server(url, work, argv=argv).start()
        assert wait_until(lambda: port_taken(self.sip_port), timeout=5, interval=0.05), \
            self.server.log


def intervals(sipp):
    """Per Call-ID: when SIPp got the INVITE and when the call ended for it (the 200 to its
    BYE)."""
    start, end = {}, {}
    for m in sipp.messages():
        cid = m.header("call-id")
        if m.direction == "in" and m.method == "INVITE":
            start.setdefault(cid, m.time)
        if m.direction == "in" and m.status == 200 and m.cseq_method == "BYE":
            end.setdefault(cid, m.time)
    return start, end


@pytest.mark.skipif(not PG_URL or ASAN, reason="two nodes on PostgreSQL, about 25 s: run once, "
                    "in the plain build's PostgreSQL pass")
def test_pacing_across_two_nodes(tmp_path, tmp_path_factory, fc):
    trunk = free_udp_port()
    with fresh_db(tmp_path, "pacing") as url:
        a = Node(url, tmp_path, "pace-a", trunk)
        b = Node(url, tmp_path, "pace-b", trunk)
        try:
            run_pacing(a, b, tmp_path, tmp_path_factory, fc, trunk)
            run_hangup_race(a, b, fc)
            run_full_queue(a, b, fc)
        finally:
            rc = [n.server.stop() for n in (a, b)]
        assert rc == [0, 0], a.server.log[-3000:] + b.server.log[-3000:]


def run_pacing(a, b, work, tmp_path_factory, fc, trunk):
    line = Line(a.server, fc)
    api_a, api_b = line.api, line.org.client().__class__(b.server, line.org.key)
    ok(api_a.put(f"/apps/{line.app['app_id']}",
                 json={"max_concurrent_calls": MAX_CONCURRENT, "calls_per_second": CPS}))
    s = Sipp("out_answer", work, port=trunk, duration_ms=TALK_MS, global_timeout_s=90,
             extra=["-m", str(N_CALLS)])
    calls = [None] * N_CALLS
    with s:
        s.wait_listening()
        go = threading.Barrier(N_CALLS - 1)

        def post(i):
            go.wait()
            calls[i] = post_call(api_a if i % 2 else api_b, call_body(line, fc))
        threads = [threading.Thread(target=post, args=(i,)) for i in range(N_CALLS - 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        last = calls[N_CALLS - 1] = post_call(api_b, call_body(line, fc))
        assert all(calls), calls
        # The last call's place falls to its start.
        positions = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rec = record(api_a, last["call_uuid"])
            if "queue_position" not in rec:
                break
            assert rec["call_status"] == "QUEUED", rec
            positions.append(rec["queue_position"])
            time.sleep(0.2)
        assert positions and positions[0] >= 10, positions
        assert all(x >= y for x, y in zip(positions, positions[1:])), positions
        assert positions[-1] <= 2, positions
        # Every call ends COMPLETED.
        for c in calls:
            wait_record(api_a, c["call_uuid"], lambda r: r["call_status"] in FINAL, timeout=60,
                        what="call final")
        finals = {record(api_b, c["call_uuid"])["call_status"] for c in calls}
        assert finals == {"COMPLETED"}, finals
        rc = s.wait(60)
        assert rc == 0, s.report()
    start, end = intervals(s)
    assert len(start) == N_CALLS and len(end) == N_CALLS, s.report()
    invites = sorted(start.values())
    gaps = [y - x for x, y in zip(invites, invites[1:])]
    in_5s = max(sum(1 for t in invites if t0 <= t < t0 + 5.0) for t0 in invites)
    per_s = max(sum(1 for t in invites if t0 <= t < t0 + 1.0) for t0 in invites)
    events = sorted([(t, 1) for t in start.values()] + [(t, -1) for t in end.values()],
                    key=lambda e: (e[0], e[1]))
    live = peak = 0
    for _, d in events:
        live += d
        peak = max(peak, live)
    figures = {"calls": N_CALLS, "max_concurrent": peak, "min_invite_gap_ms": round(
        min(gaps) * 1000), "max_invites_per_1s": per_s, "max_invites_per_5s": in_5s,
        "total_s": round(invites[-1] - invites[0], 2), "queue_positions_seen": positions}
    print("pacing figures:", json.dumps(figures))
    (tmp_path_factory.getbasetemp() / "pacing-figures.json").write_text(json.dumps(figures))
    assert peak <= MAX_CONCURRENT, figures
    assert min(gaps) >= 0.45, figures
    assert in_5s <= 11, figures
    # Both nodes started calls.
    owners = {n for n in ("pace-a", "pace-b") if "queued call starting" in
              (a.server.log if n == "pace-a" else b.server.log)}
    assert owners == {"pace-a", "pace-b"}, owners


def run_hangup_race(a, b, fc):
    """A REST hangup of one waiting call sent to both nodes at once: one 200, one 409, the call
    CANCELED "16" with one hangup webhook; the app's deletion through the other node ends the
    rest, each with one webhook."""
    line = Line(a.server, fc)
    api_b = line.org.client().__class__(b.server, line.org.key)
    ok(line.api.put(f"/apps/{line.app['app_id']}",
                    json={"max_concurrent_calls": 1, "calls_per_second": 1}))
    calls = [post_call(line.api if i % 2 else api_b, call_body(line, fc)) for i in range(5)]
    target = calls[-1]["call_uuid"]
    assert record(line.api, target)["queue_position"] >= 2
    go, answers = threading.Barrier(2), []

    def hang(api):
        go.wait()
        answers.append(api.post(f"/calls/{target}/hangup"))
    threads = [threading.Thread(target=hang, args=(api,)) for api in (line.api, api_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
    rec = record(api_b, target)
    assert (rec["call_status"], rec["hangup_cause"]) == ("CANCELED", "16"), rec
    ok(api_b.delete(f"/apps/{line.app['app_id']}"))
    for c in calls:
        wait_record(line.api, c["call_uuid"], lambda r: r["call_status"] in FINAL, timeout=40,
                    what="call final after the app's deletion")
    assert wait_until(lambda: all(hangups_for(fc, c["call_uuid"]) for c in calls), timeout=10)
    time.sleep(0.5)  # a duplicate webhook would come within this
    counts = [len(hangups_for(fc, c["call_uuid"])) for c in calls]
    assert counts == [1] * len(calls), counts


def run_full_queue(a, b, fc):
    """1000 waiting calls fill the queue: the next POST answers 429 with Retry-After; deleting the
    app then ends them all CANCELED."""
    line = Line(a.server, fc)
    api_b = line.org.client().__class__(b.server, line.org.key)
    app = ok(line.api.put(f"/apps/{line.app['app_id']}",
                          json={"max_concurrent_calls": 1, "calls_per_second": 1,
                                "hangup_url": None}))
    assert app["calls_per_second"] == 1
    body = {"from": line.number, "to": CALLEE, "answer_url": fc.url("/answer")}
    accepted, refused, lock = [], [], threading.Lock()

    def worker(api):
        while True:
            with lock:
                if refused or len(accepted) > 1100:
                    return
            r = api.post("/calls", json=body)
            with lock:
                if r.status_code == 429:
                    refused.append(r)
                else:
                    accepted.append(ok(r)["call_uuid"])
    threads = [threading.Thread(target=worker, args=(api,))
               for api in (line.api, api_b) * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert refused, len(accepted)
    r = refused[0]
    check_operation("/calls", "POST", r, 429, QUEUE_FULL)
    assert_error(r, 429, QUEUE_FULL)
    retry = int(r.headers["Retry-After"])
    assert retry >= 1, r.headers
    # 1000 wait (a few have started meanwhile, one a second).
    waiting = [c for c in accepted[-20:] if "queue_position" in record(line.api, c)]
    assert waiting and max(record(line.api, c)["queue_position"] for c in waiting) == 1000
    assert 1000 <= len(accepted) <= 1000 + 60, len(accepted)
    print(f"full queue: accepted {len(accepted)}, Retry-After {retry}")
    ok(line.api.delete(f"/apps/{line.app['app_id']}"))
    for c in accepted[-5:]:
        rec = record(api_b, c)
        assert (rec["call_status"], rec["hangup_cause"]) == ("CANCELED", "16"), rec
