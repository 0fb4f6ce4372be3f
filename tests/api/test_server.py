"""`sfvopi serve` lifecycle (spec/CLI.md): listening line, options, signals."""

import http.client
import json
import re
import signal
import socket
import threading
import time

import pytest
import requests

from conftest import BIN, Server, base_env, cli_ok, fresh_db, run_cli


@pytest.fixture
def db(tmp_path):
    with fresh_db(tmp_path, "srv") as url:
        yield url


def healthy(srv):
    resp = requests.get(srv.url + "/healthz", timeout=10)
    return resp.status_code == 200 and resp.json() == {"status": "ok"}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_server_with_exit_0(db, tmp_path, sig):
    srv = Server(db, tmp_path).start()
    assert re.search(r"listening on 127\.0\.0\.1:[1-9][0-9]*", srv.log)
    assert srv.port != 0
    assert healthy(srv)
    t0 = time.monotonic()
    srv.proc.send_signal(sig)
    rc = srv.proc.wait(timeout=10)
    assert rc == 0, f"exit code {rc}; log:\n{srv.log}"
    assert time.monotonic() - t0 < 10
    with pytest.raises(requests.ConnectionError):
        requests.get(srv.url + "/healthz", timeout=2)
    srv.stop()


def test_sigterm_finishes_request_in_flight(db, tmp_path):
    """On SIGTERM the server finishes in-flight requests (at most 10 s), then exits 0: a request
    whose body is still arriving when the signal comes is answered normally."""
    srv = Server(db, tmp_path).start()
    org_id = cli_ok(srv.cli("org", "create", "--name", "inflight"))[0]
    key = cli_ok(srv.cli("key", "create", "--org", org_id))[0]
    body = b'{"name":"in flight","answer_url":"https://example.com/a"}'
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    try:
        sock.sendall((f"POST /sfvopi/apps HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\r\n"
                      f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                      "Connection: close\r\n\r\n").encode() + body[:10])
        time.sleep(0.3)
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert srv.proc.poll() is None, "server exited with a request in flight"
        sock.sendall(body[10:])
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        data = resp.read()
        assert resp.status == 200, (resp.status, data)
        assert json.loads(data)["data"]["name"] == "in flight"
    finally:
        sock.close()
    assert srv.proc.wait(timeout=10) == 0
    srv.stop()
    # The app was really stored.
    rows = cli_ok(run_cli("--db", db, "org", "list"))
    assert rows == [f"{org_id}\tinflight"]


def test_sigterm_with_idle_keepalive_connections(db, tmp_path):
    """Idle keep-alive clients must not hold the shutdown past 10 s."""
    srv = Server(db, tmp_path).start()
    sessions = [requests.Session() for _ in range(4)]
    for s in sessions:
        assert s.get(srv.url + "/healthz", timeout=10).status_code == 200
    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    rc = srv.proc.wait(timeout=12)
    assert rc == 0 and time.monotonic() - t0 < 10.5, (rc, time.monotonic() - t0)
    for s in sessions:
        s.close()
    srv.stop()


def test_sigterm_under_load_exits_0(db, tmp_path):
    srv = Server(db, tmp_path).start()
    stop = threading.Event()

    def hammer():
        with requests.Session() as s:
            while not stop.is_set():
                try:
                    s.get(srv.url + "/readyz", timeout=5)
                except requests.RequestException:
                    return

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    srv.proc.send_signal(signal.SIGTERM)
    try:
        rc = srv.proc.wait(timeout=11)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert rc == 0, f"exit code {rc}; log tail:\n{srv.log[-2000:]}"
    srv.stop()


def test_listen_from_environment(db, tmp_path):
    srv = Server(db, tmp_path, env=base_env(SFVOPI_LISTEN="127.0.0.1:0", SFVOPI_RATE_LIMIT="0"),
                 argv=[BIN, "--db", db, "serve", "--threads", "1"]).start()
    try:
        assert srv.port != 0
        assert healthy(srv)
    finally:
        assert srv.stop() == 0


def test_global_options_after_serve_and_db_from_env(db, tmp_path):
    srv = Server(db, tmp_path, argv=[BIN, "serve", "--listen", "127.0.0.1:0", "--db", db]).start()
    try:
        assert healthy(srv)
        assert requests.get(srv.url + "/readyz", timeout=10).json() == {"status": "ready"}
    finally:
        assert srv.stop() == 0
    srv = Server(db, tmp_path, env=base_env(SFVOPI_DB=db, SFVOPI_RATE_LIMIT="0"),
                 argv=[BIN, "serve", "--listen", "127.0.0.1:0", "--threads", "2"]).start()
    try:
        assert healthy(srv)
    finally:
        assert srv.stop() == 0


def test_two_servers_share_one_database(db, tmp_path):
    """PostgreSQL: each node sees the other's writes (the CLI and servers share the database).
    SQLite holds one server per file (README, "Calls on several nodes"): a second serve on the
    same file exits 1 with its one-line reason, and the first goes on serving."""
    a = Server(db, tmp_path).start()
    if db.startswith("sqlite:"):
        try:
            second = run_cli("serve", "--listen", "127.0.0.1:0", db_url=db, timeout=15)
            assert second.returncode == 1, (second.returncode, second.stderr)
            assert second.stderr == f"sfvopi: database {db} is in use by another server " \
                f"(pid {a.proc.pid})\n", second.stderr
            assert healthy(a)
        finally:
            assert a.stop() == 0
        return
    b = Server(db, tmp_path).start()
    try:
        org_id = cli_ok(a.cli("org", "create", "--name", "shared"))[0]
        key = cli_ok(a.cli("key", "create", "--org", org_id))[0]
        h = {"X-API-Key": key}
        app = requests.post(a.url + "/sfvopi/apps", headers=h, timeout=10,
                            json={"name": "n", "answer_url": "https://e.com/"}).json()["data"]
        got = requests.get(b.url + f"/sfvopi/apps/{app['app_id']}", headers=h, timeout=10)
        assert got.status_code == 200 and got.json()["data"] == app
    finally:
        assert a.stop() == 0
        assert b.stop() == 0
