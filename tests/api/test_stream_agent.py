"""Control of a live call from its stream (spec/AGENT.md section 1): the customer's hangup
(at once, or after the queued audio), sendDigits (RFC 4733 towards the party, after the queued
audio), what clearAudio and playedStream tell of the audio really played, and Plivo's content
type names, as Pipecat's PlivoFrameSerializer sends them.

Same set-up as test_calls_stream.py: SIPp is the carrier (signalling), stream_helper.Party the
caller's RTP endpoint, stream_helper.Agent the customer's WebSocket server. Every check of audio
is on the packets the party really received: their bytes, RTP timestamps and sequence numbers.
"""

import base64
import json
import os
import struct
import time

import pytest

from sipp_helper import SIPP

if SIPP is None:
    pytest.skip("sipp (package sip-tester) is not installed", allow_module_level=True)
if os.environ.get("SFVOPI_TEST_PG_URL"):
    pytest.skip("the audio stream is independent of the database backend: SQLite run only",
                allow_module_level=True)

from conftest import AUDIO_ONCE, wait_until  # noqa: E402
from stream_helper import ALAW, FRAME, pattern, sine_samples, ulaw_encode  # noqa: E402
from test_calls_stream import (  # noqa: E402,F401  (fixtures and helpers)
    _close, agent, all_silent, answer_with, audio_run, finish, hangup_of,
    inbound, party, started,
)
from test_calls_sip import _server_alive, fc, line, srv, work  # noqa: E402,F401

TE_PT = 101  # the telephone-event payload type of the SIPp scenarios' SDP
DIGIT_EVENT = {**{str(d): d for d in range(10)}, "*": 10, "#": 11,
               "A": 12, "B": 13, "C": 14, "D": 15}

pytestmark = AUDIO_ONCE


def heard(endpoint, audio):
    """True once the party has received the last frame of `audio` (a whole number of frames)."""
    last = audio[-FRAME:]
    return any(p.payload == last for p in endpoint.packets())


def events_of(pkts):
    """The telephone-event packets, grouped by key press (RTP timestamp), in order:
    [(ts, [(packet, event, end, duration), ...])]."""
    groups = []
    for p in pkts:
        if p.pt != TE_PT:
            continue
        ev, flags, duration = struct.unpack("!BBH", p.payload[:4])
        item = (p, ev, bool(flags & 0x80), duration)
        if groups and groups[-1][0] == p.ts:
            groups[-1][1].append(item)
        else:
            groups.append((p.ts, [item]))
    return groups


def check_key_press(ts, items, event):
    """One RFC 4733 key press of 100 ms as sfvopi sends it: four packets of growing duration
    (the first with the marker bit), then the end packet three times."""
    got = [(e, end, d, p.marker) for p, e, end, d in items]
    want = [(event, False, 160 * (k + 1), k == 0) for k in range(4)] + [(event, True, 800, False)] * 3
    assert got == want, f"key press at ts {ts}: {got}"


def test_send_digits_after_the_queued_audio(srv, line, fc, work, agent, party):
    """sendDigits waits for the audio queued before it, sends each key as RFC 4733 events of
    100 ms with 60 ms after it and 500 ms for a w, in one RTP stream with the audio; then
    digitsSent; a checkpoint queued behind the digits comes after them, and audio queued after
    them plays after them."""
    answer_with(fc, agent, direction="BOTH", bidirectional=True)
    before, after = pattern(4000, seed=11), pattern(1600, seed=12)
    with inbound(srv, work, line, party, duration_ms=5000) as c:
        _, start, _ = started(fc, agent)
        sid = start["streamId"]
        party.wait_packets(5)
        agent.play(before, stream_id=sid)
        agent.send({"event": "sendDigits", "streamId": sid, "digits": "12w#"})
        agent.checkpoint("digits", sid)
        agent.play(after, stream_id=sid)
        agent.checkpoint("after", sid)
        agent.wait_event("playedStream", 2, timeout=6)
        assert wait_until(lambda: heard(party, after), timeout=2, interval=0.02)
        pk = party.packets()
        finish(srv, c)
    names = [m.get("event") + ":" + m.get("name", m.get("digits", ""))
             for _, m in agent.msgs if m.get("event") in ("digitsSent", "playedStream")]
    assert names == ["digitsSent:12w#", "playedStream:digits", "playedStream:after"], names
    (_, sent), = agent.events("digitsSent")
    assert sent == {"event": "digitsSent", "streamId": sid, "digits": "12w#"}, sent
    played = {m["name"]: m for _, m in agent.events("playedStream")}
    assert played["digits"]["playedMs"] == 500 and played["after"]["playedMs"] == 700, played

    groups = events_of(pk)
    assert [g[1][0][1] for g in groups] == [1, 2, 11], [(g[0], g[1][0][1]) for g in groups]
    for (ts, items), key in zip(groups, "12#"):
        check_key_press(ts, items, DIGIT_EVENT[key])
    (t1, _), (t2, _), (t3, _) = groups
    assert (t2 - t1, t3 - t2) == (8 * FRAME, (8 + 25) * FRAME), "100 ms + 60 ms a key, 500 ms a w"

    # One RTP stream: audio, events and silence share the sequence and the clock.
    for a, b in zip(pk, pk[1:]):
        assert b.seq == (a.seq + 1) & 0xFFFF, f"RTP sequence {a.seq} -> {b.seq}"
    i_before = next(i for i, p in enumerate(pk) if p.payload == before[:FRAME])
    first_event = pk.index(groups[0][1][0][0])
    # The queued audio, byte for byte, then the first key at once (the next 20 ms).
    assert b"".join(p.payload for p in pk[i_before:first_event]) == before
    assert t1 == pk[first_event - 1].ts + FRAME
    gap = [p for p in pk if p.pt == 8 and t1 < p.ts < t3 + 8 * FRAME]
    assert all(p.silent for p in gap) and len(gap) == 3 + 3 + 25 + 3, (len(gap), all_silent(gap))
    i_after = next(i for i, p in enumerate(pk) if p.payload == after[:FRAME])
    assert pk[i_after].ts == t3 + 8 * FRAME, "the audio after the digits starts 60 ms after #"
    assert b"".join(p.payload for p in pk[i_after:i_after + len(after) // FRAME]) == after
    # Real time, loosely (the RTP clock above is exact).
    assert groups[2][1][0][0].time - groups[0][1][0][0].time >= 0.6


def test_send_digits_every_key_and_bad_requests(srv, line, fc, work, agent, party):
    """Every key of RFC 4733 (0-9 * # A-D) goes out as its event; a sendDigits with a bad
    character, too many digits or no digits, and a hangup whose afterPlayback is not a boolean,
    are ignored (no event, no digitsSent, the call goes on)."""
    answer_with(fc, agent, direction="BOTH", bidirectional=True)
    keys = "0123456789*#ABCD"
    with inbound(srv, work, line, party, duration_ms=5000) as c:
        call_uuid, start, _ = started(fc, agent)
        sid = start["streamId"]
        party.wait_packets(5)
        for bad in [{"digits": "12x"}, {"digits": "1" * 65}, {"digits": ""}, {"digits": 12},
                    {}, {"digits": "a"}, {"digits": "W"}]:
            agent.send({"event": "sendDigits", "streamId": sid, **bad})
        agent.send({"event": "hangup", "streamId": sid, "afterPlayback": "yes"})
        agent.send({"event": "sendDigits", "streamId": sid, "digits": keys})
        (_, sent), = agent.wait_event("digitsSent", 1, timeout=6)
        pk = party.packets()
        assert not c.received("BYE"), "a hangup with a bad afterPlayback ended the call"
        finish(srv, c)
    assert sent["digits"] == keys
    groups = events_of(pk)
    assert [g[1][0][1] for g in groups] == list(range(16))
    for ts, items in groups:
        check_key_press(ts, items, items[0][1])
    assert hangup_of(fc, call_uuid)["call_status"] == "COMPLETED"


def test_hangup_after_playback(srv, line, fc, work, agent, party):
    """hangup with afterPlayback: the party hears all the queued audio byte for byte, then a
    BYE; audio sent after the hangup is never played; COMPLETED "16", the stream closed 1000."""
    answer_with(fc, agent, direction="BOTH", bidirectional=True, keep_call_alive=False)
    audio, late = pattern(12000, seed=21), bytes([0x2A]) * 1600  # late: unlike any frame of audio
    with inbound(srv, work, line, party, scenario="in_stream_wait_bye") as c:
        call_uuid, start, _ = started(fc, agent)
        sid = start["streamId"]
        party.wait_packets(5)
        t_play = agent.play(audio, stream_id=sid)
        agent.send({"event": "hangup", "streamId": sid, "afterPlayback": True})
        agent.play(late, stream_id=sid)
        finish(srv, c)
    pk = party.packets()
    run, first, last = audio_run(pk)
    assert b"".join(p.payload for p in run) == audio, "the party did not hear all the audio"
    assert last >= len(pk) - 2, f"{len(pk) - 1 - last} frame(s) after the audio before the BYE"
    assert not any(p.payload == late[:FRAME] for p in pk), "audio after the hangup was played"
    bye, = c.received("BYE")
    wall = time.time() - time.monotonic()
    assert bye.time >= run[-1].time + wall - 0.05, "the BYE came before the last audio frame"
    assert bye.time - (t_play + wall) >= 1.4, "the BYE did not wait for 1.5 s of audio"
    h = hangup_of(fc, call_uuid)
    assert (h["call_status"], h["hangup_cause"]) == ("COMPLETED", "16"), h
    conn = agent.wait_closed(timeout=5)
    assert conn.close_code == 1000 and not conn.we_closed


def test_hangup_at_once(srv, line, fc, work, agent, party):
    """hangup without afterPlayback ends the call at once, whatever audio is queued."""
    answer_with(fc, agent, direction="BOTH", bidirectional=True)
    audio = pattern(40000, seed=23)  # 5 s
    with inbound(srv, work, line, party, scenario="in_stream_wait_bye") as c:
        call_uuid, start, _ = started(fc, agent)
        sid = start["streamId"]
        party.wait_packets(5)
        agent.play(audio, stream_id=sid)
        assert wait_until(lambda: sum(not p.silent for p in party.packets()) >= 10,
                          timeout=3, interval=0.02)
        t_hangup = agent.send({"event": "hangup", "streamId": sid})
        finish(srv, c)
    h = hangup_of(fc, call_uuid)
    assert (h["call_status"], h["hangup_cause"]) == ("COMPLETED", "16"), h
    bye, = c.received("BYE")
    assert bye.time - (t_hangup + time.time() - time.monotonic()) < 2.0
    assert sum(not p.silent for p in party.packets()) < 150, "the queued audio was played out"


def test_cleared_audio_tells_what_the_party_heard(srv, line, fc, work, agent, party):
    """clearedAudio's playedMs is the customer audio the party received since the start (or the
    previous clearAudio), within one frame; discardedMs what the clear dropped; the dropped
    checkpoints in order; playedStream's playedMs counts the same way."""
    answer_with(fc, agent, direction="BOTH", bidirectional=True)
    first, rest = pattern(4000, seed=31), pattern(20000, seed=32)
    again = pattern(3200, seed=33)
    with inbound(srv, work, line, party, duration_ms=6000) as c:
        _, start, _ = started(fc, agent)
        sid = start["streamId"]
        party.wait_packets(5)
        agent.play(first, stream_id=sid)
        agent.checkpoint("t0", sid)
        agent.play(rest, stream_id=sid)
        agent.checkpoint("t7", sid)
        agent.checkpoint("t8", sid)
        (_, t0), = agent.wait_event("playedStream", 1, timeout=3)
        assert wait_until(lambda: sum(not p.silent for p in party.packets()) >= 50,
                          timeout=3, interval=0.02)
        agent.clear(sid)
        (_, cleared), = agent.wait_event("clearedAudio", 1, timeout=2)
        # After the clear the count starts again: 400 ms, then a clear of an empty queue.
        t_again = agent.play(again, stream_id=sid)
        agent.checkpoint("again", sid)
        agent.wait_event("playedStream", 2, timeout=3)
        agent.clear(sid)
        agent.wait_event("clearedAudio", 2, timeout=2)
        finish(srv, c)
    assert t0 == {"event": "playedStream", "streamId": sid, "name": "t0", "playedMs": 500}, t0
    run, _, _ = audio_run([p for p in party.packets() if p.time < t_again])
    heard_bytes = b"".join(p.payload for p in run)
    assert (first + rest).startswith(heard_bytes)
    heard_ms = len(heard_bytes) // 8
    assert set(cleared) == {"event", "streamId", "playedMs", "discardedMs", "clearedCheckpoints"}
    assert cleared["clearedCheckpoints"] == ["t7", "t8"], cleared
    assert abs(cleared["playedMs"] - heard_ms) <= 20, (cleared, heard_ms)
    assert cleared["playedMs"] + cleared["discardedMs"] == 3000, cleared
    print(f"\nclearedAudio playedMs {cleared['playedMs']}, the party heard {heard_ms} ms")
    again_played = [m for _, m in agent.events("playedStream") if m["name"] == "again"]
    assert again_played[0]["playedMs"] == 400, again_played
    (_, second), = agent.events("clearedAudio")[1:]
    assert (second["playedMs"], second["discardedMs"], second["clearedCheckpoints"]) == \
        (400, 0, []), second


def test_plivo_serializer_messages(srv, line, fc, work, agent, party):
    """What Pipecat's PlivoFrameSerializer sends (json.dumps of playAudio with audio/x-mulaw at
    8000 Hz and the streamId last; clearAudio) works unchanged on a PCMU stream."""
    answer_with(fc, agent, codec="PCMU", direction="BOTH", bidirectional=True)
    play = sine_samples(400, 8000, amplitude=6000)
    payload = bytes(ulaw_encode(x) for x in play)
    with inbound(srv, work, line, party, duration_ms=4000) as c:
        _, start, _ = started(fc, agent)
        sid = start["streamId"]
        party.wait_packets(5)
        for i in range(0, len(payload), 800):  # 100 ms a message, as a TTS produces
            agent.send(json.dumps({"event": "playAudio", "media": {
                "contentType": "audio/x-mulaw", "sampleRate": 8000,
                "payload": base64.b64encode(payload[i:i + 800]).decode("utf-8")},
                "streamId": sid}))
        agent.checkpoint("done", sid)
        agent.wait_event("playedStream", 1, timeout=3)
        agent.send(json.dumps({"event": "clearAudio", "streamId": sid}))
        (_, cleared), = agent.wait_event("clearedAudio", 1, timeout=2)
        finish(srv, c)
    run, _, _ = audio_run(party.packets())
    assert len(run) == 50, f"{len(run)} frames of a 1 s playAudio"
    heard_ = [ALAW[x] for p in run for x in p.payload]
    bad = [(i, h, w) for i, (h, w) in enumerate(zip(heard_, play)) if not _close(h, w, 0.12, 80)]
    assert not bad, f"the party heard something else than the mu-law played: {bad[:5]}"
    assert (cleared["playedMs"], cleared["discardedMs"]) == (1000, 0), cleared


def test_agent_events_need_a_bidirectional_stream(srv, line, fc, work, agent, party):
    """Like playAudio, hangup and sendDigits are ignored on a stream that is not bidirectional."""
    answer_with(fc, agent, direction="INBOUND", bidirectional=False)
    with inbound(srv, work, line, party, duration_ms=2500) as c:
        call_uuid, start, _ = started(fc, agent)
        sid = start["streamId"]
        party.wait_packets(5)
        agent.send({"event": "sendDigits", "streamId": sid, "digits": "1"})
        agent.send({"event": "hangup", "streamId": sid})
        finish(srv, c)
    assert not events_of(party.packets())
    assert not agent.events("digitsSent")
    assert not c.received("BYE"), "a hangup on a one-way stream ended the call"
    h = hangup_of(fc, call_uuid)
    assert h["call_status"] == "COMPLETED"
