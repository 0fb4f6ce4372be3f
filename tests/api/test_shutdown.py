"""Graceful shutdown (spec/CLI.md, `sfvopi serve`): on SIGTERM the server stops accepting,
lets the requests in flight finish (at most 10 s) and exits 0."""

import json
import signal
import socket
import subprocess
import time

import pytest
import requests

from conftest import APP_ID_RE, MSG_INVALID, Server, fresh_db

GRACE = 10.0


@pytest.fixture
def srv(tmp_path):
    with fresh_db(tmp_path, "shutdown") as url:
        s = Server(url, tmp_path).start()
        s.org = s.make_org(user=5)
        try:
            yield s
        finally:
            s.stop(sig=signal.SIGKILL)


def open_request(srv, head, small_rcvbuf=False):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if small_rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(15)
    sock.connect(("127.0.0.1", srv.port))
    sock.sendall(head)
    return sock


def request_head(srv, method, path, body_len, extra=b""):
    return (b"%s %s HTTP/1.1\r\nHost: x\r\nX-API-Key: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n%s\r\n"
            % (method, path, srv.org.key.encode(), body_len, extra))


def read_response(sock, slow=False):
    """Read until the server closes; return (status, headers bytes, body bytes)."""
    got = b""
    while True:
        d = sock.recv(8192 if slow else 65536)
        if not d:
            break
        got += d
        if slow:
            time.sleep(0.02)
    head, _, body = got.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = [int(ln.split(b":")[1]) for ln in head.split(b"\r\n")
              if ln.lower().startswith(b"content-length:")]
    assert length and len(body) == length[0], (head, len(body))
    return status, head, body


def sigterm_and_wait(srv, t0, timeout=GRACE + 3):
    """Wait for the process signalled at t0; return (rc, seconds since t0)."""
    try:
        rc = srv.proc.wait(timeout=max(0.1, t0 + timeout - time.monotonic()))
    except subprocess.TimeoutExpired:
        rc = None
    return rc, time.monotonic() - t0


def test_sigterm_lets_in_flight_requests_finish(srv, tmp_path):
    api = srv.org.client()
    target = api.create_app(name="to-update")
    number = srv.org.add_numbers(1)[0]
    # Enough apps for a list answer of ~100 KB, read by a slow reader.
    sess = requests.Session()
    for i in range(300):
        ok_resp = api.post("/apps", json={"name": f"bulk-{i}", "answer_url": "https://e.com/a"},
                           session=sess)
        assert ok_resp.status_code == 200
    sess.close()

    create = json.dumps({"name": "in-flight", "answer_url": "https://example.com/a"}).encode()
    invalid = b'{"name": 5, "answer_url": "https://example.com/a"}'
    link = json.dumps({"voip_number": number}).encode()
    update = json.dumps({"name": "updated-after-sigterm"}).encode()
    aid = target["app_id"].encode()

    # Headers (and part of the body) arrive before SIGTERM; the rest after it.
    inflight = {
        "create": (open_request(srv, request_head(srv, b"POST", b"/sfvopi/apps", len(create))
                                + create[:7]), create[7:]),
        "invalid": (open_request(srv, request_head(srv, b"POST", b"/sfvopi/apps", len(invalid))
                                 + invalid[:3]), invalid[3:]),
        "link": (open_request(srv, request_head(srv, b"POST", b"/sfvopi/apps/" + aid + b"/numbers",
                                                len(link)) + link[:1]), link[1:]),
        "update": (open_request(srv, request_head(srv, b"PUT", b"/sfvopi/apps/" + aid,
                                                  len(update))), update),
    }
    list_req = (b"GET /sfvopi/apps HTTP/1.1\r\nHost: x\r\nX-API-Key: %s\r\n"
                b"Connection: close\r\n\r\n" % srv.org.key.encode())
    lister = open_request(srv, list_req, small_rcvbuf=True)
    time.sleep(0.5)  # every request's headers are in
    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    assert srv.proc.poll() is None, "the server exited with requests in flight"
    for sock, rest in inflight.values():
        sock.sendall(rest)
    results = {name: read_response(sock) for name, (sock, _) in inflight.items()}
    big = read_response(lister, slow=True)
    for sock, _ in inflight.values():
        sock.close()
    lister.close()

    status, _, body = results["create"]
    assert status == 200, body
    created = json.loads(body)["data"]
    assert APP_ID_RE.match(created["app_id"]) and created["name"] == "in-flight"
    status, _, body = results["invalid"]
    assert status == 400 and json.loads(body)["message"] == MSG_INVALID, body
    status, _, body = results["link"]
    assert status == 200 and json.loads(body)["data"]["voip_number"] == number, body
    status, _, body = results["update"]
    assert status == 200 and json.loads(body)["data"]["name"] == "updated-after-sigterm", body
    status, _, body = big
    assert status == 200
    listed = json.loads(body)["data"]
    assert len(listed) == 301, len(listed)

    rc, dt = sigterm_and_wait(srv, t0)
    assert rc == 0, f"exit code {rc} ({dt:.1f} s after SIGTERM); log:\n{srv.log[-2000:]}"
    assert dt <= GRACE, dt

    # What was answered 200 during the shutdown is in the database.
    again = Server(srv.db_url, tmp_path).start()
    try:
        c = srv.org.client()
        c.server = again
        assert c.get_app(created["app_id"])["name"] == "in-flight"
        assert c.get_app(target["app_id"])["name"] == "updated-after-sigterm"
        assert [x["voip_number"] for x in c.numbers(target["app_id"])] == [number]
    finally:
        assert again.stop() == 0


def new_connection_outcome(port):
    """None when a new connection is served or left hanging; else how it was refused."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=1.0)
    except ConnectionRefusedError:
        return "refused"
    except (ConnectionResetError, socket.timeout) as e:
        return f"connect failed: {e!r}"
    try:
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            d = s.recv(4096)
        except ConnectionResetError:
            return "reset"
        except socket.timeout:
            return None
        if d == b"":
            return "closed"
        assert not d.startswith(b"HTTP/1.1 200 "), "a new connection was served after SIGTERM"
        return f"answered {d[:60]!r}"
    finally:
        s.close()


def test_sigterm_refuses_new_connections(srv):
    """Observed: the listening socket stays open until the process exits, so a new connection
    is accepted by the kernel, never answered, and reset when the process ends."""
    body = b'{"name":"slow","answer_url":"https://example.com/a"}'
    sock = open_request(srv, request_head(srv, b"POST", b"/sfvopi/apps", len(body)) + body[:5])
    time.sleep(0.3)
    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    outcomes = [new_connection_outcome(srv.port) for _ in range(2)]
    # The request in flight still completes, then the process exits 0.
    sock.sendall(body[5:])
    status, _, resp = read_response(sock)
    sock.close()
    assert status == 200, resp
    rc, dt = sigterm_and_wait(srv, t0)
    assert rc == 0 and dt <= GRACE, (rc, dt)
    assert all(outcomes), ("after SIGTERM new connections were accepted and left without an "
                           f"answer instead of being refused: {outcomes}")


def test_sigterm_with_idle_connections_exits_promptly(srv):
    idle = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(5)]
    kept = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert kept.recv(4096).startswith(b"HTTP/1.1 200 ")
    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    rc, dt = sigterm_and_wait(srv, t0)
    for s in idle + [kept]:
        s.close()
    assert rc == 0 and dt < 3.0, (rc, dt)


def test_sigterm_grace_period_is_bounded(srv):
    """A request whose body never comes does not hold the process for more than ~10 s."""
    body_len = 100
    sock = open_request(srv, request_head(srv, b"POST", b"/sfvopi/apps", body_len) + b"{")
    time.sleep(0.3)
    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    rc, dt = sigterm_and_wait(srv, t0, timeout=GRACE + 5)
    try:
        assert rc == 0, (rc, dt)
        assert GRACE - 1.0 <= dt <= GRACE + 3.0, dt
        sock.settimeout(2)
        try:
            assert sock.recv(4096) == b""
        except ConnectionResetError:
            pass
    finally:
        sock.close()


@pytest.mark.parametrize("how", ["close", "half-close"])
def test_sigterm_does_not_wait_for_clients_that_left(srv, how):
    """A client that sent part of a body and then closed its end (FIN) has abandoned its
    request: nothing is left to finish, so SIGTERM must not wait the 10 s grace for it.
    (Observed: the FIN that follows the data at once goes unnoticed, the server's socket stays
    in CLOSE_WAIT and the shutdown takes the whole grace period.)"""
    body = b'{"name":"gone","answer_url":"https://example.com/a"}'
    sock = open_request(srv, request_head(srv, b"POST", b"/sfvopi/apps", len(body)) + body[:-6])
    if how == "half-close":
        sock.shutdown(socket.SHUT_WR)
    else:
        sock.close()
    time.sleep(0.5)
    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    rc, dt = sigterm_and_wait(srv, t0, timeout=3.0)  # the fixture kills it if still running
    sock.close()
    assert rc is not None, "still running 3 s after SIGTERM, waiting for a client that had gone"
    assert rc == 0 and dt < 3.0, (rc, dt)
