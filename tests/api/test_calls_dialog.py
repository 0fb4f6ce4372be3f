"""Healthy dialogs (spec/SIP.md section 4): re-INVITE and UPDATE with and without SDP, hold and
resume, a codec change mid-call, the RTP timeout, DTMF in SIP INFO, outbound early media.

    SIPp (signalling, tests/sipp/in_dialog.xml rendered with the steps of each test)
        --SIP--> sfvopi <--WebSocket--> stream_helper.Agent (the customer)
    stream_helper.Party (the caller's RTP, named in every SDP by -key party_port) <--RTP--> sfvopi

The server, org and number fixtures are test_calls_sip.py's, the stream helpers
test_calls_stream.py's. Tests wait for SIPp's own messages (its message log) to know where the
dialog is, and compare the audio bytes at the party and on the WebSocket. Every wait has a
deadline; SIPp's scenario timeouts and -timeout bound the rest.
"""

import struct
import threading
import time

import pytest

import test_calls_sip as base  # noqa: E402  (skips this module too when there is no call engine)
import test_calls_stream as st  # noqa: E402  (SQLite only, as the stream tests)
from sipp_helper import Sipp, render
from stream_helper import ALAW, FRAME, ULAW, b64, pattern, sine_samples, ulaw_encode
from test_calls_sip import _server_alive, fc, line, srv, work  # noqa: F401
from test_calls_stream import agent, party  # noqa: F401

pytestmark = st.AUDIO_ONCE

CALLER = base.CALLER


# ---------------------------------------------------------------------------------------------
# Scenario steps (SIPp XML) for in_dialog.xml.

def sdp(codecs=(8, 0), direction="sendrecv", addr="127.0.0.1"):
    names = {8: "PCMA", 0: "PCMU"}
    lines = ["v=0", "o=carrier 53655765 2353687638 IN IP4 [local_ip]", "s=-",
             f"c=IN IP4 {addr}", "t=0 0",
             "m=audio [party_port] RTP/AVP " + " ".join(str(c) for c in (*codecs, 101))]
    lines += [f"a=rtpmap:{c} {names[c]}/8000" for c in codecs]
    lines += ["a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15", "a=ptime:20",
              f"a={direction}"]
    return "\n".join(lines) + "\n"


def _request(method, cseq, body=None, ctype="application/sdp"):
    head = [f"{method} [next_url] SIP/2.0",
            "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport",
            "[routes]",
            "From: <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]",
            "To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]",
            "Call-ID: [call_id]", f"CSeq: {cseq} {method}",
            "Contact: <sip:[caller]@[local_ip]:[local_port];transport=[transport]>",
            "Max-Forwards: 70"]
    if body is None:
        head.append("Content-Length: 0")
        text = "\n".join(head) + "\n"
    else:
        head += [f"Content-Type: {ctype}", "Content-Length: [len]"]
        text = "\n".join(head) + "\n\n" + body
    return text


def _send(text, retrans=True):
    r = ' retrans="500"' if retrans else ""
    return f"<send{r}>\n<![CDATA[\n\n{text}\n]]>\n</send>\n"


def pause(ms):
    return f'<pause milliseconds="{ms}"/>\n'


def reinvite(cseq, offer=None, ack_answer=None):
    """A re-INVITE (with the SDP `offer`, or none), its 200, and the ACK (with `ack_answer`)."""
    return (_send(_request("INVITE", cseq, offer))
            + '<recv response="100" optional="true"/>\n'
            + '<recv response="200" timeout="10000"/>\n'
            + _send(_request("ACK", cseq, ack_answer), retrans=False))


def update(cseq, offer=None):
    return (_send(_request("UPDATE", cseq, offer))
            + '<recv response="200" timeout="10000"/>\n')


def info(cseq, ctype, body, expect=200):
    return (_send(_request("INFO", cseq, body, ctype))
            + f'<recv response="{expect}" timeout="10000"/>\n')


def bye(cseq):
    return _send(_request("BYE", cseq)) + '<recv response="200" crlf="true" timeout="10000"/>\n'


WAIT_BYE = """<recv request="BYE" timeout="15000"/>
<send>
<![CDATA[

SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]>
</send>
"""


def dialog(srv, work, line, party, name, steps, end):
    path = render("in_dialog", work, name, STEPS="".join(steps), END=end)
    return Sipp(path, work, remote=f"127.0.0.1:{srv.sip_port}", service=line.number,
                keys={"caller": CALLER, "party_port": party.port})


def wait_for(sipp, pred, what, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        if sipp.proc.poll() is not None and not pred():
            raise AssertionError(f"sipp ended before {what}:\n" + sipp.report())
        time.sleep(0.02)
    raise AssertionError(f"no {what} within {timeout} s:\n" + sipp.report())


def acks_sent(sipp, n):
    """True once SIPp has sent the ACK of CSeq n (1: the call's, 2 and on: re-INVITEs')."""
    return lambda: [m for m in sipp.sent(method="ACK") if cseq_num(m) == n]


def cseq_num(msg):
    return int((msg.header("cseq") or "0").split()[0])


def first(msgs, n):
    """The first of msgs (SIPp may log retransmissions) with CSeq number n."""
    return next(m for m in msgs if cseq_num(m) == n)


def to_mono(epoch):
    """A time of SIPp's log (epoch seconds) on the monotonic clock of the party's packets."""
    return epoch - (time.time() - time.monotonic())


def sdp_dir(msg):
    for d in ("sendrecv", "sendonly", "recvonly", "inactive"):
        if f"a={d}" in msg.body:
            return d
    return None


def check_both_ways(party, agent, since, pt=8, party_law=None, stream_law=None):
    """Audio flows both ways from `since`: frames the party sends arrive on the WebSocket, audio
    the customer plays reaches the party. Exact bytes when party and stream share a law; within
    G.711 quantisation across laws."""
    n_in = len(st.media_msgs(agent, "inbound"))
    if pt == 8:
        frames = [pattern(FRAME, seed=40 + i) for i in range(10)]
    else:
        s = sine_samples(400, FRAME * 10, amplitude=6000)
        frames = [bytes(ulaw_encode(x) for x in s[i:i + FRAME]) for i in range(0, len(s), FRAME)]
    party.send_frames(frames, pt=pt)
    agent.wait_event("media", n_in + 10, timeout=5, track="inbound")
    got = [b64(m) for m in st.media_msgs(agent, "inbound")[n_in:n_in + 10]]
    if pt == 8:
        assert got == frames, "the party's audio did not reach the stream unchanged"
    else:
        heard = [ALAW[x] for g in got for x in g]
        sent = [ULAW[x] for f in frames for x in f]
        bad = [(i, h, w) for i, (h, w) in enumerate(zip(heard, sent)) if not st._close(h, w)]
        assert len(heard) == len(sent) and not bad, f"recoded audio differs: {bad[:5]}"
    audio = pattern(2400, seed=9)
    t_play = agent.play(audio)
    agent.checkpoint(f"c{n_in}")
    agent.wait_event("playedStream", 1 + len(agent.events("playedStream")), timeout=5)
    time.sleep(0.1)
    pk = party.packets(since=max(since, t_play - 0.05))
    assert pk and all(p.pt == pt for p in pk), sorted({p.pt for p in pk})
    if pt == 8:
        run, _, _ = st.audio_run(pk)
        assert b"".join(p.payload for p in run) == audio, "the party did not hear the audio played"
    else:
        # silence (A-law's, recoded) until the audio begins, on a packet boundary
        quiet = pk[0].payload[:1] * FRAME
        first_ = next(i for i, p in enumerate(pk) if p.payload != quiet)
        heard = [ULAW[x] for p in pk[first_:] for x in p.payload][:len(audio)]
        want = [ALAW[x] for x in audio]
        bad = [(i, h, w) for i, (h, w) in enumerate(zip(heard, want))
               if not st._close(h, w, 0.12, 80)]
        assert len(heard) == len(want) and not bad, f"the party heard something else: {bad[:5]}"


# ---------------------------------------------------------------------------------------------
# re-INVITE.

def test_reinvite_without_sdp_offers_current_codec_and_audio_flows(srv, line, fc, work, agent,
                                                                   party):
    st.answer_with(fc, agent, direction="BOTH", bidirectional=True)
    steps = [pause(1500), reinvite(2, None, ack_answer=sdp((8,))), pause(4000), bye(3)]
    with dialog(srv, work, line, party, "reinvite_nosdp", steps, "") as c:
        call_uuid, start, _ = st.started(fc, agent)
        party.wait_peer()
        wait_for(c, acks_sent(c, 2), "ACK of the re-INVITE")
        t = time.monotonic()
        check_both_ways(party, agent, t)
        st.finish(srv, c)
    ok200 = c.received(status=200, cseq="INVITE")
    first_, second = first(ok200, 1), first(ok200, 2)
    addr, port = second.sdp_media()
    assert port and port == first_.sdp_media()[1], (first_.body, second.body)
    assert addr == first_.sdp_media()[0]
    assert second.sdp_codecs()[0] == "PCMA" and "PCMU" not in second.sdp_codecs(), second.body
    assert sdp_dir(second) == "sendrecv", second.body
    assert start["mediaFormat"] == {"contentType": "audio/PCMA", "sampleRate": 8000}
    h = st.hangup_of(fc, call_uuid)
    assert (h["call_status"], h["hangup_cause"]) == ("COMPLETED", "16"), h


def test_reinvite_pcma_to_pcmu_keeps_stream_format(srv, line, fc, work, agent, party):
    st.answer_with(fc, agent, direction="BOTH", bidirectional=True)
    steps = [pause(1500), reinvite(2, sdp((0,))), pause(4000), bye(3)]
    with dialog(srv, work, line, party, "reinvite_pcmu", steps, "") as c:
        call_uuid, start, _ = st.started(fc, agent)
        party.wait_peer()
        wait_for(c, acks_sent(c, 2), "ACK of the re-INVITE")
        t_switch = to_mono(first(c.received(status=200, cseq="INVITE"), 2).time)
        check_both_ways(party, agent, t_switch + 0.05, pt=0)
        st.finish(srv, c)
    ok200 = c.received(status=200, cseq="INVITE")
    answer = first(ok200, 2)
    assert answer.sdp_codecs()[0] == "PCMU" and "PCMA" not in answer.sdp_codecs(), answer.body
    assert answer.sdp_media()[1] == first(ok200, 1).sdp_media()[1]
    before = party.packets(until=t_switch - 0.05)
    assert before and all(p.pt == 8 for p in before)
    # the stream's format never changed
    for m in st.media_msgs(agent, "inbound") + st.media_msgs(agent, "outbound"):
        assert m["media"]["contentType"] == "audio/PCMA", m["media"]
    h = st.hangup_of(fc, call_uuid)
    assert (h["call_status"], h["hangup_cause"]) == ("COMPLETED", "16"), h


@pytest.mark.parametrize("how,answer_dir", [("sendonly", "recvonly"), ("inactive", "inactive"),
                                            ("c0", "recvonly")])
def test_hold_then_resume(srv, line, fc, work, agent, party, how, answer_dir):
    st.answer_with(fc, agent, direction="BOTH", bidirectional=True)
    hold = sdp((8, 0), "sendrecv", "0.0.0.0") if how == "c0" else sdp((8, 0), how)
    steps = [pause(1000), reinvite(2, hold), pause(2000), reinvite(3, sdp((8, 0))), pause(3000),
             bye(4)]
    with dialog(srv, work, line, party, f"hold_{how}", steps, "") as c:
        call_uuid, _, _ = st.started(fc, agent)
        party.wait_peer()
        agent.play(pattern(8000 * 8, seed=3))  # audio to send all along
        wait_for(c, acks_sent(c, 3), "ACK of the resuming re-INVITE")
        ok200 = c.received(status=200, cseq="INVITE")
        held, resumed = first(ok200, 2), first(ok200, 3)
        t_held = to_mono(held.time)
        t_resume = to_mono(first(c.sent(method="INVITE"), 3).time)
        after = party.wait_packets(10, timeout=3, since=to_mono(resumed.time))
        st.finish(srv, c)
    assert sdp_dir(held) == answer_dir, held.body
    assert sdp_dir(resumed) == "sendrecv", resumed.body
    assert t_resume - t_held > 1.5
    during = party.packets(since=t_held + 0.05, until=t_resume)
    assert not during, f"{len(during)} RTP packet(s) sent to the party while it held the call"
    assert len(after) >= 10 and not all(p.silent for p in after), "no audio after resuming"
    h = st.hangup_of(fc, call_uuid)
    assert (h["call_status"], h["hangup_cause"]) == ("COMPLETED", "16"), h


# ---------------------------------------------------------------------------------------------
# UPDATE.

def test_update_with_and_without_sdp(srv, line, fc, work, agent, party):
    st.answer_with(fc, agent, direction="BOTH", bidirectional=True)
    steps = [pause(1500), update(2, sdp((0,))), pause(300), update(3), pause(4000), bye(4)]
    with dialog(srv, work, line, party, "update", steps, "") as c:
        call_uuid, _, _ = st.started(fc, agent)
        party.wait_peer()
        wait_for(c, lambda: [m for m in c.received(status=200, cseq="UPDATE") if cseq_num(m) == 3],
                 "200 to the second UPDATE")
        t = to_mono(first(c.received(status=200, cseq="UPDATE"), 2).time)
        check_both_ways(party, agent, t + 0.05, pt=0)
        st.finish(srv, c)
    ok200 = c.received(status=200, cseq="UPDATE")
    with_sdp, without = first(ok200, 2), first(ok200, 3)
    assert with_sdp.header("content-type") == "application/sdp", with_sdp.headers
    assert with_sdp.sdp_codecs()[0] == "PCMU" and "PCMA" not in with_sdp.sdp_codecs()
    assert with_sdp.sdp_media()[1] == first(c.received(status=200, cseq="INVITE"), 1).sdp_media()[1]
    assert with_sdp.header("contact"), with_sdp.headers
    assert without.body.strip() == "" and without.header("content-length") == "0"
    assert not c.received(status=501)
    h = st.hangup_of(fc, call_uuid)
    assert (h["call_status"], h["hangup_cause"]) == ("COMPLETED", "16"), h


# ---------------------------------------------------------------------------------------------
# DTMF in INFO.

def test_info_dtmf_becomes_stream_event_once(srv, line, fc, work, agent, party):
    st.answer_with(fc, agent, direction="INBOUND")
    relay = "Signal=5\nDuration=160\n"
    steps = [pause(1500),
             # the same request sent twice (the same CSeq: one key press)
             info(2, "application/dtmf-relay", relay),
             info(2, "application/dtmf-relay", relay),
             info(3, "application/dtmf", "#\n"),
             info(4, "text/plain", "hello", expect=415),
             info(5, "application/dtmf-relay", "Signal= 11\nDuration=100\n"),
             pause(500), bye(6)]
    with dialog(srv, work, line, party, "info", steps, "") as c:
        call_uuid, start, _ = st.started(fc, agent)
        agent.wait_event("dtmf", 3, timeout=10)
        st.finish(srv, c)
    got = [m for _, m in agent.events("dtmf")]
    assert [m["dtmf"]["digit"] for m in got] == ["5", "#", "#"], got
    for m in got:
        assert m == {"event": "dtmf", "streamId": start["streamId"],
                     "dtmf": {"digit": m["dtmf"]["digit"]}}, m
    assert sorted({cseq_num(m) for m in c.received(status=200, cseq="INFO")}) == [2, 3, 5]
    r415, = c.received(status=415)
    assert "application/dtmf-relay" in (r415.header("accept") or ""), r415.headers
    h = st.hangup_of(fc, call_uuid)
    assert (h["call_status"], h["hangup_cause"]) == ("COMPLETED", "16"), h


# ---------------------------------------------------------------------------------------------
# RTP timeout.

def test_rtp_timeout_ends_call_hold_pauses_it_comfort_noise_counts(tmp_path, fc, work, agent,
                                                                  party):
    with base.engine_server(tmp_path, "--rtp-timeout", "2") as s:
        ln = base.Line(s, fc)
        st.answer_with(fc, agent, direction="BOTH", bidirectional=True)
        # held for 3.5 s (longer than the timeout): the call stays; resumed, the party sends
        # comfort noise for 2.5 s and one RTCP packet, then nothing: sfvopi's BYE about 2 s
        # after that.
        steps = [pause(1500), reinvite(2, sdp((8, 0), "sendonly")), pause(3500),
                 reinvite(3, sdp((8, 0)))]
        with dialog(s, work, ln, party, "rtp_timeout", steps, WAIT_BYE) as c:
            call_uuid, _, _ = st.started(fc, agent)
            party.wait_peer()
            stop = threading.Event()

            def talk():  # audio until the hold is in place
                while not stop.is_set():
                    party.send_rtp(8, bytes([0x55]) * FRAME)
                    time.sleep(0.02)

            th = threading.Thread(target=talk, daemon=True)
            th.start()
            try:
                wait_for(c, acks_sent(c, 2), "ACK of the holding re-INVITE")
            finally:
                stop.set()
                th.join(2)
            wait_for(c, acks_sent(c, 3), "ACK of the resuming re-INVITE", timeout=10)
            t_resume = time.monotonic()
            last_cn = t_resume
            while time.monotonic() - t_resume < 2.5:
                party.send_rtp(13, bytes([40]))  # RFC 3389 comfort noise
                last_cn = time.monotonic()
                time.sleep(0.5)
            # then RTCP (a sender report) on the RTP port, which counts too: without it the
            # BYE would come 1 s after this packet
            time.sleep(1.0)
            party.sock.sendto(struct.pack("!BBHIIIIII", 0x80, 200, 6, party.ssrc, 0, 0, 0, 0, 0),
                              party.peer)
            last_cn = time.monotonic()
            bye_in = wait_for(c, lambda: c.received(method="BYE"), "BYE from sfvopi", timeout=10)
            assert c.wait(20) == 0, c.report()
        t_bye = to_mono(bye_in[0].time)
        assert 1.7 <= t_bye - last_cn <= 3.5, f"BYE {t_bye - last_cn:.2f} s after the last packet"
        assert t_bye - t_resume >= 3.5, "the BYE came before the comfort noise stopped"
        h = st.hangup_of(fc, call_uuid)
        assert (h["call_status"], h["hangup_cause"]) == ("COMPLETED", "102"), h
        rec = base.final_record(ln, call_uuid)
        assert (rec["call_status"], rec["hangup_cause"]) == ("COMPLETED", "102"), rec


# ---------------------------------------------------------------------------------------------
# Outbound early media.

def test_outbound_183_with_sdp_then_answer(srv, line, fc, work, agent, party):
    st.answer_with(fc, agent, direction="BOTH", bidirectional=True)
    s = Sipp("out_early", work, port=srv.trunk_port, keys={"party_port": party.port},
             duration_ms=3500)
    frames = [pattern(FRAME, seed=60 + i) for i in range(10)]
    with s:
        s.wait_listening()
        call = base.place_call(line, fc)
        _, start, t_start = st.started(fc, agent)
        assert start["callId"] == call["call_uuid"], (start, call)
        party.wait_peer()
        party.send_frames(frames)
        agent.wait_event("media", 10, timeout=3, track="inbound")
        st.finish(srv, s)
    t_200 = to_mono(s.sent(status=200, cseq="INVITE")[0].time)
    t_183 = to_mono(s.sent(status=183)[0].time)
    assert t_200 - t_183 > 0.8
    assert t_start > t_200, "the stream started before the answer"
    assert party.packets() and party.packets()[0].time > t_200, "RTP before the answer"
    assert [b64(m) for m in st.media_msgs(agent, "inbound")] == frames
    h = st.hangup_of(fc, call["call_uuid"])
    assert (h["call_status"], h["hangup_cause"]) == ("COMPLETED", "16"), h
