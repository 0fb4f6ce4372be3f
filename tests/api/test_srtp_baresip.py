"""SIP over TLS with SRTP against baresip 1.0 (SIP.md section 3), both directions:

    baresip "carrier" --SIP/TLS, SRTP (mediaenc=srtp-mand)--> sfvopi --WebSocket--> echo agent

- inbound: baresip calls a linked number on sfvopi's tls: listener, sending a 440 Hz tone; the
  agent echoes every frame. The agent must receive the tone (baresip -> sfvopi, decrypted by
  sfvopi's libsrtp2), and baresip must hear it back (sfvopi -> baresip, encrypted by libsrtp2,
  decrypted by baresip's own SRTP: two independent implementations).
- outbound: sfvopi places a call to baresip over a sips: trunk (its certificate verified against
  127.0.0.1), baresip answers and sends 1000 Hz; the same checks the other way round.
- in both, a capture on lo (tcpdump) of the SIP and RTP ports holds no cleartext SIP and no RTP
  payload carrying the plain G.711 audio of the tone (the harness's self-test shows that the
  same checks find both in a plain call).
- the same inbound call over UDP and over TCP in plain RTP (interop on every transport).
- --srtp require refuses a plain offer (baresip without mediaenc) with 488, and --srtp offer
  takes the same call in plain RTP.

Run in the SQLite passes, plain and under ASan+UBSan (SRTP does not depend on the database; the
sanitizers watch the SRTP hooks and libsrtp2's use of our buffers).
"""

import base64
import os
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
import requests

from conftest import skip_unless_strict

if os.environ.get("SFVOPI_TEST_PG_URL"):
    pytest.skip("SRTP interop is independent of the database: the SQLite passes only",
                allow_module_level=True)

import test_calls_sip as base  # noqa: E402  (skips the module too when there is no call engine)
from baresip_helper import (  # noqa: E402
    missing_tools,
    Baresip, Capture, find_cleartext_sip, find_plain_audio,
    g711_decode, make_ca, sine, tone_ratio, write_tone,
)
from conftest import wait_until  # noqa: E402
from fake_customer import FakeCustomer, reply_json  # noqa: E402
from stream_helper import echo_agent  # noqa: E402
from test_sip_transports import free_port, transport_server  # noqa: E402

SUITE = "AES_CM_128_HMAC_SHA1_80"
OTHERS = (300, 700, 1500, 2200)  # frequencies that must not dominate


def _require_tools():
    for why in missing_tools():
        skip_unless_strict(why)


@pytest.fixture(scope="module")
def work():
    _require_tools()
    d = Path(tempfile.mkdtemp(prefix="sfvopi-srtp-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def pki(work):
    ca = make_ca(work / "pki")
    return {"ca": ca, "sfvopi": ca.issue("sfvopi", dns=["sfvopi.test"], ips=["127.0.0.1"]),
            "carrier": ca.issue("carrier", dns=["carrier.test"], ips=["127.0.0.1"])}


def agent_audio(agent):
    """The inbound audio the agent received, as 16-bit samples (the stream's A-law decoded)."""
    raw = b"".join(base64.b64decode(m["media"]["payload"])
                   for _, m in agent.events("media", "inbound"))
    first = next((m for _, m in agent.events("media", "inbound")), None)
    assert first, "the agent received no inbound audio"
    law = "ulaw" if "mulaw" in first["media"]["contentType"].lower() else "alaw"
    return g711_decode(raw, law)


def metric(srv, name):
    text = requests.get(srv.url + "/metrics", timeout=5).text
    m = re.search(r"^" + re.escape(name) + r" (\S+)$", text, re.M)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


def sfvopi_rtp_port(srv):
    """The media port of sfvopi's one live call: its even UDP port in the --rtp-ports range
    (libre binds the odd one above it for RTCP)."""
    out = subprocess.run(["ss", "-Huan"], capture_output=True, text=True, timeout=10).stdout
    ports = {int(m) for m in re.findall(r"127\.0\.0\.1:(\d+)\s", out)
             if srv.rtp[0] <= int(m) <= srv.rtp[1] and int(m) % 2 == 0}
    assert len(ports) == 1, (ports, out)
    return ports.pop()


def sfvopi_args(pki, srtp="require"):
    c = pki["sfvopi"]
    return ["--sip-tls-cert", str(c.cert), "--sip-tls-key", str(c.key), "--sip-tls-ca",
            str(pki["ca"].cert), "--srtp", srtp]


def check_capture(cap, tone_hz):
    pkts = cap.packets()
    assert not find_cleartext_sip(pkts), "cleartext SIP on the wire"
    plain = sine(tone_hz, 2.0)
    assert not find_plain_audio(pkts, plain), "plain G.711 audio of the tone on the wire"
    return pkts


def test_inbound_tls_srtp_call_from_baresip(work, pki):
    d = work / "inbound"
    tls = free_port()
    d.mkdir()
    tone = write_tone(d / "tone440.wav", 440, 60)
    with transport_server(d, f"tls:127.0.0.1:{tls}", *sfvopi_args(pki), "--sip-allow",
                          "127.0.0.1") as srv, \
            FakeCustomer() as fc, echo_agent() as agent:
        line = base.Line(srv, fc)
        fc.on("/answer", reply_json({"stream": {"url": agent.url(), "bidirectional": True,
                                                "keep_call_alive": True}}))
        carrier = Baresip(d, "carrier", user="carrier", tone=tone, cert=pki["carrier"].combined,
                          cafile=pki["ca"].cert, rtp_ports=(srv.rtp[1] + 100, srv.rtp[1] + 119))
        cap = Capture(d / "lo.pcap", [tls, carrier.port, carrier.port + 1, srv.rtp,
                                      carrier.rtp_ports]).start()
        try:
            carrier.start(dial=f"sip:{line.number.lstrip('+')}@127.0.0.1:{tls}", seconds=6)
            assert carrier.wait_srtp(10) == SUITE, carrier.report()
            carrier.wait_established(10)
            agent.wait_start(10)
            # A stranger's packets on the call's media port, from the carrier's own address:
            # without the key they fail authentication and reach nobody.
            before = metric(srv, "sfvopi_rtp_dropped_total{reason=\"srtp_auth\"}")
            forged = bytes(range(160))
            port = sfvopi_rtp_port(srv)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for i in range(20):
                    s.sendto(bytes([0x80, 8]) + (i + 1).to_bytes(2, "big") + bytes(8) + forged
                             + bytes(10), ("127.0.0.1", port))
            assert wait_until(lambda: metric(
                srv, "sfvopi_rtp_dropped_total{reason=\"srtp_auth\"}") - before >= 20,
                timeout=5), "forged SRTP not counted"
            assert carrier.wait_exit(20) == 0, carrier.report()
        finally:
            cap.stop()
        hangup = fc.wait_for(1, path="/hangup", timeout=10)[0]
        assert hangup.payload["call_status"] == "COMPLETED", hangup.payload
        assert "SRTP" in srv.log and SUITE in srv.log, srv.log[-3000:]
    # baresip -> sfvopi: the agent heard the carrier's tone.
    heard = agent_audio(agent)
    assert tone_ratio(heard, 440, OTHERS) > 20, "the agent did not hear 440 Hz"
    assert bytes(range(160)) not in b"".join(base64.b64decode(m["media"]["payload"]) for _, m
                                             in agent.events("media", "inbound"))
    # sfvopi -> baresip: the echo came back through sfvopi's SRTP and baresip's.
    assert tone_ratio(carrier.heard(), 440, OTHERS) > 20, "baresip did not hear the echo"
    check_capture(cap, 440)


def test_outbound_tls_srtp_call_to_baresip(work, pki):
    d = work / "outbound"
    d.mkdir()
    tls = free_port()
    tone = write_tone(d / "tone1000.wav", 1000, 60)
    callee = "14155550123"
    carrier = Baresip(d, "carrier", user=f"+{callee}", tone=tone, answer=True,
                      cert=pki["carrier"].combined, cafile=pki["ca"].cert)
    with transport_server(d, f"tls:127.0.0.1:{tls}", *sfvopi_args(pki),
                          trunk=f"sips:127.0.0.1:{carrier.sip_port}") as srv, \
            FakeCustomer() as fc, echo_agent() as agent:
        line = base.Line(srv, fc)
        cap = Capture(d / "lo.pcap", [tls, carrier.port, carrier.port + 1, srv.rtp,
                                      carrier.rtp_ports]).start()
        try:
            carrier.start(seconds=30)
            carrier.wait_ready(10)
            fc.on("/answer", reply_json({"stream": {"url": agent.url(), "bidirectional": True}}))
            call = base.place_call(line, fc, to=f"+{callee}", call_time_limit=4)
            assert carrier.wait_srtp(10) == SUITE, carrier.report()
            agent.wait_start(10)
            rec = base.final_record(line, call["call_uuid"], timeout=15)
        finally:
            cap.stop()
            carrier.stop()
        assert (rec["call_status"], rec["hangup_cause"]) == ("COMPLETED", "16"), rec
    heard = agent_audio(agent)
    assert tone_ratio(heard, 1000, OTHERS) > 20, "the agent did not hear 1000 Hz"
    assert tone_ratio(carrier.heard(), 1000, OTHERS) > 20, "baresip did not hear the echo"
    check_capture(cap, 1000)


@pytest.mark.parametrize("mode,want", [("require", "488"), ("offer", "plain")])
def test_plain_offer_under_require_is_488_and_under_offer_plain(work, pki, mode, want):
    d = work / f"plain-{mode}"
    d.mkdir()
    tls = free_port()
    with transport_server(d, f"tls:127.0.0.1:{tls}", *sfvopi_args(pki, mode), "--sip-allow",
                          "127.0.0.1") as srv, \
            FakeCustomer() as fc, echo_agent() as agent:
        line = base.Line(srv, fc)
        fc.on("/answer", reply_json({"stream": {"url": agent.url(), "bidirectional": True}}))
        carrier = Baresip(d, "carrier", user="carrier", mediaenc=None,
                          cert=pki["carrier"].combined, cafile=pki["ca"].cert)
        carrier.start(dial=f"sip:{line.number.lstrip('+')}@127.0.0.1:{tls}", seconds=4)
        if want == "488":
            assert "488" in (carrier.wait_closed(10) or ""), carrier.report()
            assert "no acceptable SRTP crypto" in srv.log, srv.log[-3000:]
            assert fc.hits == [], fc.hits
        else:
            carrier.wait_established(10)
            agent.wait_start(10)
            assert wait_until(lambda: agent.events("media", "inbound"), timeout=5)
        carrier.wait_exit(15)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_inbound_plain_call_from_baresip_over(work, pki, transport):
    """The same call over UDP and over TCP in plain RTP (--srtp off): baresip's tone reaches the
    agent and its echo reaches baresip."""
    d = work / f"plain-{transport}"
    d.mkdir()
    port = free_port()
    tone = write_tone(d / "tone440.wav", 440, 60)
    with transport_server(d, f"{transport}:127.0.0.1:{port}", "--sip-allow",
                          "127.0.0.1") as srv, \
            FakeCustomer() as fc, echo_agent() as agent:
        line = base.Line(srv, fc)
        fc.on("/answer", reply_json({"stream": {"url": agent.url(), "bidirectional": True}}))
        carrier = Baresip(d, "carrier", user="carrier", transport=transport, mediaenc=None,
                          tone=tone)
        carrier.start(dial=f"sip:{line.number.lstrip('+')}@127.0.0.1:{port}", seconds=5)
        carrier.wait_established(10)
        agent.wait_start(10)
        assert carrier.wait_exit(20) == 0, carrier.report()
        hangup = fc.wait_for(1, path="/hangup", timeout=10)[0]
        assert hangup.payload["call_status"] == "COMPLETED", hangup.payload
    assert tone_ratio(agent_audio(agent), 440, OTHERS) > 20, "the agent did not hear 440 Hz"
    assert tone_ratio(carrier.heard(), 440, OTHERS) > 20, "baresip did not hear the echo"
