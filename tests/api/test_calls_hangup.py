"""Hanging up a live call through the API (spec/AGENT.md section 3), and the calls a server on
SQLite left alive when it died (spec/SIP.md section 5). SIPp plays the carrier, FakeCustomer the
customer's web server, as in test_calls_sip.py (whose fixtures and helpers these tests share).

Across nodes (a hangup sent to one node for a call on another, over PostgreSQL): test_cluster.py.
"""

import os
import re
import signal
import subprocess
import time
import uuid

import pytest

from conftest import BIN, PG_URL, Server, ok, wait_until
from openapi_check import check_operation
from sipp_helper import free_rtp_range, free_udp_port, port_taken
from test_calls_sip import (  # noqa: F401  (fixtures)
    CALLEE, CALLER, Line, _server_alive, check_payload, check_record, diag, expect_hits, fc,
    finish, get_record, line, live_record, place_call, srv, uac, uas, work,
)

ENDED = {"message": "Call already ended"}


def test_hangup_of_an_answered_inbound_call(srv, line, fc, work):
    """An answered call: 200 with the status it had (IN_PROGRESS), a BYE to the carrier, the
    call COMPLETED "16" with its hangup webhook once; then 409."""
    with uac(srv, work, "in_wait_bye", line.number) as c:
        fc.wait_for(1, path="/answer", timeout=10)
        call_id = fc.requests("/answer")[0].json["call_uuid"]
        live_record(line, call_id, "IN_PROGRESS")
        r = line.api.post(f"/calls/{call_id}/hangup")
        check_operation("/calls/{call_id}/hangup", "POST", r, 200)
        assert r.json() == {"data": {"call_uuid": call_id, "status": "IN_PROGRESS"},
                            "message": "success"}, r.text
        finish(srv, c, timeout=15)
    bye = c.received("BYE")
    assert len(bye) == 1, diag(srv, c)
    hangup_hit = expect_hits(fc, "/answer", "/hangup")[1]
    h = check_payload(hangup_hit, "hangup", direction="INBOUND", frm=CALLER, to=line.number,
                      status="COMPLETED", cause="16", call_uuid=call_id)
    check_record(line, h)
    r = line.api.post(f"/calls/{call_id}/hangup")
    check_operation("/calls/{call_id}/hangup", "POST", r, 409, "Call already ended")
    assert r.json() == ENDED


def test_hangup_of_a_ringing_outbound_call_by_request_uuid(srv, line, fc, work):
    """A ringing call named by its request_uuid, under the documented base path: 200 with
    RINGING, a CANCEL to the callee, CANCELED "16" with its hangup webhook."""
    documented = line.org.client(prefix="/superfone/sfvopi")
    with uas(srv, work, "out_no_answer") as s:
        call = place_call(line, fc)
        fc.wait_for(1, path="/ring", timeout=10)
        live_record(line, call["call_uuid"], "RINGING")
        r = documented.post(f"/calls/{call['request_uuid']}/hangup")
        check_operation("/calls/{call_id}/hangup", "POST", r, 200)
        assert r.json()["data"] == {"call_uuid": call["call_uuid"], "status": "RINGING"}, r.text
        finish(srv, s, timeout=15)
    assert s.received("CANCEL"), diag(srv, s)
    hangup_hit = expect_hits(fc, "/ring", "/hangup")[1]
    h = check_payload(hangup_hit, "hangup", direction="OUTBOUND", frm=line.number, to=CALLEE,
                      status="CANCELED", cause="16", call_uuid=call["call_uuid"],
                      request_uuid=call["request_uuid"], answered=False)
    check_record(line, h, request_uuid=call["request_uuid"])
    assert documented.post(f"/calls/{call['call_uuid']}/hangup").json() == ENDED


def test_hangup_names_only_the_callers_own_calls(srv, line, fc, work):
    """404 for an unknown id, an id of neither form and another organisation's live call (which
    goes on); 401 before anything without a key; 405 for another method, with Allow: POST."""
    other = Line(srv, fc)
    with uac(srv, work, "in_wait_bye", other.number) as c:
        fc.wait_for(1, path="/answer", timeout=10)
        theirs = fc.requests("/answer")[0].json["call_uuid"]
        for bad in (str(uuid.uuid4()), "not-a-call", theirs):
            r = line.api.post(f"/calls/{bad}/hangup")
            check_operation("/calls/{call_id}/hangup", "POST", r, 404, "Call not found")
        r = line.api.post(f"/calls/{theirs}/hangup", key=None)
        assert r.status_code == 401, r.text
        r = line.api.get(f"/calls/{theirs}/hangup")
        assert (r.status_code, r.headers.get("Allow")) == (405, "POST"), r.text
        assert get_record(other, theirs)["call_status"] == "IN_PROGRESS"
        ok(other.api.post(f"/calls/{theirs}/hangup"))
        finish(srv, c, timeout=15)


# ---------------------------------------------------------------------------------------------
# SQLite: one server per file, and the calls of a server that died.

def _serve_argv(url, sip_port, rtp):
    return [BIN, "--db", url, "serve", "--listen", "127.0.0.1:0", "--threads", "2",
            "--sip-listen", f"127.0.0.1:{sip_port}", "--rtp-ports", f"{rtp[0]}-{rtp[1]}",
            "--sip-allow", "127.0.0.1"]


@pytest.mark.skipif(bool(PG_URL), reason="SQLite only: nodes on PostgreSQL are test_cluster.py")
def test_sqlite_server_killed_with_a_live_call_ends_it_at_restart(tmp_path, fc, work):
    """kill -9 with an answered call up: the restarted server ends it COMPLETED "38", sends its
    hangup webhook once and a BYE (Reason cause 38) to the carrier, from the dialog stored with
    the call. Meanwhile a second server on the same file refuses to start, naming the holder."""
    url = f"sqlite:{tmp_path / 'killed.db'}"
    sip_port, rtp = free_udp_port(), free_rtp_range(50, step=7)
    argv = _serve_argv(url, sip_port, rtp)
    first = Server(url, tmp_path, argv=argv).start()
    first.sip_port = sip_port
    try:
        assert wait_until(lambda: port_taken(sip_port), timeout=5, interval=0.05), first.log
        ln = Line(first, fc)
        with uac(first, work, "in_wait_bye", ln.number) as c:
            fc.wait_for(1, path="/answer", timeout=10)
            call_id = fc.requests("/answer")[0].json["call_uuid"]
            live_record(ln, call_id, "IN_PROGRESS")

            # A second server on the same file: exit 1, one line naming the first.
            cp = subprocess.run(_serve_argv(url, free_udp_port(), rtp), capture_output=True,
                                text=True, timeout=20)
            assert cp.returncode == 1, (cp.returncode, cp.stderr)
            lines = cp.stderr.strip().splitlines()
            assert lines == [f"sfvopi: database {url} is in use by another server "
                             f"(pid {first.proc.pid})"], cp.stderr

            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(timeout=10)
            assert wait_until(lambda: not port_taken(sip_port), timeout=5, interval=0.05)
            t0 = time.monotonic()
            second = Server(url, tmp_path, argv=argv).start()
            second.sip_port = sip_port
            try:
                fc.wait_for(1, path="/hangup", timeout=15)
                took = time.monotonic() - t0
                finish(second, c, timeout=15)
                time.sleep(0.5)  # a second hangup webhook would come at once
                hits = fc.requests("/hangup")
                assert len(hits) == 1, fc.hits
                h = check_payload(hits[0], "hangup", direction="INBOUND", frm=CALLER,
                                  to=ln.number, status="COMPLETED", cause="38", call_uuid=call_id)
                rec = get_record(second.client(key=ln.org.key), call_id)
                assert (rec["call_status"], rec["hangup_cause"]) == ("COMPLETED", "38"), rec
                assert rec["ended_at"] == h["ended_at"], (rec, h)
                assert re.search(r'msg="calls left alive by an earlier run ended" calls=1\b',
                                 second.log), second.log
                print(f"restart to hangup webhook: {took:.2f} s")
            finally:
                assert second.stop() == 0, second.log[-4000:]
        bye = c.received("BYE")
        assert len(bye) == 1, diag(first, c)
        assert "cause=38" in (bye[0].header("Reason") or ""), bye[0]
    finally:
        first.stop(sig=signal.SIGKILL)
    assert os.path.exists(tmp_path / "killed.db")
