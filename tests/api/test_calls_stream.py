"""The audio stream end to end (spec/CALLS.md sections 4, 6 and 7): a real call over SIP with the
customer's WebSocket at the other end.

    SIPp (signalling only) --SIP--> sfvopi <--WebSocket--> stream_helper.Agent (the customer)
    stream_helper.Party (the caller's RTP, a UDP socket named in SIPp's SDP) <--RTP--> sfvopi

SIPp plays the carrier with tests/sipp/in_stream.xml, in_stream_wait_bye.xml or out_stream.xml,
whose SDP names the test's party socket (-key party_port). sfvopi sends the party 20 ms RTP frames
from the moment the WebSocket opens; the party learns sfvopi's media address from the first of
them and sends its own RTP (audio, RFC 4733 DTMF) there. The fake customer web server
(fake_customer.py) answers the answer webhook with a Stream JSON pointing at the agent.

The server fixture and the org/number/app setup are test_calls_sip.py's. Every test is bounded:
SIPp by its scenario timeouts, -timeout and a subprocess timeout, the agent and the party by
wait timeouts.
"""

import asyncio
import math
import os
import re
import socket
import time

import pytest

from sipp_helper import SIPP

if SIPP is None:
    pytest.skip("sipp (package sip-tester) is not installed", allow_module_level=True)
if os.environ.get("SFVOPI_TEST_PG_URL"):
    # The stream never touches the database; the engine's records on PostgreSQL are covered by
    # test_calls_sip.py. Running these again there would only double CI time.
    pytest.skip("the audio stream is independent of the database backend: SQLite run only",
                allow_module_level=True)

import test_calls_sip as base  # noqa: E402  (skips the module too when there is no call engine)
from conftest import AUDIO_ONCE  # noqa: E402
from fake_customer import reply_json  # noqa: E402
from sipp_helper import Sipp  # noqa: E402
from stream_helper import (  # noqa: E402
    ALAW, FRAME, ULAW, Agent, Party, alaw_encode, b64, pattern, sine_l16, sine_samples,
    ulaw_encode,
)
# The call tests' fixtures (module-scoped server with the call engine, fake customer, line).
from test_calls_sip import _server_alive, fc, line, srv, work  # noqa: E402,F401

pytestmark = AUDIO_ONCE

CALLER = base.CALLER
STREAM_ID = {
    "BI": re.compile(r"^SFV_STRM_BI_[0-9A-HJKMNP-TV-Z]{26}$"),
    "IN": re.compile(r"^SFV_STRM_IN_[0-9A-HJKMNP-TV-Z]{26}$"),
    "OUT": re.compile(r"^SFV_STRM_OUT_[0-9A-HJKMNP-TV-Z]{26}$"),
}
DECIMAL = re.compile(r"^(0|[1-9][0-9]*)$")


# ---------------------------------------------------------------------------------------------
# Helpers.

@pytest.fixture
def agent():
    with Agent() as a:
        yield a


@pytest.fixture
def party():
    with Party() as p:
        yield p


def answer_with(fc, agent, **stream):
    """The answer webhook replies with a Stream JSON pointing at the agent."""
    fc.on("/answer", reply_json({"stream": {"url": agent.url(), **stream}}))


def inbound(srv, work, line, party, scenario="in_stream", duration_ms=None):
    """A SIPp carrier calling line.number, its media the party socket (not started)."""
    return Sipp(scenario, work, remote=f"127.0.0.1:{srv.sip_port}", service=line.number,
                keys={"caller": CALLER, "party_port": party.port}, duration_ms=duration_ms)


def started(fc, agent, timeout=8):
    """Wait for the answer webhook and the stream's start; return (call_uuid, start msg,
    start arrival time)."""
    answer, = fc.wait_for(1, path="/answer", timeout=timeout)
    t, start = agent.wait_start(timeout)
    return answer.payload["call_uuid"], start, t


def hangup_of(fc, call_uuid, timeout=10):
    hangup, = fc.wait_for(1, path="/hangup", timeout=timeout)
    assert hangup.payload["call_uuid"] == call_uuid, hangup
    return hangup.payload


def media_msgs(agent, track):
    return [m for _, m in agent.events("media", track)]


def check_media(msg, stream_id, track, content_type="audio/PCMA", rate=8000, size=FRAME):
    assert set(msg) == {"event", "streamId", "media"}, msg
    assert msg["streamId"] == stream_id, msg
    md = msg["media"]
    assert set(md) == {"payload", "contentType", "sampleRate", "track", "timestamp", "chunk"}, md
    assert (md["contentType"], md["sampleRate"], md["track"]) == (content_type, rate, track), md
    assert isinstance(md["timestamp"], str) and DECIMAL.match(md["timestamp"]), md
    assert len(b64(msg)) == size, (len(b64(msg)), md)


def audio_run(pkts):
    """The packets from the first non-silent one to the last non-silent one."""
    idx = [i for i, p in enumerate(pkts) if not p.silent]
    assert idx, "the party heard only silence"
    return pkts[idx[0]:idx[-1] + 1], idx[0], idx[-1]


def check_rtp_continuity(pkts, pt=8):
    for a, b in zip(pkts, pkts[1:]):
        assert b.pt == pt and len(b.payload) == FRAME, (b.pt, len(b.payload))
        assert b.seq == (a.seq + 1) & 0xFFFF, f"RTP sequence {a.seq} -> {b.seq}"
        assert b.ts == (a.ts + FRAME) & 0xFFFFFFFF, f"RTP timestamp {a.ts} -> {b.ts}"
        assert b.ssrc == a.ssrc


def all_silent(pkts):
    bad = [p for p in pkts if not p.silent]
    first = bad[0].payload[:16].hex() if bad else ""
    return not bad, f"{len(bad)} non-silent frame(s) of {len(pkts)}, the first starts {first}"


def finish(srv, sipp, timeout=35):
    base.finish(srv, sipp, timeout)


def closed_tcp_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------------------------------------
# 1. start and media, both tracks.

def test_start_and_media_both_tracks(srv, line, fc, work, agent, party):
    answer_with(fc, agent, direction="BOTH", bidirectional=True, keep_call_alive=False)
    frames = [bytes(((i * 11 + k) & 0xFF) or 1 for k in range(FRAME)) for i in range(50)]
    with inbound(srv, work, line, party, duration_ms=3500) as c:
        call_uuid, start, t_start = started(fc, agent)
        assert start == {"event": "start", "streamId": start.get("streamId"), "callId": call_uuid,
                         "mediaFormat": {"contentType": "audio/PCMA", "sampleRate": 8000}}, start
        sid = start["streamId"]
        assert STREAM_ID["BI"].match(sid), sid
        assert agent.msgs[0][1] == start, "start must be the first message"
        party.wait_peer()
        party.send_frames(frames)
        agent.wait_event("media", 50, timeout=3, track="inbound")
        # outbound track: count over a measured window of 1.5 s
        t0 = time.monotonic()
        n0 = len(agent.events("media", "outbound"))
        time.sleep(1.5)
        n1 = len(agent.events("media", "outbound"))
        rate = (n1 - n0) / (time.monotonic() - t0)
        finish(srv, c)
    assert 40 <= rate <= 60, f"outbound media at {rate:.1f}/s, want about 50/s"

    inbound_msgs = media_msgs(agent, "inbound")
    assert len(inbound_msgs) == 50, agent.summary()
    for i, m in enumerate(inbound_msgs):
        check_media(m, sid, "inbound")
        assert m["media"]["chunk"] == i + 1, m["media"]
        assert b64(m) == frames[i], f"inbound chunk {i + 1} is not the party's frame {i}"
    outbound_msgs = media_msgs(agent, "outbound")
    assert [m["media"]["chunk"] for m in outbound_msgs] == list(range(1, len(outbound_msgs) + 1))
    for m in outbound_msgs:
        check_media(m, sid, "outbound")
    for track in (inbound_msgs, outbound_msgs):
        stamps = [int(m["media"]["timestamp"]) for m in track]
        assert stamps == sorted(stamps), stamps
    span = int(inbound_msgs[-1]["media"]["timestamp"]) - int(inbound_msgs[0]["media"]["timestamp"])
    assert 700 <= span <= 1500, f"50 frames sent over 980 ms span {span} ms of timestamps"
    # The party hears 20 ms PCMA frames (silence: nothing is played) from the stream's start.
    pk = party.packets()
    assert pk and all(p.pt == 8 and len(p.payload) == FRAME for p in pk)
    ok_, why = all_silent(pk)
    assert ok_, why
    assert abs(pk[0].time - t_start) < 1.0, "RTP to the party should begin with the stream"
    h = hangup_of(fc, call_uuid)
    assert (h["call_status"], h["hangup_cause"]) == ("COMPLETED", "16"), h
    assert agent.wait_closed().close_code == 1000


# ---------------------------------------------------------------------------------------------
# 2. playAudio then checkpoint.

def test_play_audio_then_checkpoint(srv, line, fc, work, agent, party):
    answer_with(fc, agent, direction="BOTH", bidirectional=True)
    audio = pattern(8000)
    with inbound(srv, work, line, party, duration_ms=4000) as c:
        _, start, _ = started(fc, agent)
        party.wait_packets(10)  # a moment of silence first
        t_play = agent.play(audio, stream_id=start["streamId"])
        agent.checkpoint("c1", start["streamId"])
        (t_done, played), = agent.wait_event("playedStream", 1, timeout=4)
        time.sleep(0.3)  # silence after
        pk = party.packets()
        finish(srv, c)
    # The documented fields as before; AGENT.md section 1 adds playedMs (test_stream_agent.py).
    assert {k: v for k, v in played.items() if k != "playedMs"} == \
        {"event": "playedStream", "streamId": start["streamId"], "name": "c1"}, played
    run, first, last = audio_run(pk)
    assert first >= 5 and last <= len(pk) - 5, "want silence before and after the audio"
    assert all(p.silent for p in pk[:first]) and all(p.silent for p in pk[last + 1:])
    assert len(run) == 50, f"{len(run)} frames from the first to the last audio frame"
    assert b"".join(p.payload for p in run) == audio, "the party did not hear the exact bytes"
    check_rtp_continuity(pk[max(0, first - 3):last + 4])
    span = run[-1].time - run[0].time
    assert span >= 0.9, f"1 s of audio delivered in {span:.3f} s: a burst, not real time"
    gaps = [b.time - a.time for a, b in zip(run, run[1:])]
    # Loose on purpose: a hole, not jitter (bench/streams.py measures jitter).
    assert max(gaps) < 0.3, f"a {max(gaps) * 1000:.0f} ms hole in the play-out"
    assert t_done - t_play >= 0.95, f"playedStream {t_done - t_play:.3f} s after 1 s of audio"
    # A frame's kernel receive time vs the agent's user-space arrival time: 20 ms of slack.
    assert t_done >= run[-1].time - 0.05, "playedStream came before the last audio frame"
    # One continuous RTP stream throughout (sequence, timestamp, SSRC).
    check_rtp_continuity(pk)
    # The outbound track carries what the party heard, frame for frame.
    out = b"".join(b64(m) for m in media_msgs(agent, "outbound"))
    assert out.find(audio) % FRAME == 0, "the outbound track does not carry the played audio"


# ---------------------------------------------------------------------------------------------
# 3. clearAudio during a long playAudio.

def test_clear_audio_stops_at_once(srv, line, fc, work, agent, party):
    answer_with(fc, agent, direction="BOTH", bidirectional=True)
    with inbound(srv, work, line, party, duration_ms=4500) as c:
        _, start, _ = started(fc, agent)
        party.wait_packets(5)
        agent.play(pattern(80000, seed=3))  # 10 s
        agent.checkpoint("never")
        time.sleep(0.5)
        t_clear = agent.clear(start["streamId"])
        (t_cleared, cleared), = agent.wait_event("clearedAudio", 1, timeout=2)
        time.sleep(1.5)
        # The machinery still works after a clear: a checkpoint on the empty queue.
        agent.checkpoint("after")
        agent.wait_event("playedStream", 1, timeout=2)
        pk = party.packets()
        finish(srv, c)
    # The documented fields as before; AGENT.md section 1 adds what was played and dropped.
    added = {"playedMs", "discardedMs", "clearedCheckpoints"}
    assert {k: v for k, v in cleared.items() if k not in added} == \
        {"event": "clearedAudio", "streamId": start["streamId"]}, cleared
    assert t_cleared - t_clear < 1.0, f"clearedAudio {t_cleared - t_clear:.3f} s after the clear"
    played = [m["name"] for _, m in agent.events("playedStream")]
    assert played == ["after"], f"playedStream for {played}: 'never' was queued before the clear"
    before = [p for p in pk if p.time < t_clear]
    assert sum(not p.silent for p in before) >= 15, "the audio was not playing before the clear"
    after = [p for p in pk if p.time > t_clear + 0.3]
    assert len(after) >= 50
    ok_, why = all_silent(after)
    assert ok_, "audio still heard more than 300 ms after clearAudio: " + why


# ---------------------------------------------------------------------------------------------
# 4. DTMF.

def test_dtmf_one_event_per_key(srv, line, fc, work, agent, party):
    answer_with(fc, agent, direction="INBOUND")
    presses = [("1", 1, 101), ("#", 11, 101), ("9", 9, 101), ("9", 9, 101), ("5", 5, 96)]
    with inbound(srv, work, line, party, duration_ms=3500) as c:
        _, start, _ = started(fc, agent)
        party.wait_peer()
        for _, event, pt in presses:
            party.send_frames([bytes([0x55]) * FRAME] * 2)
            party.send_dtmf(event, pt=pt)
        agent.wait_event("dtmf", len(presses), timeout=3)
        time.sleep(0.5)
        finish(srv, c)
    got = [m for _, m in agent.events("dtmf")]
    assert [m["dtmf"]["digit"] for m in got] == [d for d, _, _ in presses], got
    for m in got:
        assert m == {"event": "dtmf", "streamId": start["streamId"],
                     "dtmf": {"digit": m["dtmf"]["digit"]}}, m
    # telephone-event packets are not audio: the inbound track holds the audio frames only
    assert len(media_msgs(agent, "inbound")) == 2 * len(presses)


# ---------------------------------------------------------------------------------------------
# 5. The customer closes the socket.

@pytest.mark.parametrize("how", ["1000", "4000", "abort"])
def test_customer_close_ends_call(srv, line, fc, work, agent, party, how):
    """The customer ends the stream (close 1000, close 4000, or a dropped TCP connection) with
    keep_call_alive false: sfvopi hangs up at once, COMPLETED "16"."""
    answer_with(fc, agent, direction="BOTH", bidirectional=True, keep_call_alive=False)
    with inbound(srv, work, line, party, "in_stream_wait_bye") as c:
        call_uuid, _, _ = started(fc, agent)
        time.sleep(0.3)
        t_close = agent.abort() if how == "abort" else agent.close(int(how))
        t_wall = time.time() - (time.monotonic() - t_close)
        finish(srv, c, timeout=15)
    bye = c.received("BYE")
    assert bye, base.diag(srv, c)
    assert bye[0].time - t_wall < 1.0, f"BYE {bye[0].time - t_wall:.2f} s after the close"
    h = hangup_of(fc, call_uuid)
    assert (h["call_status"], h["hangup_cause"]) == ("COMPLETED", "16"), h


def test_customer_close_keep_call_alive(srv, line, fc, work, agent, party):
    answer_with(fc, agent, direction="BOTH", bidirectional=True, keep_call_alive=True)
    with inbound(srv, work, line, party, duration_ms=3000) as c:
        call_uuid, _, _ = started(fc, agent)
        time.sleep(0.3)
        t_close = agent.close(1000)
        time.sleep(2)
        assert not c.received("BYE"), "sfvopi hung up although keep_call_alive is true"
        assert not fc.requests("/hangup")
        finish(srv, c)  # a BYE from sfvopi during SIPp's pause would fail the run
    assert not c.received("BYE")
    h = hangup_of(fc, call_uuid)
    assert (h["call_status"], h["hangup_cause"]) == ("COMPLETED", "16"), h
    assert h["duration"] >= 2, h
    assert agent.wait_closed().closed - t_close < 2


# ---------------------------------------------------------------------------------------------
# 6. The party hangs up.

def test_party_hangup_closes_stream_1000(srv, line, fc, work, agent, party):
    answer_with(fc, agent, direction="BOTH", bidirectional=True, keep_call_alive=True)
    with inbound(srv, work, line, party, duration_ms=1500) as c:
        call_uuid, _, _ = started(fc, agent)
        finish(srv, c)
    conn = agent.wait_closed(timeout=5)
    assert not conn.we_closed
    assert conn.close_code == 1000, f"close code {conn.close_code}, want 1000"
    bye_ok = c.received(status=200, cseq="BYE")
    assert bye_ok, base.diag(srv, c)
    assert conn.closed - time.monotonic() < 5
    h = hangup_of(fc, call_uuid)
    assert (h["call_status"], h["hangup_cause"]) == ("COMPLETED", "16"), h


# ---------------------------------------------------------------------------------------------
# 7. L16 at 16000 Hz.

def _zero_cross_hz(samples, rate=8000):
    s = [x for x in samples]
    crossings = sum(1 for a, b in zip(s, s[1:]) if (a < 0) != (b < 0))
    return crossings / 2 / (len(s) / rate)


def test_l16_16000(srv, line, fc, work, agent, party):
    answer_with(fc, agent, codec="L16", sample_rate=16000, direction="BOTH", bidirectional=True)
    sine = sine_l16(400, 1.0, 16000, amplitude=8000)
    with inbound(srv, work, line, party, duration_ms=5500) as c:
        _, start, _ = started(fc, agent)
        assert start["mediaFormat"] == {"contentType": "audio/x-l16", "sampleRate": 16000}, start
        party.wait_peer()
        party.send_frames([pattern(FRAME, seed=i) for i in range(10)])
        agent.wait_event("media", 10, timeout=3, track="inbound")
        # A playAudio not in the stream's format is dropped: PCMA, and L16 at another rate.
        t_wrong = agent.play(pattern(8000), content_type="audio/PCMA", sample_rate=8000)
        agent.play(sine_l16(400, 1.0, 8000), content_type="audio/x-l16", sample_rate=8000)
        agent.checkpoint("wrong")
        agent.wait_event("playedStream", 1, timeout=2)
        time.sleep(1.2)
        t_sine = agent.play(sine, content_type="audio/x-l16", sample_rate=16000)
        agent.checkpoint("sine")
        agent.wait_event("playedStream", 2, timeout=3)
        time.sleep(0.2)
        pk = party.packets()
        finish(srv, c)
    sid = start["streamId"]
    for track in ("inbound", "outbound"):
        msgs = media_msgs(agent, track)
        assert msgs, track
        for m in msgs:
            check_media(m, sid, track, "audio/x-l16", 16000, 640)
    assert len(media_msgs(agent, "inbound")) == 10
    wrong = [p for p in pk if t_wrong - 0.1 <= p.time <= t_sine]
    assert len(wrong) >= 50
    ok_, why = all_silent(wrong)
    assert ok_, "a playAudio in another format than the stream's was played: " + why
    heard = [p for p in pk if p.time > t_sine]
    run, _, _ = audio_run(heard)
    assert all(p.pt == 8 and len(p.payload) == FRAME for p in run)
    assert 48 <= len(run) <= 52, f"1 s of L16 became {len(run)} PCMA frames"
    samples = [ALAW[x] for p in run[2:-2] for x in p.payload]  # skip the filter's ramps
    rms = math.sqrt(sum(x * x for x in samples) / len(samples))
    assert 0.8 * 8000 / math.sqrt(2) <= rms <= 1.2 * 8000 / math.sqrt(2), f"RMS {rms:.0f}"
    hz = _zero_cross_hz(samples)
    assert 380 <= hz <= 420, f"the party heard {hz:.0f} Hz, want 400"


# ---------------------------------------------------------------------------------------------
# 8. Not bidirectional.

def test_not_bidirectional_ignores_play_audio(srv, line, fc, work, agent, party):
    answer_with(fc, agent, direction="INBOUND", bidirectional=False)
    with inbound(srv, work, line, party, duration_ms=3000) as c:
        _, start, _ = started(fc, agent)
        assert STREAM_ID["IN"].match(start["streamId"]), start
        party.wait_packets(3)
        t_play = agent.play(pattern(8000))
        agent.checkpoint("c1")
        time.sleep(1.8)
        pk = party.packets(since=t_play - 0.05)
        finish(srv, c)
    assert len(pk) >= 60
    ok_, why = all_silent(pk)
    assert ok_, "playAudio played on a stream that is not bidirectional: " + why
    assert not agent.events("playedStream")
    assert not agent.events("media", "outbound")


# ---------------------------------------------------------------------------------------------
# 9. stream_timeout.

def test_stream_timeout_ends_stream_and_call(srv, line, fc, work, agent, party):
    answer_with(fc, agent, stream_timeout=1, keep_call_alive=False)
    with inbound(srv, work, line, party, "in_stream_wait_bye") as c:
        call_uuid, _, t_start = started(fc, agent)
        conn = agent.wait_closed(timeout=5)
        finish(srv, c, timeout=15)
    assert not conn.we_closed and conn.close_code == 1000, (conn.we_closed, conn.close_code)
    waited = conn.closed - t_start
    assert 0.8 <= waited <= 2.0, f"stream closed {waited:.2f} s after start (stream_timeout 1)"
    assert c.received("BYE"), base.diag(srv, c)
    h = hangup_of(fc, call_uuid)
    assert (h["call_status"], h["hangup_cause"]) == ("COMPLETED", "16"), h


# ---------------------------------------------------------------------------------------------
# 10. Outbound call.

def test_outbound_call_stream(srv, line, fc, work, agent, party):
    answer_with(fc, agent, direction="BOTH", bidirectional=True)
    s = Sipp("out_stream", work, port=srv.trunk_port, keys={"party_port": party.port},
             duration_ms=3500)
    audio = pattern(4000, seed=5)
    frames = [pattern(FRAME, seed=100 + i) for i in range(10)]
    with s:
        s.wait_listening()
        call = base.place_call(line, fc)
        _, start, _ = started(fc, agent)
        assert start["callId"] == call["call_uuid"], (start, call)
        assert STREAM_ID["BI"].match(start["streamId"]), start
        party.wait_peer()
        party.send_frames(frames)
        agent.play(audio)
        agent.checkpoint("out")
        agent.wait_event("playedStream", 1, timeout=3)
        agent.wait_event("media", 10, timeout=2, track="inbound")
        time.sleep(0.2)
        pk = party.packets()
        finish(srv, s)
    assert [b64(m) for m in media_msgs(agent, "inbound")] == frames
    assert len(media_msgs(agent, "outbound")) >= 25
    run, _, _ = audio_run(pk)
    assert b"".join(p.payload for p in run) == audio
    check_rtp_continuity(pk)
    h = hangup_of(fc, call["call_uuid"])
    assert (h["call_status"], h["hangup_cause"]) == ("COMPLETED", "16"), h
    assert agent.wait_closed().close_code == 1000


# ---------------------------------------------------------------------------------------------
# 11. One track only.

@pytest.mark.parametrize("direction", ["INBOUND", "OUTBOUND"])
def test_direction_one_track(srv, line, fc, work, agent, party, direction):
    answer_with(fc, agent, direction=direction)
    frames = [pattern(FRAME, seed=200 + i) for i in range(25)]
    with inbound(srv, work, line, party, duration_ms=2500) as c:
        _, start, _ = started(fc, agent)
        prefix = "IN" if direction == "INBOUND" else "OUT"
        assert STREAM_ID[prefix].match(start["streamId"]), start
        party.wait_peer()
        party.send_frames(frames)
        time.sleep(0.5)
        finish(srv, c)
    inb, outb = media_msgs(agent, "inbound"), media_msgs(agent, "outbound")
    if direction == "INBOUND":
        assert [b64(m) for m in inb] == frames and not outb, agent.summary()
    else:
        assert not inb and len(outb) >= 40, agent.summary()
        for m in outb:
            check_media(m, start["streamId"], "outbound")


# ---------------------------------------------------------------------------------------------
# 12. The stream cannot connect.

def test_stream_url_closed_port_ends_call(srv, line, fc, work):
    port = closed_tcp_port()
    fc.on("/answer", reply_json({"stream": {"url": f"ws://127.0.0.1:{port}/ws",
                                            "keep_call_alive": False}}))
    with Party() as party:
        with inbound(srv, work, line, party, "in_stream_wait_bye") as c:
            finish(srv, c, timeout=15)
    ok200 = c.received(status=200, cseq="INVITE")[0]
    bye = c.received("BYE")
    assert bye, base.diag(srv, c)
    waited = bye[0].time - ok200.time
    assert waited < 2.0, f"BYE {waited:.2f} s after the answer: the stream failed at once"
    answer, = fc.wait_for(1, path="/answer")
    h = hangup_of(fc, answer.payload["call_uuid"])
    assert (h["call_status"], h["hangup_cause"]) == ("COMPLETED", "16"), h


# ---------------------------------------------------------------------------------------------
# More: packetisation, transcoding, robustness, checkpoint order, stream_timeout with
# keep_call_alive.

@pytest.mark.parametrize("ptime_ms", [10, 30])
def test_inbound_other_packet_sizes_become_20ms_chunks(srv, line, fc, work, agent, party,
                                                       ptime_ms):
    """The party's packets are cut or joined into 20 ms (160-byte) media payloads, bytes in
    order (CALLS.md 7: media every 20 ms of audio)."""
    answer_with(fc, agent, direction="INBOUND")
    size = ptime_ms * 8
    audio = pattern(size * 20, seed=7)  # 200 ms or 600 ms
    with inbound(srv, work, line, party, duration_ms=2500) as c:
        _, start, _ = started(fc, agent)
        party.wait_peer()
        party.send_frames([audio[i:i + size] for i in range(0, len(audio), size)],
                          interval=ptime_ms / 1000)
        n = len(audio) // FRAME
        agent.wait_event("media", n, timeout=3, track="inbound")
        time.sleep(0.3)
        finish(srv, c)
    msgs = media_msgs(agent, "inbound")
    assert [m["media"]["chunk"] for m in msgs] == list(range(1, n + 1))
    for m in msgs:
        check_media(m, start["streamId"], "inbound")
    assert b"".join(b64(m) for m in msgs) == audio


def _close(a, b, rel=0.08, floor=40):
    return abs(a - b) <= max(floor, rel * abs(b))


def test_pcmu_stream_on_pcma_party_transcodes_both_ways(srv, line, fc, work, agent, party):
    """codec PCMU with a PCMA party: the media payloads are mu-law of what the party sent, and a
    mu-law playAudio reaches the party as A-law of the same sound (within G.711 quantisation)."""
    answer_with(fc, agent, codec="PCMU", direction="BOTH", bidirectional=True)
    sent = sine_samples(300, 160 * 10, amplitude=6000)
    frames = [bytes(alaw_encode(x) for x in sent[i:i + 160]) for i in range(0, len(sent), 160)]
    play = sine_samples(500, 8000, amplitude=6000)
    with inbound(srv, work, line, party, duration_ms=3500) as c:
        _, start, _ = started(fc, agent)
        assert start["mediaFormat"] == {"contentType": "audio/PCMU", "sampleRate": 8000}, start
        party.wait_peer()
        party.send_frames(frames)
        agent.wait_event("media", 10, timeout=3, track="inbound")
        t_play = agent.play(bytes(ulaw_encode(x) for x in play), "audio/PCMU", 8000)
        agent.checkpoint("p")
        agent.wait_event("playedStream", 1, timeout=3)
        time.sleep(0.1)
        pk = party.packets(since=t_play - 0.05)
        finish(srv, c)
    msgs = media_msgs(agent, "inbound")
    for m in msgs:
        check_media(m, start["streamId"], "inbound", "audio/PCMU")
    got = [ULAW[x] for m in msgs for x in b64(m)]
    want = [ALAW[x] for f in frames for x in f]
    bad = [(i, g, w) for i, (g, w) in enumerate(zip(got, want)) if not _close(g, w)]
    assert len(got) == len(want) and not bad, f"mu-law media differs from the A-law sent: {bad[:5]}"
    run, _, _ = audio_run(pk)
    assert len(run) == 50
    heard = [ALAW[x] for p in run for x in p.payload]
    bad = [(i, h, w) for i, (h, w) in enumerate(zip(heard, play)) if not _close(h, w, 0.12, 80)]
    assert not bad, f"the party heard something else than the mu-law played: {bad[:5]}"


def test_l16_play_audio_split_mid_sample(srv, line, fc, work, agent, party):
    """L16 at 8000 Hz: one second of a 400 Hz sine sent as three playAudio messages cut inside
    samples (odd byte counts) plays as the same sine (a dropped or misjoined byte would swap the
    byte order of what follows and turn it into noise)."""
    answer_with(fc, agent, codec="L16", sample_rate=8000, direction="INBOUND", bidirectional=True)
    sine = sine_l16(400, 1.0, 8000, amplitude=8000)
    cuts = [0, 3333, 9001, len(sine)]
    with inbound(srv, work, line, party, duration_ms=3500) as c:
        started(fc, agent)
        party.wait_packets(3)
        t_play = None
        for a, b in zip(cuts, cuts[1:]):
            t = agent.play(sine[a:b], "audio/x-l16", 8000)
            t_play = t_play or t
        agent.checkpoint("s")
        agent.wait_event("playedStream", 1, timeout=3)
        time.sleep(0.1)
        pk = party.packets(since=t_play - 0.05)
        finish(srv, c)
    run, _, _ = audio_run(pk)
    assert 48 <= len(run) <= 52, len(run)
    samples = [ALAW[x] for p in run[2:-2] for x in p.payload]
    rms = math.sqrt(sum(x * x for x in samples) / len(samples))
    assert 0.8 * 8000 / math.sqrt(2) <= rms <= 1.2 * 8000 / math.sqrt(2), f"RMS {rms:.0f}"
    hz = _zero_cross_hz(samples)
    assert 380 <= hz <= 420, f"the party heard {hz:.0f} Hz, want 400"


def test_bad_customer_messages_are_ignored(srv, line, fc, work, agent, party):
    """Binary frames, malformed JSON, unknown events, a playAudio whose payload is not base64 and
    a checkpoint without a name are ignored; the stream goes on and a valid playAudio plays."""
    answer_with(fc, agent, direction="BOTH", bidirectional=True)
    audio = pattern(1600, seed=9)
    with inbound(srv, work, line, party, duration_ms=3000) as c:
        _, start, _ = started(fc, agent)
        party.wait_packets(3)
        conn = agent.conns[-1]
        asyncio.run_coroutine_threadsafe(conn.ws.send(b"\x00\x01binary"), agent.loop).result(5)
        agent.send("{not json")
        agent.send("[1,2,3]")
        agent.send({"event": "stop"})
        agent.send({"event": "playAudio", "media": {"contentType": "audio/PCMA",
                                                    "sampleRate": 8000, "payload": "@@@@"}})
        agent.send({"event": "checkpoint"})
        t_bad = time.monotonic()
        time.sleep(0.5)
        quiet = party.packets(since=t_bad)
        agent.play(audio)
        agent.checkpoint("ok")
        (_, played), = agent.wait_event("playedStream", 1, timeout=3)
        time.sleep(0.1)
        pk = party.packets()
        finish(srv, c)
    ok_, why = all_silent(quiet)
    assert ok_, why
    assert played["name"] == "ok"
    run, _, _ = audio_run(pk)
    assert b"".join(p.payload for p in run) == audio
    assert [m["event"] for _, m in agent.msgs if m["event"] != "media"] == ["start", "playedStream"]


def test_checkpoints_in_order_and_on_time(srv, line, fc, work, agent, party):
    """A checkpoint on an empty queue is answered at once; later ones once the audio queued
    before each has been sent: in order, each about the audio's length after the previous."""
    answer_with(fc, agent, direction="INBOUND", bidirectional=True)
    with inbound(srv, work, line, party, duration_ms=3500) as c:
        started(fc, agent)
        party.wait_packets(3)
        t0 = agent.checkpoint("a")
        agent.play(pattern(3200, seed=1))  # 0.4 s
        agent.checkpoint("b")
        agent.play(pattern(4000, seed=2))  # 0.5 s
        agent.checkpoint("c")
        agent.wait_event("playedStream", 3, timeout=3)
        finish(srv, c)
    got = agent.events("playedStream")
    assert [m["name"] for _, m in got] == ["a", "b", "c"], got
    ta, tb, tc = (t - t0 for t, _ in got)
    # Lower bounds are the contract; the upper ones only catch a checkpoint that waits for
    # later audio, so they are loose (this machine is shared and tests may run under ASan).
    assert ta < 0.35, f"checkpoint on an empty queue answered after {ta:.3f} s"
    assert 0.35 <= tb < 0.85, f"b after {tb:.3f} s, want about 0.4"
    assert 0.85 <= tc <= 1.6, f"c after {tc:.3f} s, want about 0.9"


def test_stream_timeout_keep_call_alive(srv, line, fc, work, agent, party):
    """stream_timeout with keep_call_alive: the stream closes (1000) after 1 s, the call stays
    up until the caller hangs up."""
    answer_with(fc, agent, stream_timeout=1, keep_call_alive=True)
    with inbound(srv, work, line, party, duration_ms=3000) as c:
        call_uuid, _, t_start = started(fc, agent)
        conn = agent.wait_closed(timeout=5)
        finish(srv, c)  # a BYE from sfvopi during SIPp's pause would fail the run
    assert not conn.we_closed and conn.close_code == 1000
    assert 0.8 <= conn.closed - t_start <= 2.0
    assert not c.received("BYE")
    h = hangup_of(fc, call_uuid)
    assert (h["call_status"], h["hangup_cause"]) == ("COMPLETED", "16"), h
    assert h["duration"] >= 2, h


@pytest.mark.parametrize("rate", [8000, 24000, 32000, 44100, 48000])
def test_l16_rates(srv, line, fc, work, agent, party, rate):
    """L16 at every allowed rate: media payloads of rate / 50 * 2 bytes whose samples carry the
    party's 300 Hz tone, and a 1 s 400 Hz playAudio at that rate reaches the party as 50 PCMA
    frames of a 400 Hz tone."""
    answer_with(fc, agent, codec="L16", sample_rate=rate, direction="BOTH", bidirectional=True)
    sent = sine_samples(300, 160 * 25, amplitude=6000)
    frames = [bytes(alaw_encode(x) for x in sent[i:i + 160]) for i in range(0, len(sent), 160)]
    with inbound(srv, work, line, party, duration_ms=4000) as c:
        _, start, _ = started(fc, agent)
        assert start["mediaFormat"] == {"contentType": "audio/x-l16", "sampleRate": rate}, start
        party.wait_peer()
        party.send_frames(frames)
        agent.wait_event("media", 25, timeout=3, track="inbound")
        t_play = agent.play(sine_l16(400, 1.0, rate), "audio/x-l16", rate)
        agent.checkpoint("s")
        agent.wait_event("playedStream", 1, timeout=3)
        time.sleep(0.1)
        pk = party.packets(since=t_play - 0.05)
        finish(srv, c)
    msgs = media_msgs(agent, "inbound")
    for m in msgs:
        check_media(m, start["streamId"], "inbound", "audio/x-l16", rate, rate // 50 * 2)
    pcm = b"".join(b64(m) for m in msgs)
    got = [int.from_bytes(pcm[i:i + 2], "little", signed=True) for i in range(0, len(pcm), 2)]
    body = got[len(got) // 10:-len(got) // 10]
    hz = _zero_cross_hz(body, rate)
    assert 285 <= hz <= 315, f"the inbound track carries {hz:.0f} Hz, want 300"
    rms = math.sqrt(sum(x * x for x in body) / len(body))
    assert 0.8 * 6000 / math.sqrt(2) <= rms <= 1.2 * 6000 / math.sqrt(2), f"RMS {rms:.0f}"
    run, _, _ = audio_run(pk)
    assert 49 <= len(run) <= 51, len(run)
    samples = [ALAW[x] for p in run[2:-2] for x in p.payload]
    hz = _zero_cross_hz(samples)
    assert 380 <= hz <= 420, f"the party heard {hz:.0f} Hz, want 400"
    rms = math.sqrt(sum(x * x for x in samples) / len(samples))
    assert 0.8 * 8000 / math.sqrt(2) <= rms <= 1.2 * 8000 / math.sqrt(2), f"RMS {rms:.0f}"


def test_dtmf_every_key_and_non_key_events(srv, line, fc, work, agent, party):
    """Events 0-15 are the keys 0-9 * # A-D; events above 15 (flash, tones) are not keys. A
    press whose start packets were lost is still reported on its end packets."""
    answer_with(fc, agent, direction="OUTBOUND")
    keys = "0123456789*#ABCD"
    with inbound(srv, work, line, party, duration_ms=5000) as c:
        started(fc, agent)
        party.wait_peer()
        for ev in range(16):
            party.send_dtmf(ev, interval=0.005)
        party.send_dtmf(16, interval=0.005)  # flash
        # end packets only
        for _ in range(3):
            party.send_rtp(101, bytes([7, 0x8A, 3, 0x20]), ts=party.ts, advance=False)
        party.ts += 800
        agent.wait_event("dtmf", 17, timeout=3)
        time.sleep(0.4)
        finish(srv, c)
    assert [m["dtmf"]["digit"] for _, m in agent.events("dtmf")] == list(keys) + ["7"]


def test_checkpoint_names_round_trip(srv, line, fc, work, agent, party):
    """Checkpoint names come back byte for byte in playedStream (JSON escaping, UTF-8, 64 bytes);
    a name over 64 bytes is ignored."""
    answer_with(fc, agent, direction="INBOUND", bidirectional=True)
    names = ['say "hi" \\ back/slash', "नमस्ते 😀", "tab\tnew\nline", "x" * 64]
    with inbound(srv, work, line, party, duration_ms=3000) as c:
        started(fc, agent)
        party.wait_packets(2)
        agent.checkpoint("y" * 65)
        for n in names:
            agent.play(pattern(320))
            agent.checkpoint(n)
        agent.wait_event("playedStream", len(names), timeout=3)
        time.sleep(0.3)
        finish(srv, c)
    assert [m["name"] for _, m in agent.events("playedStream")] == names


def test_stream_handshake_timeout_ends_call(srv, line, fc, work):
    """A stream URL whose server accepts the TCP connection but never answers the handshake:
    the stream fails after the 5 s connect-and-handshake limit and the call ends (keep_call_alive
    false), COMPLETED "16"."""
    lsn = socket.socket()
    lsn.bind(("127.0.0.1", 0))
    lsn.listen(4)
    port = lsn.getsockname()[1]
    fc.on("/answer", reply_json({"stream": {"url": f"ws://127.0.0.1:{port}/ws"}}))
    try:
        with Party() as party:
            with inbound(srv, work, line, party, "in_stream_wait_bye") as c:
                finish(srv, c, timeout=20)
    finally:
        lsn.close()
    ok200 = c.received(status=200, cseq="INVITE")[0]
    bye = c.received("BYE")
    assert bye, base.diag(srv, c)
    waited = bye[0].time - ok200.time
    assert 4.5 <= waited <= 7.0, f"BYE {waited:.2f} s after the answer, want the 5 s limit"
    answer, = fc.wait_for(1, path="/answer")
    h = hangup_of(fc, answer.payload["call_uuid"])
    assert (h["call_status"], h["hangup_cause"]) == ("COMPLETED", "16"), h


def test_two_calls_streams_are_isolated(srv, line, fc, work, agent):
    """Two calls at once, both streaming to the same agent: each stream carries its own party's
    audio and callId, and a playAudio on one reaches only its own party."""
    answer_with(fc, agent, direction="BOTH", bidirectional=True)
    frames = {0: [pattern(FRAME, seed=300 + i) for i in range(20)],
              1: [pattern(FRAME, seed=400 + i) for i in range(20)]}
    audio = pattern(2400, seed=11)
    with Party() as p0, Party() as p1:
        parties = [p0, p1]
        sipps = [inbound(srv, work, line, p, duration_ms=4000) for p in parties]
        with sipps[0], sipps[1]:
            fc.wait_for(2, path="/answer", timeout=8)
            agent.wait_event("start", 2, timeout=8)
            for p in parties:
                p.wait_peer()
            starts = [m for _, m in agent.events("start")]
            answers = {h.payload["call_uuid"]: h for h in fc.requests("/answer")}
            assert {s["callId"] for s in starts} == set(answers), (starts, answers)
            for i, p in enumerate(parties):
                p.send_frames(frames[i][:10])
            agent.wait_event("media", 20, timeout=3, track="inbound")
            by_sid = {}
            for m in media_msgs(agent, "inbound"):
                by_sid.setdefault(m["streamId"], []).append(b64(m))
            owner = {sid: next(i for i in (0, 1) if got[0] == frames[i][0])
                     for sid, got in by_sid.items()}
            assert sorted(owner.values()) == [0, 1], owner
            # play on the connection of party 0's stream
            sid0 = next(sid for sid, i in owner.items() if i == 0)
            conn0 = agent.conn_of(sid0)
            t_play = agent.play(audio, conn=conn0)
            agent.send({"event": "checkpoint", "name": "p"}, conn0)
            (_, played), = agent.wait_event("playedStream", 1, timeout=3)
            time.sleep(0.1)
            for s in sipps:
                finish(srv, s)
    assert played["streamId"] == sid0
    for sid, i in owner.items():
        assert by_sid[sid] == frames[i][:10], f"stream {sid} mixes the parties' audio"
    run, _, _ = audio_run(p0.packets(since=t_play - 0.05))
    assert b"".join(p.payload for p in run) == audio
    ok_, why = all_silent(p1.packets())
    assert ok_, "the other party heard the audio: " + why


def test_play_audio_in_other_formats_is_dropped(srv, line, fc, work, agent, party):
    """On a PCMA 8000 Hz stream, playAudio as PCMA at 16000 Hz, PCMU or L16 is dropped whole:
    the party hears silence only; the stream's own format still plays afterwards."""
    answer_with(fc, agent, direction="INBOUND", bidirectional=True)
    audio = pattern(1600, seed=13)
    with inbound(srv, work, line, party, duration_ms=3000) as c:
        started(fc, agent)
        party.wait_packets(2)
        t0 = agent.play(pattern(8000), "audio/PCMA", 16000)
        agent.play(pattern(8000), "audio/PCMU", 8000)
        agent.play(pattern(16000), "audio/x-l16", 8000)
        time.sleep(0.8)
        t1 = agent.play(audio)
        agent.checkpoint("ok")
        agent.wait_event("playedStream", 1, timeout=3)
        time.sleep(0.1)
        pk = party.packets()
        finish(srv, c)
    wrong = [p for p in pk if t0 - 0.05 <= p.time < t1]
    assert len(wrong) >= 35
    ok_, why = all_silent(wrong)
    assert ok_, "a playAudio in another format than the stream's was played: " + why
    run, _, _ = audio_run([p for p in pk if p.time >= t1])
    assert b"".join(p.payload for p in run) == audio
