"""Store failures under a running server: every documented 500 of the API (API.md sections 2 and
3, CALLS.md section 2, and the call-record routes of docs/openapi.json) with its exact text.

A server with the call engine runs on the suite's backend (SQLite, or PostgreSQL when
$SFVOPI_TEST_PG_URL is set). Each test provisions an organisation (key, app, linked and free
numbers), then breaks the database underneath the running server, makes one request that passes
every earlier check (key, body, app exists) and so reaches the query the fault hits, and repairs
the database. The answer must be
    500 {"message": "<the route's documented text>: database error"}
as JSON with the X-Request-Id, and the organisation must look exactly as before (a failed write
changes nothing). The same request then succeeds on the repaired database, which shows that it
was a good request that only the fault stopped.

Two kinds of faults:
- a renamed table (`apps`, `links`, `numbers`, `calls`): every statement on it fails, also the
  ones the server prepared before (both backends prepare again after a schema change);
- a trigger that refuses one kind of write (INSERT or UPDATE) on one table: the reads before that
  write (the 404 checks) still work, so the failure comes from the write itself, inside the
  route's transaction. The server log then names the operation and the trigger's text, which
  shows where the failure happened.
A failed key check (the `api_keys` table renamed, a key never used before, so not cached) also
answers the route's 500 (API.md section 1, Responses).
"""

import itertools
import re
import socket
import sqlite3
import subprocess
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Optional

import pytest

from conftest import (
    BIN, PREFIXES, REQ_ID_RE, Server, assert_error, fresh_db, ok, wait_until,
)
from openapi_check import DOC, check_operation, deref
from sipp_helper import free_udp_port, port_taken

REASON = "database error"  # the generic reason of a failed statement (never driver text)
FAULT_TEXT = "injected fault"
FINAL = {"COMPLETED", "NO_ANSWER", "BUSY", "CANCELED", "FAILED"}

_callee_counter = itertools.count(1000)


# ---------------------------------------------------------------------------------------------
# Breaking and repairing the database underneath the server.

def db_exec(url, *statements):
    if url.startswith("sqlite:"):
        con = sqlite3.connect(url[len("sqlite:"):], timeout=10)
        try:
            for sql in statements:
                con.execute(sql)
            con.commit()
        finally:
            con.close()
    else:
        cp = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-q", "-c",
                             "; ".join(statements)], capture_output=True, text=True, timeout=30)
        assert cp.returncode == 0, cp.stderr


@dataclass
class Fault:
    kind: str                 # "rename" or "refuse"
    table: str
    op: str = ""              # refuse: the refused write, INSERT or UPDATE

    @property
    def trigger(self):
        return f"sfvopi_fault_{self.table}_{self.op.lower()}"

    def statements(self, url, repair):
        pg = not url.startswith("sqlite:")
        if self.kind == "rename":
            a, b = self.table, self.table + "_broken"
            return [f"ALTER TABLE {b if repair else a} RENAME TO {a if repair else b}"]
        if repair:
            return [f"DROP TRIGGER {self.trigger}" + (f" ON {self.table}" if pg else "")]
        if pg:
            return [f"CREATE TRIGGER {self.trigger} BEFORE {self.op} ON {self.table} "
                    "FOR EACH ROW EXECUTE FUNCTION sfvopi_fault()"]
        return [f"CREATE TRIGGER {self.trigger} BEFORE {self.op} ON {self.table} "
                f"BEGIN SELECT RAISE(ABORT, '{FAULT_TEXT}'); END"]

    def __str__(self):
        return f"{self.table} renamed" if self.kind == "rename" else \
            f"{self.op} on {self.table} refused"


def rename(table):
    return Fault("rename", table)


def refuse(op, table):
    return Fault("refuse", table, op)


class broken:
    """Context manager: the fault is in place inside the block, repaired after it."""

    def __init__(self, srv, fault):
        self.srv, self.fault = srv, fault

    def __enter__(self):
        db_exec(self.srv.db_url, *self.fault.statements(self.srv.db_url, repair=False))
        return self

    def __exit__(self, *exc):
        db_exec(self.srv.db_url, *self.fault.statements(self.srv.db_url, repair=True))
        return False


# ---------------------------------------------------------------------------------------------
# The server: the call engine on, its trunk a UDP socket of ours that never answers (outbound
# calls ring out after their ring_timeout), so that POST /calls reaches the engine.

class Trunk:
    """A UDP socket standing in for the carrier: records what sfvopi sends it."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.seen = []

    def drain(self):
        while True:
            try:
                data, _ = self.sock.recvfrom(65535)
            except BlockingIOError:
                return
            self.seen.append(data.decode("utf-8", errors="replace"))

    def invites_to(self, number):
        """The INVITEs (retransmissions included) whose Request-URI names `number`."""
        self.drain()
        digits = number.lstrip("+")
        return [m for m in self.seen if m.startswith("INVITE ") and digits in m.split("\r\n")[0]]

    def close(self):
        self.sock.close()


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dbfault")
    trunk = Trunk()
    sip_port, rtp_low = free_udp_port(), free_udp_port(even=True)
    try:
        with fresh_db(tmp, "dbfault") as url:
            argv = [BIN, "--db", url, "serve", "--listen", "127.0.0.1:0", "--threads", "2",
                    "--sip-listen", f"127.0.0.1:{sip_port}",
                    "--sip-trunk", f"sip:127.0.0.1:{trunk.port}",
                    "--rtp-ports", f"{rtp_low}-{rtp_low + 39}"]
            s = Server(url, tmp, argv=argv).start()
            s.trunk = trunk
            try:
                assert wait_until(lambda: port_taken(sip_port), timeout=5, interval=0.05), s.log
                if not url.startswith("sqlite:"):
                    db_exec(url, "CREATE FUNCTION sfvopi_fault() RETURNS trigger LANGUAGE "
                                 f"plpgsql AS $$ BEGIN RAISE EXCEPTION '{FAULT_TEXT}'; END $$")
                yield s
            finally:
                rc = s.stop()
            # A clean exit (the sanitizer build exits non-zero on any report).
            assert rc == 0, f"server exit code {rc}; log tail:\n{s.log[-4000:]}"
    finally:
        trunk.close()


@pytest.fixture(autouse=True)
def _server_alive(srv):
    yield
    assert srv.proc.poll() is None, f"server died (rc={srv.proc.returncode}); log:\n{srv.log}"


# ---------------------------------------------------------------------------------------------
# The organisation each test works on.

@dataclass
class World:
    srv: Server
    org: object
    app_id: str
    linked: list   # two numbers ACTIVE-linked to app_id
    free: list     # two inventory numbers linked to nothing
    call_uuid: str = ""  # a finished call of the organisation (cases that need one)
    callee: str = ""     # the `to` of the case's POST /calls

    def trunk_invites(self):
        return self.srv.trunk.invites_to(self.callee) if self.callee else []

    @property
    def api(self):
        return self.org.client()

    def call_body(self, ring_timeout=1):
        """A POST /calls body from the first linked number to a new callee (the INVITE that
        carries it is told apart from the others at the trunk by that number)."""
        self.callee = new_callee()
        return {"from": self.linked[0], "to": self.callee, "ring_timeout": ring_timeout,
                "answer_url": "https://example.com/webhook/answer"}

    def final_call(self, call_uuid, timeout=10):
        rec = {}

        def final():
            nonlocal rec
            rec = ok(self.api.get(f"/calls/{call_uuid}"))
            return rec["call_status"] in FINAL
        assert wait_until(final, timeout=timeout, interval=0.1), rec
        return rec

    def snapshot(self):
        """Everything the organisation can see of its own data."""
        api = self.api
        apps = ok(api.get("/apps"))
        return {
            "apps": apps,
            "numbers": {a["app_id"]: ok(api.get(f"/apps/{a['app_id']}/numbers")) for a in apps},
            "available": ok(api.get("/available-numbers")),
            "calls": ok(api.get("/calls?limit=100")),
        }


def new_callee():
    return f"+1415555{next(_callee_counter):04d}"


@pytest.fixture
def world(srv):
    org = srv.make_org(user=67890)
    numbers = org.add_numbers(4)
    api = org.client()
    app_id = api.create_app(name="fault target")["app_id"]
    for n in numbers[:2]:
        api.link(app_id, n)
    return World(srv, org, app_id, numbers[:2], numbers[2:])


# ---------------------------------------------------------------------------------------------
# The cases: one request per documented 500, the fault that stops it, and what the same request
# does once the database is repaired.

@dataclass
class Case:
    name: str
    method: str
    path: str                       # {app}, {linked}, {call} are filled from the world
    message: str                    # the documented text before ": <error>"
    fault: Fault
    op: str = ""                    # the store operation a refused write fails in
    body: Optional[Callable] = None     # world -> JSON body
    after: Optional[Callable] = None    # (world, data, before) -> None, after the repair
    needs_call: bool = False        # the organisation needs a (finished) call record
    needs_live_call: bool = False   # ... or a call still ringing (the trunk never answers)

    @property
    def places_call(self):
        return (self.method, self.path) == ("POST", "/calls")

    def concrete(self, w):
        return self.path.format(app=w.app_id, linked="%2B" + w.linked[0][1:], call=w.call_uuid)


def _after_create(w, data, before):
    assert data["name"] == "fault app" and data["status"] == "ACTIVE", data
    assert [a["app_id"] for a in ok(w.api.get("/apps"))] == \
        [data["app_id"]] + [a["app_id"] for a in before["apps"]]


def _after_update(w, data, before):
    assert data["name"] == "renamed" and data["updated_at"] is not None, data


def _after_delete(w, data, before):
    assert data == {"deleted": True}
    assert_error(w.api.get(f"/apps/{w.app_id}"), 404, "SFVoPI app not found")
    assert {a["voip_number"] for a in ok(w.api.get("/available-numbers"))} == \
        set(w.linked + w.free)


def _after_link(w, data, before):
    assert (data["app_id"], data["voip_number"], data["status"]) == \
        (w.app_id, w.free[0], "ACTIVE"), data
    assert w.free[0] not in [a["voip_number"] for a in ok(w.api.get("/available-numbers"))]


def _after_unlink(w, data, before):
    assert data == {"deleted": True}
    assert [n["voip_number"] for n in ok(w.api.get(f"/apps/{w.app_id}/numbers"))] == \
        [w.linked[1]]


def _after_call(w, data, before):
    assert data["status"] == "queued", data
    # The INVITE the failed request never sent goes out now.
    assert wait_until(lambda: w.trunk_invites(), timeout=5, interval=0.05), w.srv.trunk.seen
    # Let the call ring out, so that its record is not written under a later test's fault.
    w.final_call(data["call_uuid"])


def _after_hangup(w, data, before):
    ringing = next(c for c in before["calls"] if c["call_uuid"] == w.call_uuid)
    assert data == {"call_uuid": w.call_uuid, "status": ringing["call_status"]}, data
    rec = w.final_call(w.call_uuid)
    assert (rec["call_status"], rec["hangup_cause"]) == ("CANCELED", "16"), rec


def _same_as(key):
    def check(w, data, before):
        assert data == key(w, before), (data, key(w, before))
    return check


CASES = [
    Case("apps.create", "POST", "/apps", "Failed to create SFVoPI app",
         refuse("INSERT", "apps"), op="app_create",
         body=lambda w: {"name": "fault app", "answer_url": "https://example.com/a"},
         after=_after_create),
    Case("apps.list", "GET", "/apps", "Failed to get SFVoPI apps", rename("apps"),
         after=_same_as(lambda w, b: b["apps"])),
    Case("apps.get", "GET", "/apps/{app}", "Failed to get SFVoPI app", rename("apps"),
         after=_same_as(lambda w, b: b["apps"][0])),
    Case("apps.update", "PUT", "/apps/{app}", "Failed to update SFVoPI app",
         refuse("UPDATE", "apps"), op="app_update", body=lambda w: {"name": "renamed"},
         after=_after_update),
    # The app's row is deleted, then its links' update fails: the whole delete rolls back.
    Case("apps.delete", "DELETE", "/apps/{app}", "Failed to delete SFVoPI app",
         refuse("UPDATE", "links"), op="app_delete", after=_after_delete),
    # App found, number found and free, then the new link's INSERT fails.
    Case("numbers.link", "POST", "/apps/{app}/numbers", "Failed to link number",
         refuse("INSERT", "links"), op="link_create",
         body=lambda w: {"voip_number": w.free[0]}, after=_after_link),
    Case("numbers.list", "GET", "/apps/{app}/numbers", "Failed to get numbers", rename("links"),
         after=_same_as(lambda w, b: b["numbers"][w.app_id])),
    # App found, then the link's UPDATE to INACTIVE fails.
    Case("numbers.unlink", "DELETE", "/apps/{app}/numbers/{linked}", "Failed to unlink number",
         refuse("UPDATE", "links"), op="link_delete", after=_after_unlink),
    Case("numbers.available", "GET", "/available-numbers", "Failed to get available numbers",
         rename("numbers"), after=_same_as(lambda w, b: b["available"])),
    # The from-number's route is read before anything else of the call.
    Case("calls.create route", "POST", "/calls", "Failed to initiate outbound call",
         rename("numbers"), body=World.call_body, after=_after_call),
    # The route is fine; the engine cannot store the new call's record: no INVITE goes out.
    Case("calls.create record", "POST", "/calls", "Failed to initiate outbound call",
         refuse("INSERT", "calls"), op="call_create", body=World.call_body, after=_after_call),
    Case("calls.list", "GET", "/calls", "Failed to get calls", rename("calls"),
         needs_call=True, after=_same_as(lambda w, b: b["calls"])),
    Case("calls.get", "GET", "/calls/{call}", "Failed to get call", rename("calls"),
         needs_call=True, after=_same_as(lambda w, b: b["calls"][0])),
    # AGENT.md section 3: the call is looked up before it is hung up.
    Case("calls.hangup", "POST", "/calls/{call}/hangup", "Failed to hang up call",
         rename("calls"), needs_live_call=True, after=_after_hangup),
]

# One case per route for the key-check failure (the fault is before the route's own query).
KEY_CASES = [c for c in CASES if c.name != "calls.create route"]


def _send(w, case, prefix, key=None, request_id=None):
    body = case.body(w) if case.body else None
    client = w.org.client(prefix=prefix, key=key or w.org.key)
    headers = {"X-Request-Id": request_id} if request_id else None
    if body is None:
        return client.request(case.method, case.concrete(w), headers=headers)
    return client.request(case.method, case.concrete(w), json=body, headers=headers)


def _prepare(w, case):
    if case.needs_call:
        w.call_uuid = ok(w.api.post("/calls", json=w.call_body()))["call_uuid"]
        w.final_call(w.call_uuid)
        w.callee = ""
    if case.needs_live_call:
        w.call_uuid = ok(w.api.post("/calls", json=w.call_body(ring_timeout=60)))["call_uuid"]
        assert wait_until(lambda: w.trunk_invites(), timeout=5, interval=0.05)
        w.callee = ""


def _check_500(r, case, request_id=None):
    assert_error(r, 500, f"{case.message}: {REASON}")
    check_operation(_template(case.path), case.method, r, 500)
    rid = r.headers.get("X-Request-Id")
    if request_id:
        assert rid == request_id, r.headers
    else:
        assert rid and REQ_ID_RE.match(rid), r.headers


def _case_params(cases):
    for case in cases:
        for prefix in PREFIXES:
            label = "superfone" if prefix.startswith("/superfone") else "sfvopi"
            yield pytest.param(case, prefix, id=f"{case.name} [{label}]")


# ---------------------------------------------------------------------------------------------
# The tests.

@pytest.mark.parametrize("case,prefix", list(_case_params(CASES)))
def test_store_failure_answers_the_documented_500(srv, world, case, prefix):
    _prepare(world, case)
    before = world.snapshot()
    log_mark = len(srv.log)
    request_id = f"dbfault-{uuid.uuid4().hex[:12]}"
    with broken(srv, case.fault):
        r = _send(world, case, prefix, request_id=request_id)
    _check_500(r, case, request_id)

    # Where it failed: the server log (never the response) has the driver's text.
    log = srv.log[log_mark:]
    if case.fault.kind == "refuse":
        assert re.search(rf"op={case.op}\b.*{FAULT_TEXT}", log), \
            f"no log line for op={case.op} with the trigger's text:\n{log}"
    else:
        # "no such table: apps" (SQLite), "relation \x22apps\x22 does not exist" (PostgreSQL)
        assert re.search(rf'msg="database error".*[^a-z_]{case.fault.table}[^a-z_]', log), log

    # Nothing changed, and the failed call never reached the trunk.
    assert world.snapshot() == before
    if case.places_call:
        time.sleep(0.5)
        assert world.trunk_invites() == [], world.trunk_invites()

    # The same request on the repaired database succeeds.
    data = ok(_send(world, case, prefix))
    case.after(world, data, before)


@pytest.mark.parametrize("case,prefix", list(_case_params(KEY_CASES)))
def test_key_check_failure_answers_the_routes_500(srv, world, case, prefix):
    """API.md section 1: a database failure while checking the key is the route's 500, not a
    401. The key is new, so no worker has it cached."""
    _prepare(world, case)
    key = world.org.new_key()
    before = world.snapshot()
    with broken(srv, rename("api_keys")):
        r = _send(world, case, prefix, key=key)
    _check_500(r, case)
    assert world.snapshot() == before
    if case.places_call:
        time.sleep(0.5)
        assert world.trunk_invites() == [], world.trunk_invites()
    # The key works once the database is back, for the same request.
    data = ok(_send(world, case, prefix, key=key))
    case.after(world, data, before)


def test_every_documented_500_is_covered():
    """The cases above name every route's documented 500 text (docs/openapi.json)."""
    documented = set()
    for path, item in DOC["paths"].items():
        for method, op in item.items():
            if not isinstance(op, dict) or "500" not in op.get("responses", {}):
                continue
            if path in ("/metrics", "/openapi.json"):
                continue  # out-of-memory faults only, no database behind them
            pattern = op["responses"]["500"]["content"]["application/json"]["schema"]
            documented.add((path, method.upper(), _prefix_of(pattern)))
    covered = {(_template(c.path), c.method, c.message) for c in CASES}
    assert documented == covered, (sorted(documented - covered), sorted(covered - documented))
    assert {(_template(c.path), c.method) for c in KEY_CASES} == {(p, m) for p, m, _ in documented}


def _template(path):
    return path.replace("{app}", "{app_id}").replace("{linked}", "{voip_number}").replace(
        "{call}", "{call_id}")


def _prefix_of(schema):
    """The message prefix in a documented 500 schema (its `pattern`, ^<prefix>: .+$)."""
    schema = deref(DOC, schema)
    for part in schema.get("allOf", []) + [schema]:
        part = deref(DOC, part)
        msg = part.get("properties", {}).get("message", {})
        if "pattern" in msg:
            m = re.fullmatch(r"\^(.*): \.\+\$", msg["pattern"])
            assert m, msg
            return m.group(1)
    raise AssertionError(f"no message pattern in {schema}")
