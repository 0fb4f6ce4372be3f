"""Call metrics and per-call RTP statistics (spec/SIP.md section 6, docs/metrics.md).

After a known set of calls on a fresh server (two inbound calls answered and streamed, one
outbound call the trunk refuses with 503), /metrics shows exactly those calls, webhooks and
jitter observations: deltas of the parsed exposition text. The inbound calls' party skips five
sequence numbers in its RTP; the hangup webhook (POST and GET) and the call record say exactly
how many packets arrived and how many were lost.

Runs on the SQLite pass only (the engine's counters do not depend on the backend; the record's
new columns are covered on both backends by the store suite). Every wait is bounded.
"""

import re

import pytest
import requests

import test_sip_edge as edge  # noqa: F401  (skips the module too without sipp or the engine)
from conftest import wait_until
from fake_customer import FakeCustomer, reply_json, reply_stream
from sipp_helper import render
from stream_helper import FRAME, Agent, Party, pattern

base = edge.base
SAMPLE_RE = re.compile(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$")


def scrape(srv):
    """Every sample of /metrics as {name{labels}: value}; checks the HELP/TYPE lines."""
    r = requests.get(srv.url + "/metrics", timeout=5)
    assert r.status_code == 200, r.text
    out, types = {}, {}
    for line in r.text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
            continue
        if line.startswith("#") or not line:
            continue
        m = SAMPLE_RE.match(line)
        assert m, f"not an exposition line: {line!r}"
        assert m.group(1) not in out, f"duplicate series {m.group(1)}"
        out[m.group(1)] = float(m.group(2))
    return out, types


def delta(before, after, name):
    return after[name] - before.get(name, 0.0)


CALL_STATUSES = ["COMPLETED", "NO_ANSWER", "BUSY", "CANCELED", "FAILED"]
KINDS = ["ring", "answer", "hangup"]
OUTCOMES = ["ok", "http_error", "timeout", "error"]


def calls_total(direction, status):
    return f'sfvopi_calls_total{{direction="{direction}",status="{status}"}}'


def webhooks(kind, outcome):
    return f'sfvopi_webhook_requests_total{{kind="{kind}",outcome="{outcome}"}}'


SENT_BEFORE_GAP = 10
GAP = 5
SENT_AFTER_GAP = 20


def lossy_inbound_call(srv, work, fc, name, hangup_method="POST"):
    """An inbound call streamed to an agent; the party sends 10 frames, skips 5 sequence
    numbers, sends 20 more; the agent then closes the stream, which ends the call. Returns the
    hangup webhook's hit."""
    line = base.Line(srv, fc)
    if hangup_method == "GET":
        # Another app on a fresh number, whose hangup webhook comes by GET.
        line.number = line.org.add_numbers(1)[0]
        line.app = line.api.create_app(name="get", answer_url=fc.url("/answer"),
                                       hangup_url=fc.url("/hangup"), hangup_method="GET")
        line.api.link(line.app["app_id"], line.number)
    with Agent() as agent, Party(edge.ALLOWED) as party:
        fc.on("/answer", reply_json({"stream": {"url": agent.url(), "bidirectional": True}}))
        sc = edge.party_scenario(work, "in_stream_wait_bye", party.host, name)
        with edge.caller(srv, work, sc, line.number, edge.ALLOWED,
                         keys={"party_port": party.port}) as c:
            agent.wait_start(10)
            party.wait_peer(5)
            frames = [pattern(FRAME, seed=i) for i in range(SENT_BEFORE_GAP + SENT_AFTER_GAP)]
            for i, f in enumerate(frames):
                if i == SENT_BEFORE_GAP:
                    party.seq = (party.seq + GAP) & 0xFFFF  # five packets "lost" on the way
                    party.ts = (party.ts + GAP * len(f)) & 0xFFFFFFFF
                party.send_rtp(8, f)
                edge.time.sleep(0.02)
            # Every frame has reached the stream, so every packet has been counted.
            agent.wait(lambda: all(f in edge.inbound_payloads(agent) for f in frames), 5,
                       "every frame of the party")
            agent.close()
            base.finish(srv, c)
    fc.wait_for(1, path="/hangup", timeout=10)
    return line, [h for h in fc.hits if h.path == "/hangup"][-1]


@pytest.fixture
def srv(tmp_path):
    with edge.edge_server(tmp_path / "srv") as s:
        yield s


def test_call_metrics_and_rtp_statistics(srv, tmp_path):
    before, types = scrape(srv)
    # Present from 0 with the engine, with their types.
    for name, kind in [("sfvopi_calls_active", "gauge"), ("sfvopi_calls_total", "counter"),
                       ("sfvopi_webhook_requests_total", "counter"),
                       ("sfvopi_webhook_duration_seconds", "histogram"),
                       ("sfvopi_stream_send_queue_bytes", "gauge"),
                       ("sfvopi_rtp_jitter_seconds", "histogram")]:
        assert types.get(name) == kind, (name, types.get(name))
    assert before["sfvopi_calls_active"] == 0
    for d in ["INBOUND", "OUTBOUND"]:
        for s in CALL_STATUSES:
            assert before[calls_total(d, s)] == 0
    for k in KINDS:
        for o in OUTCOMES:
            assert before[webhooks(k, o)] == 0
    assert before['sfvopi_rtp_jitter_seconds_bucket{le="+Inf"}'] == 0
    assert before["sfvopi_stream_send_queue_bytes"] == 0

    sent = SENT_BEFORE_GAP + SENT_AFTER_GAP
    with FakeCustomer(default=reply_stream()) as fc:
        # 1. Inbound, hangup webhook by POST.
        line, hit = lossy_inbound_call(srv, tmp_path, fc, "loss_post")
        p = hit.payload
        assert (p["call_status"], p["hangup_cause"]) == ("COMPLETED", "16"), p
        assert p["rtp_packets_received"] == sent, p
        assert p["rtp_packets_lost"] == GAP, p
        assert isinstance(p["rtp_jitter_ms"], (int, float)) and p["rtp_jitter_ms"] >= 0, p
        rec = base.final_record(line, p["call_uuid"])
        for k in ["rtp_packets_received", "rtp_packets_lost", "rtp_jitter_ms"]:
            assert rec[k] == p[k], (k, rec, p)

    with FakeCustomer(default=reply_stream()) as fc:
        # 2. Inbound, hangup webhook by GET: the same fields in the query string.
        line, hit = lossy_inbound_call(srv, tmp_path, fc, "loss_get", hangup_method="GET")
        q = hit.query
        assert hit.method == "GET", hit
        assert q["rtp_packets_received"] == str(sent), q
        assert q["rtp_packets_lost"] == str(GAP), q
        assert re.fullmatch(r"[0-9]+(\.[0-9]{1,3})?", q["rtp_jitter_ms"]), q
        rec = base.final_record(line, q["call_uuid"])
        assert rec["rtp_packets_received"] == sent and rec["rtp_packets_lost"] == GAP, rec
        assert rec["rtp_jitter_ms"] == float(q["rtp_jitter_ms"]), (rec, q)

    with FakeCustomer(default=reply_stream()) as fc:
        # 3. Outbound, refused by the trunk: FAILED "41", no media.
        line = base.Line(srv, fc)
        scen = render("out_reject", tmp_path, "out_reject_503", RING="",
                      CODE="503 Service Unavailable", REASON="")
        with base.uas(srv, tmp_path, scen) as s:
            call = base.place_call(line, fc)
            base.finish(srv, s)
        fc.wait_for(1, path="/hangup", timeout=10)
        h = [x for x in fc.hits if x.path == "/hangup"][-1].payload
        assert (h["call_status"], h["hangup_cause"]) == ("FAILED", "41"), h
        assert (h["rtp_packets_received"], h["rtp_packets_lost"], h["rtp_jitter_ms"]) == \
            (0, 0, 0), h
        rec = base.final_record(line, call["call_uuid"])
        assert (rec["rtp_packets_received"], rec["rtp_packets_lost"], rec["rtp_jitter_ms"]) == \
            (0, 0, 0), rec

    # Webhook outcomes are counted when their responses arrive: wait for the last one.
    after = {}

    def settled():
        nonlocal after
        after, _ = scrape(srv)
        return delta(before, after, webhooks("hangup", "ok")) >= 3 and \
            after["sfvopi_calls_active"] == 0

    assert wait_until(settled, timeout=10, interval=0.1), after
    want_calls = {("INBOUND", "COMPLETED"): 2, ("OUTBOUND", "FAILED"): 1}
    for d in ["INBOUND", "OUTBOUND"]:
        for s in CALL_STATUSES:
            assert delta(before, after, calls_total(d, s)) == want_calls.get((d, s), 0), (d, s)
    want_hooks = {("answer", "ok"): 2, ("hangup", "ok"): 3}
    for k in KINDS:
        for o in OUTCOMES:
            assert delta(before, after, webhooks(k, o)) == want_hooks.get((k, o), 0), (k, o)
    n = delta(before, after, 'sfvopi_webhook_duration_seconds_bucket{le="+Inf"}')
    assert n == 5 and delta(before, after, "sfvopi_webhook_duration_seconds_count") == 5
    assert 0 < delta(before, after, "sfvopi_webhook_duration_seconds_sum") < 5 * 10
    # One jitter observation per call whose party sent audio: the two inbound calls.
    assert delta(before, after, 'sfvopi_rtp_jitter_seconds_bucket{le="+Inf"}') == 2
    assert delta(before, after, "sfvopi_rtp_jitter_seconds_count") == 2
    # Buckets are cumulative.
    buckets = [v for k, v in after.items() if k.startswith("sfvopi_rtp_jitter_seconds_bucket")]
    assert buckets == sorted(buckets), buckets
    assert after["sfvopi_stream_send_queue_bytes"] == 0  # no stream left


def test_call_series_absent_without_engine(server):
    text = requests.get(server.url + "/metrics", timeout=5).text
    for name in ["sfvopi_calls_active", "sfvopi_calls_total", "sfvopi_webhook_requests_total",
                 "sfvopi_webhook_duration_seconds", "sfvopi_stream_send_queue_bytes",
                 "sfvopi_rtp_jitter_seconds"]:
        assert name not in text, name
