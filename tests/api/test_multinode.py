"""Several `sfvopi serve` nodes on one PostgreSQL database (README "Scaling out").

Two nodes share a database created for this module on $SFVOPI_TEST_PG_URL's server: races between
nodes, deletes, revocations and call records seen across nodes, schema migration by nodes starting
together, and a PostgreSQL restart or hang under running nodes (on a private throwaway cluster from
scripts/pg.sh, so the shared server is never disturbed). Skipped without $SFVOPI_TEST_PG_URL.
"""

import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid

import pytest
import requests

from conftest import (BIN, MSG_APP_NOT_FOUND, MSG_NUM_APP_NOT_FOUND, MSG_NUM_CONFLICT,
                      MSG_UNAUTH, PG_URL, REPO, Server, assert_error, cli_ok, ok,
                      skip_unless_strict)
from dbstall_helper import cluster_stopped
from sipp_helper import free_udp_port

pytestmark = pytest.mark.skipif(not PG_URL, reason="needs SFVOPI_TEST_PG_URL (PostgreSQL)")

PG_SH = REPO / "scripts" / "pg.sh"
PGBIN = "/usr/lib/postgresql/15/bin"
N_RACE = 16
REVOKE_BOUND_S = 5.0  # spec/API.md: a revoked key stops working on every node within 5 s
FAST_S = 1.0          # "fail fast" while the database is down (README: within a second)
RECOVER_S = 2.0       # back to 200 after the database accepts connections (README: within 2 s)
# A database that hangs: a request waits for one round trip's deadline (8 s) or a connection
# attempt's timeout (2 s) at most, its own or one ahead of it on its worker thread (README: every
# answer within 10 s).
HUNG_S = 10.0
# A generic, client-safe reason: never driver text, SQL, a host or a port.
GENERIC_REASON = r"[a-z ]{1,40}"


# ---------------------------------------------------------------------------------------------
# Databases and nodes.

def psql(url, sql, timeout=60):
    cp = subprocess.run(["psql", url, "-X", "-v", "ON_ERROR_STOP=1", "-q", "-A", "-t", "-c", sql],
                        capture_output=True, text=True, timeout=timeout)
    assert cp.returncode == 0, f"psql failed: {cp.stderr}"
    return cp.stdout.strip()


def with_db(url, name):
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


class Database:
    """A database of its own on a server given by a maintenance-database URL."""

    def __init__(self, server_url):
        self.server_url = server_url
        self.name = f"sfvopi_mn_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self.url = with_db(server_url, self.name)

    def create(self):
        psql(self.server_url, f'CREATE DATABASE "{self.name}"')
        return self

    def drop(self):
        subprocess.run(["psql", self.server_url, "-X", "-q", "-c",
                        f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'],
                       capture_output=True, timeout=60)

    def query(self, sql):
        return psql(self.url, sql)


@pytest.fixture(scope="module")
def shared_db():
    db = Database(PG_URL).create()
    yield db
    db.drop()


def start_nodes(db_url, workdir, n=2):
    nodes = []
    try:
        for _ in range(n):
            nodes.append(Server(db_url, workdir).start())
    except BaseException:
        for s in nodes:
            s.stop()
        raise
    return nodes


@pytest.fixture(scope="module")
def nodes(shared_db, tmp_path_factory):
    a, b = start_nodes(shared_db.url, tmp_path_factory.mktemp("nodes"))
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture
def org(nodes):
    """A fresh organisation (provisioned through node A's database, visible to both)."""
    return nodes[0].make_org(user=777)


def assert_serving_again(nodes, org, app, t_up):
    """After the database is back at t_up: a worker that failed to connect just before waits
    RECONNECT_INTERVAL (0.5 s) before trying again; after that every worker thread of every node
    serves, within RECOVER_S of t_up."""
    time.sleep(0.6)
    for node in nodes:
        c = on(node, org)
        for _ in range(6):
            r = requests.get(node.url + "/readyz", timeout=10)
            assert (r.status_code, r.json()) == (200, {"status": "ready"})
            assert c.get_app(app["app_id"]) == app
    took = time.monotonic() - t_up
    assert took < RECOVER_S, f"nodes took {took:.1f} s to serve again"


def on(node, org, key=None):
    """A client of `org` (its main key, or `key`) talking to `node`."""
    return node.client(key if key is not None else org.key)


def concurrently(fns):
    """Run the callables at the same instant (a barrier), each on its own thread and HTTP
    connection; return their results (or exceptions) in order."""
    barrier = threading.Barrier(len(fns))
    results = [None] * len(fns)

    def run(i, fn):
        with requests.Session() as s:
            s.get(fn.server_url + "/healthz", timeout=10)  # connect before the barrier
            barrier.wait(timeout=30)
            try:
                results[i] = fn(s)
            except Exception as e:  # reported by the callers' assertions
                results[i] = e

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a request hung"
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors
    return results


def call(client, method, path, json=None):
    def fn(session):
        return client.request(method, path, json=json, session=session, timeout=30) \
            if json is not None else client.request(method, path, session=session, timeout=30)
    fn.server_url = client.server.url
    return fn


def active_links(db, number):
    return db.query("SELECT app_id FROM links WHERE voip_number = '%s' AND status = 'ACTIVE' "
                    "ORDER BY id" % number).split()


# ---------------------------------------------------------------------------------------------
# Races between nodes.

@pytest.mark.parametrize("round_", range(3))
def test_number_raced_from_two_nodes_exactly_one_wins(nodes, org, shared_db, round_):
    a, b = nodes
    apps = [on(a if i % 2 == 0 else b, org).create_app(name=f"mn race {round_}.{i}")
            for i in range(N_RACE)]
    (num,) = org.add_numbers(1)
    # Request i goes to node A or B in turn, each for its own app.
    fns = [call(on(a if i % 2 == 0 else b, org), "POST", f"/apps/{app['app_id']}/numbers",
                {"voip_number": num}) for i, app in enumerate(apps)]
    results = concurrently(fns)
    statuses = [r.status_code for r in results]
    assert sorted(statuses) == [200] + [409] * (N_RACE - 1), statuses
    for r in results:
        if r.status_code == 409:
            assert_error(r, 409, MSG_NUM_CONFLICT)
    winner = apps[statuses.index(200)]["app_id"]
    link = ok(results[statuses.index(200)])
    assert link["app_id"] == winner and link["voip_number"] == num and link["status"] == "ACTIVE"
    # Both nodes agree, and so does the database: one ACTIVE link, to the winner.
    assert active_links(shared_db, num) == [winner]
    for node in (a, b):
        c = on(node, org)
        assert [x["voip_number"] for x in c.numbers(winner)] == [num]
        assert num not in c.available_numbers()
        for app in apps:
            if app["app_id"] != winner:
                assert c.numbers(app["app_id"]) == []


@pytest.mark.parametrize("round_", range(4))
def test_same_app_raced_from_two_nodes_is_idempotent(nodes, org, shared_db, round_):
    a, b = nodes
    app = on(a, org).create_app()
    (num,) = org.add_numbers(1)
    fns = [call(on(a if i % 2 == 0 else b, org), "POST", f"/apps/{app['app_id']}/numbers",
                {"voip_number": num}) for i in range(8)]
    links = [ok(r) for r in concurrently(fns)]
    assert all(x == links[0] for x in links), links
    assert active_links(shared_db, num) == [app["app_id"]]


def test_delete_app_racing_links_from_other_node_leaves_no_active_link(nodes, org, shared_db):
    """Node B links numbers to an app while node A deletes it: whatever the interleaving, no
    ACTIVE link survives the app, and every number is free again on both nodes."""
    a, b = nodes
    for round_ in range(6):
        app = on(a, org).create_app(name=f"doomed {round_}")
        nums = org.add_numbers(3)
        fns = [call(on(b, org), "POST", f"/apps/{app['app_id']}/numbers", {"voip_number": n})
               for n in nums]
        fns.append(call(on(a, org), "DELETE", f"/apps/{app['app_id']}"))
        results = concurrently(fns)
        assert results[-1].status_code == 200, results[-1].text
        for r in results[:-1]:
            # Before the delete: linked (then deactivated by it); after: the app is gone.
            if r.status_code != 200:
                assert_error(r, 404, MSG_NUM_APP_NOT_FOUND)
        for n in nums:
            assert active_links(shared_db, n) == []
        for node in (a, b):
            avail = on(node, org).available_numbers()
            assert all(n in avail for n in nums), (nums, avail)
    assert shared_db.query("SELECT count(*) FROM links l WHERE l.status = 'ACTIVE' AND NOT "
                           "EXISTS (SELECT 1 FROM apps a WHERE a.app_id = l.app_id)") == "0"


# ---------------------------------------------------------------------------------------------
# What one node does, the other sees.

def test_app_deleted_through_a_is_gone_through_b_at_once(nodes, org):
    a, b = nodes
    ca, cb = on(a, org), on(b, org)
    app = ca.create_app()
    nums = org.add_numbers(2)
    for n in nums:
        ca.link(app["app_id"], n)
    assert cb.get_app(app["app_id"]) == app  # B has seen it (and may have cached anything)
    assert sorted(x["voip_number"] for x in cb.numbers(app["app_id"])) == sorted(nums)

    ok(ca.delete(f"/apps/{app['app_id']}"))
    # No waiting: the very next requests through B.
    assert_error(cb.get(f"/apps/{app['app_id']}"), 404, MSG_APP_NOT_FOUND)
    assert_error(cb.get(f"/apps/{app['app_id']}/numbers"), 404, MSG_NUM_APP_NOT_FOUND)
    assert app["app_id"] not in [x["app_id"] for x in cb.list_apps()]
    avail = cb.available_numbers()
    assert all(n in avail for n in nums), (nums, avail)
    other = cb.create_app(name="new home")
    for n in nums:
        assert cb.link(other["app_id"], n)["app_id"] == other["app_id"]


def test_unlink_through_one_node_frees_number_on_the_other(nodes, org):
    a, b = nodes
    ca, cb = on(a, org), on(b, org)
    app1, app2 = ca.create_app(name="one"), cb.create_app(name="two")
    (num,) = org.add_numbers(1)
    ca.link(app1["app_id"], num)
    assert_error(cb.post(f"/apps/{app2['app_id']}/numbers", json={"voip_number": num}), 409,
                 MSG_NUM_CONFLICT)
    ok(ca.delete(f"/apps/{app1['app_id']}/numbers/{urllib.parse.quote(num)}"))
    assert cb.link(app2["app_id"], num)["app_id"] == app2["app_id"]
    assert ca.numbers(app1["app_id"]) == []


def test_key_revoked_with_cli_fails_on_both_nodes_within_5s(nodes, org):
    a, b = nodes
    key = org.new_key(name="revoke-me")
    key_id = org.key_id(key)
    app = on(a, org, key).create_app()
    # Every worker thread of both nodes has the key cached (each node runs 2 threads).
    for node in (a, b):
        for _ in range(6):
            assert on(node, org, key).get_app(app["app_id"]) == app

    assert cli_ok(a.cli("key", "revoke", key_id)) == []
    t0 = time.monotonic()
    first_401 = {}
    while len(first_401) < 2 and time.monotonic() - t0 < REVOKE_BOUND_S + 1.0:
        for name, node in (("A", a), ("B", b)):
            if name not in first_401 and on(node, org, key).get("/apps").status_code == 401:
                first_401[name] = time.monotonic() - t0
        time.sleep(0.1)
    assert set(first_401) == {"A", "B"}, f"still accepted after {REVOKE_BOUND_S + 1} s: {first_401}"
    assert max(first_401.values()) <= REVOKE_BOUND_S, first_401
    # From 5 s on, every request on every worker of both nodes is refused.
    time.sleep(max(0.0, t0 + REVOKE_BOUND_S - time.monotonic()))
    for node in (a, b):
        for _ in range(6):
            assert_error(on(node, org, key).get(f"/apps/{app['app_id']}"), 401, MSG_UNAUTH)
    # The organisation's other key still works on both.
    for node in (a, b):
        assert on(node, org).get_app(app["app_id"]) == app


def test_call_record_placed_through_one_node_is_the_same_through_another(nodes, org, tmp_path):
    """README "Calls across nodes": a call placed through a node with a call engine (node C,
    whose SIP trunk is a closed loopback port, so the call fails) is answered identically by
    GET /sfvopi/calls/:id on a node without one, by call_uuid and by request_uuid, both while the
    call is in progress and once it has ended."""
    _, b = nodes
    closed = free_port()  # webhooks go nowhere: nothing listens on this TCP port
    rtp = free_udp_port(even=True)
    argv = [BIN, "--db", b.db_url, "serve", "--listen", "127.0.0.1:0", "--threads", "2",
            "--sip-listen", f"127.0.0.1:{free_udp_port()}",
            "--sip-trunk", f"sip:127.0.0.1:{free_udp_port()}", "--rtp-ports", f"{rtp}-{rtp + 9}"]
    c = Server(b.db_url, tmp_path, argv=argv).start()
    try:
        cc, cb = on(c, org), on(b, org)
        app = cb.create_app(answer_url=f"http://127.0.0.1:{closed}/answer",
                            hangup_url=f"http://127.0.0.1:{closed}/hangup")
        (num,) = org.add_numbers(1)
        cb.link(app["app_id"], num)
        placed = ok(cc.post("/calls", json={"from": num, "to": "+14155550100",
                                            "answer_url": f"http://127.0.0.1:{closed}/answer",
                                            "ring_timeout": 1}))
        assert placed["status"] == "queued", placed

        def record(client, call_id):
            r = client.get(f"/calls/{call_id}")
            assert r.status_code == 200, (call_id, r.status_code, r.text)
            return r.json()

        # Whatever state the call is in, B answers what C answers around it (two reads through C
        # that agree, one before and one after B's, leave B no other state to be in).
        deadline = time.monotonic() + 40
        while True:
            before = record(cc, placed["call_uuid"])
            via_b = record(cb, placed["call_uuid"])
            after = record(cc, placed["call_uuid"])
            if before == after:
                assert via_b == before
                if before["data"]["ended_at"]:
                    break
            assert time.monotonic() < deadline, f"the call never ended: {after}"
            time.sleep(0.2)
        final = before
        data = final["data"]
        assert data["call_uuid"] == placed["call_uuid"]
        assert data["request_uuid"] == placed["request_uuid"]
        assert (data["org_id"], data["app_id"], data["from"], data["to"], data["direction"]) == \
            (org.id, app["app_id"], num, "+14155550100", "OUTBOUND"), data
        assert data["call_status"] != "COMPLETED" and data["hangup_cause"], data
        # By request_uuid, and on B's every worker thread, the same record.
        for _ in range(4):
            assert record(cb, placed["request_uuid"]) == final
            assert record(cb, placed["call_uuid"]) == final
        assert record(cc, placed["request_uuid"]) == final
        assert any(x["call_uuid"] == placed["call_uuid"] for x in ok(cb.get("/calls?limit=100")))
    finally:
        rc = c.stop()
    assert rc == 0, f"node with the call engine exited with {rc}; log tail:\n{c.log[-4000:]}"


# ---------------------------------------------------------------------------------------------
# Schema migrations when several nodes start at once.

def test_nodes_starting_together_migrate_once(tmp_path):
    db = Database(PG_URL).create()
    servers = [Server(db.url, tmp_path) for _ in range(4)]
    errors = []

    def start(s):
        try:
            s.start()
        except BaseException as e:  # pytest.fail raises BaseException
            errors.append(e)

    threads = [threading.Thread(target=start, args=(s,)) for s in servers]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors
        for s in servers:
            r = requests.get(s.url + "/readyz", timeout=10)
            assert (r.status_code, r.json()) == (200, {"status": "ready"})
        rows = db.query("SELECT version, name FROM schema_migrations ORDER BY version")
        versions = [line.split("|")[0] for line in rows.splitlines()]
        assert versions and versions == [str(i) for i in range(1, len(versions) + 1)], rows
        assert db.query("SELECT count(*) FROM pg_indexes WHERE indexname = 'links_one_active'") \
            == "1"
        # Every node serves the same data.
        org = servers[0].make_org()
        app = servers[1].client(org.key).create_app()
        for s in servers:
            assert s.client(org.key).get_app(app["app_id"]) == app
    finally:
        for s in servers:
            s.stop()
        db.drop()


# ---------------------------------------------------------------------------------------------
# PostgreSQL goes away or hangs, and comes back.

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_sh(cmd, cluster_dir, timeout=120):
    env = dict(os.environ, SFVOPI_PG_PORT=str(free_port()))
    cp = subprocess.run(["sh", str(PG_SH), cmd, cluster_dir], capture_output=True, text=True,
                        timeout=timeout, env=env)
    assert cp.returncode == 0, f"pg.sh {cmd} failed: {cp.stderr}"
    return cp.stdout.strip()


@pytest.fixture
def private_cluster():
    """A throwaway cluster of our own, so that stopping it disturbs nobody else."""
    if not (os.path.exists(os.path.join(PGBIN, "initdb")) and shutil.which("psql")):
        skip_unless_strict("PostgreSQL 15 server binaries not installed")
    cluster_dir = tempfile.mkdtemp(prefix="sfvopi-pg.", dir="/tmp")
    try:
        url = pg_sh("start", cluster_dir)
        yield cluster_dir, url
    finally:
        subprocess.run(["sh", str(PG_SH), "stop", cluster_dir], capture_output=True, timeout=120)


def assert_unavailable(node, org, app_id, num):
    """Every kind of request fails fast with the documented answer while the database is down."""
    c = on(node, org)
    checks = [
        ("GET", "/readyz", None, None),
        ("GET", "/sfvopi/apps", None, "Failed to get SFVoPI apps"),
        ("GET", f"/sfvopi/apps/{app_id}", None, "Failed to get SFVoPI app"),
        ("POST", "/sfvopi/apps", {"name": "x", "answer_url": "https://example.com/a"},
         "Failed to create SFVoPI app"),
        ("POST", f"/sfvopi/apps/{app_id}/numbers", {"voip_number": num}, "Failed to link number"),
        ("GET", "/sfvopi/available-numbers", None, "Failed to get available numbers"),
    ]
    for method, path, body, prefix in checks:
        t = time.monotonic()
        r = c.request(method, path, json=body, absolute=True, timeout=30) if body is not None \
            else c.request(method, path, absolute=True, timeout=30)
        took = time.monotonic() - t
        assert took < FAST_S, f"{method} {path} took {took:.1f} s while the database was down"
        assert r.headers.get("Content-Type", "").startswith("application/json")
        if prefix is None:
            assert (r.status_code, r.json()) == (503, {"status": "unavailable"}), r.text
        else:
            assert r.status_code == 500, (method, path, r.status_code, r.text)
            msg = r.json()["message"]
            assert r.json() == {"message": msg}
            assert re.fullmatch(re.escape(prefix) + ": " + GENERIC_REASON, msg), msg


def test_postgres_restart_nodes_fail_fast_then_recover(private_cluster, tmp_path):
    cluster_dir, server_url = private_cluster
    db = Database(server_url).create()
    a, b = start_nodes(db.url, tmp_path)
    try:
        org = a.make_org()
        app = on(a, org).create_app()
        n1, n2 = org.add_numbers(2)
        on(b, org).link(app["app_id"], n1)
        for node in (a, b):
            for _ in range(4):
                assert on(node, org).get_app(app["app_id"]) == app

        pg_sh("down", cluster_dir)
        # During the outage (long enough for the key cache to expire too: both the key check
        # and the operation itself meet the dead database), every node answers 500 / 503.
        t_down = time.monotonic()
        while time.monotonic() - t_down < 3.0:
            for node in (a, b):
                assert_unavailable(node, org, app["app_id"], n2)
        for node in (a, b):
            assert requests.get(node.url + "/healthz", timeout=5).status_code == 200
            assert node.proc.poll() is None, "a node exited while the database was down"

        assert pg_sh("start", cluster_dir) == server_url  # same port, accepting connections
        t_up = time.monotonic()
        # Every worker thread of both nodes serves again, reads and writes, with nothing lost.
        assert_serving_again((a, b), org, app, t_up)
        for node in (a, b):
            assert [x["voip_number"] for x in on(node, org).numbers(app["app_id"])] == [n1]
        on(a, org).link(app["app_id"], n2)
        assert sorted(x["voip_number"] for x in on(b, org).numbers(app["app_id"])) == \
            sorted([n1, n2])
        assert a.proc.poll() is None and b.proc.poll() is None
    finally:
        a.stop()
        b.stop()
        db.drop()


def test_postgres_restart_while_idle_next_requests_succeed(private_cluster, tmp_path):
    """Sessions cut while a node is idle are noticed before use: after a quick restart with no
    traffic during it, the very first requests on every worker of both nodes succeed."""
    cluster_dir, server_url = private_cluster
    db = Database(server_url).create()
    a, b = start_nodes(db.url, tmp_path)
    try:
        org = a.make_org()
        app = on(a, org).create_app()
        for node in (a, b):
            for _ in range(6):  # every worker thread holds a session
                assert on(node, org).get_app(app["app_id"]) == app
        pg_sh("down", cluster_dir)
        assert pg_sh("start", cluster_dir) == server_url
        for node in (a, b):
            for _ in range(6):
                r = requests.get(node.url + "/readyz", timeout=10)
                assert (r.status_code, r.json()) == (200, {"status": "ready"})
                assert on(node, org).get_app(app["app_id"]) == app
            ok(on(node, org).post("/apps", json={"name": "after restart",
                                                 "answer_url": "https://example.com/a"}))
    finally:
        a.stop()
        b.stop()
        db.drop()


# The whole cluster stopped (SIGSTOP): the kernel still accepts its connections and acknowledges
# what is sent to it, but nothing answers, as with a hung server.
cluster_hung = cluster_stopped


def answers_while_hung(reqs):
    """Send every request (node, org, method, path, json body or None, delay before sending,
    expected answer) at once, each on its own connection; return (request, response or exception,
    seconds taken) in order. No request waits longer than HUNG_S + 10 s, so a node that hangs
    fails the test instead of stalling it."""
    out = [None] * len(reqs)

    def run(i, node, org, method, path, body, delay):
        kw = {"json": body} if body is not None else {}
        time.sleep(delay)
        t = time.monotonic()
        try:
            r = on(node, org).request(method, path, absolute=True, timeout=HUNG_S + 10, **kw)
        except Exception as e:  # reported by the caller's assertions
            r = e
        out[i] = (reqs[i], r, time.monotonic() - t)

    threads = [threading.Thread(target=run, args=(i, *req[:6])) for i, req in enumerate(reqs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=HUNG_S + 20)
    assert not any(t.is_alive() for t in threads), "a request hung"
    return out


def test_postgres_hung_nodes_answer_within_deadline_then_recover(private_cluster, tmp_path):
    """PostgreSQL stops answering without closing anything (every process of the cluster
    SIGSTOPped): each node still answers every request within a bounded time, API requests with
    their documented 500, /readyz 503, /healthz 200; once the cluster runs again, both nodes
    serve again by themselves, and a write whose answer was a 500 may be read and retried."""
    cluster_dir, server_url = private_cluster
    db = Database(server_url).create()
    a, b = start_nodes(db.url, tmp_path)
    try:
        org = a.make_org()
        app = on(a, org).create_app()
        n1, n2 = org.add_numbers(2)
        for node in (a, b):
            for _ in range(4):  # every worker thread of both nodes holds a session
                assert on(node, org).get_app(app["app_id"]) == app
        link = f"/sfvopi/apps/{app['app_id']}/numbers"

        def wave(delay_healthz):
            reqs = []
            for node, num in ((a, n1), (b, n2)):
                reqs += [
                    (node, org, "GET", "/sfvopi/apps", None, 0.0,
                     "Failed to get SFVoPI apps: database unavailable"),
                    (node, org, "GET", f"/sfvopi/apps/{app['app_id']}", None, 0.0,
                     "Failed to get SFVoPI app: database unavailable"),
                    (node, org, "POST", link, {"voip_number": num}, 0.0,
                     "Failed to link number: database unavailable"),
                    (node, org, "GET", "/readyz", None, 0.0, (503, {"status": "unavailable"})),
                    # While the others wait on the database.
                    (node, org, "GET", "/healthz", None, delay_healthz, (200, {"status": "ok"})),
                ]
            return answers_while_hung(reqs)

        with cluster_hung(cluster_dir):
            t_hung = time.monotonic()
            results = wave(0.5)
            # Sessions given up, each worker tries to connect again (after RECONNECT_INTERVAL,
            # 0.5 s) to a server that accepts the connection but never answers.
            time.sleep(0.6)
            results += wave(0.0)
            took_all = time.monotonic() - t_hung
            for req, r, took in results:
                method, path, want = req[2], req[3], req[6]
                assert not isinstance(r, Exception), (method, path, r)
                assert took < HUNG_S, f"{method} {path} took {took:.1f} s"
                if isinstance(want, tuple):
                    assert (r.status_code, r.json()) == want, (method, path, r.text)
                else:
                    assert_error(r, 500, want)
            for node in (a, b):
                assert node.proc.poll() is None, "a node exited while the database hung"
        assert took_all < 2 * HUNG_S + 3

        # The cluster runs again. Sessions given up reconnect; the others were only waiting.
        t_up = time.monotonic()
        assert_serving_again((a, b), org, app, t_up)
        # The links answered 500 may or may not have been committed (README: read before
        # retrying): both nodes agree with the database, and the retries succeed.
        linked = active_links(db, n1) + active_links(db, n2)
        assert set(linked) <= {app["app_id"]}, linked
        for node in (a, b):
            assert sorted(x["voip_number"] for x in on(node, org).numbers(app["app_id"])) == \
                sorted(n for n in (n1, n2) if active_links(db, n))
        on(a, org).link(app["app_id"], n1)
        on(b, org).link(app["app_id"], n2)
        for node in (a, b):
            assert sorted(x["voip_number"] for x in on(node, org).numbers(app["app_id"])) == \
                sorted([n1, n2])
        assert a.proc.poll() is None and b.proc.poll() is None
    finally:
        a.stop()
        b.stop()
        db.drop()


def test_node_without_database_exits_instead_of_serving(tmp_path):
    """A node needs its database at start (to migrate it): unreachable, it exits 1, fast."""
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    t = time.monotonic()
    cp = subprocess.run([str(Server(url, tmp_path).argv[0]), "--db", url, "serve", "--listen",
                         "127.0.0.1:0"], capture_output=True, text=True, timeout=30,
                        stdin=subprocess.DEVNULL,
                        env={k: v for k, v in os.environ.items() if not k.startswith("SFVOPI_")})
    assert cp.returncode == 1, (cp.returncode, cp.stderr)
    assert time.monotonic() - t < 10
    assert "listening on" not in cp.stderr
    assert "sfvopi: cannot open database" in cp.stderr, cp.stderr
