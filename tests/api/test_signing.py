"""Signed webhooks and stream connections (spec/AGENT.md section 4).

An organisation's signing secrets (`sfvopi webhook-secret create|list|revoke`, at most two
active) sign every webhook and every WebSocket upgrade with
`X-Sfvopi-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>]`, one v1 per active secret, newest
first: HMAC-SHA256 keyed with the whole secret string over `<t>.<content>`, where content is the
raw body (POST), the raw query string as sent without `?` (GET), or the request target of the
upgrade (path and `?query`). Here every signature is checked by an implementation of the
test's own (Python's hmac), and the README's Python and JavaScript snippets are run against the
same captured deliveries.

SIPp plays the carrier calling a linked number, FakeCustomer the customer's web server (its
answer webhook replies with a Stream), stream_helper.Agent the customer's WebSocket, as in
test_stream_context.py. The server logs at debug level (text here, JSON in one test), and no
secret may appear in either. The server reads the secrets again every second and logs
`signing secrets loaded` when they changed: each change made here waits for that line, so no
test sleeps. Runs on SQLite and on PostgreSQL; a second node joins on PostgreSQL (plain build).
"""

import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import time

import pytest

from sipp_helper import SIPP

if SIPP is None:
    pytest.skip("sipp (package sip-tester) is not installed", allow_module_level=True)

import test_calls_sip as base  # noqa: E402  (skips the module too when there is no call engine)
from conftest import ASAN, BIN, PG_URL, REPO, Server, wait_until  # noqa: E402
from fake_customer import reply_json  # noqa: E402
from sipp_helper import Sipp, free_rtp_range, free_udp_port, port_taken  # noqa: E402
from stream_helper import Agent, Party  # noqa: E402
from test_calls_sip import CALLER, _server_alive, fc, work  # noqa: E402,F401

if ASAN and PG_URL:
    # Signing reads the secrets through the store (test_store.c runs those operations on both
    # backends, under both builds); the rest of it never sees the backend. Both backends run in
    # the plain build, the sanitizer build covers it on SQLite.
    pytest.skip("signing under ASan+UBSan: the SQLite pass", allow_module_level=True)

SECRET_RE = re.compile(r"^whsec_[A-Za-z0-9]{32}$")
HEADER_RE = re.compile(r"^t=([0-9]+)((?:,v1=[0-9a-f]{64}){1,2})$")
LOADED = "signing secrets loaded"
WS_PATH = "/ws/agent?tenant=acme&lang=hi-IN&sig=a%2Bb"
NODE = "/usr/bin/node"

# Every secret this module creates, to look for in the logs.
CREATED = []


# ---------------------------------------------------------------------------------------------
# Fixtures: one server for the module, at debug level.

@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with base.engine_server(tmp_path_factory.mktemp("sign"), "--log-level", "debug") as s:
        yield s


@pytest.fixture
def party():
    with Party() as p:
        yield p


class Line:
    """A fresh org with a number linked to an app whose webhooks go to the fake customer (by
    `method`); call_once makes its answer reply with a Stream."""

    def __init__(self, srv, fc, method="POST"):
        self.srv = srv
        self.org = srv.make_org()
        self.api = self.org.client()
        self.number = self.org.add_numbers(1)[0]
        # A query on the answer URL: a GET webhook's query string is what follows '?'
        # on the request line, the app's own part included.
        self.app = self.api.create_app(
            name="signed", answer_url=fc.url("/answer?app=signed"), answer_method=method,
            hangup_url=fc.url("/hangup"), hangup_method=method)
        self.api.link(self.app["app_id"], self.number)


# ---------------------------------------------------------------------------------------------
# Helpers.

def changed(srv, action):
    """Run action (a CLI change of the secrets) and wait until the server has loaded it: its
    `signing secrets loaded` lines grow by one (each change waits for its own line)."""
    before = srv.log.count(LOADED)
    out = action()
    if not wait_until(lambda: srv.log.count(LOADED) > before, timeout=5, interval=0.05):
        pytest.fail(f"the server did not load the new signing secrets; log:\n{srv.log[-3000:]}")
    return out


def create_secret(srv, org_id):
    def run():
        cp = srv.cli("webhook-secret", "create", "--org", org_id)
        assert cp.returncode == 0, cp.stderr
        assert cp.stderr == "", cp.stderr
        lines = cp.stdout.splitlines()
        assert len(lines) == 1 and SECRET_RE.match(lines[0]), cp.stdout
        CREATED.append(lines[0])
        return lines[0]
    return changed(srv, run)


def list_secrets(srv, org_id):
    cp = srv.cli("webhook-secret", "list", "--org", org_id)
    assert cp.returncode == 0, cp.stderr
    rows = [ln.split("\t") for ln in cp.stdout.splitlines()]
    for row in rows:
        assert len(row) == 3, rows
        assert re.fullmatch(r"[1-9][0-9]*", row[0]), rows
        assert re.fullmatch(r"whsec_[A-Za-z0-9]{6}", row[1]), rows
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", row[2]), rows
    return rows


def revoke_secret(srv, secret_id):
    def run():
        cp = srv.cli("webhook-secret", "revoke", secret_id)
        assert cp.returncode == 0 and cp.stdout == "", (cp.stdout, cp.stderr)
    changed(srv, run)


def parse_signature(value):
    """(t, [v1, ...]) of a header value, which must have exactly the documented shape."""
    m = HEADER_RE.match(value or "")
    assert m, f"X-Sfvopi-Signature {value!r} is not t=<digits>,v1=<64 hex>[,v1=<64 hex>]"
    return int(m.group(1)), m.group(2).split(",v1=")[1:]


def mac(secret, t, content):
    return hmac.new(secret.encode("ascii"), str(t).encode() + b"." + content,
                    hashlib.sha256).hexdigest()


def check_signed(value, content, secrets):
    """The header carries one v1 per secret, in the order given (newest first), each the HMAC
    of that secret over t.content; t is the sender's clock, within a few seconds of ours."""
    t, v1s = parse_signature(value)
    assert abs(time.time() - t) < 30, (t, time.time())
    assert v1s == [mac(s, t, content) for s in secrets], (value, content)
    return t


def call_once(srv, work, line, party, fc):  # noqa: F811
    """One inbound call answered with a Stream to a fresh agent: returns (answer hit, hangup
    hit, the agent's connection). Earlier calls' hits stay in fc: this call's are the next."""
    n_answer, n_hangup = len(fc.requests("/answer")), len(fc.requests("/hangup"))
    with Agent() as agent:
        fc.on("/answer", reply_json({"stream": {"url": agent.url(WS_PATH)}}))
        with Sipp("in_stream_wait_bye", work, remote=f"127.0.0.1:{srv.sip_port}",
                  service=line.number, keys={"caller": CALLER, "party_port": party.port}) as c:
            answer = fc.wait_for(n_answer + 1, path="/answer", timeout=10)[n_answer]
            agent.wait_start(10)
            assert len(agent.conns) == 1, agent.summary()
            conn = agent.conns[0]
            agent.close(1000)
            base.finish(srv, c, timeout=15)
    hangup = fc.wait_for(n_hangup + 1, path="/hangup", timeout=10)[n_hangup]
    assert answer.payload["call_uuid"] == hangup.payload["call_uuid"]
    return answer, hangup, conn


def contents(answer, hangup, conn):
    """What each delivery signs, from what the customer received."""
    def of(hit):
        if hit.method == "POST":
            return hit.body
        assert "?" in hit.target, hit.target
        return hit.target.split("?", 1)[1].encode()
    return of(answer), of(hangup), conn.path.encode()


def upgrade_signature(conn):
    return conn.ws.request_headers.get("X-Sfvopi-Signature")


# ---------------------------------------------------------------------------------------------
# Signatures on real deliveries.

@pytest.mark.parametrize("method", ["POST", "GET"])
def test_one_secret_signs_webhooks_and_the_upgrade(srv, fc, party, work, method):  # noqa: F811
    line = Line(srv, fc, method)
    secret = create_secret(srv, line.org.id)
    answer, hangup, conn = call_once(srv, work, line, party, fc)
    assert answer.method == hangup.method == method
    assert conn.path == WS_PATH, conn.path  # the request target as sent, query and all
    body_a, body_h, target = contents(answer, hangup, conn)
    if method == "GET":
        # The query string as sent: the app's own part first, then the payload's fields.
        assert body_a.startswith(b"app=signed&call_uuid="), body_a
        assert answer.body == b""
    else:
        assert json.loads(body_a)["call_uuid"] == answer.payload["call_uuid"]
    check_signed(answer.header("X-Sfvopi-Signature"), body_a, [secret])
    check_signed(hangup.header("X-Sfvopi-Signature"), body_h, [secret])
    check_signed(upgrade_signature(conn), target, [secret])
    # A signature is for its own content: the answer's does not verify the hangup's.
    t, (v1,) = parse_signature(answer.header("X-Sfvopi-Signature"))
    assert v1 != mac(secret, t, body_h)


def test_two_secrets_both_sign_newest_first_and_a_revoked_one_stops(srv, fc, party,
                                                                     work):  # noqa: F811
    line = Line(srv, fc)
    org = line.org.id
    old = create_secret(srv, org)
    new = create_secret(srv, org)
    rows = list_secrets(srv, org)
    assert [r[1] for r in rows] == [old[:12], new[:12]], rows

    answer, hangup, conn = call_once(srv, work, line, party, fc)
    body_a, body_h, target = contents(answer, hangup, conn)
    check_signed(answer.header("X-Sfvopi-Signature"), body_a, [new, old])
    check_signed(hangup.header("X-Sfvopi-Signature"), body_h, [new, old])
    check_signed(upgrade_signature(conn), target, [new, old])

    revoke_secret(srv, rows[0][0])
    assert [r[1] for r in list_secrets(srv, org)] == [new[:12]]
    answer, hangup, conn = call_once(srv, work, line, party, fc)
    body_a, body_h, target = contents(answer, hangup, conn)
    for value, content in ((answer.header("X-Sfvopi-Signature"), body_a),
                           (hangup.header("X-Sfvopi-Signature"), body_h),
                           (upgrade_signature(conn), target)):
        t = check_signed(value, content, [new])
        assert mac(old, t, content) not in value  # the revoked secret signs nothing


def test_outbound_ring_answer_and_hangup_are_signed(srv, fc, work):  # noqa: F811
    """An outbound call (SIPp answering on the trunk): its ring webhook too."""
    line = Line(srv, fc)
    secret = create_secret(srv, line.org.id)
    with base.uas(srv, work, "out_answer", duration_ms=1000) as s:
        call = base.place_call(line, fc)
        base.finish(srv, s)
    ring, answer, hangup = base.expect_hits(fc, "/ring", "/answer", "/hangup")
    for hit in (ring, answer, hangup):
        assert hit.method == "POST" and hit.payload["call_uuid"] == call["call_uuid"]
        check_signed(hit.header("X-Sfvopi-Signature"), hit.body, [secret])


def test_no_secret_no_header(srv, fc, party, work):  # noqa: F811
    """An org without an active secret gets exactly what documented clients got before, even
    while other orgs have secrets, and again once its only secret is revoked."""
    line = Line(srv, fc)
    other = Line(srv, fc)
    create_secret(srv, other.org.id)
    answer, hangup, conn = call_once(srv, work, line, party, fc)
    assert "x-sfvopi-signature" not in answer.headers, answer.headers
    assert "x-sfvopi-signature" not in hangup.headers, hangup.headers
    assert upgrade_signature(conn) is None

    secret = create_secret(srv, line.org.id)
    revoke_secret(srv, list_secrets(srv, line.org.id)[0][0])
    assert list_secrets(srv, line.org.id) == []
    answer, hangup, conn = call_once(srv, work, line, party, fc)
    assert "x-sfvopi-signature" not in answer.headers, answer.headers
    assert "x-sfvopi-signature" not in hangup.headers, hangup.headers
    assert upgrade_signature(conn) is None
    assert secret


@pytest.mark.skipif(not PG_URL or ASAN, reason="several nodes share a PostgreSQL database only; "
                    "a second node: runs once, in the plain build's PostgreSQL pass")
def test_two_nodes_sign_alike_and_stop_alike(srv, fc, party, work, tmp_path):  # noqa: F811
    """A second node on the module's database: a secret created (or revoked) once signs (or
    stops signing) the calls of either node."""
    sip_port = free_udp_port()
    rtp = free_rtp_range(100, step=7)
    b = Server(srv.db_url, tmp_path, argv=[
        BIN, "--db", srv.db_url, "serve", "--listen", "127.0.0.1:0", "--threads", "2",
        "--sip-listen", f"127.0.0.1:{sip_port}", "--rtp-ports", f"{rtp[0]}-{rtp[1]}",
        "--sip-allow", "127.0.0.1"]).start()
    try:
        b.sip_port = sip_port
        assert wait_until(lambda: port_taken(sip_port), timeout=5, interval=0.05)
        line = Line(srv, fc)
        loaded_b = b.log.count(LOADED)
        old = create_secret(srv, line.org.id)
        assert wait_until(lambda: b.log.count(LOADED) > loaded_b, timeout=5, interval=0.05)
        for node in (srv, b):
            answer, hangup, conn = call_once(node, work, line, party, fc)
            body_a, body_h, target = contents(answer, hangup, conn)
            check_signed(answer.header("X-Sfvopi-Signature"), body_a, [old])
            check_signed(upgrade_signature(conn), target, [old])

        loaded_b = b.log.count(LOADED)
        new = create_secret(srv, line.org.id)
        assert wait_until(lambda: b.log.count(LOADED) > loaded_b, timeout=5, interval=0.05)
        loaded_b = b.log.count(LOADED)
        revoke_secret(srv, list_secrets(srv, line.org.id)[0][0])
        assert wait_until(lambda: b.log.count(LOADED) > loaded_b, timeout=5, interval=0.05)
        answer, hangup, conn = call_once(b, work, line, party, fc)
        body_a, body_h, target = contents(answer, hangup, conn)
        check_signed(answer.header("X-Sfvopi-Signature"), body_a, [new])
        check_signed(hangup.header("X-Sfvopi-Signature"), body_h, [new])
        check_signed(upgrade_signature(conn), target, [new])
        assert_no_secret_in(b.log, [old, new])
    finally:
        assert b.stop() == 0, b.log[-3000:]


# ---------------------------------------------------------------------------------------------
# The README's snippets, run on real deliveries.

def readme_block(lang):
    text = (REPO / "README.md").read_text(encoding="utf-8")
    m = re.search(r"^## Verifying requests from sfvopi\n", text, flags=re.M)
    assert m, "README.md has no '## Verifying requests from sfvopi' section"
    end = text.find("\n## ", m.end())
    section = text[m.end():end if end >= 0 else len(text)]
    blocks = re.findall(rf"^```{lang}\n(.*?)^```\n", section, flags=re.M | re.S)
    assert len(blocks) == 1, f"expected one ```{lang} block in the section, found {len(blocks)}"
    return blocks[0]


PY_HARNESS = """
import base64, json, sys
cases = json.load(sys.stdin)
print(json.dumps([verify(c["secret"], c["header"], base64.b64decode(c["content"]))
                  for c in cases]))
"""

JS_HARNESS = """
const cases = JSON.parse(require("fs").readFileSync(0, "utf8"));
console.log(JSON.stringify(cases.map((c) =>
  verify(c.secret, c.header, Buffer.from(c.content, "base64")))));
"""


def run_snippet(argv, code, cases, tmp_path, name):
    path = tmp_path / name
    path.write_text(code, encoding="utf-8")
    cp = subprocess.run([*argv, str(path)], input=json.dumps(cases), capture_output=True,
                        text=True, timeout=20)
    assert cp.returncode == 0, cp.stderr
    return json.loads(cp.stdout)


def test_readme_snippets_verify_real_deliveries(srv, fc, party, work,  # noqa: F811
                                                tmp_path):
    py = readme_block("python")
    js = readme_block("js")
    assert len(py.splitlines()) <= 15 and len(js.splitlines()) <= 20, "a few lines, not more"
    if not os.path.exists(NODE):
        pytest.fail(f"{NODE} is missing: install Debian's nodejs to run the README's snippet")

    cases, expect = [], []
    for method in ("POST", "GET"):
        line = Line(srv, fc, method)
        secret = create_secret(srv, line.org.id)
        answer, _, conn = call_once(srv, work, line, party, fc)
        body, _, target = contents(answer, answer, conn)
        for value, content in ((answer.header("X-Sfvopi-Signature"), body),
                               (upgrade_signature(conn), target)):
            check_signed(value, content, [secret])
            ok = {"secret": secret, "header": value,
                  "content": base64.b64encode(content).decode()}
            cases.append(ok)
            expect.append(True)
            # Another secret, altered content, and a t from 6 minutes ago (signed correctly)
            # must all be refused.
            cases.append(dict(ok, secret="whsec_" + "x" * 32))
            cases.append(dict(ok, content=base64.b64encode(content + b" ").decode()))
            old_t = int(time.time()) - 360
            cases.append(dict(ok, header=f"t={old_t},v1={mac(secret, old_t, content)}"))
            expect += [False, False, False]
    assert run_snippet(["/usr/bin/python3"], py + PY_HARNESS, cases, tmp_path, "v.py") == expect
    assert run_snippet([NODE], js + JS_HARNESS, cases, tmp_path, "v.js") == expect


# ---------------------------------------------------------------------------------------------
# The CLI.

def test_cli_create_list_revoke_and_their_errors(srv):
    org = srv.make_org()
    a = create_secret(srv, org.id)
    b = create_secret(srv, org.id)
    assert a != b
    rows = list_secrets(srv, org.id)
    assert [r[1] for r in rows] == [a[:12], b[:12]]
    # The list never shows more than 12 characters of a secret.
    out = srv.cli("webhook-secret", "list", "--org", org.id).stdout
    assert a[12:] not in out and b[12:] not in out

    cp = srv.cli("webhook-secret", "create", "--org", org.id)
    assert cp.returncode == 1 and cp.stdout == "", (cp.stdout, cp.stderr)
    assert cp.stderr == (f"sfvopi: org {org.id} has 2 active signing secrets already: "
                         "revoke one first\n")
    assert len(list_secrets(srv, org.id)) == 2

    cp = srv.cli("webhook-secret", "create", "--org", 987654)
    assert (cp.returncode, cp.stdout, cp.stderr) == (1, "", "sfvopi: org 987654 does not exist\n")
    cp = srv.cli("webhook-secret", "list", "--org", 987654)
    assert (cp.returncode, cp.stdout, cp.stderr) == (1, "", "sfvopi: org 987654 does not exist\n")

    revoke_secret(srv, rows[0][0])
    cp = srv.cli("webhook-secret", "revoke", rows[0][0])
    assert (cp.returncode, cp.stdout) == (1, ""), cp.stderr
    assert cp.stderr == f"sfvopi: webhook secret {rows[0][0]} is revoked already\n"
    cp = srv.cli("webhook-secret", "revoke", 987654321)
    assert (cp.returncode, cp.stdout, cp.stderr) == \
        (1, "", "sfvopi: webhook secret 987654321 does not exist\n")

    # A revoked secret leaves room for a new one.
    c = create_secret(srv, org.id)
    assert [r[1] for r in list_secrets(srv, org.id)] == [b[:12], c[:12]]

    for argv, msg in ((("webhook-secret", "create"), "missing --org"),
                      (("webhook-secret", "list"), "missing --org"),
                      (("webhook-secret", "revoke"), "missing SECRET_ID"),
                      (("webhook-secret", "revoke", "x"),
                       "SECRET_ID must be a positive integer, not 'x'"),
                      (("webhook-secret", "rotate"), "unknown subcommand 'webhook-secret rotate'")):
        cp = srv.cli(*argv)
        assert cp.returncode == 2 and cp.stdout == "", (argv, cp.stdout, cp.stderr)
        assert msg in cp.stderr, (argv, cp.stderr)
    cp = srv.cli("webhook-secret", "create", "--help")
    assert cp.returncode == 0 and cp.stdout.startswith(
        "usage: sfvopi webhook-secret create --org ID\n"), cp.stdout


# ---------------------------------------------------------------------------------------------
# No secret in any log.

def assert_no_secret_in(log, secrets):
    assert secrets
    for s in secrets:
        # Neither the secret nor its random part (a secret without its prefix is still one).
        assert s not in log and s[6:] not in log and s[6:22] not in log, \
            f"a signing secret appears in the log: {s[:12]}..."


def test_json_debug_log_holds_no_secret(tmp_path, fc, party, work):  # noqa: F811
    with base.engine_server(tmp_path, "--log-level", "debug", "--log-format", "json") as s:
        line = Line(s, fc)
        secret = create_secret(s, line.org.id)
        answer, hangup, conn = call_once(s, work, line, party, fc)
        check_signed(answer.header("X-Sfvopi-Signature"), answer.body, [secret])
        check_signed(upgrade_signature(conn), conn.path.encode(), [secret])
        lines = [ln for ln in s.log.splitlines() if ln.startswith("{")]
        assert any(json.loads(ln).get("level") == "debug" for ln in lines), "no debug line"
        assert any(LOADED in ln for ln in lines)
        assert_no_secret_in(s.log, [secret])


def test_text_debug_log_holds_no_secret(srv, fc, party, work):  # noqa: F811
    """Last in the module: every secret it created (one more, used on a call, when this test
    runs alone), against the whole debug log."""
    line = Line(srv, fc)
    secret = create_secret(srv, line.org.id)
    answer, _, _ = call_once(srv, work, line, party, fc)
    check_signed(answer.header("X-Sfvopi-Signature"), answer.body, [secret])
    assert any(" level=debug " in ln for ln in srv.log.splitlines()), \
        "the module's server does not log at debug level"
    assert_no_secret_in(srv.log, CREATED)
