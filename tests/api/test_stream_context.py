"""A call's context in the stream's start message, and SIP headers on outbound calls
(spec/AGENT.md section 2):

- the answer webhook's `stream.custom_parameters` come back in `start` as `customParameters`,
  keys and values as received, in their order; a bad one makes the reply invalid, so the
  fallback answers instead;
- an inbound INVITE's X- headers arrive in `start` as `sipHeaders` (at most 16, values cut at
  256 bytes);
- `POST /sfvopi/calls` takes `sip_headers`, sent on the INVITE after the operator's
  `--sip-header` ones, which it may not name; every broken rule is a 400.

Both fields appear only when they hold something: a call without them gets exactly the
documented start message (test_calls_stream.py compares it whole).

SIPp plays the carrier, stream_helper.Agent the customer's WebSocket, FakeCustomer its web
server, as in test_calls_stream.py, whose helpers these tests share. The server here runs with
`--sip-header 'X-Carrier-Token: op-secret'`. Runs on SQLite only: nothing here touches the
database backend.
"""

import os

import pytest

from sipp_helper import SIPP

if SIPP is None:
    pytest.skip("sipp (package sip-tester) is not installed", allow_module_level=True)
if os.environ.get("SFVOPI_TEST_PG_URL"):
    # Parameters and headers travel from the webhook or the INVITE to the stream, never through
    # the database: the SQLite passes only.
    pytest.skip("a call's context is independent of the database backend: SQLite runs only",
                allow_module_level=True)

import test_calls_sip as base  # noqa: E402  (skips the module too when there is no call engine)
from conftest import MSG_INVALID, assert_error  # noqa: E402
from fake_customer import reply_json  # noqa: E402
from openapi_check import check_operation  # noqa: E402
from sipp_helper import Sipp, add_header  # noqa: E402
from stream_helper import Agent, Party  # noqa: E402
from test_calls_sip import CALLER, Line, fc, work  # noqa: E402,F401

OPERATOR_HEADER = ("X-Carrier-Token", "op-secret")
DOC_START_KEYS = {"event", "streamId", "callId", "mediaFormat"}


# ---------------------------------------------------------------------------------------------
# Fixtures: one server with an operator header for the module.

@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with base.engine_server(tmp_path_factory.mktemp("ctx"), "--sip-header",
                            f"{OPERATOR_HEADER[0]}: {OPERATOR_HEADER[1]}") as s:
        yield s


@pytest.fixture(autouse=True)
def _server_alive(srv):
    yield
    assert srv.proc.poll() is None, f"server died (rc={srv.proc.returncode}); log:\n{srv.log}"


@pytest.fixture
def line(srv, fc):  # noqa: F811
    return Line(srv, fc)


@pytest.fixture
def agent():
    with Agent() as a:
        yield a


@pytest.fixture
def party():
    with Party() as p:
        yield p


def started(fc, agent, timeout=8):
    """As test_calls_stream.started (not imported: that module runs on SQLite only)."""
    answer, = fc.wait_for(1, path="/answer", timeout=timeout)
    t, start = agent.wait_start(timeout)
    return answer.payload["call_uuid"], start, t


def stream_reply(agent, **stream):
    return reply_json({"stream": {"url": agent.url(), **stream}})


def inbound_call(srv, work, line, party, scenario="in_stream_wait_bye"):
    """A SIPp carrier calling line.number; sfvopi hangs up when the agent closes the stream."""
    return Sipp(scenario, work, remote=f"127.0.0.1:{srv.sip_port}", service=line.number,
                keys={"caller": CALLER, "party_port": party.port})


def start_of_inbound(srv, fc, work, line, party, agent, scenario="in_stream_wait_bye"):
    """Place an inbound call, wait for its start, end it from the agent; return start."""
    with inbound_call(srv, work, line, party, scenario) as c:
        _, start, _ = started(fc, agent, timeout=10)
        agent.close(1000)
        base.finish(srv, c, timeout=15)
    return start


# ---------------------------------------------------------------------------------------------
# custom_parameters -> start.customParameters

def test_custom_parameters_round_trip(srv, line, fc, work, agent, party):
    """Keys and values come back as received, in their order (not sorted), unicode included."""
    params = {"zeta": "last-but-first", "tenant": "acme", "lang": "hi-IN", "empty": "",
              "note": "caf\u00e9 \u20ac \U0001F600 \"quoted\" back\\slash \u0001 tab\t",
              "\u0928\u093e\u092e": "\u0939\u093f\u0902\u0926\u0940"}
    fc.on("/answer", stream_reply(agent, custom_parameters=params))
    start = start_of_inbound(srv, fc, work, line, party, agent)
    assert set(start) == DOC_START_KEYS | {"customParameters"}, start
    assert list(start["customParameters"].items()) == list(params.items()), start
    assert list(start)[:4] == ["event", "streamId", "callId", "mediaFormat"], start


def test_custom_parameters_at_their_caps(srv, line, fc, work, agent, party):
    """16 parameters, keys of 64 bytes, values of 512 bytes (some in 2- and 3-byte characters)."""
    params = {}
    for i in range(16):
        key = f"{i:02d}" + "k" * 62
        if i % 3 == 0:
            value = "\u00e9" * 256  # 512 bytes
        elif i % 3 == 1:
            value = "\u20ac" * 170 + "vv"  # 510 + 2 bytes
        else:
            value = "v" * 512
        params[key] = value
    params["\u00e9" * 32] = params.pop(f"{15:02d}" + "k" * 62)  # a 64-byte key of 32 characters
    assert all(len(k.encode()) == 64 and len(v.encode()) == 512 for k, v in params.items())
    fc.on("/answer", stream_reply(agent, custom_parameters=params))
    start = start_of_inbound(srv, fc, work, line, party, agent)
    assert list(start["customParameters"].items()) == list(params.items())


def _params(n, klen=4, vlen=1):
    return {f"{i:03d}".ljust(klen, "k"): "v" * vlen for i in range(n)}


BAD_PARAMS = [
    ("null", None), ("list", ["a", "b"]), ("string", "a=b"), ("number", 5), ("true", True),
    ("17 values", _params(17)), ("key of 65 bytes", _params(1, klen=65)),
    ("key of 33 2-byte characters", {"\u00e9" * 33: "x"}), ("empty key", {"": "x"}),
    ("value of 513 bytes", _params(1, vlen=513)),
    ("value of 257 2-byte characters", {"a": "\u00e9" * 257}),
    ("null value", {"a": None}), ("number value", {"a": 1}), ("boolean value", {"a": False}),
    ("object value", {"a": {}}), ("list value", {"a": ["x"]}),
    ("one bad value among good ones", {"a": "x", "b": "y", "c": 3}),
]


@pytest.mark.parametrize("value", [v for _, v in BAD_PARAMS], ids=[n for n, _ in BAD_PARAMS])
def test_invalid_custom_parameters_use_the_fallback(srv, line, fc, work, agent, party, value):
    """A bad custom_parameters makes the answer's reply invalid: the fallback is asked, and the
    stream is the fallback's (its own parameters in start)."""
    fc.on("/answer", stream_reply(agent, custom_parameters=value))
    fc.on("/fallback", stream_reply(agent, custom_parameters={"source": "fallback"}))
    start = start_of_inbound(srv, fc, work, line, party, agent)
    assert start["customParameters"] == {"source": "fallback"}, start
    answer, = fc.requests("/answer")
    fallback, = fc.requests("/fallback")
    assert fallback.json["call_uuid"] == answer.json["call_uuid"] == start["callId"]


def test_custom_parameters_at_the_limit_do_not_use_the_fallback(srv, line, fc, work, agent,
                                                                 party):
    """The counterpart of the table above: an empty object is valid, and nothing of it shows."""
    fc.on("/answer", stream_reply(agent, custom_parameters={}))
    start = start_of_inbound(srv, fc, work, line, party, agent)
    assert set(start) == DOC_START_KEYS, start
    assert not fc.requests("/fallback")


# ---------------------------------------------------------------------------------------------
# An inbound INVITE's X- headers -> start.sipHeaders

def test_inbound_x_headers_arrive_in_start(srv, line, fc, work, agent, party):
    """X- headers in the order received, names as sent (either case of x), the first 16
    distinct names, a repeated name keeping its first value, values cut at 256 bytes; other
    headers (Subject, Y-*, Xy-*) are not X- headers."""
    long_value = "".join(chr(0x21 + i % 90) for i in range(300)).replace("[", "(")
    sent = [
        ("X-Tenant", "acme"),
        ("Subject", "not an X header"),
        ("x-lower-case", "Mixed Value, with; punctuation=1 & more"),
        ("X-Long", long_value),
        ("Y-Other", "no"),
        ("X-Tenant", "second value of a repeated name"),
        ("X-TENANT", "the same name in other case"),
        ("XY-Not", "no"),
        ("X-Empty", ""),
    ] + [(f"X-H{i:02d}", f"value {i}") for i in range(1, 18)]
    block = "\n".join(f"{k}: {v}" for k, v in sent)
    scen = add_header("in_stream_wait_bye", work, "in_x_headers", "INVITE ", block)
    fc.on("/answer", stream_reply(agent))
    start = start_of_inbound(srv, fc, work, line, party, agent, scenario=str(scen))
    want = [("X-Tenant", "acme"),
            ("x-lower-case", "Mixed Value, with; punctuation=1 & more"),
            ("X-Long", long_value[:256]),
            ("X-Empty", "")] + [(f"X-H{i:02d}", f"value {i}") for i in range(1, 13)]
    assert len(want) == 16
    assert set(start) == DOC_START_KEYS | {"sipHeaders"}, start
    assert list(start["sipHeaders"].items()) == want, start["sipHeaders"]


def test_inbound_without_x_headers_has_no_sip_headers(srv, line, fc, work, agent, party):
    fc.on("/answer", stream_reply(agent))
    start = start_of_inbound(srv, fc, work, line, party, agent)
    assert set(start) == DOC_START_KEYS, start


# ---------------------------------------------------------------------------------------------
# POST /sfvopi/calls sip_headers -> the outbound INVITE

def invite_headers(sipp):
    """The (name as sent, value) header lines of the INVITE SIPp received, from its raw log."""
    inv = sipp.received("INVITE")
    assert inv, sipp.report()
    text = sipp.msg_file.read_text(errors="replace").replace("\r\n", "\n")
    at = text.index("INVITE sip:")
    head = text[at:].split("\n\n", 1)[0].split("\n")[1:]
    return [(k.strip(), v.strip()) for k, _, v in (h.partition(":") for h in head)]


def test_outbound_sip_headers_are_sent(srv, line, fc, work, agent, party):
    """The requested headers follow the operator's on the INVITE, names and values as asked;
    start of an outbound call carries no sipHeaders (there is no inbound INVITE), and the
    answer's custom parameters as for inbound calls."""
    wanted = {"X-Tenant": "acme", "X-Campaign-2026": "spring sale", "X-Empty": "",
              "X-Punct": "!\"#$%&'()*+,-./:;<=>?@\\^_`{|}~ x"}
    fc.on("/answer", stream_reply(agent, custom_parameters={"k": "v"}))
    s = Sipp("out_stream", work, port=srv.trunk_port, keys={"party_port": party.port},
             duration_ms=1000)
    with s:
        s.wait_listening()
        call = base.place_call(line, fc, sip_headers=wanted)
        _, start, _ = started(fc, agent, timeout=10)
        base.finish(srv, s)
    assert start["callId"] == call["call_uuid"]
    assert set(start) == DOC_START_KEYS | {"customParameters"}, start
    assert start["customParameters"] == {"k": "v"}
    got = invite_headers(s)
    names = [k for k, _ in got]
    assert OPERATOR_HEADER in got, got
    ours = [(k, v) for k, v in got if k in wanted]
    assert ours == list(wanted.items()), got
    assert names.index(OPERATOR_HEADER[0]) < names.index("X-Tenant"), names


def test_outbound_sip_headers_at_their_caps(srv, line, fc, work):
    """16 headers with names of 64 bytes and values of 256 bytes all reach the INVITE."""
    wanted = {f"X-{i:02d}" + "N" * 60: "".join(chr(0x21 + (i + j) % 94) for j in range(256))
              .replace("[", "(") for i in range(16)}
    assert all(len(k) == 64 and len(v) == 256 for k, v in wanted.items())
    with base.uas(srv, work, "out_answer", duration_ms=500) as s:
        base.place_call(line, fc, sip_headers=wanted)
        base.finish(srv, s)
    got = invite_headers(s)
    assert [(k, v) for k, v in got if k in wanted] == list(wanted.items()), got


def test_outbound_without_sip_headers_sends_only_the_operators(srv, line, fc, work):
    with base.uas(srv, work, "out_answer", duration_ms=300) as s:
        base.place_call(line, fc)
        base.finish(srv, s)
    got = invite_headers(s)
    assert [(k, v) for k, v in got if k.lower().startswith("x-")] == [OPERATOR_HEADER], got


def _headers(n, name_len=8, value="v"):
    return {("X-" + f"{i:02d}").ljust(name_len, "h"): value for i in range(n)}


BAD_SIP_HEADERS = [
    ("null", None), ("list", [["X-A", "1"]]), ("string", "X-A: 1"), ("number", 1),
    ("true", True), ("17 headers", _headers(17)),
    ("lower-case x", {"x-tenant": "a"}), ("not X-", {"Tenant": "a"}), ("Y-", {"Y-A": "a"}),
    ("X- alone", {"X-": "a"}), ("X without dash", {"XA": "a"}),
    ("name of 65 bytes", _headers(1, name_len=65)), ("underscore", {"X-A_B": "a"}),
    ("space", {"X-A B": "a"}), ("colon", {"X-A:": "a"}), ("dot", {"X-A.B": "a"}),
    ("non-ASCII name", {"X-\u00e9": "a"}), ("empty name", {"": "a"}),
    ("value null", {"X-A": None}), ("value number", {"X-A": 1}), ("value true", {"X-A": True}),
    ("value object", {"X-A": {}}), ("value list", {"X-A": ["a"]}),
    ("value of 257 bytes", {"X-A": "v" * 257}), ("CR", {"X-A": "a\rb"}),
    ("LF", {"X-A": "a\nb"}), ("CRLF injection", {"X-A": "a\r\nVia: evil"}),
    ("TAB", {"X-A": "a\tb"}), ("DEL", {"X-A": "a\x7fb"}), ("non-ASCII value", {"X-A": "caf\u00e9"}),
    ("control", {"X-A": "\x01"}),
    ("the operator's header", {"X-Carrier-Token": "mine"}),
    ("the operator's header in other case", {"X-CARRIER-TOKEN": "mine"}),
    ("the operator's header among others", {"X-Tenant": "a", "X-carrier-token": "mine"}),
]


@pytest.mark.parametrize("value", [v for _, v in BAD_SIP_HEADERS],
                         ids=[n for n, _ in BAD_SIP_HEADERS])
def test_invalid_sip_headers_are_400(srv, line, fc, value):
    body = {"from": line.number, "to": base.CALLEE, "answer_url": fc.url("/answer"),
            "sip_headers": value}
    r = line.api.post("/calls", json=body)
    assert_error(r, 400, MSG_INVALID)
    check_operation("/calls", "POST", r, 400, MSG_INVALID)
    assert [e["field"] for e in r.json()["errors"]] == ["sip_headers"], r.json()
    assert not fc.hits, "no call may start"


def test_invalid_sip_headers_come_before_the_route_check(srv, line, fc):
    """Step 4 of the order of checks (body invalid) before the route's own 400."""
    unlinked = line.org.add_numbers(1)[0]
    body = {"from": unlinked, "to": base.CALLEE, "answer_url": fc.url("/answer"),
            "sip_headers": {"X-A": "a\nb"}}
    r = line.api.post("/calls", json=body)
    assert_error(r, 400, MSG_INVALID)
    body["sip_headers"] = {"X-A": "fine"}
    r = line.api.post("/calls", json=body)
    assert_error(r, 400, f"VoIP number {unlinked} is not linked to any SFVoPI app")


def test_invalid_sip_headers_listed_with_other_fields(srv, line, fc):
    r = line.api.post("/calls", json={"from": line.number, "to": 5, "answer_url": fc.url("/a"),
                                      "ring_timeout": 0, "sip_headers": {"X-A": 1}})
    assert_error(r, 400, MSG_INVALID)
    assert [e["field"] for e in r.json()["errors"]] == ["to", "ring_timeout", "sip_headers"]
