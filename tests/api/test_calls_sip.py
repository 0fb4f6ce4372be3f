"""Calls end to end over SIP (spec/CALLS.md sections 2-5, 8, 9): SIPp plays the carrier
(tests/sipp/*.xml), fake_customer.FakeCustomer plays the customer's web server.

The server runs with
    serve --sip-listen 127.0.0.1:<udp port> --sip-trunk sip:127.0.0.1:<SIPp UAS port>
          --rtp-ports <LOW-HIGH>
Inbound: a SIPp UAC sends INVITEs to the --sip-listen address. Outbound: a SIPp UAS listens on
the trunk port and answers sfvopi's INVITEs.

The audio stream (section 7) is not exercised: the answer webhook replies with a valid Stream
JSON whose ws:// URL is a closed local port and `keep_call_alive: true`, so the call stays up,
silent, until a hangup or its time limit.

Skipped as a whole when `sipp` is not installed or when the binary has no call engine yet
(`serve --help` does not list --sip-listen). Every test is bounded (well under 40 s): SIPp by its
scenario timeouts, -timeout and a subprocess timeout, webhooks by wait_for() timeouts.
"""

import contextlib
import os
import re
import subprocess
import time
import uuid

import pytest

from conftest import (
    ASAN, BIN, PG_URL, STRICT, Server, assert_error, assert_recent, fresh_db, ok, parse_ts, wait_until,
)
from fake_customer import (
    FakeCustomer, reply_bad_json, reply_invalid_stream, reply_slow, reply_status, reply_stream,
)
from openapi_check import check_operation
from sipp_helper import (RINGING_BLOCK, SIPP, Sipp, add_header, free_rtp_range, free_udp_port,
                         port_taken, render)


def _why_skip():
    if SIPP is None:
        return "sipp (package sip-tester) is not installed"
    if not (os.path.isfile(BIN) and os.access(BIN, os.X_OK)):
        return f"sfvopi binary not found at {BIN}"
    cp = subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True, timeout=10,
                        stdin=subprocess.DEVNULL)
    if "--sip-listen" not in cp.stdout + cp.stderr:
        return "this sfvopi build has no call engine yet (serve --help lists no --sip-listen)"
    return None


_WHY = _why_skip()

# The engine on PostgreSQL runs in the plain build (its records there are what differs); under
# ASan+UBSan the engine is checked in the SQLite pass, and the PostgreSQL driver by the store
# suite (test_store on PostgreSQL, in the sanitizer build too).
pytestmark = pytest.mark.skipif(ASAN and bool(PG_URL), reason="the call engine under ASan+UBSan:"
                                " the SQLite pass")

# The engine's timers (answer webhook deadline, ring timeout, call time limit, call cap) wait
# seconds whatever the database: they run in the SQLite passes only.
TIMERS_ONCE = pytest.mark.skipif(bool(PG_URL), reason="a timer of the call engine, independent of"
                                 " the database backend: SQLite passes only")
if _WHY:
    if STRICT:  # in CI a missing tool fails the run instead of hiding these tests
        raise RuntimeError(_WHY + " (SFVOPI_TEST_STRICT=1: every check must run)")
    pytest.skip(_WHY, allow_module_level=True)


UUID4_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
REQUEST_UUID_RE = re.compile(r"^sfv_ob_req_[a-z0-9]{12}$")
UA_RE = re.compile(r"^sfvopi/\S+$")
E164_RE = re.compile(r"^\+[1-9][0-9]{7,14}$")

CALLER = "+14155550100"  # the inbound caller (From user part), already E.164
CALLEE = "+14155550123"  # the outbound callee (`to`)
FINAL = {"COMPLETED", "NO_ANSWER", "BUSY", "CANCELED", "FAILED"}

RING_FIELDS = {"call_uuid", "request_uuid", "from", "to", "direction", "call_status",
               "started_at"}
ANSWER_FIELDS = {"call_uuid", "from", "to", "direction", "call_status", "answered_at"}
HANGUP_FIELDS = {"call_uuid", "from", "to", "direction", "call_status", "started_at",
                 "ended_at", "duration", "hangup_cause",
                 "rtp_packets_received", "rtp_packets_lost", "rtp_jitter_ms"}
RECORD_FIELDS = HANGUP_FIELDS | {"request_uuid", "org_id", "app_id", "answer_at"}


# ---------------------------------------------------------------------------------------------
# Fixtures.

@contextlib.contextmanager
def engine_server(tmp, *extra, env=None, trunk=True, db_url=None, trunk_port=None, threads=2):
    """A server with the call engine on a fresh database (or db_url, which nodes may share): SIP
    on a free UDP port, the trunk at .trunk_port (where outbound tests start their SIPp UAS; a
    free port unless trunk_port names one), media on a free port range.
    trunk: True for that trunk, False for none, or a --sip-trunk URI of the caller's."""
    sip_port, trunk_port = free_udp_port(), trunk_port or free_udp_port()
    rtp = free_rtp_range(100, step=7)
    with contextlib.ExitStack() as stack:
        url = db_url or stack.enter_context(fresh_db(tmp, "calls"))
        argv = [BIN, "--db", url, "serve", "--listen", "127.0.0.1:0", "--threads", str(threads),
                "--sip-listen", f"127.0.0.1:{sip_port}",
                "--rtp-ports", f"{rtp[0]}-{rtp[1]}", *extra]
        if trunk:
            argv += ["--sip-trunk",
                     trunk if isinstance(trunk, str) else f"sip:127.0.0.1:{trunk_port}"]
        s = Server(url, tmp, argv=argv, env=env).start()
        s.sip_port, s.trunk_port, s.rtp = sip_port, trunk_port, rtp
        try:
            if not wait_until(lambda: port_taken(sip_port), timeout=5, interval=0.05):
                pytest.fail(f"SIP port {sip_port} not bound after start; log:\n{s.log}")
            yield s
        finally:
            rc = s.stop()
        # A clean exit: every call ended, nothing leaked (the sanitizer build exits
        # non-zero on any report).
        assert rc == 0, f"server exit code {rc}; log tail:\n{s.log[-4000:]}"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    """One server with the call engine for the module."""
    with engine_server(tmp_path_factory.mktemp("calls")) as s:
        yield s


@pytest.fixture(autouse=True)
def _server_alive(srv):
    yield
    assert srv.proc.poll() is None, f"server died (rc={srv.proc.returncode}); log:\n{srv.log}"


@pytest.fixture
def fc():
    with FakeCustomer(default=reply_stream()) as f:
        yield f


class Line:
    """An organisation with a number linked to an app whose URLs point at the fake customer."""

    def __init__(self, srv, fc):
        self.org = srv.make_org()
        self.api = self.org.client()
        self.number = self.org.add_numbers(1)[0]
        self.app = self.api.create_app(
            name="calls", answer_url=fc.url("/answer"), hangup_url=fc.url("/hangup"),
            fallback_answer_url=fc.url("/fallback"))
        self.api.link(self.app["app_id"], self.number)


@pytest.fixture
def line(srv, fc):
    return Line(srv, fc)


@pytest.fixture
def work(tmp_path):
    return tmp_path


# ---------------------------------------------------------------------------------------------
# Helpers.

def diag(srv, *sipps):
    parts = [f"--- server log (tail)\n{srv.log[-6000:]}"]
    parts += [p.report() for p in sipps]
    return "\n".join(parts)


def uac(srv, work, scenario, number, *, caller=CALLER, keys=None, duration_ms=None):
    """A SIPp carrier calling `number` at sfvopi (not started)."""
    return Sipp(scenario, work, remote=f"127.0.0.1:{srv.sip_port}", service=number,
                keys={"caller": caller, **(keys or {})}, duration_ms=duration_ms)


@contextlib.contextmanager
def uas(srv, work, scenario, *, duration_ms=None):
    """A SIPp carrier on the trunk port, answering sfvopi's INVITE, started and listening."""
    s = Sipp(scenario, work, port=srv.trunk_port, duration_ms=duration_ms)
    with s:
        s.wait_listening()
        yield s


def finish(srv, sipp, timeout=35):
    """Wait for a SIPp run to end and assert it followed its scenario (exit code 0)."""
    rc = sipp.wait(timeout)
    assert rc == 0, f"sipp exit code {rc}\n" + diag(srv, sipp)


def place_call(line, fc, **extra):
    body = {"from": line.number, "to": CALLEE, "answer_url": fc.url("/answer"),
            "ring_url": fc.url("/ring"), "hangup_url": fc.url("/hangup")}
    body.update(extra)
    r = line.api.post("/calls", json=body)
    check_operation("/calls", "POST", r, 200)  # the body and headers docs/openapi.json gives
    data = ok(r)
    assert set(data) == {"request_uuid", "call_uuid", "status"}, data
    assert REQUEST_UUID_RE.match(data["request_uuid"]), data
    assert UUID4_RE.match(data["call_uuid"]), data
    assert data["status"] == "queued", data
    return data


def check_headers(hit, call_uuid):
    assert UA_RE.match(hit.header("user-agent", "")), hit.headers
    assert hit.header("x-sfvopi-call-uuid") == call_uuid, hit.headers
    assert hit.header("x-sfvopi-delivery"), hit.headers
    if hit.method == "POST":
        ct = hit.header("content-type", "")
        assert ct.split(";")[0].strip().lower() == "application/json", hit.headers
        assert isinstance(hit.json, dict), hit.body


def check_payload(hit, kind, *, direction, frm, to, status, call_uuid=None, request_uuid=None,
                  cause=None, answered=True):
    """The fields of a ring/answer/hangup payload (CALLS.md section 5): exactly those that
    apply, with their values. Returns the payload."""
    p = hit.payload
    assert hit.method == "POST", hit
    fields = {"ring": RING_FIELDS, "answer": ANSWER_FIELDS, "hangup": HANGUP_FIELDS}[kind]
    fields = set(fields)
    if direction == "OUTBOUND":
        fields.add("request_uuid")
    if kind == "hangup" and answered:
        fields.add("answer_at")
    assert set(p) == fields, f"{kind} payload fields {sorted(p)} != {sorted(fields)}: {p}"
    assert UUID4_RE.match(p["call_uuid"]), p
    if call_uuid is not None:
        assert p["call_uuid"] == call_uuid, p
    if request_uuid is not None:
        assert p["request_uuid"] == request_uuid, p
    assert (p["from"], p["to"], p["direction"], p["call_status"]) == (frm, to, direction, status), p
    check_headers(hit, p["call_uuid"])
    for k in ("started_at", "answered_at", "answer_at", "ended_at"):
        if k in p:
            assert_recent(p[k])
    if kind == "hangup":
        assert p["hangup_cause"] == cause, p
        assert isinstance(p["duration"], int) and not isinstance(p["duration"], bool), p
        start, end = parse_ts(p["started_at"]), parse_ts(p["ended_at"])
        assert start <= end, p
        if answered:
            ans = parse_ts(p["answer_at"])
            assert start <= ans <= end, p
            secs = (end - ans).total_seconds()
            assert p["duration"] >= 0 and abs(p["duration"] - secs) <= 1, p
        else:
            assert p["duration"] == 0, p
    return p


def get_record(line, call_id):
    """GET /calls/<id> (with a Line's or a Client's key), checked against docs/openapi.json."""
    api = getattr(line, "api", line)
    r = api.get(f"/calls/{call_id}")
    check_operation("/calls/{call_id}", "GET", r, 200)
    return ok(r)


def live_record(line, call_id, *statuses):
    """The record of a call still alive: one of `statuses`, nothing of the end filled in. The
    record is written off the engine's thread (SIP.md section 4), a moment after the event that
    changed it: wait 2 s at most for it."""
    deadline = time.monotonic() + 2
    rec = get_record(line, call_id)
    while rec["call_status"] not in statuses and time.monotonic() < deadline:
        time.sleep(0.02)
        rec = get_record(line, call_id)
    assert rec["call_status"] in statuses, rec
    assert (rec["ended_at"], rec["duration"], rec["hangup_cause"]) == (None, None, None), rec
    return rec


def listed_record(line, call_id):
    """The call as GET /calls lists it, checked against docs/openapi.json."""
    r = line.api.get("/calls?limit=100")
    body = check_operation("/calls", "GET", r, 200)
    found = [x for x in body["data"] if x["call_uuid"] == call_id]
    assert len(found) == 1, body
    return found[0]


def final_record(line, call_id, timeout=10):
    """GET /calls/<id> (with a Line's or a Client's key) until the record's status is final;
    return it."""
    rec = {}

    def done():
        nonlocal rec
        rec = get_record(line, call_id)
        return rec.get("call_status") in FINAL

    assert wait_until(done, timeout=timeout, interval=0.2), f"record never final: {rec}"
    return rec


def check_record(line, hangup, *, request_uuid=None):
    """The stored record (CALLS.md section 8) agrees with the hangup payload."""
    rec = final_record(line, hangup["call_uuid"])
    assert RECORD_FIELDS <= set(rec), f"record lacks {sorted(RECORD_FIELDS - set(rec))}: {rec}"
    for k in RECORD_FIELDS - {"org_id", "app_id"}:
        # A field the hangup payload leaves out (request_uuid inbound, answer_at unanswered) is
        # null in the record.
        assert rec[k] == hangup.get(k), f"record {k}={rec[k]!r}, hangup {hangup.get(k)!r}"
    assert rec["org_id"] == line.org.id and rec["app_id"] == line.app["app_id"], rec
    if "status" in rec:  # section 8 also names a `status`; if present, it is the final one
        assert rec["status"] == rec["call_status"], rec
    if request_uuid:
        assert get_record(line, request_uuid) == rec
    assert listed_record(line, rec["call_uuid"]) == rec
    return rec


def expect_hits(fc, *paths, timeout=10, settle=0.3):
    """Wait for one webhook per path, in this order, and then no other one for `settle`
    seconds (each webhook fires once; inbound calls have no ring webhook)."""
    fc.wait_for(len(paths), timeout=timeout)
    time.sleep(settle)
    hits = fc.hits
    assert [h.path for h in hits] == list(paths), hits
    return hits


def quiet(fc, seconds=1.0):
    """No webhook at all during `seconds`."""
    time.sleep(seconds)
    assert fc.hits == [], fc.hits


def in_range(port, rng):
    return rng[0] <= port <= rng[1]


# ---------------------------------------------------------------------------------------------
# Inbound.

def test_inbound_answered_then_caller_hangs_up(srv, line, fc, work):
    with uac(srv, work, "in_answer_bye", line.number, duration_ms=1500) as c:
        finish(srv, c)
    # SIP: 180 then 200 with an SDP answer on our media address and port range.
    codes = [m.status for m in c.received() if m.status and m.cseq_method == "INVITE"]
    assert 180 in codes and codes[-1] == 200 and codes.index(180) < codes.index(200), codes
    ok200 = c.received(status=200, cseq="INVITE")[0]
    codecs = ok200.sdp_codecs()
    assert codecs and codecs[0] in ("PCMA", "PCMU"), ok200.body
    ip, port = ok200.sdp_media()
    assert ip == "127.0.0.1" and in_range(port, srv.rtp), ok200.body
    assert c.received(status=200, cseq="BYE")

    answer, hangup = expect_hits(fc, "/answer", "/hangup")
    a = check_payload(answer, "answer", direction="INBOUND", frm=CALLER, to=line.number,
                      status="IN_PROGRESS")
    h = check_payload(hangup, "hangup", direction="INBOUND", frm=CALLER, to=line.number,
                      status="COMPLETED", call_uuid=a["call_uuid"], cause="16")
    assert h["answer_at"] == a["answered_at"], (a, h)
    assert 1 <= h["duration"] <= 3, h
    assert answer.header("x-sfvopi-delivery") != hangup.header("x-sfvopi-delivery")
    rec = check_record(line, h)
    assert rec["request_uuid"] is None and rec["direction"] == "INBOUND"
    # Another organisation does not see it.
    other = srv.make_org().client()
    assert_error(other.get(f"/calls/{a['call_uuid']}"), 404, "Call not found")


def test_inbound_national_format_numbers_are_normalised(srv, line, fc, work):
    """Request-URI user without '+' (12 digits with the country code) and a 10-digit caller."""
    with uac(srv, work, "in_answer_bye", line.number.lstrip("+"), caller="9812345678",
             duration_ms=300) as c:
        finish(srv, c)
    answer, hangup = expect_hits(fc, "/answer", "/hangup")
    assert answer.payload["to"] == line.number and answer.payload["from"] == "+919812345678"
    assert hangup.payload["call_status"] == "COMPLETED"


def test_inbound_caller_that_is_not_a_number_is_passed_as_sent(srv, line, fc, work):
    with uac(srv, work, "in_answer_bye", line.number, caller="anonymous", duration_ms=300) as c:
        finish(srv, c)
    answer, hangup = expect_hits(fc, "/answer", "/hangup")
    assert answer.payload["from"] == "anonymous" and hangup.payload["from"] == "anonymous"


# Inbound From user parts longer than a call record's 64 bytes, with bytes that are not UTF-8
# (passed to SIPp as raw bytes through surrogateescape), and what the record and the webhooks
# carry: the text as sent, each stray byte as %XX, cut at 64 bytes between characters and escapes.
NOT_UTF8_CALLERS = {
    # "%C3(%FF" and 55 letters are 62 bytes: the euro sign (3 bytes) would end at 65.
    "character-straddles-the-cut": ("\udcc3(\udcff" + "a" * 55 + "\u20actail",
                                    "%C3(%FF" + "a" * 55),
    # ... and with 56 letters, the escape of 0xFE would.
    "escape-straddles-the-cut": ("\udcc3(\udcff" + "a" * 56 + "\udcfetail",
                                 "%C3(%FF" + "a" * 56),
    "short-valid-text-kept": ("caf\u00e9\udce9", "caf\u00e9%E9"),
}


@pytest.mark.parametrize("case", list(NOT_UTF8_CALLERS))
def test_inbound_caller_not_utf8_is_escaped_and_cut_between_characters(srv, line, fc, work, case):
    caller, want = NOT_UTF8_CALLERS[case]
    assert len(want.encode()) <= 64
    with uac(srv, work, "in_answer_bye", line.number, caller=caller, duration_ms=300) as c:
        finish(srv, c)
    answer, hangup = expect_hits(fc, "/answer", "/hangup")
    a = check_payload(answer, "answer", direction="INBOUND", frm=want, to=line.number,
                      status="IN_PROGRESS")
    h = check_payload(hangup, "hangup", direction="INBOUND", frm=want, to=line.number,
                      status="COMPLETED", call_uuid=a["call_uuid"], cause="16")
    rec = check_record(line, h)
    assert rec["from"] == want, rec


def test_inbound_app_without_hangup_url_gets_no_hangup_webhook(srv, fc, work):
    org = srv.make_org()
    api = org.client()
    number = org.add_numbers(1)[0]
    app = api.create_app(name="nohangup", answer_url=fc.url("/answer"))
    api.link(app["app_id"], number)
    with uac(srv, work, "in_answer_bye", number, duration_ms=300) as c:
        finish(srv, c)
    answer, = expect_hits(fc, "/answer", settle=1.0)
    rec = final_record(api, answer.payload["call_uuid"])
    assert rec["call_status"] == "COMPLETED" and rec["hangup_cause"] == "16", rec


def test_link_local_answer_url_is_never_called_fallback_is(srv, fc, work):
    """A link-local answer_url (cloud metadata) counts as a failure at once: the fallback gets
    the request without waiting out the 10 s answer timeout, and the call stays up."""
    org = srv.make_org()
    api = org.client()
    number = org.add_numbers(1)[0]
    app = api.create_app(name="metadata", answer_url="http://169.254.169.254/latest/answer",
                         fallback_answer_url=fc.url("/fallback"), hangup_url=fc.url("/hangup"))
    api.link(app["app_id"], number)
    with uac(srv, work, "in_answer_bye", number, duration_ms=2000) as c:
        fallback, = fc.wait_for(1, path="/fallback", timeout=5)
        rec = live_record(api, fallback.payload["call_uuid"], "IN_PROGRESS")
        assert (rec["direction"], rec["request_uuid"]) == ("INBOUND", None), rec
        assert rec["answer_at"] == fallback.payload["answered_at"], (rec, fallback.payload)
        finish(srv, c)
    assert not c.received("BYE")
    expect_hits(fc, "/fallback", "/hangup")
    assert fallback.payload["call_status"] == "IN_PROGRESS"


def test_calls_list_newest_first_with_cursor(srv, line, fc, work):
    for _ in range(2):
        with uac(srv, work, "in_answer_bye", line.number, duration_ms=200) as c:
            finish(srv, c)
    hangups = fc.wait_for(2, path="/hangup", timeout=10)
    ids = [h.payload["call_uuid"] for h in hangups]
    for h in hangups:
        final_record(line, h.payload["call_uuid"])
    r = line.api.get("/calls?limit=1")
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"data", "message", "next_cursor"}, body
    assert [x["call_uuid"] for x in body["data"]] == [ids[1]], body
    r2 = line.api.get(f"/calls?limit=1&cursor={body['next_cursor']}")
    body2 = r2.json()
    assert [x["call_uuid"] for x in body2["data"]] == [ids[0]], body2
    assert "next_cursor" not in body2 or not ok(line.api.get(
        f"/calls?limit=1&cursor={body2['next_cursor']}")), body2
    assert_error(line.api.get("/calls?limit=0"), 400, "Invalid request body")
    assert_error(line.api.get("/calls?cursor=~~~"), 400, "Invalid request body")


def test_webhooks_by_get_carry_the_fields_as_a_query(srv, fc, work):
    """An app with GET methods: the same fields as a URL query string, numbers as decimal text,
    no body (CALLS.md section 5)."""
    org = srv.make_org()
    api = org.client()
    number = org.add_numbers(1)[0]
    app = api.create_app(name="get", answer_url=fc.url("/answer"), answer_method="GET",
                         hangup_url=fc.url("/hangup"), hangup_method="GET")
    api.link(app["app_id"], number)
    with uac(srv, work, "in_answer_bye", number, duration_ms=1200) as c:
        finish(srv, c)
    answer, hangup = expect_hits(fc, "/answer", "/hangup")
    for hit in (answer, hangup):
        assert hit.method == "GET" and hit.body == b"", hit
        check_headers(hit, answer.query["call_uuid"])
    assert set(answer.query) == ANSWER_FIELDS, answer.query
    assert answer.query["call_status"] == "IN_PROGRESS" and answer.query["to"] == number
    q = hangup.query
    assert set(q) == HANGUP_FIELDS | {"answer_at"}, q
    assert q["call_status"] == "COMPLETED" and q["hangup_cause"] == "16", q
    assert re.fullmatch(r"[0-9]+", q["duration"]) and 1 <= int(q["duration"]) <= 3, q


def test_inbound_cancel_while_ringing(tmp_path, fc, work):
    """The caller cancels on the 180 with Reason cause 31, while sfvopi rings (--answer-delay):
    487 to the INVITE, 200 to the CANCEL, final status CANCELED with the CANCEL's cause "31",
    no answer webhook, and the hangup webhook and the record agree."""
    with engine_server(tmp_path, "--answer-delay", "3000") as s:
        ln = Line(s, fc)
        with uac(s, work, "in_cancel", ln.number, keys={"cause": 31}) as c:
            finish(s, c)
        assert c.sent("CANCEL") and c.sent("CANCEL")[0].header("reason") == "Q.850;cause=31"
        assert re.findall(r"OUTCOME (\w+)", c.logs()) == ["canceled"], c.logs()
        assert c.received(status=487) and c.received(status=200, cseq="CANCEL")
        assert not c.received(status=200, cseq="INVITE"), c.received()
        hangup, = expect_hits(fc, "/hangup", settle=0.5)
        h = check_payload(hangup, "hangup", direction="INBOUND", frm=CALLER, to=ln.number,
                          status="CANCELED", cause="31", answered=False)
        check_record(ln, h)


def test_inbound_answer_delay_rings_then_answers(tmp_path, fc, work):
    """With --answer-delay the 200 OK comes that long after the 180, then the call is an
    ordinary answered call."""
    with engine_server(tmp_path, "--answer-delay", "600") as s:
        ln = Line(s, fc)
        with uac(s, work, "in_answer_bye", ln.number, duration_ms=300) as c:
            finish(s, c)
        ringing = c.received(status=180)[0]
        answered = c.received(status=200, cseq="INVITE")[0]
        assert answered.time - ringing.time >= 0.55, (ringing.time, answered.time)
        answer, hangup = expect_hits(fc, "/answer", "/hangup")
        check_payload(hangup, "hangup", direction="INBOUND", frm=CALLER, to=ln.number,
                      status="COMPLETED", cause="16")


@pytest.mark.parametrize("which", ["in_inventory_not_linked", "unknown", "unlinked"])
def test_inbound_to_unlinked_number_is_404_without_webhook(srv, line, fc, work, which):
    if which == "in_inventory_not_linked":
        number = line.org.add_numbers(1)[0]
    elif which == "unknown":
        number = f"+917{uuid.uuid4().int % 10**9:09d}"  # in no inventory
    else:
        number = line.number
        ok(line.api.delete(f"/apps/{line.app['app_id']}/numbers/{number}"))
    with uac(srv, work, "in_unlinked", number) as c:
        finish(srv, c)
    finals = [m.status for m in c.received() if m.status and m.status >= 200]
    assert finals[:1] == [404], finals
    quiet(fc)


def test_inbound_to_inactive_app_is_480_without_webhook(srv, line, fc, work):
    ok(line.api.put(f"/apps/{line.app['app_id']}", json={"status": "INACTIVE"}))
    with uac(srv, work, "in_unlinked", line.number) as c:
        finish(srv, c)
    finals = [m.status for m in c.received() if m.status and m.status >= 200]
    assert finals[:1] == [480], finals
    quiet(fc)


# ---------------------------------------------------------------------------------------------
# Answer webhook failures (inbound calls; the rules are the same for outbound ones).

def test_answer_webhook_fails_fallback_keeps_call_up(srv, line, fc, work):
    fc.on("/answer", reply_status(500))
    with uac(srv, work, "in_answer_bye", line.number, duration_ms=2500) as c:
        finish(srv, c)
    assert not c.received("BYE"), "sfvopi hung up although the fallback answered a valid stream"
    answer, fallback, hangup = expect_hits(fc, "/answer", "/fallback", "/hangup")
    a = check_payload(answer, "answer", direction="INBOUND", frm=CALLER, to=line.number,
                      status="IN_PROGRESS")
    assert fallback.payload == a, (fallback.payload, a)
    assert fallback.header("x-sfvopi-delivery") == answer.header("x-sfvopi-delivery")
    check_headers(fallback, a["call_uuid"])
    h = check_payload(hangup, "hangup", direction="INBOUND", frm=CALLER, to=line.number,
                      status="COMPLETED", call_uuid=a["call_uuid"], cause="16")
    assert 1 <= h["duration"] <= 4, h
    check_record(line, h)


@pytest.mark.parametrize("answer_reply,fallback_reply", [
    (reply_status(500), reply_bad_json()),
    (reply_invalid_stream(), reply_status(404)),
], ids=["500-badjson", "badstream-404"])
def test_answer_and_fallback_fail_engine_hangs_up(srv, line, fc, work, answer_reply,
                                                  fallback_reply):
    fc.on("/answer", answer_reply).on("/fallback", fallback_reply)
    t0 = time.monotonic()
    with uac(srv, work, "in_wait_bye", line.number) as c:
        finish(srv, c)
    assert time.monotonic() - t0 < 15, "the BYE should follow the failed fallback at once"
    assert len(c.received("BYE")) >= 1
    answer, fallback, hangup = expect_hits(fc, "/answer", "/fallback", "/hangup")
    assert fallback.header("x-sfvopi-delivery") == answer.header("x-sfvopi-delivery")
    h = check_payload(hangup, "hangup", direction="INBOUND", frm=CALLER, to=line.number,
                      status="FAILED", call_uuid=answer.payload["call_uuid"], cause="41")
    check_record(line, h)


@TIMERS_ONCE
def test_slow_answer_webhook_moves_to_fallback_after_10s(srv, line, fc, work):
    fc.on("/answer", reply_slow(15))
    with uac(srv, work, "in_answer_bye", line.number, duration_ms=12500) as c:
        fallback, = fc.wait_for(1, path="/fallback", timeout=14)
        answer, = fc.requests("/answer")
        waited = fallback.mono - answer.mono
        assert 9.5 <= waited <= 11.5, f"fallback {waited:.2f} s after the answer request"
        assert fallback.payload == answer.payload
        assert fallback.header("x-sfvopi-delivery") == answer.header("x-sfvopi-delivery")
        finish(srv, c)
    assert not c.received("BYE"), "the fallback's valid stream should keep the call up"
    hangup, = fc.wait_for(1, path="/hangup", timeout=10)
    check_payload(hangup, "hangup", direction="INBOUND", frm=CALLER, to=line.number,
                  status="COMPLETED", call_uuid=answer.payload["call_uuid"], cause="16")
    assert [x.path for x in fc.hits] == ["/answer", "/fallback", "/hangup"], fc.hits


# ---------------------------------------------------------------------------------------------
# Outbound.

def test_outbound_answered_then_callee_hangs_up(srv, line, fc, work):
    with uas(srv, work, "out_answer", duration_ms=1500) as s:
        call = place_call(line, fc)
        finish(srv, s)
    inv = s.received("INVITE")
    assert len(inv) >= 1, diag(srv, s)
    inv = inv[0]
    # The callee is the Request-URI user; CALLS.md does not say whether the '+' is kept.
    assert inv.uri_user in (CALLEE, CALLEE[1:]), inv.first_line
    assert line.number.lstrip("+") in inv.header("from"), inv.header("from")
    assert "PCMA" in inv.sdp_codecs(), inv.body
    ip, port = inv.sdp_media()
    assert ip == "127.0.0.1" and in_range(port, srv.rtp), inv.body
    assert s.received("ACK") and s.received(status=200, cseq="BYE")

    ring, answer, hangup = expect_hits(fc, "/ring", "/answer", "/hangup")
    kw = dict(direction="OUTBOUND", frm=line.number, to=CALLEE, call_uuid=call["call_uuid"],
              request_uuid=call["request_uuid"])
    r = check_payload(ring, "ring", status="RINGING", **kw)
    a = check_payload(answer, "answer", status="IN_PROGRESS", **kw)
    h = check_payload(hangup, "hangup", status="COMPLETED", cause="16", **kw)
    assert r["started_at"] == h["started_at"] and h["answer_at"] == a["answered_at"]
    assert 1 <= h["duration"] <= 3, h
    check_record(line, h, request_uuid=call["request_uuid"])


def test_outbound_busy(srv, line, fc, work):
    with uas(srv, work, "out_busy") as s:
        call = place_call(line, fc)
        finish(srv, s)
    hangup, = expect_hits(fc, "/hangup")  # no 180: no ring webhook; no answer webhook
    h = check_payload(hangup, "hangup", direction="OUTBOUND", frm=line.number, to=CALLEE,
                      status="BUSY", cause="17", call_uuid=call["call_uuid"],
                      request_uuid=call["request_uuid"], answered=False)
    check_record(line, h, request_uuid=call["request_uuid"])


def test_outbound_no_answer_ring_timeout(srv, line, fc, work):
    with uas(srv, work, "out_no_answer") as s:
        call = place_call(line, fc, ring_timeout=2)
        finish(srv, s, timeout=20)
    inv, cancel = s.received("INVITE")[0], s.received("CANCEL")
    assert len(cancel) >= 1, diag(srv, s)
    waited = cancel[0].time - inv.time
    assert 1.5 <= waited <= 3.5, f"CANCEL {waited:.2f} s after the INVITE (ring_timeout 2)"
    ring, hangup = expect_hits(fc, "/ring", "/hangup")
    kw = dict(direction="OUTBOUND", frm=line.number, to=CALLEE, call_uuid=call["call_uuid"],
              request_uuid=call["request_uuid"])
    check_payload(ring, "ring", status="RINGING", **kw)
    h = check_payload(hangup, "hangup", status="NO_ANSWER", cause="19", answered=False, **kw)
    check_record(line, h, request_uuid=call["request_uuid"])


@TIMERS_ONCE
def test_outbound_call_time_limit(srv, line, fc, work):
    with uas(srv, work, "out_time_limit") as s:
        call = place_call(line, fc, call_time_limit=2)
        fc.wait_for(1, path="/answer", timeout=10)
        rec = live_record(line, call["call_uuid"], "IN_PROGRESS")  # 2 s until the BYE
        assert rec["answer_at"] is not None and rec["direction"] == "OUTBOUND", rec
        finish(srv, s, timeout=20)
    ok200 = s.sent(status=200, cseq="INVITE")[0]
    bye = s.received("BYE")
    assert bye, diag(srv, s)
    waited = bye[0].time - ok200.time
    assert 1.5 <= waited <= 3.5, f"BYE {waited:.2f} s after the answer (call_time_limit 2)"
    hangup = expect_hits(fc, "/ring", "/answer", "/hangup")[2]
    h = check_payload(hangup, "hangup", direction="OUTBOUND", frm=line.number, to=CALLEE,
                      status="COMPLETED", cause="16", call_uuid=call["call_uuid"],
                      request_uuid=call["request_uuid"])
    assert 1 <= h["duration"] <= 3, h
    check_record(line, h, request_uuid=call["request_uuid"])


def test_outbound_from_unlinked_number_is_400(srv, line, fc):
    spare = line.org.add_numbers(1)[0]
    r = line.api.post("/calls", json={"from": spare, "to": CALLEE,
                                      "answer_url": fc.url("/answer")})
    assert_error(r, 400, f"VoIP number {spare} is not linked to any SFVoPI app")
    quiet(fc, 0.3)


# Final responses to an outbound INVITE (CALLS.md section 4, status and cause table):
# (status line, extra header, a 180 first?, call_status, hangup_cause)
FINAL_RESPONSES = [
    ("486 Busy Here", "", False, "BUSY", "17"),  # no Reason header: 486 alone means busy
    ("600 Busy Everywhere", "", False, "BUSY", "17"),
    ("480 Temporarily Unavailable", "Reason: Q.850;cause=17", True, "BUSY", "17"),
    ("603 Decline", "", True, "BUSY", "21"),
    ("480 Temporarily Unavailable", "", True, "NO_ANSWER", "18"),
    ("408 Request Timeout", "", True, "NO_ANSWER", "102"),
    ("408 Request Timeout", "", False, "FAILED", "102"),
    ("404 Not Found", "", False, "FAILED", "1"),
    ("485 Ambiguous", "", False, "FAILED", "1"),
    ("604 Does Not Exist Anywhere", "", False, "FAILED", "1"),
    ("484 Address Incomplete", "", False, "FAILED", "28"),
    ("401 Unauthorized", 'WWW-Authenticate: Digest realm="carrier", nonce="x1"', False,
     "FAILED", "21"),
    ("403 Forbidden", "", False, "FAILED", "21"),
    ("407 Proxy Authentication Required", 'Proxy-Authenticate: Digest realm="carrier", nonce="x2"',
     False, "FAILED", "21"),
    ("488 Not Acceptable Here", "", False, "FAILED", "88"),
    ("606 Not Acceptable", "", False, "FAILED", "88"),
    ("500 Server Internal Error", "", False, "FAILED", "41"),
    ("503 Service Unavailable", "", False, "FAILED", "41"),
    ("502 Bad Gateway", "", False, "FAILED", "38"),
    ("504 Server Time-out", "", True, "FAILED", "102"),
]


@pytest.mark.parametrize("line_,header,ring,status,cause", FINAL_RESPONSES,
                         ids=[f"{r[0].split()[0]}{'-ring' if r[2] else ''}"
                              f"{'-reason' if r[1].startswith('Reason') else ''}"
                              for r in FINAL_RESPONSES])
def test_outbound_final_response_maps_to_status_and_cause(srv, line, fc, work, line_, header,
                                                          ring, status, cause):
    scen = render("out_reject", work, "out_reject_" + line_.split()[0],
                  RING=RINGING_BLOCK if ring else "", CODE=line_, REASON=header)
    with uas(srv, work, scen) as s:
        call = place_call(line, fc)
        finish(srv, s)
    paths = ["/ring", "/hangup"] if ring else ["/hangup"]
    hangup = expect_hits(fc, *paths)[-1]
    h = check_payload(hangup, "hangup", direction="OUTBOUND", frm=line.number, to=CALLEE,
                      status=status, cause=cause, call_uuid=call["call_uuid"],
                      request_uuid=call["request_uuid"], answered=False)
    check_record(line, h, request_uuid=call["request_uuid"])


@TIMERS_ONCE
def test_outbound_ring_timeout_without_provisional_response(srv, line, fc, work):
    """No response at all to the INVITE: NO_ANSWER "18" when ring_timeout expires, no ring
    webhook. (sfvopi may not CANCEL an INVITE that got no provisional response; out_silent.xml
    accepts a CANCEL or none.)"""
    with uas(srv, work, "out_silent") as s:
        t0 = time.monotonic()
        call = place_call(line, fc, ring_timeout=2)
        # No 180 yet (nor ever): QUEUED until the ring timeout.
        rec = live_record(line, call["call_uuid"], "QUEUED")
        assert listed_record(line, call["call_uuid"]) == rec
        hangup, = fc.wait_for(1, path="/hangup", timeout=8)
        assert 1.5 <= hangup.mono - t0 <= 5, f"hangup {hangup.mono - t0:.2f} s after the POST"
        finish(srv, s, timeout=15)
    assert [x.path for x in fc.hits] == ["/hangup"], fc.hits
    h = check_payload(hangup, "hangup", direction="OUTBOUND", frm=line.number, to=CALLEE,
                      status="NO_ANSWER", cause="18", call_uuid=call["call_uuid"],
                      request_uuid=call["request_uuid"], answered=False)
    check_record(line, h, request_uuid=call["request_uuid"])


def test_inbound_bye_reason_gives_the_cause(srv, line, fc, work):
    scen = add_header("in_answer_bye", work, "in_bye_reason", "BYE ", "Reason: Q.850;cause=31")
    with uac(srv, work, scen, line.number, duration_ms=500) as c:
        finish(srv, c)
    hangup = expect_hits(fc, "/answer", "/hangup")[1]
    check_payload(hangup, "hangup", direction="INBOUND", frm=CALLER, to=line.number,
                  status="COMPLETED", cause="31")


def test_outbound_bye_reason_gives_the_cause(srv, line, fc, work):
    scen = add_header("out_answer", work, "out_bye_reason", "BYE ", "Reason: Q.850;cause=31")
    with uas(srv, work, scen, duration_ms=500) as s:
        call = place_call(line, fc)
        finish(srv, s)
    hangup = expect_hits(fc, "/ring", "/answer", "/hangup")[2]
    check_payload(hangup, "hangup", direction="OUTBOUND", frm=line.number, to=CALLEE,
                  status="COMPLETED", cause="31", call_uuid=call["call_uuid"],
                  request_uuid=call["request_uuid"])


def test_deleting_the_app_cancels_a_ringing_outbound_call(srv, line, fc, work):
    with uas(srv, work, "out_no_answer") as s:
        call = place_call(line, fc)  # ring_timeout 60 by default
        rec = live_record(line, call["call_uuid"], "QUEUED", "RINGING")
        assert (rec["request_uuid"], rec["answer_at"]) == (call["request_uuid"], None), rec
        fc.wait_for(1, path="/ring", timeout=10)
        rec = live_record(line, call["call_uuid"], "RINGING")
        assert listed_record(line, call["call_uuid"]) == rec
        assert rec["started_at"] is not None and rec["answer_at"] is None, rec
        ok(line.api.delete(f"/apps/{line.app['app_id']}"))
        finish(srv, s, timeout=15)
    assert s.received("CANCEL"), diag(srv, s)
    hangup = expect_hits(fc, "/ring", "/hangup")[1]
    h = check_payload(hangup, "hangup", direction="OUTBOUND", frm=line.number, to=CALLEE,
                      status="CANCELED", cause="16", call_uuid=call["call_uuid"],
                      request_uuid=call["request_uuid"], answered=False)
    check_record(line, h, request_uuid=call["request_uuid"])


# ---------------------------------------------------------------------------------------------
# Servers of their own: shutdown, --max-calls.

def test_shutdown_hangs_up_live_calls_and_sends_their_webhooks(tmp_path, fc, work):
    """SIGTERM with --drain-timeout 0 (no drain): an answered inbound call gets a BYE
    (COMPLETED "16"), a ringing outbound one a CANCEL (CANCELED "16"), and both hangup webhooks
    go out before the process exits 0. The drain itself: test_shutdown.py."""
    with engine_server(tmp_path, "--drain-timeout", "0") as s:
        ln = Line(s, fc)
        with uac(s, work, "in_wait_bye", ln.number) as c, \
                uas(s, work, "out_no_answer") as u:
            fc.wait_for(1, path="/answer", timeout=10)
            call = place_call(ln, fc)
            fc.wait_for(1, path="/ring", timeout=10)
            rc = s.stop(timeout=20)
            exited = time.monotonic()
            assert rc == 0, f"exit code {rc}; log:\n{s.log[-4000:]}"
            finish(s, c, timeout=10)
            finish(s, u, timeout=10)
    assert c.received("BYE") and u.received("CANCEL")
    hangups = fc.requests("/hangup")
    assert len(hangups) == 2 and all(h.mono <= exited for h in hangups), hangups
    by_dir = {h.payload["direction"]: h for h in hangups}
    check_payload(by_dir["INBOUND"], "hangup", direction="INBOUND", frm=CALLER, to=ln.number,
                  status="COMPLETED", cause="16")
    check_payload(by_dir["OUTBOUND"], "hangup", direction="OUTBOUND", frm=ln.number,
                  to=CALLEE, status="CANCELED", cause="16", call_uuid=call["call_uuid"],
                  answered=False)


@TIMERS_ONCE
def test_max_calls_refuses_inbound_503_and_outbound_500(tmp_path, fc, work):
    with engine_server(tmp_path, "--max-calls", "1") as s:
        ln = Line(s, fc)
        with uac(s, work, "in_answer_bye", ln.number, duration_ms=4000) as held:
            fc.wait_for(1, path="/answer", timeout=10)
            with uac(s, work, "in_unlinked", ln.number) as second:
                finish(s, second)
            finals = [m.status for m in second.received() if m.status and m.status >= 200]
            assert finals[:1] == [503], finals
            r = ln.api.post("/calls", json={"from": ln.number, "to": CALLEE,
                                            "answer_url": fc.url("/answer")})
            assert r.status_code == 500, r.text
            assert r.json()["message"].startswith("Failed to initiate outbound call: "), r.text
            finish(s, held)
        expect_hits(fc, "/answer", "/hangup")


def test_deny_private_urls_calls_no_loopback_webhook(tmp_path, fc, work):
    """--deny-private-urls: the fake customer on 127.0.0.1 is never called, so the answer and
    the fallback both fail and the engine hangs up: FAILED "41", no webhook at all."""
    with engine_server(tmp_path, "--deny-private-urls") as s:
        ln = Line(s, fc)
        with uac(s, work, "in_wait_bye", ln.number) as c:
            finish(s, c, timeout=15)
        assert c.received("BYE")
        rec = {}

        def final():
            nonlocal rec
            calls = ok(ln.api.get("/calls"))
            rec = calls[0] if calls else {}
            return rec.get("call_status") in FINAL

        assert wait_until(final, timeout=10), rec
        assert (rec["call_status"], rec["hangup_cause"]) == ("FAILED", "41"), rec
    assert fc.hits == [], fc.hits
