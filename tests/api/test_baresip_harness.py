"""The TLS/SRTP interop harness (baresip_helper.py) proven against baresip itself, before any
sfvopi test relies on it:

    baresip "alice" (sends 440 Hz) --SIP/TLS, SRTP--> baresip "bob" (answers, sends 1000 Hz)
    tcpdump on lo, limited to both peers' SIP and RTP ports

- over TLS with mandatory SRTP, each side records the other's tone, both log the crypto suite,
  and the capture holds neither cleartext SIP nor G.711 audio of either tone;
- the same call over UDP without SRTP, as the negative control: the same checks must find the
  INVITE, the BYE and both tones in clear, so they can fail;
- the test certificates are what they claim (openssl verify: good, wrong host, expired,
  another CA). baresip 1.0 itself verifies no server certificate (it calls a TLS peer whose
  certificate names another host, has expired, or comes from an unknown CA: checked by hand,
  see NOTES-baresip.md), so there is no "baresip refuses" case.

Nothing here runs sfvopi: the module runs once, in the plain build's SQLite pass. Every wait is
bounded (log polling with deadlines, -t on each baresip, SIGTERM then SIGKILL), and the working
directory is removed afterwards.
"""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import ASAN, skip_unless_strict

if os.environ.get("SFVOPI_TEST_PG_URL") or ASAN:
    pytest.skip("the harness is independent of sfvopi: once, in the plain SQLite pass",
                allow_module_level=True)

from baresip_helper import (  # noqa: E402
    OPENSSL, missing_tools,
    Baresip, Capture, dominant, find_cleartext_sip, find_plain_audio,
    g711, g711_decode, looks_rtp, make_ca, read_wav, sine, tone_ratio, wav_tone_ratio,
    write_tone, write_wav,
)

ALICE_HZ, BOB_HZ = 440, 1000
CALL_SECONDS = 3  # alice's -t: she hangs up (BYE) after this
SUITE = "AES_CM_128_HMAC_SHA1_80"


def _require_tools():
    for why in missing_tools():
        skip_unless_strict(why)


@pytest.fixture(scope="module")
def work():
    _require_tools()
    d = Path(tempfile.mkdtemp(prefix="sfvopi-baresip-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def pki(work):
    ca = make_ca(work / "pki")
    return {
        "ca": ca,
        "server": ca.issue("server", dns=["localhost"], ips=["127.0.0.1"]),
        "client": ca.issue("client", dns=["localhost"], ips=["127.0.0.1"]),
        "wrong_host": ca.issue("wrong-host", dns=["wrong.example"]),
        "expired": ca.issue("expired", dns=["localhost"], ips=["127.0.0.1"], expired=True),
        "rogue": make_ca(work / "rogue", "rogue CA").issue("rogue", dns=["localhost"]),
    }


def _call(work, pki, tag, *, tls):
    """alice calls bob for CALL_SECONDS under a capture; returns (alice, bob, packets,
    reason bob logged for the end of the call)."""
    d = work / tag
    d.mkdir()
    transport, mediaenc = ("tls", "srtp-mand") if tls else ("udp", None)
    common = dict(transport=transport, mediaenc=mediaenc, cafile=pki["ca"].cert)
    bob = Baresip(d, "bob", answer=True, tone=write_tone(d / "bob.wav", BOB_HZ, 10),
                  cert=pki["server"].combined, **common)
    alice = Baresip(d, "alice", tone=write_tone(d / "alice.wav", ALICE_HZ, 10),
                    cert=pki["client"].combined, **common)
    with Capture(d / "call.pcap", ports=alice.ports() + bob.ports()) as cap:
        with bob.start(seconds=CALL_SECONDS + 15, trace=True):
            bob.wait_ready()
            with alice.start(dial=bob.uri, seconds=CALL_SECONDS):
                alice.wait_established(timeout=10)
                bob.wait_log("incoming", timeout=5)
                bob.wait_established(timeout=5)
                if tls:
                    assert alice.wait_srtp(timeout=5) == SUITE
                    assert bob.wait_srtp(timeout=5) == SUITE
                alice.wait_exit(timeout=CALL_SECONDS + 10)
            reason = bob.wait_closed(timeout=5)
    assert cap.counts().get("dropped by kernel") == 0, cap.stderr()
    return alice, bob, cap.packets(), reason


def _check_tones(alice, bob):
    heard_by_bob, heard_by_alice = bob.heard(), alice.heard()
    # about CALL_SECONDS of audio each way, less the set-up
    assert len(heard_by_bob) > (CALL_SECONDS - 1) * 8000, bob.report()
    assert dominant(heard_by_bob, [ALICE_HZ, BOB_HZ]) == ALICE_HZ
    assert dominant(heard_by_alice, [ALICE_HZ, BOB_HZ]) == BOB_HZ
    assert tone_ratio(heard_by_bob, ALICE_HZ) > 100
    assert tone_ratio(heard_by_alice, BOB_HZ) > 100
    # what each sent (sndfile's -enc.wav) is its own tone
    assert wav_tone_ratio(alice.recordings()["enc"], ALICE_HZ) > 100
    assert wav_tone_ratio(bob.recordings()["enc"], BOB_HZ) > 100


# ---------------------------------------------------------------------------------------------
# Calls.

def test_tls_srtp_call_carries_both_tones_and_nothing_in_clear(work, pki):
    t0 = time.monotonic()
    alice, bob, packets, reason = _call(work, pki, "tls", tls=True)
    assert time.monotonic() - t0 < CALL_SECONDS + 10
    assert reason == "Connection reset by peer"  # how baresip 1.0 logs a BYE received
    _check_tones(alice, bob)

    # The capture saw the call: TLS records on bob's TLS port, RTP-shaped UDP both ways.
    tls = [p for p in packets if p.proto == "tcp" and bob.sip_port in (p.sport, p.dport)
           and p.payload]
    assert tls and tls[0].payload[:1] == b"\x16", "no TLS handshake record captured"
    rtp = [p for p in packets if p.proto == "udp" and looks_rtp(p.payload)]
    assert len(rtp) > 2 * (CALL_SECONDS - 1) * 50, f"{len(rtp)} RTP packets captured"
    assert not find_cleartext_sip(packets)
    assert not find_plain_audio(packets, sine(ALICE_HZ, 10))
    assert not find_plain_audio(packets, sine(BOB_HZ, 10))

    # bob's own trace (decrypted) shows the INVITE and the BYE came over TLS.
    got = {(m.method, m.transport) for m in bob.sip_messages() if m.direction == "in"}
    assert {("INVITE", "TLS"), ("ACK", "TLS"), ("BYE", "TLS")} <= got, got
    invite = next(m for m in bob.sip_messages() if m.method == "INVITE")
    assert invite.uri_user == "bob"
    assert "RTP/SAVP" in invite.body and "a=crypto:" in invite.body


def test_plain_call_is_found_in_clear(work, pki):
    """The negative control: the same checks on a UDP call without SRTP find everything."""
    alice, bob, packets, reason = _call(work, pki, "plain", tls=False)
    assert reason == "Connection reset by peer"
    _check_tones(alice, bob)
    sip = find_cleartext_sip(packets)
    firsts = {p.payload.split(b"\r\n", 1)[0].split(b" ")[0] for p in sip}
    assert {b"INVITE", b"ACK", b"BYE", b"SIP/2.0"} <= firsts, firsts
    rtp = [p for p in packets if p.proto == "udp" and looks_rtp(p.payload)]
    from_alice = find_plain_audio(packets, sine(ALICE_HZ, 10))
    from_bob = find_plain_audio(packets, sine(BOB_HZ, 10))
    # nearly every packet of each direction (the first frames may be silence)
    assert len(from_alice) > 0.8 * len(rtp) / 2, (len(from_alice), len(rtp))
    assert len(from_bob) > 0.8 * len(rtp) / 2, (len(from_bob), len(rtp))
    assert {p.sport for p in from_alice}.isdisjoint({p.sport for p in from_bob})
    # ...and only A-law: the same packets are not mu-law audio
    assert not find_plain_audio(packets, sine(ALICE_HZ, 10), laws=("ulaw",))
    assert not find_plain_audio(packets, sine(700, 10))


# ---------------------------------------------------------------------------------------------
# Pieces that need no call.

def _verify(pki, cert, host=None, ip=None, ca=None):
    argv = [OPENSSL, "verify", "-CAfile", str(ca or pki["ca"].cert)]
    if host:
        argv += ["-verify_hostname", host]
    if ip:
        argv += ["-verify_ip", ip]
    cp = subprocess.run(argv + [str(cert.cert)], capture_output=True, text=True, timeout=30)
    return cp.returncode, cp.stdout + cp.stderr


def test_certificates_are_what_they_claim(pki):
    assert _verify(pki, pki["server"], host="localhost")[0] == 0
    assert _verify(pki, pki["server"], ip="127.0.0.1")[0] == 0
    rc, out = _verify(pki, pki["wrong_host"], host="localhost")
    assert rc != 0 and "hostname mismatch" in out, out
    rc, out = _verify(pki, pki["expired"], host="localhost")
    assert rc != 0 and "certificate has expired" in out, out
    rc, out = _verify(pki, pki["rogue"], host="localhost")
    assert rc != 0 and "unable to get local issuer certificate" in out, out
    combined = pki["server"].combined.read_text()
    assert "BEGIN CERTIFICATE" in combined and "PRIVATE KEY" in combined


def test_tone_analysis_survives_g711_and_leading_silence(work):
    with_silence = [0] * 4000 + sine(ALICE_HZ, 2)
    path = write_wav(work / "silence-then-tone.wav", with_silence)
    samples, rate = read_wav(path)
    assert rate == 8000 and samples == with_silence
    for law in ("alaw", "ulaw"):
        back = g711_decode(g711(samples, law), law)
        assert dominant(back, [ALICE_HZ, BOB_HZ, 700]) == ALICE_HZ
        assert tone_ratio(back, ALICE_HZ) > 100
        assert tone_ratio(back, BOB_HZ) < 0.01
    assert tone_ratio([0] * 8000, ALICE_HZ) == 0.0
