"""sfvopi behind NAT (--sip-advertise): the carrier's in-dialog requests go to the Contact that
sfvopi wrote, so that Contact must carry the public address, not the private one sockets are
bound to.

Topology (netns_helper.NatTopology, namespaces of the test's own):

    priv 10.77.1.2 --- 10.77.1.1 [nat: masquerade out, DNAT of 5060 + RTP in] 198.51.100.1
                                                                                   |
                                                                   carrier 198.51.100.2

sfvopi runs in `priv` with --sip-listen 10.77.1.2:5060 and --sip-trunk sip:198.51.100.2:5060;
its HTTP API and the fake customer (its webhooks) are on 127.0.0.1 inside `priv`, reached by
the test thread entering that namespace. SIPp (tests/sipp/out_answer_bye_target.xml) is the
carrier in `carrier`, a UAS that answers the outbound INVITE and, TALK_MS after the ACK, sends
its BYE to the host and port of the INVITE's Contact, as a real user agent does. The carrier
has no route at all to 10.77.1.0/24, and the NAT box forgets an idle UDP flow after a second
(conntrack timeouts of its namespace), so the BYE relies on the DNAT rule, as it does on a real
NAT after a long quiet call, not on the masquerade's entry for the INVITE.

- With --sip-advertise 198.51.100.1 the Contact names the NAT box; the BYE reaches sfvopi
  through the DNAT and the hangup webhook (COMPLETED) follows within a second.
- Without it the Contact names 10.77.1.2: SIPp's BYE cannot even be sent (no route), nothing
  answers it, and the call stays IN_PROGRESS well past the point where the first run had ended,
  until its call_time_limit hangs it up from sfvopi's side.
- The topology itself: a datagram from the carrier to 198.51.100.1:5060 reaches a socket on
  10.77.1.2:5060 in `priv` and the answer comes back through the masquerade; one to 10.77.1.2
  fails with "Network is unreachable".

Runs once: in the plain build's SQLite pass (NAT has nothing to do with the database or the
sanitizer). Needs root, ip and nft; skipped without them, failed instead under
SFVOPI_TEST_STRICT=1. Takes about 20 s (the lost-BYE case waits for its time limit); every wait
is bounded.
"""

import contextlib
import os
import re
import socket
import subprocess
import time
import types

import pytest

from sipp_helper import SIPP

if SIPP is None:
    pytest.skip("sipp (package sip-tester) is not installed", allow_module_level=True)
if os.environ.get("SFVOPI_TEST_PG_URL"):
    pytest.skip("NAT traversal is independent of the database backend: SQLite runs only",
                allow_module_level=True)

import test_calls_sip as base  # noqa: E402  (skips the module too when there is no call engine)
from conftest import ASAN, BIN, Server, fresh_db, skip_unless_strict  # noqa: E402
from fake_customer import FakeCustomer, reply_stream  # noqa: E402
from netns_helper import (  # noqa: E402
    CARRIER_IP, NAT_OUT_IP, PRIV_IP, SIP_PORT, NatTopology, missing_tools, wait_for,
)
from sipp_helper import SCENARIOS, Sipp  # noqa: E402

ONCE = not ASAN  # the plain build's SQLite pass only
pytestmark = pytest.mark.skipif(not ONCE, reason="NAT topology: run once, in the plain build's "
                                "SQLite pass")

RTP_PORTS = (20000, 20099)  # inside `priv`: no other process there
UDP_TIMEOUT = 1  # s: the NAT box forgets an idle UDP flow this fast...
TALK_MS = 2500  # ...so the carrier's BYE, this long after the ACK, relies on the DNAT rule
TIME_LIMIT = 8  # s, call_time_limit: what ends the call when the BYE is lost
BYE_TO_HANGUP = 1.0  # s, the most the hangup webhook may follow the carrier's BYE
STILL_UP = 2.5  # s after the BYE: the first run had ended long before


def _why_skip():
    missing = missing_tools()
    return f"the NAT topology needs {', '.join(missing)}" if missing else None


def _has_advertise():
    cp = subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True, timeout=10,
                        stdin=subprocess.DEVNULL)
    return "--sip-advertise" in cp.stdout + cp.stderr


@pytest.fixture
def topo():
    why = _why_skip()
    if why:
        skip_unless_strict(why)
    with NatTopology(rtp_ports=RTP_PORTS, udp_timeout=UDP_TIMEOUT) as t:
        yield t


def _sip_bound(ip, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((ip, port))
        return False
    except OSError:
        return True
    finally:
        s.close()


@contextlib.contextmanager
def nat_server(topo, tmp, *extra):
    """sfvopi in `priv` (the calling thread must be in `priv`): SIP on 10.77.1.2:5060, the
    trunk the carrier's SIPp, its HTTP API on 127.0.0.1 of `priv`."""
    with fresh_db(tmp, "nat") as url:
        argv = [BIN, "--db", url, "serve", "--listen", "127.0.0.1:0", "--threads", "2",
                "--log-level", "debug", "--sip-listen", f"{PRIV_IP}:{SIP_PORT}",
                "--sip-trunk", f"sip:{CARRIER_IP}:{SIP_PORT}",
                "--rtp-ports", f"{RTP_PORTS[0]}-{RTP_PORTS[1]}", *extra]
        s = Server(url, tmp, argv=argv).start()
        try:
            if not wait_for(lambda: _sip_bound(PRIV_IP, SIP_PORT), timeout=5):
                pytest.fail(f"SIP port not bound after start; log:\n{s.log}")
            yield s
        finally:
            rc = s.stop()
        assert rc == 0, f"server exit code {rc}; log tail:\n{s.log[-4000:]}"


@contextlib.contextmanager
def carrier_uas(topo, work):
    """SIPp in `carrier` on 198.51.100.2:5060, started and listening."""
    s = Sipp("out_answer_bye_target", work, port=SIP_PORT, local_ip=CARRIER_IP,
             duration_ms=TALK_MS, global_timeout_s=30)
    s.argv = topo.exec_argv(topo.carrier) + s.argv
    with s:
        with topo.entered(topo.carrier):
            s.wait_listening()
        yield s


@contextlib.contextmanager
def nat_call(topo, tmp, *extra):
    """One outbound call to the carrier, who answers and TALK_MS later sends its BYE to the
    Contact of sfvopi's INVITE. Yields, after SIPp ended and while the server is still up (the
    test thread in `priv`), what the run left: .srv, .fc (the fake customer), .line, .sipp,
    .rc (SIPp's exit code), .call (POST /calls data), .conntrack (the NAT box's table)."""
    work = tmp / "work"
    work.mkdir()
    r = types.SimpleNamespace()
    with topo.entered(topo.priv), FakeCustomer(default=reply_stream()) as fc, \
            nat_server(topo, tmp, *extra) as srv:
        r.srv, r.fc = srv, fc
        r.line = base.Line(srv, fc)
        with carrier_uas(topo, work) as sipp:
            r.sipp = sipp
            r.call = base.place_call(r.line, fc, call_time_limit=TIME_LIMIT)
            r.rc = sipp.wait(20)
        r.conntrack = topo.conntrack()
        yield r


def bye_time(r):
    """When the carrier sent (or tried to send) its BYE, wall clock: the BYE in SIPp's message
    log, else the ACK it received plus the talk time."""
    bye = r.sipp.sent("BYE")
    if bye:
        return bye[0].time
    ack = r.sipp.received("ACK")
    assert ack, diag(r)
    return ack[0].time + TALK_MS / 1000


def diag(r):
    return f"--- conntrack of the NAT box\n{r.conntrack}\n" + base.diag(r.srv, r.sipp)


def invite_addresses(r):
    """(Contact host, Via sent-by host, SDP c= address) of the INVITE the carrier received."""
    inv = r.sipp.received("INVITE")
    assert inv, diag(r)
    inv = inv[0]
    contact = re.search(r"sips?:(?:[^@;>]*@)?([0-9.]+)", inv.header("contact", ""))
    via = re.match(r"SIP/2\.0/UDP ([0-9.]+)", inv.header("via", ""))
    return (contact and contact.group(1), via and via.group(1), inv.sdp_media()[0])


def test_topology_carries_sip_to_the_advertised_address_only(topo):
    """A datagram from the carrier to the NAT box's public address on 5060 (and on an RTP port)
    reaches a socket bound on 10.77.1.2 in `priv`, with the carrier's own address as source,
    and the answer comes back (the DNAT's connection tracking entry); other ports are not
    forwarded; the private address itself is unreachable from the carrier."""
    t0 = time.monotonic()
    for port in (SIP_PORT, RTP_PORTS[0], RTP_PORTS[1]):
        got = topo.udp_probe(topo.carrier, CARRIER_IP, topo.priv, PRIV_IP, NAT_OUT_IP, port)
        assert got == {"sent": None, "arrived_from": (CARRIER_IP, port), "reply": True}, \
            (port, got, topo.conntrack())
    got = topo.udp_probe(topo.carrier, CARRIER_IP, topo.priv, PRIV_IP, NAT_OUT_IP, 5080)
    assert got["arrived_from"] is None, got
    got = topo.udp_probe(topo.carrier, CARRIER_IP, topo.priv, PRIV_IP, PRIV_IP, SIP_PORT + 2)
    assert got == {"sent": "OSError: Network is unreachable", "arrived_from": None,
                   "reply": False}, got
    # What sfvopi sends out of `priv` leaves with the public address (source port kept).
    got = topo.udp_probe(topo.priv, PRIV_IP, topo.carrier, CARRIER_IP, CARRIER_IP, 5062)
    assert got == {"sent": None, "arrived_from": (NAT_OUT_IP, 5062), "reply": True}, got
    assert time.monotonic() - t0 < 10


def test_topology_routes_a_bye_to_the_public_contact(tmp_path):
    """The advertised run's path without sfvopi: a SIPp UAC in `priv` bound on 10.77.1.2:5060
    whose INVITE carries Contact 198.51.100.1:5060 (what --sip-advertise writes) calls the
    carrier's scenario; the carrier's BYE to that Contact, sent after the NAT box has forgotten
    the flow (UDP_TIMEOUT 1 s, TALK_MS 2.5 s), arrives through the DNAT rule and is answered.
    """
    why = _why_skip()
    if why:
        skip_unless_strict(why)
    text = (SCENARIOS / "in_wait_bye.xml").read_text()
    stand_in = "Contact: <sip:[caller]@[local_ip]:[local_port];transport=[transport]>"
    assert stand_in in text
    scenario = tmp_path / "in_wait_bye_public_contact.xml"
    scenario.write_text(text.replace(stand_in, f"Contact: <sip:[caller]@{NAT_OUT_IP}:{SIP_PORT}>"))
    with NatTopology(rtp_ports=RTP_PORTS, udp_timeout=UDP_TIMEOUT) as topo:
        uas = Sipp("out_answer_bye_target", tmp_path, port=SIP_PORT, local_ip=CARRIER_IP,
                   duration_ms=TALK_MS, global_timeout_s=20)
        uas.argv = topo.exec_argv(topo.carrier) + uas.argv
        uac = Sipp(scenario, tmp_path, remote=f"{CARRIER_IP}:{SIP_PORT}", port=SIP_PORT,
                   local_ip=PRIV_IP, service=base.CALLEE, keys={"caller": base.CALLER},
                   global_timeout_s=20)
        uac.argv = topo.exec_argv(topo.priv) + uac.argv
        with uas:
            with topo.entered(topo.carrier):
                uas.wait_listening()
            with uac:
                rc_uac = uac.wait(20)
                rc_uas = uas.wait(20)
        report = f"UAC:\n{uac.report()}\nUAS:\n{uas.report()}\nconntrack:\n{topo.conntrack()}"
        assert (rc_uac, rc_uas) == (0, 0), report
        assert f"TARGET {NAT_OUT_IP}:{SIP_PORT}" in uas.logs(), report
        bye = uac.received("BYE")
        assert len(bye) == 1 and uas.received(status=200, cseq="BYE"), report
        # The NAT box had forgotten the call's flow: the BYE came through the DNAT rule.
        quiet = bye[0].time - uac.sent("ACK")[0].time
        assert quiet >= 2.0, f"only {quiet:.2f} s between the ACK and the BYE\n" + report


def test_carrier_bye_reaches_the_advertised_contact(topo, tmp_path):
    """--sip-advertise 198.51.100.1: Contact, Via and SDP name the NAT box; the carrier's BYE,
    sent to the Contact, arrives through the DNAT, is answered 200, and the hangup webhook
    (COMPLETED, cause 16) follows within BYE_TO_HANGUP."""
    if not _has_advertise():
        skip_unless_strict("this sfvopi build has no --sip-advertise (serve --help)")
    with nat_call(topo, tmp_path, "--sip-advertise", NAT_OUT_IP) as r:
        assert r.rc == 0, f"sipp exit code {r.rc}\n" + diag(r)
        assert invite_addresses(r) == (NAT_OUT_IP, NAT_OUT_IP, NAT_OUT_IP), diag(r)
        assert f"TARGET {NAT_OUT_IP}:{SIP_PORT}" in r.sipp.logs(), diag(r)
        assert r.sipp.received(status=200, cseq="BYE"), diag(r)
        hangup = r.fc.wait_for(1, path="/hangup", timeout=5)[0]
        waited = hangup.time - bye_time(r)
        assert 0 <= waited <= BYE_TO_HANGUP, f"hangup webhook {waited:.2f} s after the BYE"
        h = base.check_payload(hangup, "hangup", direction="OUTBOUND", frm=r.line.number,
                               to=base.CALLEE, status="COMPLETED", cause="16",
                               call_uuid=r.call["call_uuid"],
                               request_uuid=r.call["request_uuid"])
        assert h["duration"] <= TALK_MS / 1000 + 2, h
        quiet = bye_time(r) - r.sipp.received("ACK")[0].time
        assert quiet >= TALK_MS / 1000 - 0.1, f"{quiet:.2f} s from the ACK to the BYE"
        assert base.final_record(r.line, r.call["call_uuid"])["call_status"] == "COMPLETED"


def test_carrier_bye_is_lost_without_advertise(topo, tmp_path):
    """Without --sip-advertise the Contact (and Via, SDP) carry 10.77.1.2, which the carrier
    cannot route to: SIPp's BYE fails to be sent ("Network is unreachable"), gets no 200, and
    SIPp fails the call; STILL_UP seconds after that BYE the call is still IN_PROGRESS with no
    hangup webhook (the advertised run had ended within BYE_TO_HANGUP). Its call_time_limit
    then ends it from sfvopi's side."""
    with nat_call(topo, tmp_path) as r:
        # No SIP ALG in the NAT box rewrote anything: the carrier sees the private address.
        assert invite_addresses(r) == (PRIV_IP, PRIV_IP, PRIV_IP), diag(r)
        assert f"TARGET {PRIV_IP}:{SIP_PORT}" in r.sipp.logs(), diag(r)
        assert r.rc != 0, "sipp followed its scenario: the BYE was answered\n" + diag(r)
        assert not r.sipp.received(status=200, cseq="BYE"), diag(r)
        errors = r.sipp.err_file.read_text(errors="replace") if r.sipp.err_file.exists() else ""
        assert "Unable to send UDP message: Network is unreachable" in errors, diag(r)
        bye = bye_time(r)
        left = bye + STILL_UP - time.time()
        assert left > 0, f"SIPp ended {-left:.2f} s too late to check the call at BYE+{STILL_UP}"
        time.sleep(left)  # the deadline the advertised run meets with room to spare
        assert r.fc.requests("/hangup") == [], r.fc.hits
        rec = base.live_record(r.line, r.call["call_uuid"], "IN_PROGRESS")
        assert rec["answer_at"] is not None, rec
        # The time limit (counted from the answer) hangs up from sfvopi's side.
        hangup = r.fc.wait_for(1, path="/hangup", timeout=TIME_LIMIT + 3)[0]
        h = base.check_payload(hangup, "hangup", direction="OUTBOUND", frm=r.line.number,
                               to=base.CALLEE, status="COMPLETED", cause="16",
                               call_uuid=r.call["call_uuid"],
                               request_uuid=r.call["request_uuid"])
        assert TIME_LIMIT - 1 <= h["duration"] <= TIME_LIMIT + 1, h
