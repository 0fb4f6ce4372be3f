"""SIP over TCP and TLS (SIP.md section 3): listeners named by --sip-listen, a trunk reached over
TCP or TLS, and a TLS trunk whose certificate must match its host name.

- TCP: the inbound and outbound SIPp scenarios of test_calls_sip.py, run over TCP (`-t t1`), with
  Contact naming the TCP listener (not the connection's port) and Via saying TCP.
- TLS trunk: a small TLS server in this file plays the carrier (Debian's SIPp has no TLS; baresip
  plays the TLS carrier with SRTP in test_srtp_baresip.py). It records the SNI and the bytes that
  reach it. A certificate for the trunk's name (or address) is accepted and the INVITE arrives
  over TLS; a certificate for another name, or an expired one, fails the call (FAILED "41") with
  a log line saying why, and no SIP byte is sent.

Run in the SQLite passes (plain and ASan+UBSan builds): transports do not depend on the
database.
"""

import contextlib
import os
import re
import socket
import ssl
import subprocess
import threading
import time

import pytest

from sipp_helper import SIPP

if os.environ.get("SFVOPI_TEST_PG_URL"):
    pytest.skip("SIP transports are independent of the database backend: SQLite runs only",
                allow_module_level=True)

import test_calls_sip as base  # noqa: E402  (skips the module too when there is no call engine)
from conftest import BIN, Server, fresh_db, wait_until  # noqa: E402
from baresip_helper import make_ca  # noqa: E402
from dns_helper import DnsServer  # noqa: E402
from sipp_helper import Sipp, claim, free_rtp_range, port_taken  # noqa: E402

if SIPP is None:
    pytest.skip("sipp (package sip-tester) is not installed", allow_module_level=True)


def free_port():
    """A port free on 127.0.0.1 for both UDP and TCP (a SIP listener may bind either)."""
    for _ in range(200):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if not port_taken(port, udp=True) and not port_taken(port, udp=False) and claim((port,)):
            return port
    raise AssertionError("no free port")


# ---------------------------------------------------------------------------------------------
# A test PKI (baresip_helper's throwaway CA): pki[NAME] is a Cert (.cert, .key), pki["ca"] the CA.

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    ca = make_ca(tmp_path_factory.mktemp("pki"))
    return {"ca": ca,
            "sfvopi": ca.issue("sfvopi", dns=["sfvopi.test"], ips=["127.0.0.1"]),
            "trunk": ca.issue("trunk", dns=["trunk.test"], ips=["127.0.0.1"]),
            "other": ca.issue("other", dns=["other.test"]),
            "expired": ca.issue("expired", dns=["trunk.test"], expired=True)}


# ---------------------------------------------------------------------------------------------
# Servers.

@contextlib.contextmanager
def transport_server(tmp, listeners, *extra, trunk=None):
    """sfvopi with the call engine on `listeners` (a --sip-listen value) and `trunk`."""
    rtp = free_rtp_range(100, step=7)
    with fresh_db(tmp, "transports") as url:
        argv = [BIN, "--db", url, "serve", "--listen", "127.0.0.1:0", "--threads", "2",
                "--sip-listen", listeners, "--rtp-ports", f"{rtp[0]}-{rtp[1]}", *extra]
        if trunk:
            argv += ["--sip-trunk", trunk]
        s = Server(url, tmp, argv=argv).start()
        s.rtp = rtp
        try:
            assert wait_until(lambda: "sip listening on" in s.log, timeout=5), s.log
            yield s
        finally:
            rc = s.stop()
        assert rc == 0, f"server exit code {rc}; log tail:\n{s.log[-4000:]}"


class TlsTrunk:
    """A TLS server on 127.0.0.1 playing the carrier: for each connection it records the SNI and
    the first bytes before any TLS (peeked), completes the handshake when the client accepts the
    certificate, reads SIP requests and answers each INVITE with `status` (and nothing else)."""

    def __init__(self, cert, key, status="486 Busy Here", min_version=ssl.TLSVersion.TLSv1_2,
                 sdp=None):
        self.port = free_port()
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.minimum_version = min_version
        self.ctx.load_cert_chain(cert, key)
        self.ctx.sni_callback = self._sni
        self.status = status
        self.sdp = sdp  # the body of a 2xx answer (with a Contact), if any
        self.sni = []
        self.raw_first = []  # the first bytes of each connection, before TLS
        self.requests = []  # decrypted SIP requests
        self.errors = []
        self.versions = []
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind(("127.0.0.1", self.port))
        self._lsock.listen(8)
        self._lsock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sni(self, sslsock, name, ctx):
        self.sni.append(name)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        self._lsock.close()

    def _run(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._lsock.accept()
            except socket.timeout:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(5)
        try:
            self.raw_first.append(conn.recv(4096, socket.MSG_PEEK))
            with self.ctx.wrap_socket(conn, server_side=True) as tls:
                self.versions.append(tls.version())
                buf = b""
                while not self._stop.is_set():
                    try:
                        data = tls.recv(65536)
                    except socket.timeout:
                        continue
                    if not data:
                        return
                    buf += data
                    while b"\r\n\r\n" in buf:
                        head, rest = buf.split(b"\r\n\r\n", 1)
                        m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                        n = int(m.group(1)) if m else 0
                        if len(rest) < n:
                            break
                        msg, buf = head + b"\r\n\r\n" + rest[:n], rest[n:]
                        self.requests.append(msg.decode("utf-8", "replace"))
                        if msg.startswith(b"INVITE "):
                            tls.sendall(self._reply(head.decode(), self.status, self.sdp))
                        elif msg.startswith(b"BYE "):
                            tls.sendall(self._reply(head.decode(), "200 OK"))
        except (ssl.SSLError, OSError) as e:
            self.errors.append(repr(e))
        finally:
            conn.close()

    def _reply(self, head, status, sdp=None):
        lines = head.split("\r\n")
        keep = [ln for ln in lines[1:]
                if ln.split(":", 1)[0].strip().lower() in ("via", "from", "to", "call-id",
                                                           "cseq")]
        keep = [ln + ";tag=trunk1" if ln.lower().startswith("to:") and "tag=" not in ln else ln
                for ln in keep]
        if sdp is not None:
            keep += [f"Contact: <sip:trunk@127.0.0.1:{self.port};transport=tls>",
                     "Content-Type: application/sdp"]
        body = sdp or ""
        return ("SIP/2.0 " + status + "\r\n" + "\r\n".join(keep)
                + f"\r\nContent-Length: {len(body)}\r\n\r\n" + body).encode()

    def invites(self):
        return [r for r in self.requests if r.startswith("INVITE ")]


# ---------------------------------------------------------------------------------------------
# TCP.

def tcp_wait_listening(sipp, timeout=5):
    assert wait_until(lambda: port_taken(sipp.port, udp=False), timeout=timeout,
                      interval=0.02), "sipp did not listen on TCP:\n" + sipp.report()


def test_tcp_inbound_call_answered_then_caller_hangs_up(tmp_path, work):
    udp, tcp = free_port(), free_port()
    with transport_server(tmp_path, f"udp:127.0.0.1:{udp},tcp:127.0.0.1:{tcp}",
                          "--sip-allow", "127.0.0.1") as srv, \
            base.FakeCustomer(default=base.reply_stream()) as fc:
        line = base.Line(srv, fc)
        with Sipp("in_answer_bye", work, remote=f"127.0.0.1:{tcp}", port=free_port(),
                  service=line.number,
                  keys={"caller": base.CALLER}, duration_ms=1000, extra=["-t", "t1"]) as c:
            base.finish(srv, c)
        ok200 = c.received(status=200, cseq="INVITE")[0]
        contact = ok200.header("contact")
        assert re.search(rf"@127\.0\.0\.1:{tcp};transport=tcp>", contact), contact
        ip, port = ok200.sdp_media()
        assert ip == "127.0.0.1" and base.in_range(port, srv.rtp), ok200.body
        assert c.received(status=200, cseq="BYE")
        answer, hangup = base.expect_hits(fc, "/answer", "/hangup")
        h = base.check_payload(hangup, "hangup", direction="INBOUND", frm=base.CALLER,
                               to=line.number, status="COMPLETED", cause="16")
        base.check_record(line, h)


def test_tcp_connection_lost_ends_the_call_102(tmp_path, work):
    """The carrier's TCP connection of an answered call goes away (its process dies): the call
    ends COMPLETED with cause "102" at once, not at its time limit."""
    udp, tcp = free_port(), free_port()
    with transport_server(tmp_path, f"udp:127.0.0.1:{udp},tcp:127.0.0.1:{tcp}",
                          "--sip-allow", "127.0.0.1") as srv, \
            base.FakeCustomer(default=base.reply_stream()) as fc:
        line = base.Line(srv, fc)
        with Sipp("in_wait_bye", work, remote=f"127.0.0.1:{tcp}", port=free_port(),
                  service=line.number, keys={"caller": base.CALLER}, extra=["-t", "t1"]) as c:
            fc.wait_for(1, path="/answer", timeout=10)
            assert wait_until(lambda: c.sent("ACK"), timeout=5), base.diag(srv, c)
            c.kill()
            killed = time.monotonic()
        hangup = fc.wait_for(1, path="/hangup", timeout=10)[0]
        assert time.monotonic() - killed < 5
        assert (hangup.payload["call_status"], hangup.payload["hangup_cause"]) == \
            ("COMPLETED", "102"), hangup.payload
        assert "SIP connection of a call lost" in srv.log


def test_tcp_outbound_calls_reuse_one_connection(tmp_path, work):
    udp, tcp, trunk = free_port(), free_port(), free_port()
    with transport_server(tmp_path, f"udp:127.0.0.1:{udp},tcp:127.0.0.1:{tcp}",
                          trunk=f"sip:127.0.0.1:{trunk};transport=tcp") as srv, \
            base.FakeCustomer(default=base.reply_stream()) as fc:
        line = base.Line(srv, fc)
        with Sipp("out_answer", work, port=trunk, duration_ms=500,
                  extra=["-t", "t1", "-m", "2"]) as s:
            tcp_wait_listening(s)
            calls = []
            for _ in range(2):
                calls.append(base.place_call(line, fc))
                assert wait_until(lambda: len(s.received("INVITE")) >= len(calls), timeout=10)
            # Both calls over one connection: one established TCP connection to the trunk.
            conns = subprocess.run(["ss", "-Htn", "state", "established", f"( dport = :{trunk} )"],
                                   capture_output=True, text=True, timeout=10).stdout
            base.finish(srv, s)
        invites = s.received("INVITE")
        assert len(invites) == 2, base.diag(srv, s)
        for inv in invites:
            assert inv.first_line.endswith("SIP/2.0") and ";transport=tcp" in inv.first_line, \
                inv.first_line
            assert inv.header("via").startswith("SIP/2.0/TCP 127.0.0.1:"), inv.header("via")
            assert re.search(rf"@127\.0\.0\.1:{tcp};transport=tcp>", inv.header("contact")), \
                inv.header("contact")
        for call in calls:
            rec = base.final_record(line, call["call_uuid"])
            assert (rec["call_status"], rec["hangup_cause"]) == ("COMPLETED", "16"), rec
        assert len(conns.strip().splitlines()) == 1, conns


# ---------------------------------------------------------------------------------------------
# TLS trunks: the certificate is verified against the trunk's name, with SNI.

def tls_call(srv, fc, status_wait=10):
    line = base.Line(srv, fc)
    call = base.place_call(line, fc)
    return line, base.final_record(line, call["call_uuid"], timeout=status_wait)


def tls_args(pki, *, ca=True):
    out = ["--sip-tls-cert", str(pki["sfvopi"].cert), "--sip-tls-key", str(pki["sfvopi"].key)]
    return out + (["--sip-tls-ca", str(pki["ca"].cert)] if ca else [])


@pytest.mark.parametrize("by", ["name", "address"])
def test_tls_trunk_with_the_right_certificate(tmp_path, pki, by):
    tls = free_port()
    with TlsTrunk(pki["trunk"].cert, pki["trunk"].key) as trunk, DnsServer() as dns:
        dns.add_a("trunk.test", "127.0.0.1")
        host = "trunk.test" if by == "name" else "127.0.0.1"
        with transport_server(tmp_path, f"tls:127.0.0.1:{tls}", *tls_args(pki), "--dns-server",
                              dns.addr, trunk=f"sips:{host}:{trunk.port}") as srv, \
                base.FakeCustomer(default=base.reply_stream()) as fc:
            line, rec = tls_call(srv, fc)
            assert (rec["call_status"], rec["hangup_cause"]) == ("BUSY", "17"), \
                (rec, srv.log[-3000:])
    # SNI carries a name, never an address (RFC 6066 section 3).
    assert trunk.sni[:1] == (["trunk.test"] if by == "name" else [None]), trunk.sni
    assert trunk.versions and all(v in ("TLSv1.2", "TLSv1.3") for v in trunk.versions)
    inv = trunk.invites()
    assert len(inv) == 1, trunk.requests
    # libre 1.1.0 routes only sip: URIs: a sips: trunk is dialled as sip:...;transport=tls.
    assert inv[0].startswith(f"INVITE sip:{base.CALLEE}@{host}:{trunk.port};transport=tls "
                             "SIP/2.0"), inv[0]
    assert re.search(r"(?im)^Via: SIP/2\.0/TLS ", inv[0]), inv[0]
    assert re.search(rf"(?im)^Contact: <sip:[^@]+@127\.0\.0\.1:{tls};transport=tls>", inv[0]), \
        inv[0]
    # The ACK for the 486 came over the same connection.
    assert any(r.startswith("ACK ") for r in trunk.requests), trunk.requests


@pytest.mark.parametrize("cert,why", [("other", "hostname mismatch"),
                                      ("expired", "certificate has expired")])
def test_tls_trunk_with_a_wrong_certificate_fails_the_call(tmp_path, pki, cert, why):
    tls = free_port()
    with TlsTrunk(pki[cert].cert, pki[cert].key) as trunk, DnsServer() as dns:
        dns.add_a("trunk.test", "127.0.0.1")
        with transport_server(tmp_path, f"tls:127.0.0.1:{tls}", *tls_args(pki), "--dns-server",
                              dns.addr, trunk=f"sips:trunk.test:{trunk.port}") as srv, \
                base.FakeCustomer(default=base.reply_stream()) as fc:
            line, rec = tls_call(srv, fc)
            assert (rec["call_status"], rec["hangup_cause"]) == ("FAILED", "41"), rec
            log = srv.log
            assert "TLS certificate of the peer refused" in log and why in log \
                and "expected=trunk.test" in log, log[-3000:]
    # Nothing but a TLS handshake reached the trunk: no SIP in clear, none decrypted.
    assert trunk.raw_first and all(b[:1] == b"\x16" for b in trunk.raw_first), trunk.raw_first
    assert not any(b"SIP/2.0" in b for b in trunk.raw_first)
    assert trunk.requests == [], trunk.requests


def test_tls_trunk_is_verified_against_the_system_cas_without_sip_tls_ca(tmp_path, pki):
    """The test CA is not among the system's: without --sip-tls-ca the call fails."""
    tls = free_port()
    with TlsTrunk(pki["trunk"].cert, pki["trunk"].key) as trunk:
        with transport_server(tmp_path, f"tls:127.0.0.1:{tls}", *tls_args(pki, ca=False),
                              trunk=f"sips:127.0.0.1:{trunk.port}") as srv, \
                base.FakeCustomer(default=base.reply_stream()) as fc:
            line, rec = tls_call(srv, fc)
            assert (rec["call_status"], rec["hangup_cause"]) == ("FAILED", "41"), rec
            assert "unable to get local issuer certificate" in srv.log, srv.log[-3000:]
    assert trunk.requests == []


def test_tls_trunk_below_tls_1_2_is_refused(tmp_path, pki):
    """A trunk that speaks at most TLS 1.1 gets no call (TLS 1.2 or later only)."""
    tls = free_port()
    trunk = TlsTrunk(pki["trunk"].cert, pki["trunk"].key, min_version=ssl.TLSVersion.TLSv1)
    trunk.ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        trunk.ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    with trunk:
        with transport_server(tmp_path, f"tls:127.0.0.1:{tls}", *tls_args(pki),
                              trunk=f"sips:127.0.0.1:{trunk.port}") as srv, \
                base.FakeCustomer(default=base.reply_stream()) as fc:
            line, rec = tls_call(srv, fc)
            assert (rec["call_status"], rec["hangup_cause"]) == ("FAILED", "41"), rec
    assert trunk.requests == [] and trunk.versions == [], (trunk.requests, trunk.versions)


PLAIN_SDP = ("v=0\r\no=trunk 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
             "m=audio 40000 RTP/SAVP 8\r\na=rtpmap:8 PCMA/8000\r\n")


def test_srtp_required_and_the_answer_has_no_crypto_fails_88(tmp_path, pki):
    """--srtp require: the trunk answers 200 OK with SDP but no a=crypto. The call ends FAILED
    with cause "88" (as a 488), the dialog is closed with ACK then BYE, no answer webhook fires
    and not one RTP packet leaves in clear."""
    tls = free_port()
    with TlsTrunk(pki["trunk"].cert, pki["trunk"].key, status="200 OK", sdp=PLAIN_SDP) as trunk:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as media:
            media.bind(("127.0.0.1", 40000))
            media.settimeout(0.5)
            with transport_server(tmp_path, f"tls:127.0.0.1:{tls}", *tls_args(pki), "--srtp",
                                  "require", trunk=f"sips:127.0.0.1:{trunk.port}") as srv, \
                    base.FakeCustomer(default=base.reply_stream()) as fc:
                line, rec = tls_call(srv, fc)
                assert (rec["call_status"], rec["hangup_cause"]) == ("FAILED", "88"), rec
                assert wait_until(lambda: any(r.startswith("BYE ") for r in trunk.requests),
                                  timeout=5), trunk.requests
                assert [h.path for h in fc.hits] == ["/hangup"], fc.hits
                assert "answer without acceptable SRTP crypto" in srv.log
                inv = trunk.invites()[0]
                assert "m=audio " in inv and " RTP/SAVP " in inv and "a=crypto:1 " \
                    "AES_CM_128_HMAC_SHA1_80 inline:" in inv, inv
            with pytest.raises(socket.timeout):
                media.recv(2048)
    assert [r.split(" ", 1)[0] for r in trunk.requests] == ["INVITE", "ACK", "BYE"], \
        trunk.requests


@pytest.mark.parametrize("argv,msg", [
    (["--sip-listen", "tls:127.0.0.1:5071"], "a tls: listener needs --sip-tls-cert"),
    (["--sip-listen", "udp:127.0.0.1:5071", "--sip-trunk", "sips:trunk.test"],
     "a TLS trunk, registrar or outbound proxy needs a tls: listener"),
    (["--sip-listen", "udp:127.0.0.1:5071", "--srtp", "offer"],
     "--srtp offer needs a tls: listener"),
    (["--sip-listen", "tls:127.0.0.1:5071", "--sip-tls-cert", "c", "--sip-tls-key", "k",
      "--srtp", "require", "--sip-trunk", "sip:trunk.test"], "--srtp require needs a TLS trunk"),
    (["--sip-listen", "tcp:127.0.0.1:5071,tcp:127.0.0.1:5071"], "names tcp:127.0.0.1:5071 twice"),
    (["--sip-listen", "sctp:127.0.0.1:5071"], "'sctp:127.0.0.1:5071' is not"),
    (["--sip-listen", "udp:127.0.0.1:5071", "--sip-advertise", "nat.example.net"],
     "--sip-advertise must be an IP address"),
])
def test_transport_usage_errors(argv, msg):
    cp = subprocess.run([BIN, "serve", *argv], capture_output=True, text=True, timeout=10,
                        stdin=subprocess.DEVNULL)
    assert cp.returncode == 2 and msg in cp.stderr, (cp.returncode, cp.stderr)


def test_unreadable_tls_certificate_fails_serve_with_a_reason(tmp_path, pki):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    with fresh_db(tmp_path, "badcert") as url:
        cp = subprocess.run([BIN, "--db", url, "serve", "--listen", "127.0.0.1:0",
                             "--sip-listen", f"tls:127.0.0.1:{free_port()}", "--sip-tls-cert",
                             str(bad), "--sip-tls-key", str(pki["sfvopi"].key)],
                            capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    assert cp.returncode == 1, cp.stderr
    assert "cannot read the TLS certificate (--sip-tls-cert)" in cp.stderr, cp.stderr
    assert "BEGIN" not in cp.stderr and "PRIVATE" not in cp.stderr


@pytest.fixture
def work(tmp_path):
    return tmp_path


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_crlf_keepalive_ping_gets_its_pong(tmp_path, pki, transport):
    """RFC 5626 section 3.5.1: a double CRLF on a connection is answered with a single one, on
    the TCP and the TLS listener alike (carriers ping to keep their NAT and firewall state)."""
    port = free_port()
    with transport_server(tmp_path, f"{transport}:127.0.0.1:{port}", "--sip-allow", "127.0.0.1",
                          *(tls_args(pki) if transport == "tls" else [])):
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        if transport == "tls":
            ctx = ssl.create_default_context(cafile=str(pki["ca"].cert))
            conn = ctx.wrap_socket(raw, server_hostname="sfvopi.test")
            assert conn.version() in ("TLSv1.2", "TLSv1.3"), conn.version()
        else:
            conn = raw
        with conn:
            for _ in range(2):
                conn.sendall(b"\r\n\r\n")
                assert conn.recv(16) == b"\r\n"
