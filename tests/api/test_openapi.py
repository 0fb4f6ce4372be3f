"""The OpenAPI 3.1 document, docs/openapi.json, held to the tools and to the running server.

1. Two OpenAPI validators from the npm registry, pinned in tests/docs/package-lock.json and
   installed on first use with `npm ci` into tests/docs/node_modules (git-ignored): Redocly CLI
   (`redocly lint`, its recommended rules with warnings as errors, tests/docs/redocly.yaml) and
   @seriousme/openapi-schema-validator (the official OpenAPI 3.1 JSON Schema).
2. The document's own consistency: every $ref resolves, every component is used, every example
   matches its schema, security and servers are where they belong.
3. The live server: every documented path + method + status is driven at least once (under both
   base paths) and each real response - status, body, headers - is checked against what the
   document says for it, with the small JSON Schema validator of openapi_check.py. The few
   statuses that cannot be provoked from outside are listed, with the reason, in UNDRIVABLE.
4. GET /openapi.json serves exactly docs/openapi.json, without a key.
"""

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import uuid
from dataclasses import dataclass
from typing import Callable

import pytest
import requests

from conftest import (BIN, BODY_LIMIT, REPO, Client, Server, base_env, fresh_db, new_number,
                      skip_unless_strict)
from openapi_check import (
    DOC, DOC_PATH, assert_matches, check_against, check_operation, deref, pointer, schema_errors,
)
from idem_helper import plant_pending
from sipp_helper import free_udp_port

NODE_DIR = REPO / "tests" / "docs"
NPM_CI = ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"]

METHODS = ["get", "post", "put", "delete"]  # the order of an Allow header
ROOT_PATHS = {"/healthz", "/readyz", "/metrics", "/openapi.json"}
PREFIXES = {"sfvopi": "/sfvopi", "superfone": "/superfone/sfvopi"}
NO_APP = "sfv_app_000000000000"


# ---------------------------------------------------------------------------------------------
# The schema validator (openapi_check.py) and the live checks below rely on it.

def test_schema_validator_can_fail():
    """The validator (openapi_check.py) rejects what it must, so that the live checks mean
    something."""
    app = DOC["components"]["schemas"]["App"]["example"]
    assert schema_errors({"$ref": "#/components/schemas/App"}, app) == []
    bad = [
        {**app, "extra": 1},
        {k: v for k, v in app.items() if k != "updated_at"},
        {**app, "app_id": "sfv_app_ABC"},
        {**app, "org_id": True},
        {**app, "hangup_url": 5},
        {**app, "status": "active"},
        {**app, "created_at": "2026-02-02T10:30:00Z"},
        {**app, "name": ""},
    ]
    for b in bad:
        assert schema_errors({"$ref": "#/components/schemas/App"}, b), b
    assert schema_errors({"type": ["string", "null"]}, None) == []
    assert schema_errors({"type": ["string", "null"]}, 0)
    assert schema_errors({"const": True}, 1)
    assert schema_errors({"oneOf": [{"type": "string"}, {"const": "a"}]}, "a")
    with pytest.raises(AssertionError, match="not supported"):
        schema_errors({"uniqueItems": True}, [])


# ---------------------------------------------------------------------------------------------
# 1. The validators.

def _pinned():
    return json.loads((NODE_DIR / "package.json").read_text())["devDependencies"]


def _installed_matches_pins():
    for name, version in _pinned().items():
        meta = NODE_DIR / "node_modules" / name / "package.json"
        if not meta.is_file() or json.loads(meta.read_text()).get("version") != version:
            return False
    return True


@pytest.fixture(scope="module")
def node_tools():
    """Install the pinned validators (npm ci) unless node_modules already has them."""
    if not (shutil.which("node") and shutil.which("npm")):
        skip_unless_strict("Node.js (20.19 or newer) and npm are not installed, so the pinned "
                           "OpenAPI validators (tests/docs/package.json) cannot run")
    if not _installed_matches_pins():
        cp = subprocess.run(NPM_CI, cwd=NODE_DIR, capture_output=True, text=True, timeout=600,
                            stdin=subprocess.DEVNULL)
        assert cp.returncode == 0, \
            f"{' '.join(NPM_CI)} in {NODE_DIR} failed:\n{cp.stdout}\n{cp.stderr}"
        assert _installed_matches_pins(), "npm ci did not install the pinned versions"
    env = dict(os.environ, REDOCLY_TELEMETRY="off", REDOCLY_SUPPRESS_UPDATE_NOTICE="true",
               NO_UPDATE_NOTIFIER="1", NO_COLOR="1")
    return NODE_DIR / "node_modules" / ".bin", env


def _first_json(text):
    """The first JSON object in a tool's output (banners may follow it)."""
    start = text.index("{")
    value, _ = json.JSONDecoder().raw_decode(text[start:])
    return value


def test_redocly_lint(node_tools):
    bindir, env = node_tools
    cp = subprocess.run([str(bindir / "redocly"), "lint", "--config",
                         str(NODE_DIR / "redocly.yaml"), "--format", "json", str(DOC_PATH)],
                        capture_output=True, text=True, env=env, timeout=300,
                        stdin=subprocess.DEVNULL)
    report = _first_json(cp.stdout)
    problems = [f"{p['severity']} {p['ruleId']}: {p['message']} at "
                f"{p['location'][0]['pointer'] if p.get('location') else '?'}"
                for p in report["problems"]]
    assert cp.returncode == 0 and not problems, "redocly lint:\n" + "\n".join(problems) + cp.stderr
    assert report["totals"]["errors"] == 0 and report["totals"]["warnings"] == 0, report["totals"]


def test_official_openapi_31_schema(node_tools):
    bindir, env = node_tools
    cp = subprocess.run([str(bindir / "validate-api"), str(DOC_PATH)], capture_output=True,
                        text=True, env=env, timeout=300, stdin=subprocess.DEVNULL)
    result = _first_json(cp.stdout)
    assert result.get("valid") is True, json.dumps(result, indent=1)[:4000] + cp.stderr


def test_validators_reject_a_broken_document(node_tools, tmp_path):
    """Both tools fail on a document with a schema error, so a green run means something."""
    bindir, env = node_tools
    bad = json.loads(DOC_PATH.read_text())
    bad["components"]["schemas"]["App"]["properties"]["name"]["type"] = "text"
    bad["paths"]["/apps"]["get"]["responses"]["200"]["headers"]["X-Request-Id"] = {"bogus": 1}
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(bad))
    cp = subprocess.run([str(bindir / "redocly"), "lint", "--config",
                         str(NODE_DIR / "redocly.yaml"), "--format", "json", str(path)],
                        capture_output=True, text=True, env=env, timeout=300,
                        stdin=subprocess.DEVNULL)
    assert cp.returncode != 0 and _first_json(cp.stdout)["totals"]["errors"] > 0, cp.stdout[:2000]
    cp = subprocess.run([str(bindir / "validate-api"), str(path)], capture_output=True,
                        text=True, env=env, timeout=300, stdin=subprocess.DEVNULL)
    assert _first_json(cp.stdout).get("valid") is False, cp.stdout[:2000]


# ---------------------------------------------------------------------------------------------
# 2. The document's own consistency.

def _walk(node, path="#"):
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, f"{path}/{k.replace('~', '~0').replace('/', '~1')}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}/{i}")


def operations(doc=DOC):
    for path, item in doc["paths"].items():
        for method in METHODS + ["patch", "head", "options", "trace"]:
            if method in item:
                yield path, method, item[method]


def documented_statuses(doc=DOC):
    return {(path, method.upper(), status) for path, method, op in operations(doc)
            for status in op["responses"]}


def test_document_is_plain_ascii_json_with_trailing_newline():
    raw = DOC_PATH.read_bytes()
    raw.decode("ascii")
    assert raw.endswith(b"}\n") and not raw.endswith(b"\n\n")
    assert DOC["openapi"].startswith("3.1.")


def test_every_ref_resolves_and_every_component_is_used():
    refs = {node["$ref"] for _, node in _walk(DOC) if isinstance(node, dict) and "$ref" in node}
    for ref in refs:
        pointer(DOC, ref)
    # A component counts as used when something outside its own definition refers to it
    # (x-method-not-allowed counts: it is how the 405 response is attached to each path).
    for kind, entries in DOC["components"].items():
        if kind == "securitySchemes":
            continue
        for name in entries:
            target = f"#/components/{kind}/{name}"
            users = {p for p, node in _walk(DOC)
                     if isinstance(node, dict) and node.get("$ref") == target
                     and not p.startswith(target + "/")}
            assert users, f"{target} is never referenced"


def test_examples_match_their_schemas():
    checked = 0
    for p, node in _walk(DOC):
        if not isinstance(node, dict):
            continue
        if "/content/" in p and "schema" in node and ("example" in node or "examples" in node):
            if p.split("/content/")[-1].startswith("text~1plain"):
                continue
            schema = node["schema"]
            values = [node["example"]] if "example" in node else []
            values += [deref(DOC, e)["value"] for e in node.get("examples", {}).values()]
            for v in values:
                assert_matches(schema, v, f"example at {p}")
                checked += 1
        if p.startswith("#/components/schemas/") and p.count("/") == 3 and "example" in node:
            assert_matches(node, node["example"], f"example of {p}")
            checked += 1
    assert checked >= 30, checked


def test_api_md_examples_are_in_the_document():
    """The objects of API.md sections 2 and 3, verbatim."""
    s = DOC["components"]["schemas"]
    assert s["App"]["example"] == {
        "app_id": "sfv_app_abc123xyz456", "org_id": 12345, "name": "My Voice App",
        "answer_url": "https://example.com/webhook/answer", "answer_method": "POST",
        "hangup_url": "https://example.com/webhook/hangup", "hangup_method": "POST",
        "fallback_answer_url": None, "fallback_answer_method": "POST",
        "status": "ACTIVE", "created_by": 67890,
        "created_at": "2026-02-02T10:30:00.000Z", "updated_at": None}
    assert s["Link"]["example"] == {
        "app_id": "sfv_app_abc123xyz456", "voip_number": "+918000000001", "org_id": 456,
        "status": "ACTIVE", "created_at": "2026-02-02T10:30:00.000Z", "updated_at": None}
    avail = DOC["paths"]["/available-numbers"]["get"]["responses"]["200"]["content"]
    assert avail["application/json"]["example"] == {
        "data": [{"id": 12345, "voip_number": "+918000000001", "provider": "exotel",
                  "status": "ACTIVE"}], "message": "success"}


def test_paths_security_and_servers():
    assert {s["url"] for s in DOC["servers"]} == {"http://{host}/sfvopi",
                                                  "http://{host}/superfone/sfvopi"}
    assert DOC["security"] == [{"ApiKey": []}]
    scheme = DOC["components"]["securitySchemes"]["ApiKey"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "X-API-Key")
    assert set(DOC["paths"]) == {
        "/apps", "/apps/{app_id}", "/apps/{app_id}/numbers",
        "/apps/{app_id}/numbers/{voip_number}", "/available-numbers", "/calls",
        "/calls/{call_id}", "/calls/{call_id}/hangup"} | ROOT_PATHS
    for path, method, op in operations():
        if path in ROOT_PATHS:
            assert op.get("security") == [], (path, method)
            assert [s["url"] for s in DOC["paths"][path]["servers"]] == ["http://{host}"]
            assert "401" not in op["responses"] and "429" not in op["responses"]
        else:
            assert "security" not in op, f"{method} {path} must inherit the API key"
            assert "servers" not in DOC["paths"][path]
            for status in ("200", "401", "413", "429", "500"):
                assert status in op["responses"], (path, method, status)


def test_allow_of_each_path_lists_its_methods():
    for path, item in DOC["paths"].items():
        ext = item["x-method-not-allowed"]
        assert ext["response"] == {"$ref": "#/components/responses/MethodNotAllowed"}
        assert ext["allow"] == ", ".join(m.upper() for m in METHODS if m in item), path


# ---------------------------------------------------------------------------------------------
# 3. The live server against the document.

# -- servers ---------------------------------------------------------------------------------

@dataclass
class World:
    """What the cases of one server need: the server and a provisioned organisation."""
    server: Server
    key: str
    org_id: int
    app_id: str = ""
    linked: str = ""    # a number ACTIVE-linked to app_id
    free: list = None   # inventory numbers nobody links (the cases that link one take it)


def provision(server, user=67890, nfree=12):
    org = server.make_org(user=user)
    world = World(server, org.key, org.id, free=org.add_numbers(nfree))
    api = server.client(org.key)
    world.app_id = api.create_app(name="openapi target")["app_id"]
    world.linked = world.free.pop()
    api.link(world.app_id, world.linked)
    return world


@pytest.fixture(scope="module")
def main_world(server):
    return provision(server)


def _sqlite_server(tmp_path_factory, tag, extra_args=()):
    """A server of our own on SQLite whatever backend the suite runs on (the statuses it drives,
    500, 503, 429 and metrics off, are the contract's, not a backend's), with the default
    settings (rate limiting on) unless extra_args say otherwise."""
    workdir = tmp_path_factory.mktemp(tag)
    db_dir = workdir / "db"
    db_dir.mkdir()
    url = f"sqlite:{db_dir / 'sfvopi.db'}"
    argv = [BIN, "--db", url, "serve", "--listen", "127.0.0.1:0", "--threads", "2", *extra_args]
    return Server(url, workdir, argv=argv, env=base_env()).start(), db_dir


@pytest.fixture(scope="module")
def fault_world(tmp_path_factory):
    """A server whose database lost its `apps` and `numbers` tables after provisioning: every
    API route then fails inside the store (key checks still work) and must answer its 500."""
    srv, db_dir = _sqlite_server(tmp_path_factory, "fault")
    world = provision(srv, nfree=1)
    con = sqlite3.connect(db_dir / "sfvopi.db", timeout=10)
    con.execute("ALTER TABLE apps RENAME TO apps_gone")
    con.execute("ALTER TABLE numbers RENAME TO numbers_gone")
    con.execute("ALTER TABLE calls RENAME TO calls_gone")
    con.commit()
    con.close()
    yield world
    srv.stop()


@pytest.fixture(scope="module")
def engine_world(tmp_path_factory):
    """A server with the call engine on the suite's backend. Its trunk is a UDP socket of ours
    that never answers: POST /calls answers 200 at once (the call is asynchronous), and each
    call ends by itself after its ring_timeout."""
    tmp = tmp_path_factory.mktemp("engine")
    trunk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    trunk.bind(("127.0.0.1", 0))
    rtp_low = free_udp_port(even=True)
    with fresh_db(tmp, "engine") as url:
        argv = [BIN, "--db", url, "serve", "--listen", "127.0.0.1:0", "--threads", "2",
                "--sip-listen", f"127.0.0.1:{free_udp_port()}",
                "--sip-trunk", f"sip:127.0.0.1:{trunk.getsockname()[1]}",
                "--rtp-ports", f"{rtp_low}-{rtp_low + 19}"]
        srv = Server(url, tmp, argv=argv).start()
        try:
            yield provision(srv, nfree=1)
        finally:
            rc = srv.stop()
            trunk.close()
        assert rc == 0, f"engine server exit code {rc}; log tail:\n{srv.log[-4000:]}"


@pytest.fixture(scope="module")
def limited_world(tmp_path_factory):
    """A server that allows one request a second per key, burst 1."""
    srv, _ = _sqlite_server(tmp_path_factory, "limited", ["--rate-limit", "1", "--rate-burst", "1"])
    world = World(srv, "", 0)
    yield world
    srv.stop()


@pytest.fixture(scope="module")
def nometrics_server(tmp_path_factory):
    srv, _ = _sqlite_server(tmp_path_factory, "nometrics", ["--metrics", "off"])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def unready_server(tmp_path_factory):
    """A server whose database directory vanished before any worker opened a connection."""
    srv, db_dir = _sqlite_server(tmp_path_factory, "unready")
    shutil.rmtree(db_dir)
    yield srv
    srv.stop()


# -- the cases --------------------------------------------------------------------------------

def big():
    return b'{"name":"big","pad":"' + b"x" * BODY_LIMIT + b'"}'


@dataclass
class Case:
    path: str
    method: str
    status: int
    run: Callable    # (world, client) -> requests.Response
    world: str = "main"
    message: str = None
    note: str = ""

    @property
    def id(self):
        return f"{self.method} {self.path} {self.status}{' ' + self.note if self.note else ''}"


J = {"Content-Type": "application/json"}


def _raw(c, method, path, data=None, headers=None, key=True):
    h = dict(headers or {})
    if key and c.key:
        h["X-API-Key"] = c.key
    return requests.request(method, c.server.url + c.prefix + path, data=data, headers=h,
                            timeout=15)


def _new_app(w, c):
    return c.create_app(name="case app")["app_id"]


def _take_free(w):
    return w.free.pop()


def _seed_call(w):
    """A call record of the world's organisation, written into its database as the call engine
    would (no engine runs here); returns its call_uuid."""
    call_uuid = str(uuid.uuid4())
    row = (call_uuid, "sfv_ob_req_" + uuid.uuid4().hex[:12], w.org_id, w.app_id, w.linked,
           "+14155550100", "OUTBOUND", "COMPLETED", 1770028200000, 1770028205000, 1770028265000,
           60, "16", 1770028200000)
    sql = ('INSERT INTO calls(call_uuid, request_uuid, org_id, app_id, "from", "to", direction, '
           "status, started_at, answered_at, ended_at, duration, hangup_cause, created_at) ")
    url = w.server.db_url
    if url.startswith("sqlite:"):
        con = sqlite3.connect(url[len("sqlite:"):], timeout=10)
        with con:
            con.execute(sql + "VALUES (" + ",".join("?" * len(row)) + ")", row)
        con.close()
    else:
        vals = ",".join(str(v) if isinstance(v, int) else f"'{v}'" for v in row)
        cp = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-q", "-c",
                             sql + f"VALUES ({vals})"], capture_output=True, text=True, timeout=30)
        assert cp.returncode == 0, cp.stderr
    return call_uuid


def _engine_call(w, c):
    """A call placed through the engine (it rings out after a second); returns its call_uuid."""
    return c.post("/calls", json=_call_body(w, ring_timeout=1)).json()["data"]["call_uuid"]


def _call_body(w, **over):
    b = {"from": w.linked or "+918000000001", "to": "+14155550100",
         "answer_url": "https://example.com/webhook/answer"}
    b.update(over)
    return b


def _idem_in_progress(w, c):
    """AGENT.md section 5: a key still being answered (a claim planted as another node's)."""
    key, body = "oa-" + uuid.uuid4().hex, _call_body(w)
    plant_pending(w.server.db_url, w.org_id, key, body)
    return c.post("/calls", json=body, headers={"Idempotency-Key": key})


def _idem_reused(w, c):
    """A key whose first request (a kept 400) had another body."""
    key = "oa-" + uuid.uuid4().hex
    assert c.post("/calls", json=_call_body(w, ring_timeout=0),
                  headers={"Idempotency-Key": key}).status_code == 400
    return c.post("/calls", json=_call_body(w, ring_timeout=5), headers={"Idempotency-Key": key})


CASES = [
    # POST /apps
    Case("/apps", "POST", 200, lambda w, c: c.post("/apps", json={
        "name": "My Voice App", "answer_url": "https://example.com/webhook/answer"})),
    Case("/apps", "POST", 200, lambda w, c: c.post("/apps", json={
        "name": "Full", "answer_url": "https://example.com/a", "answer_method": "get",
        "hangup_url": "https://example.com/h", "hangup_method": "GET",
        "fallback_answer_url": None, "fallback_answer_method": "post"}), note="every field"),
    Case("/apps", "POST", 400, lambda w, c: c.post("/apps", json={
        "name": "x", "answer_url": "ftp://example.com"}), message="Invalid request body",
        note="field"),
    Case("/apps", "POST", 400, lambda w, c: _raw(c, "POST", "/apps", b"[1]", J),
         message="Invalid request body", note="whole"),
    Case("/apps", "POST", 401, lambda w, c: _raw(c, "POST", "/apps", b"{}", J, key=False)),
    Case("/apps", "POST", 413, lambda w, c: _raw(c, "POST", "/apps", big(), J)),
    # GET /apps
    Case("/apps", "GET", 200, lambda w, c: c.get("/apps")),
    Case("/apps", "GET", 401, lambda w, c: c.get("/apps", key="sfvk_" + "A" * 40)),
    Case("/apps", "GET", 413, lambda w, c: _raw(c, "GET", "/apps", big(), J)),
    # GET /apps/{app_id}
    Case("/apps/{app_id}", "GET", 200, lambda w, c: c.get(f"/apps/{w.app_id}")),
    Case("/apps/{app_id}", "GET", 404, lambda w, c: c.get(f"/apps/{NO_APP}"),
         message="SFVoPI app not found"),
    Case("/apps/{app_id}", "GET", 401, lambda w, c: c.get(f"/apps/{w.app_id}", key=None)),
    Case("/apps/{app_id}", "GET", 413, lambda w, c: _raw(c, "GET", f"/apps/{w.app_id}", big())),
    # PUT /apps/{app_id}
    Case("/apps/{app_id}", "PUT", 200, lambda w, c: c.put(
        f"/apps/{_new_app(w, c)}", json={"status": "INACTIVE", "hangup_url": None,
                                         "answer_method": "get"})),
    Case("/apps/{app_id}", "PUT", 400, lambda w, c: c.put(f"/apps/{w.app_id}",
                                                          json={"name": None}),
         message="Invalid request body"),
    Case("/apps/{app_id}", "PUT", 404, lambda w, c: c.put(f"/apps/{NO_APP}", json={"name": "n"}),
         message="SFVoPI app not found"),
    Case("/apps/{app_id}", "PUT", 401, lambda w, c: c.put(f"/apps/{w.app_id}", json={},
                                                          key="bad")),
    Case("/apps/{app_id}", "PUT", 413, lambda w, c: _raw(c, "PUT", f"/apps/{w.app_id}", big(), J)),
    # DELETE /apps/{app_id}
    Case("/apps/{app_id}", "DELETE", 200, lambda w, c: c.delete(f"/apps/{_new_app(w, c)}")),
    Case("/apps/{app_id}", "DELETE", 404, lambda w, c: c.delete(f"/apps/{NO_APP}"),
         message="SFVoPI app not found"),
    Case("/apps/{app_id}", "DELETE", 401, lambda w, c: c.delete(f"/apps/{w.app_id}", key=None)),
    Case("/apps/{app_id}", "DELETE", 413,
         lambda w, c: _raw(c, "DELETE", f"/apps/{w.app_id}", big())),
    # POST /apps/{app_id}/numbers
    Case("/apps/{app_id}/numbers", "POST", 200, lambda w, c: c.post(
        f"/apps/{w.app_id}/numbers", json={"voip_number": _take_free(w)}), note="new"),
    Case("/apps/{app_id}/numbers", "POST", 200, lambda w, c: c.post(
        f"/apps/{w.app_id}/numbers", json={"voip_number": w.linked}), note="idempotent"),
    Case("/apps/{app_id}/numbers", "POST", 400, lambda w, c: c.post(
        f"/apps/{w.app_id}/numbers", json={"voip_number": "12"}),
        message="Invalid request body", note="invalid"),
    Case("/apps/{app_id}/numbers", "POST", 400, lambda w, c: c.post(
        f"/apps/{w.app_id}/numbers", json={"voip_number": new_number()}),
        message="VoIP number not found or does not belong to this org", note="not owned"),
    Case("/apps/{app_id}/numbers", "POST", 404, lambda w, c: c.post(
        f"/apps/{NO_APP}/numbers", json={"voip_number": w.linked}), message="App not found"),
    Case("/apps/{app_id}/numbers", "POST", 409, lambda w, c: c.post(
        f"/apps/{_new_app(w, c)}/numbers", json={"voip_number": w.linked}),
        message="VoIP number is already linked to another SFVoPI app"),
    Case("/apps/{app_id}/numbers", "POST", 401, lambda w, c: c.post(
        f"/apps/{w.app_id}/numbers", json={"voip_number": w.linked}, key=None)),
    Case("/apps/{app_id}/numbers", "POST", 413,
         lambda w, c: _raw(c, "POST", f"/apps/{w.app_id}/numbers", big(), J)),
    # GET /apps/{app_id}/numbers
    Case("/apps/{app_id}/numbers", "GET", 200, lambda w, c: c.get(f"/apps/{w.app_id}/numbers")),
    Case("/apps/{app_id}/numbers", "GET", 404, lambda w, c: c.get(f"/apps/{NO_APP}/numbers"),
         message="App not found"),
    Case("/apps/{app_id}/numbers", "GET", 401,
         lambda w, c: c.get(f"/apps/{w.app_id}/numbers", key=None)),
    Case("/apps/{app_id}/numbers", "GET", 413,
         lambda w, c: _raw(c, "GET", f"/apps/{w.app_id}/numbers", big())),
    # DELETE /apps/{app_id}/numbers/{voip_number}
    Case("/apps/{app_id}/numbers/{voip_number}", "DELETE", 200,
         lambda w, c: _unlink_fresh(w, c)),
    Case("/apps/{app_id}/numbers/{voip_number}", "DELETE", 404,
         lambda w, c: c.delete(f"/apps/{NO_APP}/numbers/%2B918000000001"),
         message="App not found", note="app"),
    Case("/apps/{app_id}/numbers/{voip_number}", "DELETE", 404,
         lambda w, c: c.delete(f"/apps/{w.app_id}/numbers/{new_number()}"),
         message="Number not linked to this app", note="number"),
    Case("/apps/{app_id}/numbers/{voip_number}", "DELETE", 401,
         lambda w, c: c.delete(f"/apps/{w.app_id}/numbers/{w.linked}", key=None)),
    Case("/apps/{app_id}/numbers/{voip_number}", "DELETE", 413,
         lambda w, c: _raw(c, "DELETE", f"/apps/{w.app_id}/numbers/%2B{w.linked[1:]}", big())),
    # GET /available-numbers
    Case("/available-numbers", "GET", 200, lambda w, c: c.get("/available-numbers")),
    Case("/available-numbers", "GET", 401, lambda w, c: c.get("/available-numbers", key=None)),
    Case("/available-numbers", "GET", 413, lambda w, c: _raw(c, "GET", "/available-numbers",
                                                             big())),
    # POST /calls (its 200 and the records the engine writes: the engine world)
    Case("/calls", "POST", 200, lambda w, c: c.post("/calls", json=_call_body(w, ring_timeout=1)),
         world="engine"),
    Case("/calls", "POST", 400, lambda w, c: c.post("/calls", json=_call_body(w, ring_timeout=0)),
         message="Invalid request body", note="body"),
    Case("/calls", "POST", 400, lambda w, c: c.post("/calls", json=_call_body(w, **{
        "from": "+918000000001"})), message="VoIP number +918000000001 is not linked to any "
         "SFVoPI app", note="not linked"),
    Case("/calls", "POST", 401, lambda w, c: c.post("/calls", json=_call_body(w), key=None)),
    Case("/calls", "POST", 413, lambda w, c: _raw(c, "POST", "/calls", big(), J)),
    Case("/calls", "POST", 409, lambda w, c: _idem_in_progress(w, c),
         message="A request with this Idempotency-Key is in progress"),
    Case("/calls", "POST", 422, lambda w, c: _idem_reused(w, c),
         message="Idempotency-Key reused with a different request"),
    Case("/calls", "POST", 500, lambda w, c: c.post("/calls", json=_call_body(w)),
         message="Failed to initiate outbound call: calling is not configured", note="no engine"),
    # GET /calls
    Case("/calls", "GET", 200, lambda w, c: c.get("/calls")),
    Case("/calls", "GET", 200, lambda w, c: (_seed_call(w), _seed_call(w),
                                             c.get("/calls?limit=1"))[-1], note="page"),
    Case("/calls", "GET", 200, lambda w, c: (_engine_call(w, c), c.get("/calls"))[-1],
         world="engine", note="engine records"),
    Case("/calls", "GET", 400, lambda w, c: c.get("/calls?limit=0"),
         message="Invalid request body"),
    Case("/calls", "GET", 401, lambda w, c: c.get("/calls", key=None)),
    Case("/calls", "GET", 413, lambda w, c: _raw(c, "GET", "/calls", big())),
    # GET /calls/{call_id}
    Case("/calls/{call_id}", "GET", 200, lambda w, c: c.get(f"/calls/{_seed_call(w)}")),
    Case("/calls/{call_id}", "GET", 200, lambda w, c: c.get(f"/calls/{_engine_call(w, c)}"),
         world="engine", note="engine record"),
    Case("/calls/{call_id}", "GET", 404, lambda w, c: c.get(f"/calls/{uuid.uuid4()}"),
         message="Call not found"),
    Case("/calls/{call_id}", "GET", 401, lambda w, c: c.get(f"/calls/{uuid.uuid4()}", key=None)),
    Case("/calls/{call_id}", "GET", 413, lambda w, c: _raw(c, "GET", f"/calls/{uuid.uuid4()}",
                                                           big())),
    # POST /calls/{call_id}/hangup
    Case("/calls/{call_id}/hangup", "POST", 200,
         lambda w, c: c.post(f"/calls/{_engine_call(w, c)}/hangup"), world="engine"),
    Case("/calls/{call_id}/hangup", "POST", 404,
         lambda w, c: c.post(f"/calls/{uuid.uuid4()}/hangup"), message="Call not found"),
    Case("/calls/{call_id}/hangup", "POST", 409,
         lambda w, c: c.post(f"/calls/{_seed_call(w)}/hangup"), message="Call already ended"),
    Case("/calls/{call_id}/hangup", "POST", 401,
         lambda w, c: c.post(f"/calls/{uuid.uuid4()}/hangup", key=None)),
    Case("/calls/{call_id}/hangup", "POST", 413,
         lambda w, c: _raw(c, "POST", f"/calls/{uuid.uuid4()}/hangup", big(), J)),
    # Operational endpoints (no key; garbage keys are ignored there)
    Case("/healthz", "GET", 200, lambda w, c: _raw(c, "GET", "/healthz", key=False)),
    Case("/healthz", "GET", 413, lambda w, c: _raw(c, "GET", "/healthz", big(), key=False)),
    Case("/readyz", "GET", 200, lambda w, c: _raw(c, "GET", "/readyz", key=False)),
    Case("/readyz", "GET", 503, lambda w, c: _raw(c, "GET", "/readyz", key=False),
         world="unready"),
    Case("/readyz", "GET", 413, lambda w, c: _raw(c, "GET", "/readyz", big(), key=False)),
    Case("/metrics", "GET", 200, lambda w, c: _raw(c, "GET", "/metrics", key=False)),
    Case("/metrics", "GET", 404, lambda w, c: _raw(c, "GET", "/metrics", key=False),
         world="nometrics", message="Not found"),
    Case("/metrics", "GET", 413, lambda w, c: _raw(c, "GET", "/metrics", big(), key=False)),
    Case("/openapi.json", "GET", 200, lambda w, c: _raw(c, "GET", "/openapi.json", key=False)),
    Case("/openapi.json", "GET", 413,
         lambda w, c: _raw(c, "GET", "/openapi.json", big(), key=False)),
]


def _unlink_fresh(w, c):
    number = _take_free(w)
    c.link(w.app_id, number)
    return c.delete(f"/apps/{w.app_id}/numbers/%2B{number[1:]}")


# Every authenticated operation, driven to its 500 (store failure) and its 429 (empty bucket).
FAULT_MESSAGES = {
    ("/apps", "POST"): "Failed to create SFVoPI app",
    ("/apps", "GET"): "Failed to get SFVoPI apps",
    ("/apps/{app_id}", "GET"): "Failed to get SFVoPI app",
    ("/apps/{app_id}", "PUT"): "Failed to update SFVoPI app",
    ("/apps/{app_id}", "DELETE"): "Failed to delete SFVoPI app",
    ("/apps/{app_id}/numbers", "POST"): "Failed to link number",
    ("/apps/{app_id}/numbers", "GET"): "Failed to get numbers",
    ("/apps/{app_id}/numbers/{voip_number}", "DELETE"): "Failed to unlink number",
    ("/available-numbers", "GET"): "Failed to get available numbers",
    ("/calls", "POST"): "Failed to initiate outbound call",
    ("/calls", "GET"): "Failed to get calls",
    ("/calls/{call_id}", "GET"): "Failed to get call",
    ("/calls/{call_id}/hangup", "POST"): "Failed to hang up call",
}


def _valid_request(path, method):
    """A request that would succeed on a healthy server, for (path, method)."""
    body = {("/apps", "POST"): {"name": "n", "answer_url": "https://example.com/a"},
            ("/apps/{app_id}", "PUT"): {"name": "renamed"},
            ("/apps/{app_id}/numbers", "POST"): None,
            ("/calls", "POST"): "call"}.get((path, method), "none")

    def run(w, c):
        concrete = path.replace("{app_id}", w.app_id).replace(
            "{voip_number}", "%2B" + (w.linked or "+918000000001")[1:]).replace(
            "{call_id}", str(uuid.uuid4()))
        payload = body
        if payload == "call":
            payload = _call_body(w)
        if payload is None:
            payload = {"voip_number": w.free[-1] if w.free else w.linked}
        if payload == "none":
            return c.request(method, concrete)
        return c.request(method, concrete, json=payload)
    return run


for (_path, _method), _prefix in FAULT_MESSAGES.items():
    CASES.append(Case(_path, _method, 500, _valid_request(_path, _method), world="fault",
                      message=None))


def _after_one(run):
    """Spend the key's only token with a GET, then make the request: 429."""
    def go(w, c):
        assert c.get("/apps").status_code == 200
        return run(w, c)
    return go


for (_path, _method) in FAULT_MESSAGES:
    CASES.append(Case(_path, _method, 429, _after_one(_valid_request(_path, _method)),
                      world="limited", message="Too many requests"))

# Documented statuses that no black-box test can provoke, with the reason.
UNDRIVABLE = {
    ("/metrics", "GET", "500"): "only when rendering the metrics runs out of memory",
}


def test_every_documented_status_is_driven():
    driven = {(c.path, c.method, str(c.status)) for c in CASES}
    documented = documented_statuses()
    assert set(UNDRIVABLE) <= documented, set(UNDRIVABLE) - documented
    assert driven <= documented, f"driven but not documented: {sorted(driven - documented)}"
    missing = documented - driven - set(UNDRIVABLE)
    assert not missing, f"documented but never driven: {sorted(missing)}"


def _client(world, prefix):
    return Client(world.server, world.key, prefix)


@pytest.fixture(scope="module")
def worlds(request):
    """Resolves a world name to its fixture lazily, so that a run of a few cases starts only
    the servers those cases need."""
    cache = {}

    def get(name):
        if name not in cache:
            if name == "main":
                cache[name] = request.getfixturevalue("main_world")
            elif name == "engine":
                cache[name] = request.getfixturevalue("engine_world")
            elif name == "fault":
                cache[name] = request.getfixturevalue("fault_world")
            elif name == "limited":
                cache[name] = request.getfixturevalue("limited_world")
            elif name == "nometrics":
                cache[name] = World(request.getfixturevalue("nometrics_server"), "", 0)
            elif name == "unready":
                cache[name] = World(request.getfixturevalue("unready_server"), "", 0)
        return cache[name]
    return get


def _case_params():
    for case in CASES:
        root = case.path in ROOT_PATHS
        for label, prefix in ([("root", "")] if root else PREFIXES.items()):
            yield pytest.param(case, prefix, id=f"{case.id} [{label}]")


@pytest.mark.parametrize("case,prefix", list(_case_params()))
def test_documented_response(worlds, case, prefix):
    world = worlds(case.world)
    if case.world == "limited":
        # A fresh key (a fresh bucket) for every case.
        org = world.server.make_org(user=1)
        world = World(world.server, org.key, org.id, free=org.add_numbers(1))
        world.app_id = NO_APP
    resp = case.run(world, _client(world, prefix))
    body = check_operation(case.path, case.method, resp, case.status, case.message)
    if case.status == 500:
        assert body["message"].startswith(FAULT_MESSAGES[(case.path, case.method)] + ": "), body
    if case.world == "fault":
        # Every route fails in a statement on a missing table: the generic reason for that.
        assert body["message"] == FAULT_MESSAGES[(case.path, case.method)] + ": database error", \
            body
    if case.status == 429:
        assert int(resp.headers["Retry-After"]) >= 1
        assert resp.headers["X-RateLimit-Limit"] == "1"
        assert resp.headers["X-RateLimit-Remaining"] == "0"
    if case.world in ("fault", "limited"):
        # Beyond: with rate limiting on, authenticated answers carry the rate-limit headers
        # (the shared `server` of conftest runs with limiting off).
        for h in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
            assert h in resp.headers, (case.id, h, dict(resp.headers))


@pytest.fixture(scope="module")
def default_server(tmp_path_factory):
    srv, _ = _sqlite_server(tmp_path_factory, "defaults")
    yield srv
    srv.stop()


def test_rate_limit_headers_with_default_settings(default_server):
    """Default bucket: 200 requests (refilled at 100 a second). Every answer to an
    authenticated request carries the headers; answers decided before the key do not."""
    world = provision(default_server, nfree=1)
    c = _client(world, "/sfvopi")
    authed = [
        ("/apps", "GET", c.get("/apps"), 200),
        ("/apps", "POST", c.post("/apps", json={"name": ""}), 400),
        ("/apps/{app_id}", "GET", c.get(f"/apps/{NO_APP}"), 404),
        ("/apps", "POST", _raw(c, "POST", "/apps", big(), J), 413),
    ]
    for path, method, resp, status in authed:
        check_operation(path, method, resp, status)
        assert resp.headers["X-RateLimit-Limit"] == "200", resp.headers
        assert 0 <= int(resp.headers["X-RateLimit-Remaining"]) < 200
        assert int(resp.headers["X-RateLimit-Reset"]) >= 0
        assert "Retry-After" not in resp.headers
    unauthed = [c.get("/apps", key=None), _raw(c, "PATCH", "/apps"), _raw(c, "GET", "/nope"),
                _raw(c, "GET", "/healthz")]
    for resp in unauthed:
        assert not any(h.lower().startswith("x-ratelimit") for h in resp.headers), resp.headers


def _concrete(path):
    return path.replace("{app_id}", NO_APP).replace("{voip_number}", "%2B918000000001").replace(
        "{call_id}", "9b2f0c1e-4d5a-4b6c-8d7e-0f1a2b3c4d5e")


def _allow_params():
    for path, item in DOC["paths"].items():
        allowed = item["x-method-not-allowed"]["allow"].split(", ")
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]:
            if method not in allowed:
                for prefix in ([""] if path in ROOT_PATHS else PREFIXES.values()):
                    yield pytest.param(path, method, prefix, id=f"{method} {prefix}{path}")


@pytest.mark.parametrize("path,method,prefix", list(_allow_params()))
def test_method_not_allowed_as_documented(server, main_world, path, method, prefix):
    resp = requests.request(method, server.url + prefix + _concrete(path),
                            headers={"X-API-Key": main_world.key}, timeout=15)
    assert resp.status_code == 405, resp.text
    check_against(DOC["components"]["responses"]["MethodNotAllowed"], resp, f"{method} {path}")
    assert resp.headers["Allow"] == DOC["paths"][path]["x-method-not-allowed"]["allow"]


@pytest.mark.parametrize("path", ["/nope", "/sfvopi/nope", "/superfone/sfvopi/apps/x/y",
                                  "/openapi.yaml", "/sfvopi/openapi.json"])
def test_unknown_path_as_documented(server, main_world, path):
    for key in (None, main_world.key):
        resp = requests.get(server.url + path, headers={"X-API-Key": key} if key else {},
                            timeout=15)
        assert resp.status_code == 404, resp.text
        check_against(DOC["components"]["responses"]["NotFound"], resp, f"GET {path}")


def test_list_responses_are_not_trivially_empty(main_world):
    """The lists checked above hold real objects, not only empty arrays."""
    c = _client(main_world, "/sfvopi")
    _seed_call(main_world)
    for template in ("/apps", "/apps/{app_id}/numbers", "/available-numbers", "/calls"):
        resp = c.get(template.replace("{app_id}", main_world.app_id))
        assert len(check_operation(template, "GET", resp, 200)["data"]) >= 1, template


# ---------------------------------------------------------------------------------------------
# 4. GET /openapi.json serves this very document.

def test_openapi_json_is_served_verbatim(server):
    resp = requests.get(server.url + "/openapi.json", timeout=15)
    assert resp.status_code == 200, f"GET /openapi.json: {resp.status_code} {resp.text[:200]!r}"
    assert resp.headers.get("Content-Type", "").split(";")[0] == "application/json", resp.headers
    assert resp.json() == DOC
    assert resp.content == DOC_PATH.read_bytes(), "the body is not byte-identical to the file"
    # No key needed, and a bad one is ignored.
    for key in ("garbage", None):
        again = requests.get(server.url + "/openapi.json",
                             headers={"X-API-Key": key} if key else {}, timeout=15)
        assert again.status_code == 200 and again.content == resp.content
