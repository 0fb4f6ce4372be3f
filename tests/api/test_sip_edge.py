"""The carrier edge (spec/SIP.md sections 1-3 and the SIP metrics of section 6): who may send SIP,
INVITE admission, OPTIONS, the answer only after the caller's ACK, RTP that cannot be hijacked,
digest credentials towards the trunk, caller identity and static headers, and the trunk found
by RFC 3263 resolution.

SIPp plays the carrier (tests/sipp/*.xml), bound to different loopback addresses: 127.0.0.2 is
the allowed carrier, 127.0.0.3, .5 and .6 play strangers. stream_helper.Party is the caller's RTP,
stream_helper.Agent the customer's WebSocket, fake_customer.FakeCustomer its web server,
dns_helper.DnsServer the DNS.

The edge never touches the database differently from the calls of test_calls_sip.py, so this
module runs on the SQLite passes only; the two slow checks (a caller that never ACKs, 32 s; an
INVITE flood during a streamed call) run once, outside the sanitizer pass. Every wait is
bounded: SIPp by its scenario timeouts and -timeout, the rest by wait timeouts.
"""

import contextlib
import hashlib
import os
import re
import secrets
import socket
import statistics
import time

import pytest
import requests

from sipp_helper import SIPP

if SIPP is None:
    pytest.skip("sipp (package sip-tester) is not installed", allow_module_level=True)
if os.environ.get("SFVOPI_TEST_PG_URL"):
    pytest.skip("the carrier edge is independent of the database backend: SQLite runs only",
                allow_module_level=True)

import test_calls_sip as base  # noqa: E402  (skips the module too when there is no call engine)
from conftest import ASAN, BIN, base_env, wait_until  # noqa: E402
from dns_helper import DnsServer  # noqa: E402
from fake_customer import FakeCustomer, reply_json, reply_stream  # noqa: E402
from conftest import Server, fresh_db  # noqa: E402
from sipp_helper import SCENARIOS, Sipp, free_rtp_range, free_udp_port, render  # noqa: E402
from stream_helper import FRAME, Agent, Party, b64, echo_agent, pattern  # noqa: E402

CALLER = base.CALLER
CALLEE = base.CALLEE
ALLOWED = "127.0.0.2"  # the carrier
ADMITTED = "127.0.0.4"  # also allowed, for the admission test's own bucket
USER = "alice"
PASSWORD = "pw-" + secrets.token_hex(12)
INVITE_RATE = 5  # a second, so bursts of 10
ONCE = not ASAN  # the slow checks run in the plain build's SQLite pass only

# Strangers, one per test, so that each test sees its own refused-source log line.
DENIED_SIPP = "127.0.0.3"
DENIED_FLOOD = "127.0.0.5"
DENIED_RTP = "127.0.0.6"


# ---------------------------------------------------------------------------------------------
# Fixtures and helpers.

@contextlib.contextmanager
def edge_server(tmp, *extra, env=None, allow=f"127.0.0.1,{ALLOWED},{ADMITTED}", trunk=True):
    """A server with the call engine, digest credentials from SFVOPI_SIP_PASSWORD, and
    --sip-allow `allow` (None: the default, the trunk's addresses). The outbound tests' trunk
    (SIPp, 127.0.0.1) is in the list: the callee's BYE comes from there."""
    os.makedirs(tmp, exist_ok=True)
    args = ["--log-level", "debug", "--sip-invite-rate", str(INVITE_RATE),
            "--sip-user", USER, *extra]
    if allow is not None:
        args += ["--sip-allow", allow]
    env = base_env(SFVOPI_RATE_LIMIT="0", SFVOPI_DRAIN_TIMEOUT="0", SFVOPI_SIP_PASSWORD=PASSWORD,
                   **(env or {}))
    with base.engine_server(tmp, *args, env=env, trunk=trunk) as s:
        yield s
    assert PASSWORD not in s.log


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    with edge_server(tmp_path_factory.mktemp("edge")) as s:
        yield s


@pytest.fixture
def fc():
    with FakeCustomer(default=reply_stream()) as f:
        yield f


@pytest.fixture
def work(tmp_path):
    return tmp_path


def metric(srv, name):
    """One sample of /metrics by its full name (with labels), as a number."""
    text = requests.get(srv.url + "/metrics", timeout=5).text
    m = re.search(r"^" + re.escape(name) + r" (\S+)$", text, re.M)
    assert m, f"{name} not in /metrics:\n{text}"
    return float(m.group(1))


DENIED = "sfvopi_sip_denied_total"
RTP_DROPPED = 'sfvopi_rtp_dropped_total{reason="source"}'


def caller(srv, work, scenario, number, src, *, keys=None, duration_ms=None, extra=()):
    """A SIPp carrier on loopback address `src` calling `number` at sfvopi (not started)."""
    return Sipp(scenario, work, remote=f"127.0.0.1:{srv.sip_port}", service=number,
                keys={"caller": CALLER, **(keys or {})}, duration_ms=duration_ms,
                local_ip=src, extra=extra)


def party_scenario(work, scenario, ip, name):
    """A copy of a stream scenario whose SDP names `ip` (the party's address) instead of
    127.0.0.1."""
    text = (SCENARIOS / f"{scenario}.xml").read_text()
    assert "c=IN IP4 127.0.0.1" in text
    dst = work / f"{name}.xml"
    dst.write_text(text.replace("c=IN IP4 127.0.0.1", f"c=IN IP4 {ip}"))
    return dst


def log_lines(srv, needle):
    return [line for line in srv.log.splitlines() if needle in line]


def check_digest(msg, header, method, password=PASSWORD):
    """The digest credentials in `header` of request `msg` are right for USER/password (RFC
    2617, computed here with hashlib: an implementation independent of libre's)."""
    value = msg.header(header)
    assert value and value.startswith("Digest "), (header, msg.headers)
    f = {k: a or b for k, a, b in re.findall(r'(\w+)=(?:"([^"]*)"|([^\s,]+))', value)}
    assert f["username"] == USER and f["realm"] == "carrier.test", f
    assert f["uri"] == msg.uri, (f["uri"], msg.uri)

    def md5(x):
        return hashlib.md5(x.encode()).hexdigest()

    ha1 = md5(f"{USER}:{f['realm']}:{password}")
    ha2 = md5(f"{method}:{f['uri']}")
    if "qop" in f:
        want = md5(f"{ha1}:{f['nonce']}:{f['nc']}:{f['cnonce']}:{f['qop']}:{ha2}")
    else:
        want = md5(f"{ha1}:{f['nonce']}:{ha2}")
    assert f["response"] == want, f"digest response {f['response']} != {want}: {value}"
    return f


def inbound_payloads(agent):
    return [b64(m) for _, m in agent.events("media", "inbound")]


# ---------------------------------------------------------------------------------------------
# 1. Who may send SIP.

def test_denied_source_gets_no_answer_and_reaches_nothing(edge, fc, work):
    line = base.Line(edge, fc)
    before = metric(edge, DENIED)
    runs = []
    for method in ("INVITE", "OPTIONS"):
        sc = render("in_silence", work, f"silence-{method}", METHOD=method)
        with caller(edge, work, sc, line.number, DENIED_SIPP) as c:
            rc = c.wait(20)
        assert rc == 0, f"sfvopi answered a refused source ({method}):\n" + base.diag(edge, c)
        assert c.received() == [], c.received()
        runs.append(c)
    sent = sum(len(c.sent()) for c in runs)
    assert sent >= 2
    # Every datagram was counted, no webhook fired, no record was written.
    assert wait_until(lambda: metric(edge, DENIED) - before >= sent, timeout=5)
    assert fc.hits == []
    assert line.api.get("/calls").json()["data"] == []
    # One log line for the source, however many datagrams it sent.
    lines = log_lines(edge, f"src={DENIED_SIPP} ")
    assert len(lines) == 1 and "not allowed by --sip-allow" in lines[0], lines
    assert "unhandeled" not in edge.log and "msg decode err" not in edge.log


def test_allowed_source_calls_and_gets_options(edge, fc, work):
    line = base.Line(edge, fc)
    with caller(edge, work, "in_answer_bye", line.number, ALLOWED, duration_ms=800) as c:
        base.finish(edge, c)
    answer, hangup = base.expect_hits(fc, "/answer", "/hangup")
    assert answer.payload["to"] == line.number and answer.payload["from"] == CALLER
    assert hangup.payload["call_status"] == "COMPLETED", hangup.payload

    with caller(edge, work, "options", "sfvopi", ALLOWED) as o:
        base.finish(edge, o)
    ok, = o.received(status=200, cseq="OPTIONS")
    assert [m.strip() for m in ok.header("allow").split(",")] == \
        ["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "UPDATE", "INFO"], ok.headers
    assert ok.header("accept") == "application/sdp", ok.headers


def _invite(src_port, call_id, number, src=ADMITTED):
    return (f"INVITE sip:{number}@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {src}:{src_port};branch=z9hG4bK{call_id}\r\n"
            f"From: <sip:{CALLER}@{src}>;tag=t{call_id}\r\n"
            f"To: <sip:{number}@127.0.0.1>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:{CALLER}@{src}:{src_port}>\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n").encode()


def _finals(sock, want, timeout=5.0):
    """{Call-ID: (status, raw)} of the final responses read on sock, until `want` arrived."""
    out = {}
    deadline = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(4096).decode(errors="replace")
        except socket.timeout:
            break
        status = int(data.split(" ", 2)[1])
        cid = re.search(r"^(?:Call-ID|i):\s*(\S+)", data, re.M | re.I).group(1)
        if status >= 200:
            out[cid] = (status, data)
    return out


def test_invite_admission_per_source(edge):
    """A burst of twice --sip-invite-rate INVITEs is let through (to routing: the number is
    unknown, so 404), the rest get 503 with Retry-After: 1; tokens come back with time."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((ADMITTED, 0))
        port = s.getsockname()[1]
        ids = [f"adm{secrets.token_hex(4)}-{i}" for i in range(2 * INVITE_RATE + 3)]
        for cid in ids:
            s.sendto(_invite(port, cid, "+919999999999"), ("127.0.0.1", edge.sip_port))
        got = _finals(s, len(ids))
        assert set(got) == set(ids), got
        codes = [got[cid][0] for cid in ids]
        assert codes == [404] * (2 * INVITE_RATE) + [503] * 3, codes
        for cid in ids[2 * INVITE_RATE:]:
            assert re.search(r"^Retry-After: 1\r$", got[cid][1], re.M), got[cid][1]
        # 1 / INVITE_RATE s later one more INVITE is admitted again (time is the rule's input).
        time.sleep(2.0 / INVITE_RATE)
        again = f"adm{secrets.token_hex(4)}-again"
        s.sendto(_invite(port, again, "+919999999999"), ("127.0.0.1", edge.sip_port))
        assert _finals(s, 1)[again][0] == 404


def test_default_allowlist_is_the_trunk_and_nothing_without_one(tmp_path, fc):
    """Without --sip-allow only the trunk's address may send; without a trunk, nobody."""
    work = tmp_path
    # The trunk is 127.0.0.1 (base.engine_server's): 127.0.0.2 is refused.
    with edge_server(tmp_path / "a", allow=None) as srv:
        line = base.Line(srv, fc)
        sc = render("in_silence", work, "silence-default", METHOD="OPTIONS")
        with caller(srv, work, sc, line.number, ALLOWED) as c:
            assert c.wait(20) == 0, base.diag(srv, c)
        assert c.received() == []
        with caller(srv, work, "options", "sfvopi", "127.0.0.1") as o:
            base.finish(srv, o)
    with edge_server(tmp_path / "b", allow=None, trunk=False) as srv:
        assert "every inbound SIP request is refused" in srv.log
        sc = render("in_silence", work, "silence-none", METHOD="OPTIONS")
        with caller(srv, work, sc, "sfvopi", "127.0.0.1") as c:
            assert c.wait(20) == 0, base.diag(srv, c)
        assert c.received() == []


def test_trunk_outside_the_allowlist_still_answers_our_calls(tmp_path, fc):
    """--sip-allow names who may call in; the responses of a trunk outside it still reach our
    transactions (an outbound call is answered and ended by sfvopi), and a warning says that
    requests from the trunk would be refused."""
    with edge_server(tmp_path / "srv", allow=ALLOWED) as srv:
        assert "--sip-allow does not include the trunk's address" in srv.log
        line = base.Line(srv, fc)
        with base.uas(srv, tmp_path, "out_time_limit") as t:
            call = base.place_call(line, fc, call_time_limit=1)
            base.finish(srv, t)
        assert base.final_record(line, call["call_uuid"])["call_status"] == "COMPLETED"
        assert metric(srv, DENIED) == 0


# ---------------------------------------------------------------------------------------------
# 2. The answer only after the caller's ACK.

@pytest.mark.skipif(not ONCE, reason="32 s: run once, in the plain build's SQLite pass")
def test_caller_that_never_acks(edge, fc, work):
    line = base.Line(edge, fc)
    with caller(edge, work, "in_no_ack", line.number, ALLOWED) as c:
        base.finish(edge, c, timeout=60)
    # Our 200 OK was retransmitted, then our BYE came.
    oks = c.received(status=200, cseq="INVITE")
    assert oks and c.received(method="BYE"), base.diag(edge, c)
    bye = c.received(method="BYE")[0]
    assert bye.time - oks[0].time >= 30, (oks[0].time, bye.time)
    hangup, = fc.wait_for(1, path="/hangup", timeout=10)
    assert fc.requests("/answer") == [] and fc.requests("/fallback") == []
    p = base.check_payload(hangup, "hangup", direction="INBOUND", frm=CALLER, to=line.number,
                           status="FAILED", cause="102", answered=False)
    assert "answer_at" not in p and p["duration"] == 0, p
    rec = base.check_record(line, p)
    assert rec["answer_at"] is None and rec["duration"] == 0, rec


# ---------------------------------------------------------------------------------------------
# 3. RTP only from the party.

def _streamed_call(srv, work, line, fc, agent, party, scenario="in_stream_wait_bye", name="rtp",
                   sdp_ip=None):
    fc.on("/answer", reply_json({"stream": {"url": agent.url(), "bidirectional": True}}))
    sc = party_scenario(work, scenario, sdp_ip or party.host, name)
    return caller(srv, work, sc, line.number, ALLOWED, keys={"party_port": party.port})


def test_rtp_from_another_address_never_reaches_the_stream(edge, fc, work):
    line = base.Line(edge, fc)
    before = metric(edge, RTP_DROPPED)
    with Agent() as agent, Party(ALLOWED) as party, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as intruder:
        intruder.bind((DENIED_RTP, 0))
        with _streamed_call(edge, work, line, fc, agent, party) as c:
            agent.wait_start(10)
            media = party.wait_peer(5)
            theirs = [pattern(FRAME, seed=100 + i) for i in range(25)]
            ours = [pattern(FRAME, seed=i) for i in range(25)]
            # The intruder sends audio and key presses to the call's media port, interleaved
            # with the party's own audio.
            for i in range(25):
                hdr = bytes([0x80, 8]) + (1000 + i).to_bytes(2, "big") + \
                    (160 * i).to_bytes(4, "big") + (0x1234).to_bytes(4, "big")
                intruder.sendto(hdr + theirs[i], media)
                dtmf = bytes([0x80, 101]) + (2000 + i).to_bytes(2, "big") + \
                    (0).to_bytes(4, "big") + (0x1234).to_bytes(4, "big") + bytes([5, 0x8a, 0, 160])
                intruder.sendto(dtmf, media)
                party.send_rtp(8, ours[i])
                time.sleep(0.02)
            agent.wait(lambda: all(f in inbound_payloads(agent) for f in ours), 5,
                       "every frame of the party")
            got = inbound_payloads(agent)
            assert not any(f in got for f in theirs), "an intruder's frame reached the stream"
            assert agent.events("dtmf") == [], agent.events("dtmf")
            assert wait_until(lambda: metric(edge, RTP_DROPPED) - before >= 50, timeout=5)
            agent.close()
            base.finish(edge, c)


@pytest.mark.parametrize("latch", [False, True], ids=["no-latch", "rtp-latch"])
def test_caller_behind_nat(tmp_path, fc, latch):
    """Without --rtp-latch the NATed caller's RTP is refused (it is not from its SDP address);
    with it, sfvopi latches to the caller's real source, sends there, and refuses others."""
    work = tmp_path
    extra = ("--rtp-latch",) if latch else ()
    with edge_server(tmp_path / "srv", *extra) as srv:
        line = base.Line(srv, fc)
        before = metric(srv, RTP_DROPPED)
        with echo_agent() as agent, Party(ALLOWED) as party, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
            other.bind((ALLOWED, 0))  # the same address, another port: not the latched source
            with _streamed_call(srv, work, line, fc, agent, party, name="nat",
                                sdp_ip="127.0.0.9") as c:
                agent.wait_start(10)
                ok = c.received(status=200, cseq="INVITE")
                assert ok, base.diag(srv, c)
                media = ("127.0.0.1", ok[0].sdp_media()[1])
                party.peer = media
                ours = [pattern(FRAME, seed=i) for i in range(25)]
                for f in ours:
                    party.send_rtp(8, f)
                    other.sendto(bytes([0x80, 8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9]) +
                                 pattern(FRAME, seed=99), media)
                    time.sleep(0.02)
                if latch:
                    agent.wait(lambda: all(f in inbound_payloads(agent) for f in ours), 5,
                               "every frame of the party")
                    assert pattern(FRAME, seed=99) not in inbound_payloads(agent)
                    # The echo comes back to the party's real source, byte for byte.
                    assert wait_until(lambda: all(
                        f in [p.payload for p in party.packets()] for f in ours), timeout=5), \
                        "the echo did not reach the latched source"
                    assert "RTP latched" in srv.log
                else:
                    assert wait_until(lambda: metric(srv, RTP_DROPPED) - before >= 50, timeout=5)
                    got = inbound_payloads(agent)
                    assert not any(f in got for f in ours), "RTP from outside the SDP address"
                    assert party.packets() == [], "sfvopi sent to the source, not the SDP"
                agent.close()
                base.finish(srv, c)
        if latch:
            assert metric(srv, RTP_DROPPED) - before >= 25


# ---------------------------------------------------------------------------------------------
# 4. Digest credentials towards the trunk.

@pytest.mark.parametrize("code,qop", [(401, False), (401, True), (407, True)],
                         ids=["401", "401-qop", "407-qop"])
def test_digest_challenge_answered_once(edge, fc, work, code, qop):
    line = base.Line(edge, fc)
    sc = render("out_auth", work, f"auth-{code}-{qop}", CODE=str(code),
                REASON="Unauthorized" if code == 401 else "Proxy Authentication Required",
                CHALLENGE="WWW-Authenticate" if code == 401 else "Proxy-Authenticate",
                QOP=', qop="auth"' if qop else "")
    with base.uas(edge, work, sc) as t:
        call = base.place_call(line, fc, call_time_limit=1)
        base.finish(edge, t)
    first, second = t.received(method="INVITE")
    assert first.header("authorization") is None and first.header("proxy-authorization") is None
    f = check_digest(second, "authorization" if code == 401 else "proxy-authorization", "INVITE")
    assert f["nonce"].startswith("n1x") and ("qop" in f) == qop, f
    assert PASSWORD not in "".join(m.first_line + str(m.headers) + m.body for m in t.messages())
    # The caller's number in From, on the trunk's host (--sip-from-domain's default).
    assert re.match(rf"^<sip:{re.escape(line.number)}@127\.0\.0\.1>",
                    second.header("from")), second.header("from")
    hangup, = fc.wait_for(1, path="/hangup", timeout=10)
    assert fc.requests("/answer"), fc.hits
    assert hangup.payload["call_status"] == "COMPLETED", hangup.payload
    assert base.final_record(line, call["call_uuid"])["call_status"] == "COMPLETED"


@pytest.mark.parametrize("stale", [False, True], ids=["wrong-credentials", "stale-again"])
def test_second_challenge_ends_the_call(edge, fc, work, stale):
    """A request answers one challenge; a second one (the credentials were refused, or the
    nonce went stale again) ends it FAILED "21", with no third INVITE."""
    line = base.Line(edge, fc)
    sc = render("out_auth_twice", work, f"twice-{stale}", STALE=", stale=true" if stale else "")
    with base.uas(edge, work, sc) as t:
        call = base.place_call(line, fc)
        base.finish(edge, t)
    assert len(t.received(method="INVITE")) == 2, t.received(method="INVITE")
    hangup, = fc.wait_for(1, path="/hangup", timeout=10)
    assert hangup.payload["call_status"] == "FAILED" and hangup.payload["hangup_cause"] == "21"
    assert fc.requests("/answer") == []
    rec = base.final_record(line, call["call_uuid"])
    assert (rec["call_status"], rec["hangup_cause"]) == ("FAILED", "21"), rec
    assert "answered one already" in edge.log


def test_bye_challenge_answered(edge, fc, work):
    line = base.Line(edge, fc)
    with base.uas(edge, work, "out_auth_bye") as t:
        call = base.place_call(line, fc, call_time_limit=1)
        base.finish(edge, t)
    byes = t.received(method="BYE")
    assert len(byes) == 2 and byes[0].header("proxy-authorization") is None, byes
    check_digest(byes[1], "proxy-authorization", "BYE")
    hangup, = fc.wait_for(1, path="/hangup", timeout=10)
    assert hangup.payload["call_status"] == "COMPLETED", hangup.payload
    assert base.final_record(line, call["call_uuid"])["call_status"] == "COMPLETED"


def test_identity_proxy_and_headers(tmp_path, fc):
    """--sip-caller-id pai, --sip-from-domain, --sip-header (twice, one from the variable) and
    --sip-outbound-proxy shape the INVITE; the password comes from --sip-password-file; logs
    in JSON at debug level hold no secret."""
    work = tmp_path
    proxy_port = free_udp_port()
    pwfile = tmp_path / "sip-password"
    pwfile.write_text(PASSWORD + "\n")
    pwfile.chmod(0o600)
    with fresh_db(tmp_path, "ident") as url:
        sip_port = free_udp_port()
        low, high = free_rtp_range(20)
        args = [BIN, "--db", url, "serve", "--listen", "127.0.0.1:0", "--threads", "2",
                "--sip-listen", f"127.0.0.1:{sip_port}",
                # A trunk no one listens on: the INVITE goes to the proxy (its Route).
                "--sip-trunk", "sip:127.0.0.1:9",
                "--sip-outbound-proxy", f"sip:127.0.0.1:{proxy_port}",
                "--rtp-ports", f"{low}-{high}", "--sip-user", USER,
                "--sip-password-file", str(pwfile), "--sip-caller-id", "pai",
                "--sip-from-domain", "pbx.example.com", "--sip-header", "X-Telnyx-Token: tok-1",
                "--log-level", "debug", "--log-format", "json"]
        env = base_env(SFVOPI_RATE_LIMIT="0", SFVOPI_DRAIN_TIMEOUT="0",
                       SFVOPI_SIP_HEADER="X-Other: two\nX-Third: 3")
        srv = Server(url, tmp_path, argv=args, env=env).start()
        srv.sip_port, srv.trunk_port, srv.rtp = sip_port, proxy_port, (low, high)
        try:
            line = base.Line(srv, fc)
            sc = render("out_auth", work, "auth-ident", CODE="407",
                        REASON="Proxy Authentication Required", CHALLENGE="Proxy-Authenticate",
                        QOP="")
            with base.uas(srv, work, sc) as t:
                base.place_call(line, fc, call_time_limit=1)
                base.finish(srv, t)
            fc.wait_for(1, path="/hangup", timeout=10)
        finally:
            assert srv.stop() == 0
    inv = t.received(method="INVITE")[1]
    check_digest(inv, "proxy-authorization", "INVITE")
    assert inv.uri == f"sip:{CALLEE}@127.0.0.1:9", inv.uri
    assert inv.header("route") == f"<sip:127.0.0.1:{proxy_port};lr>", inv.headers
    assert re.match(rf"^<sip:{USER}@pbx\.example\.com>", inv.header("from")), inv.header("from")
    assert inv.header("p-asserted-identity") == f"<sip:{line.number}@pbx.example.com>"
    # The option beats the variable: the variable's headers are not sent.
    assert inv.header("x-telnyx-token") == "tok-1" and inv.header("x-other") is None
    assert PASSWORD not in srv.log and "tok-1" not in srv.log
    assert all(x.startswith("{") for x in srv.log.splitlines() if "listening on" not in x)


def test_headers_from_the_variable_and_password_not_in_environ(tmp_path, fc):
    """SFVOPI_SIP_HEADER holds one header a line; SFVOPI_SIP_PASSWORD is gone from the
    process's environment once read."""
    work = tmp_path
    with edge_server(tmp_path / "srv", env={"SFVOPI_SIP_HEADER": "X-Other: two\nX-Third: 3"}) \
            as srv:
        environ = open(f"/proc/{srv.proc.pid}/environ", "rb").read()
        assert PASSWORD.encode() not in environ
        assert b"SFVOPI_SIP_HEADER" in environ  # the check can see the environment
        line = base.Line(srv, fc)
        with base.uas(srv, work, "out_answer") as t:
            base.place_call(line, fc)
            base.finish(srv, t)
        inv, = t.received(method="INVITE")
        assert (inv.header("x-other"), inv.header("x-third")) == ("two", "3"), inv.headers


# ---------------------------------------------------------------------------------------------
# 5. A trunk by name: RFC 3263, and the default allowlist from DNS.

def test_trunk_by_name_srv_and_default_allowlist(tmp_path, fc):
    work = tmp_path
    uas_port = free_udp_port()
    with DnsServer() as dns:
        dns.add_naptr("trunk.test", 10, 10, "s", "SIP+D2U", "", "_sip._udp.trunk.test")
        dns.add_srv("_sip._udp.trunk.test", 10, 10, uas_port, "edge1.trunk.test")
        dns.add_a("edge1.trunk.test", ALLOWED)
        with edge_server(tmp_path / "srv", "--dns-server", dns.addr, allow=None,
                         trunk="sip:trunk.test") as srv:
            assert wait_until(lambda: "SIP allowed from the trunk's addresses" in srv.log,
                              timeout=10), srv.log
            assert f"addresses={ALLOWED}" in srv.log
            line = base.Line(srv, fc)
            # Outbound: the INVITE reaches the SRV target's port on its A record's address.
            t = Sipp("out_answer", work, port=uas_port, local_ip=ALLOWED, duration_ms=300)
            with t:
                t.wait_listening()
                base.place_call(line, fc)
                base.finish(srv, t)
            inv, = t.received(method="INVITE")
            assert inv.uri == f"sip:{CALLEE}@trunk.test", inv.uri
            # Inbound: the carrier's address is allowed, the host's own (127.0.0.1) is not.
            with caller(srv, work, "options", "sfvopi", ALLOWED) as o:
                base.finish(srv, o)
            sc = render("in_silence", work, "silence-dns", METHOD="OPTIONS")
            with caller(srv, work, sc, "sfvopi", "127.0.0.1") as c:
                assert c.wait(20) == 0, base.diag(srv, c)
            assert c.received() == []
        assert dns.queries("_sip._udp.trunk.test", "SRV")


# ---------------------------------------------------------------------------------------------
# 6. A flood from a refused source does not disturb a live call.

@pytest.mark.skipif(not ONCE, reason="a load test: run once, in the plain build's SQLite pass")
def test_invite_flood_from_refused_source_during_streamed_call(edge, fc, work):
    line = base.Line(edge, fc)
    before = metric(edge, DENIED)
    flood = caller(edge, work, "flood_invite", line.number, DENIED_FLOOD,
                   extra=("-nr", "-r", "1000", "-m", "3000"))
    with echo_agent() as agent, Party(ALLOWED) as party:
        with _streamed_call(edge, work, line, fc, agent, party, name="flood") as c:
            agent.wait_start(10)
            party.wait_peer(5)
            frames = [pattern(FRAME, seed=i) for i in range(250)]  # 5 s of audio
            t0 = time.monotonic()
            try:
                for i, f in enumerate(frames):
                    delay = t0 + i * 0.02 - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    party.send_rtp(8, f)
                    if i == 25:  # 0.5 s into the audio
                        flood.start()
                flood_rc = flood.wait(30)
            finally:
                flood.kill()
            t1 = time.monotonic()
            sent_flood = int(metric(edge, DENIED) - before)
            got = wait_until(lambda: all(f in {p.payload for p in party.packets()}
                                         for f in frames), timeout=5)
            pkts = party.packets(since=t0 + 0.5, until=t1)
            gaps = [b.time - a.time for a, b in zip(pkts, pkts[1:])]
            agent.close()
            base.finish(edge, c)
    assert flood_rc == 0, flood.report()
    assert got, "the echo of the party's audio did not all come back during the flood"
    assert sent_flood >= 2500, sent_flood
    longest = max(gaps)
    p99 = statistics.quantiles(gaps, n=100)[98]
    print(f"\nflood: {sent_flood} INVITEs refused in {t1 - t0:.1f} s "
          f"({sent_flood / 3.0:.0f}/s while flooding); RTP at the party: {len(gaps)} gaps, "
          f"longest {longest * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    assert longest < 0.25, f"a gap of {longest * 1000:.0f} ms in the party's audio"
    # The log names the source once, not per INVITE.
    assert len(log_lines(edge, f"src={DENIED_FLOOD} ")) == 1
