"""Operability: Prometheus metrics (on the API listener, on an admin listener, off), structured
logs in text and JSON with no secrets, and a `serve --help` that names every option with its
environment variable and default."""

import contextlib
import json
import re
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import requests

from conftest import (
    BIN, PG_URL, Server, base_env, cli_ok, fresh_db, new_number, run_cli, skip_unless_strict,
)

METRIC_LINE = re.compile(r'^([a-z_]+)(\{[^}]*\})? (\S+)$')


def scrape(url):
    r = requests.get(url + "/metrics", timeout=5)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for line in r.text.splitlines():
        if not line or line.startswith("#"):
            assert line == "" or line.startswith("# HELP ") or line.startswith("# TYPE "), line
            continue
        m = METRIC_LINE.match(line)
        assert m, f"not exposition format: {line!r}"
        samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return samples


def settled_scrape(url):
    """A scrape taken once every earlier request has finished: the server
    counts a request when its answer has been sent, which can be just after
    the client has read it. Only the scrape itself is then in flight."""
    deadline = time.monotonic() + 5
    while True:
        s = scrape(url)
        if counter(s, "sfvopi_http_requests_in_flight") == 1 or time.monotonic() > deadline:
            return s
        time.sleep(0.01)


def counter(samples, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return samples.get(f"{name}{{{want}}}" if labels else name, 0.0)


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("ops")


@pytest.fixture
def start(tmp):
    """Starts a server of its own, on a fresh database kept until the test ends."""
    stack = contextlib.ExitStack()

    def run(*args, env=None):
        url = stack.enter_context(fresh_db(tmp, "ops"))
        argv = [BIN, "--db", url, "serve", "--listen", "127.0.0.1:0", "--threads", "2", *args]
        return Server(url, tmp, argv=argv, env=env).start()

    yield run
    stack.close()


def break_apps_table(db_url):
    """Makes every query on apps fail inside the database."""
    sql = "ALTER TABLE apps RENAME TO apps_gone"
    if db_url.startswith("sqlite:"):
        con = sqlite3.connect(db_url[len("sqlite:"):])
        con.execute(sql)
        con.commit()
        con.close()
    else:
        cp = subprocess.run(["psql", db_url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
                            capture_output=True, text=True, timeout=30)
        assert cp.returncode == 0, cp.stderr


def test_metrics_count_requests_by_route_and_status(server):
    org = server.make_org()
    api = org.client()
    before = settled_scrape(server.url)
    app = api.create_app(name="m", answer_url="https://example.com/a")["app_id"]
    for _ in range(3):
        assert api.get(f"/apps/{app}/numbers").status_code == 200
    assert api.get("/apps/sfv_app_000000000000").status_code == 404
    assert requests.get(server.url + "/sfvopi/apps", headers={"X-API-Key": "nope"}).status_code == 401
    assert requests.get(server.url + "/nowhere").status_code == 404
    after = settled_scrape(server.url)

    def delta(name, **labels):
        return counter(after, name, **labels) - counter(before, name, **labels)

    assert delta("sfvopi_http_requests_total", route="numbers.list", status="200") == 3
    assert delta("sfvopi_http_requests_total", route="apps.create", status="200") == 1
    assert delta("sfvopi_http_requests_total", route="apps.get", status="404") == 1
    assert delta("sfvopi_http_requests_total", route="apps.list", status="401") == 1
    assert delta("sfvopi_http_requests_total", route="-", status="404") == 1
    assert delta("sfvopi_http_request_duration_seconds_count", route="numbers.list") == 3
    assert delta("sfvopi_http_request_duration_seconds_bucket", route="numbers.list",
                 le="+Inf") == 3
    assert delta("sfvopi_http_request_duration_seconds_sum", route="numbers.list") > 0
    # Keys: the first use of a key on a thread misses, later ones hit the cache.
    assert delta("sfvopi_keycache_misses_total") >= 1
    assert delta("sfvopi_keycache_hits_total") >= 1
    assert counter(after, "sfvopi_build_info", version=subprocess.run(
        [BIN, "--version"], capture_output=True, text=True).stdout.split()[1]) == 1
    # The scrape being answered is the only request in flight.
    assert counter(after, "sfvopi_http_requests_in_flight") == 1


def test_histogram_buckets_are_cumulative(server):
    org = server.make_org()
    org.client().list_apps()
    s = settled_scrape(server.url)
    buckets = sorted(((float(re.search(r'le="([^"]+)"', k).group(1).replace("+Inf", "inf")), v)
                      for k, v in s.items()
                      if k.startswith('sfvopi_http_request_duration_seconds_bucket{route="apps.list"')))
    assert buckets and buckets[-1][0] == float("inf")
    counts = [v for _, v in buckets]
    assert counts == sorted(counts)
    assert counts[-1] == counter(s, "sfvopi_http_request_duration_seconds_count", route="apps.list")


def test_db_errors_are_counted(start):
    srv = start()
    try:
        org = srv.make_org()
        api = org.client()
        assert api.list_apps() == []
        break_apps_table(srv.db_url)
        before = counter(scrape(srv.url), "sfvopi_db_errors_total")
        r = api.get("/apps")
        assert r.status_code == 500
        assert r.json()["message"].startswith("Failed to get SFVoPI apps: ")
        assert counter(scrape(srv.url), "sfvopi_db_errors_total") == before + 1
    finally:
        assert srv.stop() == 0


def test_metrics_reference_lists_exactly_what_is_exported(start):
    """docs/metrics.md documents every metric family the server exports, with its type (a
    server with the call engine, which adds the SIP and RTP families)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind(("127.0.0.1", 0))
        sip_port = u.getsockname()[1]
    server = start("--sip-listen", f"127.0.0.1:{sip_port}")
    try:
        org = server.make_org()
        requests.get(server.url + "/sfvopi/apps", headers={"X-API-Key": org.key}, timeout=5)
        requests.get(server.url + "/sfvopi/apps", headers={"X-API-Key": "sfvk_wrong"}, timeout=5)
        text = requests.get(server.url + "/metrics", timeout=5).text
    finally:
        assert server.stop() == 0
    exported = dict(re.findall(r"^# TYPE (sfvopi_[a-z_]+) (counter|gauge|histogram)$", text, re.M))
    doc = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    documented = dict(re.findall(r"^\| `(sfvopi_[a-z_]+)` \| (counter|gauge|histogram) \|", doc,
                                 re.M))
    assert len(exported) >= 7, text
    assert exported == documented


def test_metrics_off(start):
    srv = start("--metrics", "off")
    try:
        r = requests.get(srv.url + "/metrics", timeout=5)
        assert r.status_code == 404 and r.json() == {"message": "Not found"}
    finally:
        srv.stop()


def test_metrics_on_admin_listener_only(start):
    srv = start("--admin-listen", "127.0.0.1:0")
    try:
        # The admin line follows the main one, which is all start() waits for.
        deadline = time.monotonic() + 5
        while not (m := re.search(r"admin listening on 127\.0\.0\.1:(\d+)", srv.log)):
            assert time.monotonic() < deadline, srv.log
            time.sleep(0.01)
        admin = f"http://127.0.0.1:{m.group(1)}"
        assert requests.get(srv.url + "/metrics", timeout=5).status_code == 404
        assert requests.get(srv.url + "/healthz", timeout=5).status_code == 200
        org = srv.make_org()
        assert org.client().get("/apps").status_code == 200
        s = settled_scrape(admin)
        assert counter(s, "sfvopi_http_requests_total", route="apps.list", status="200") == 1
        assert requests.get(admin + "/healthz", timeout=5).json() == {"status": "ok"}
        assert requests.get(admin + "/readyz", timeout=5).json() == {"status": "ready"}
        # The API itself is not on the admin address.
        r = requests.get(admin + "/sfvopi/apps", headers={"X-API-Key": org.key}, timeout=5)
        assert r.status_code == 404 and r.json() == {"message": "Not found"}
    finally:
        assert srv.stop() == 0


NOT_FOUND = {"message": "Not found"}


def not_found_like_unknown_path(srv, path="/metrics", **kw):
    """The answer to `path` is the unknown path's, byte for byte apart from the request id."""
    r = requests.get(srv.url + path, timeout=5, **kw)
    unknown = requests.get(srv.url + "/no-such-path", timeout=5, **kw)
    assert (r.status_code, r.json()) == (404, NOT_FOUND), r.text
    assert (r.status_code, r.content) == (unknown.status_code, unknown.content)
    drop = {"x-request-id", "date"}
    assert {k.lower(): v for k, v in r.headers.items() if k.lower() not in drop} == \
        {k.lower(): v for k, v in unknown.headers.items() if k.lower() not in drop}
    return r


PROXIED = [{"X-Forwarded-For": "203.0.113.7"}, {"x-forwarded-for": "127.0.0.1"},
           {"Forwarded": "for=203.0.113.7;proto=https"}, {"Forwarded": "for=127.0.0.1"}]


def test_metrics_only_for_local_unproxied_clients(start):
    """/metrics on the API listener: a loopback client without proxy headers reads it; a
    request relayed by a proxy (even a local one, whatever it claims) gets the unknown path's
    404, also with a trusted proxy configured; other methods too."""
    srv = start("--trusted-proxy", "127.0.0.1")
    try:
        scrape(srv.url)
        for h in PROXIED:
            not_found_like_unknown_path(srv, headers=h)
        r = requests.post(srv.url + "/metrics", headers=PROXIED[0], timeout=5)
        unknown = requests.post(srv.url + "/no-such-path", headers=PROXIED[0], timeout=5)
        assert (r.status_code, r.content) == (unknown.status_code, unknown.content) == \
            (404, b'{"message":"Not found"}'), r.text
        assert "Allow" not in r.headers
        scrape(srv.url)  # the refusals changed nothing for the host itself
        # The rest of the API behind the proxy is unaffected.
        assert requests.get(srv.url + "/healthz", headers=PROXIED[0], timeout=5).json() == \
            {"status": "ok"}
    finally:
        assert srv.stop() == 0


def test_metrics_from_a_non_loopback_peer_are_refused(tmp):
    """A client on another address (a private one, inside a network namespace of the test's own
    so that nothing listens beyond loopback on the machine) is not local: /metrics answers it the
    unknown path's 404, the rest of the API as usual."""
    from netns_helper import PRIV_IP, NatTopology, missing_tools  # noqa: PLC0415
    if missing_tools():
        skip_unless_strict(f"a network namespace needs {', '.join(missing_tools())}")
    if PG_URL:
        pytest.skip("the peer check is independent of the database backend: SQLite runs only")
    with NatTopology() as t, t.entered(t.priv), fresh_db(tmp, "netns") as url:
        argv = [BIN, "--db", url, "serve", "--listen", f"{PRIV_IP}:0", "--threads", "1"]
        srv = Server(url, tmp, argv=argv).start()
        try:
            m = re.search(r"^listening on \S+:(\d+)$", srv.log, re.M)
            assert m, srv.log
            base_url = f"http://{PRIV_IP}:{m.group(1)}"
            r = requests.get(base_url + "/metrics", timeout=5)
            unknown = requests.get(base_url + "/no-such-path", timeout=5)
            assert (r.status_code, r.content) == (unknown.status_code, unknown.content) == \
                (404, b'{"message":"Not found"}'), r.text
            assert requests.get(base_url + "/healthz", timeout=5).json() == {"status": "ok"}
        finally:
            assert srv.stop() == 0


def test_metrics_on_ipv6_loopback(start):
    """::1 is loopback: /metrics answers a client there, not one behind a proxy."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    srv = start("--listen", "[::1]:0")
    try:
        m = re.search(r"^listening on (\[::1\]:\d+)$", srv.log, re.M)
        assert m, srv.log
        url = f"http://{m.group(1)}"
        scrape(url)
        r = requests.get(url + "/metrics", headers=PROXIED[0], timeout=5)
        assert (r.status_code, r.json()) == (404, NOT_FOUND), r.text
    finally:
        assert srv.stop() == 0


@pytest.mark.parametrize("how", ["flag", "env"])
def test_metrics_public_serves_everyone(start, how):
    """--metrics-public (or SFVOPI_METRICS_PUBLIC=1): proxied requests read /metrics too."""
    if how == "flag":
        srv = start("--metrics-public")
    else:
        srv = start(env=base_env(SFVOPI_METRICS_PUBLIC="1"))
    try:
        for h in PROXIED:
            r = requests.get(srv.url + "/metrics", headers=h, timeout=5)
            assert r.status_code == 200 and "sfvopi_http_requests_total" in r.text, r.text
    finally:
        assert srv.stop() == 0


def test_admin_listener_serves_metrics_to_proxied_requests(start):
    """The admin listener is the operator's own: /metrics there answers whatever the request
    carries, while the API listener keeps the unknown path's 404."""
    srv = start("--admin-listen", "127.0.0.1:0")
    try:
        deadline = time.monotonic() + 5
        while not (m := re.search(r"admin listening on 127\.0\.0\.1:(\d+)", srv.log)):
            assert time.monotonic() < deadline, srv.log
            time.sleep(0.01)
        admin = f"http://127.0.0.1:{m.group(1)}"
        for h in PROXIED:
            r = requests.get(admin + "/metrics", headers=h, timeout=5)
            assert r.status_code == 200 and "sfvopi_http_requests_total" in r.text, r.text
            not_found_like_unknown_path(srv, headers=h)
    finally:
        assert srv.stop() == 0


def test_admin_listen_bad_address_is_an_error(tmp):
    with fresh_db(tmp, "bad") as url:
        cp = subprocess.run([BIN, "--db", url, "serve", "--listen", "127.0.0.1:0",
                             "--admin-listen", "nowhere"], capture_output=True, text=True,
                            timeout=10, env=base_env())
        assert cp.returncode == 2  # malformed: a usage error
        assert cp.stderr.startswith("sfvopi: --admin-listen must be HOST:PORT"), cp.stderr
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            addr = "127.0.0.1:%d" % taken.getsockname()[1]
            cp = subprocess.run([BIN, "--db", url, "serve", "--listen", "127.0.0.1:0",
                                 "--admin-listen", addr], capture_output=True, text=True,
                                timeout=10, env=base_env())
    assert cp.returncode == 1  # well formed but in use: the operation failed
    assert f"sfvopi: cannot listen on {addr}: address unavailable" in cp.stderr, cp.stderr


def access_lines(log):
    return [l for l in log.splitlines() if "msg=access" in l or '"msg":"access"' in l]


def test_text_access_log_has_every_field_and_no_secret(server):
    org = server.make_org()
    api = org.client()
    app = api.create_app(name="secret-name-xyz", answer_url="https://example.com/secret-url")
    rid = "trace-123"
    r = api.get(f"/apps/{app['app_id']}", headers={"X-Request-Id": rid})
    assert r.status_code == 200
    # The line is written once the answer has been sent, which can be just
    # after the client has read it.
    deadline = time.monotonic() + 5
    while True:
        lines = [l for l in access_lines(server.log) if f"req_id={rid}" in l]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert len(lines) == 1, server.log[-2000:]
    line = lines[0]
    for field in ("ts=", "level=info", "method=GET", f"path=\"/sfvopi/apps/{app['app_id']}\"",
                  "route=apps.get", "status=200", "dur_ms=", "bytes=", f"org={org.id}"):
        assert field in line, (field, line)
    assert org.key not in server.log
    assert org.key[5:] not in server.log
    assert "secret-name-xyz" not in server.log and "secret-url" not in server.log
    assert "X-API-Key" not in server.log and "x-api-key" not in server.log


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_debug_log_holds_no_secret(start, fmt):
    """At the most talkative level too: no key (whole, secret part or a wrong one), no body, no
    query string, no auth header."""
    srv = start("--log-level", "debug", "--log-format", fmt)
    marker = "dbg-marker-51c0"
    wrong = "sfvk_" + "Z" * 43
    try:
        org = srv.make_org()
        api = org.client()
        app = api.create_app(name=marker, answer_url=f"https://example.com/{marker}")
        api.put(f"/apps/{app['app_id']}", json={"name": marker + "x"})
        api.post("/apps", data=b'{"name":"' + marker.encode() + b'"', headers={})  # 400
        api.post(f"/apps/{app['app_id']}/numbers", json={"voip_number": "+91" + "9" * 10,
                                                          "note": marker})
        requests.get(srv.url + f"/sfvopi/apps?token={marker}", headers={"X-API-Key": org.key},
                     timeout=5)
        for key in (wrong, org.key[:-1], org.key + "x"):
            r = requests.get(srv.url + "/sfvopi/apps", headers={"X-API-Key": key}, timeout=5)
            assert r.status_code == 401
    finally:
        assert srv.stop() == 0
    log = srv.log
    assert len(access_lines(log)) >= 8, log  # every request was logged, and nothing of this
    for secret in (org.key, org.key[12:], wrong, wrong[12:], org.key[:-1], marker):
        assert secret not in log, secret
    assert "x-api-key" not in log.lower()


def test_json_log_format(start):
    srv = start("--log-format", "json")
    try:
        org = srv.make_org()
        api = org.client()
        api.create_app(name="json-secret", answer_url="https://example.com/a")
        api.get("/apps", headers={"X-Request-Id": "json-rid"})
        requests.get(srv.url + "/sfvopi/apps/%22quote", headers={"X-API-Key": org.key})
    finally:
        assert srv.stop() == 0
    lines = [l for l in srv.log.splitlines() if l.startswith("{")]
    assert lines, srv.log
    objs = [json.loads(l) for l in lines]  # every line is one JSON object
    access = [o for o in objs if o.get("msg") == "access"]
    assert len(access) == 3
    a = next(o for o in access if o["req_id"] == "json-rid")
    assert a["method"] == "GET" and a["route"] == "apps.list" and a["status"] == 200
    assert isinstance(a["dur_ms"], float) and isinstance(a["bytes"], int)
    assert a["org"] == org.id and a["level"] == "info"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", a["ts"])
    assert any(o.get("msg") == "stopped" for o in objs)
    assert org.key not in srv.log and "json-secret" not in srv.log


def test_log_level_off_writes_no_access_lines(start):
    srv = start("--log-level", "warn")
    try:
        srv.make_org().client().list_apps()
    finally:
        srv.stop()
    assert access_lines(srv.log) == []
    assert "listening on" in srv.log


@pytest.mark.parametrize("args,env,msg", [
    (["--log-format", "xml"], {}, "--log-format must be text or json"),
    (["--metrics", "maybe"], {}, "--metrics must be on or off"),
    (["--log-level", "loud"], {}, "--log-level must be debug, info, warn, error or off"),
    ([], {"SFVOPI_LOG_FORMAT": "yaml"}, "--log-format must be text or json (from SFVOPI_LOG_FORMAT)"),
    ([], {"SFVOPI_IDLE_TIMEOUT": "0"}, "--idle-timeout"),
    ([], {"SFVOPI_MAX_CONNECTIONS": "x"}, "--max-connections"),
    ([], {"SFVOPI_LISTEN": "8080"}, "--listen must be HOST:PORT"),
    ([], {"SFVOPI_ADMIN_LISTEN": "x:y"}, "--admin-listen must be HOST:PORT"),
    ([], {"SFVOPI_SIP_LISTEN": "127.0.0.1"},
     "--sip-listen must be a comma-separated list of [udp:|tcp:|tls:]IP:PORT (IPv6 as [::1]:5060): "
     "the value '127.0.0.1' is not [udp:|tcp:|tls:]IP:PORT with a port from 1 to 65535 "
     "(from SFVOPI_SIP_LISTEN)"),
    ([], {"SFVOPI_SIP_TRUNK": "carrier:5060"}, "--sip-trunk must be a URI"),
    ([], {"SFVOPI_RTP_PORTS": "30000"}, "--rtp-ports must be LOW-HIGH"),
    ([], {"SFVOPI_MEDIA_IP": "media"}, "--media-ip must be an IP address"),
    ([], {"SFVOPI_DENY_PRIVATE_URLS": "maybe"}, "SFVOPI_DENY_PRIVATE_URLS must be 1 or 0"),
    ([], {"SFVOPI_MAX_CALLS": "0"}, "--max-calls must be a whole number"),
    ([], {"SFVOPI_ANSWER_DELAY": "-1"}, "--answer-delay must be a whole number"),
    (["--sip-allow", "carrier.example.net"], {},
     "--sip-allow must be 'any' or a comma-separated list of IP addresses and CIDR blocks: the "
     "value item 'carrier.example.net' is not an IP address"),
    (["--sip-allow", "10.0.0.1/8"], {}, "--sip-allow must be 'any' or a comma-separated list"),
    ([], {"SFVOPI_SIP_ALLOW": "192.0.2.1,,192.0.2.2"},
     "--sip-allow must be 'any' or a comma-separated list of IP addresses and CIDR blocks: the "
     "value has an empty item (from SFVOPI_SIP_ALLOW)"),
    (["--sip-invite-rate", "0"], {}, "--sip-invite-rate must be a whole number"),
    ([], {"SFVOPI_RTP_LATCH": "maybe"}, "SFVOPI_RTP_LATCH must be 1 or 0"),
    (["--sip-user", "al ice"], {}, "--sip-user must be 1 to 128 characters of a SIP user part"),
    (["--sip-register"], {}, "--sip-register needs --sip-user"),
    (["--sip-register", "--sip-user", "alice"], {},
     "--sip-register needs --sip-trunk or --sip-registrar"),
    (["--sip-caller-id", "pai"], {}, "--sip-caller-id pai needs --sip-user"),
    (["--sip-caller-id", "number"], {}, "--sip-caller-id must be from or pai"),
    (["--sip-registrar", "registrar.example.net"], {}, "--sip-registrar must be a URI"),
    (["--sip-outbound-proxy", "proxy:5060"], {}, "--sip-outbound-proxy must be a URI"),
    (["--sip-register-expires", "0"], {}, "--sip-register-expires must be a whole number"),
    (["--sip-from-domain", "pbx example"], {}, "--sip-from-domain must be a host name"),
    (["--sip-header", "X-Token"], {}, "--sip-header 'X-Token' must be 'Name: value'"),
    (["--sip-header", "From: <sip:x@y>"], {},
     "--sip-header 'From: <sip:x@y>' names a header that sfvopi writes itself"),
    ([], {"SFVOPI_SIP_HEADER": "X-A: 1\nBad Name: 2"}, "--sip-header 'Bad Name: 2' must be"),
    (["--dns-server", "dns.example.net"], {}, "--dns-server must be up to four IP[:PORT]"),
    (["--drain-timeout", "-1"], {},
     "--drain-timeout must be a whole number of seconds from 0 to 86400"),
    (["--drain-timeout", "86401"], {}, "--drain-timeout must be a whole number of seconds"),
    (["--drain-timeout", "5s"], {}, "--drain-timeout must be a whole number of seconds"),
    (["--node-id", "node a"], {}, "--node-id must be 1 to 64 characters from A-Z"),
    ([], {"SFVOPI_NODE_ID": "n" * 65}, "--node-id must be 1 to 64 characters"),
    ([], {"SFVOPI_DRAIN_TIMEOUT": "soon"},
     "--drain-timeout must be a whole number of seconds from 0 to 86400 (from "
     "SFVOPI_DRAIN_TIMEOUT)"),
    ([], {"SFVOPI_METRICS_PUBLIC": "maybe"}, "SFVOPI_METRICS_PUBLIC must be 1 or 0"),
    (["--sip-password-file", "/nonexistent"], {"SFVOPI_SIP_PASSWORD": "x"},
     "give the trunk password once: SFVOPI_SIP_PASSWORD or --sip-password-file, not both"),
])
def test_bad_serve_settings_are_usage_errors(tmp, args, env, msg):
    with fresh_db(tmp, "usage") as url:
        cp = subprocess.run([BIN, "--db", url, "serve", *args], capture_output=True, text=True,
                            timeout=10, env=base_env(**env))
    assert cp.returncode == 2
    assert cp.stderr.splitlines()[0].startswith("sfvopi: " + msg), cp.stderr


def test_serve_help_names_every_option_with_its_variable_and_default():
    cp = subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True, timeout=10)
    assert cp.returncode == 0 and cp.stderr == ""
    text = cp.stdout
    options = {
        "--listen": ("SFVOPI_LISTEN", "127.0.0.1:8080"),
        "--threads": ("SFVOPI_THREADS", "number of cores"),
        "--max-connections": ("SFVOPI_MAX_CONNECTIONS", "1024"),
        "--idle-timeout": ("SFVOPI_IDLE_TIMEOUT", "30"),
        "--rate-limit": ("SFVOPI_RATE_LIMIT", "100"),
        "--rate-burst": ("SFVOPI_RATE_BURST", "200"),
        "--metrics": ("SFVOPI_METRICS", "on"),
        "--metrics-public": ("SFVOPI_METRICS_PUBLIC", "off"),
        "--drain-timeout": ("SFVOPI_DRAIN_TIMEOUT", "30"),
        "--node-id": ("SFVOPI_NODE_ID", "<hostname>-<random>"),
        "--admin-listen": ("SFVOPI_ADMIN_LISTEN", "off"),
        "--tls-cert": ("SFVOPI_TLS_CERT", "plain HTTP"),
        "--tls-key": ("SFVOPI_TLS_KEY", "none"),
        "--admin-tls-cert": ("SFVOPI_ADMIN_TLS_CERT", "plain HTTP"),
        "--admin-tls-key": ("SFVOPI_ADMIN_TLS_KEY", "none"),
        "--trusted-proxy": ("SFVOPI_TRUSTED_PROXY", "none"),
        "--sip-listen": ("SFVOPI_SIP_LISTEN", "off"),
        "--sip-trunk": ("SFVOPI_SIP_TRUNK", "none"),
        "--rtp-ports": ("SFVOPI_RTP_PORTS", "20000-20999"),
        "--media-ip": ("SFVOPI_MEDIA_IP", "the --sip-listen address"),
        "--deny-private-urls": ("SFVOPI_DENY_PRIVATE_URLS", "off"),
        "--max-calls": ("SFVOPI_MAX_CALLS", "500"),
        "--rtp-timeout": ("SFVOPI_RTP_TIMEOUT", "60"),
        "--answer-delay": ("SFVOPI_ANSWER_DELAY", "0"),
        "--sip-allow": ("SFVOPI_SIP_ALLOW", "the addresses --sip-trunk"),
        "--sip-invite-rate": ("SFVOPI_SIP_INVITE_RATE", "200"),
        "--rtp-latch": ("SFVOPI_RTP_LATCH", "off"),
        "--sip-user": ("SFVOPI_SIP_USER", "none"),
        "--sip-password-file": ("SFVOPI_SIP_PASSWORD_FILE", "none"),
        "--sip-register": ("SFVOPI_SIP_REGISTER", "off"),
        "--sip-registrar": ("SFVOPI_SIP_REGISTRAR", "--sip-trunk"),
        "--sip-register-expires": ("SFVOPI_SIP_REGISTER_EXPIRES", "600"),
        "--sip-from-domain": ("SFVOPI_SIP_FROM_DOMAIN", "the trunk host"),
        "--sip-caller-id": ("SFVOPI_SIP_CALLER_ID", "from"),
        "--sip-outbound-proxy": ("SFVOPI_SIP_OUTBOUND_PROXY", "none"),
        "--sip-header": ("SFVOPI_SIP_HEADER", "none"),
        "--dns-server": ("SFVOPI_DNS_SERVER", "those"),
        "--sip-tls-cert": ("SFVOPI_SIP_TLS_CERT", "none"),
        "--sip-tls-key": ("SFVOPI_SIP_TLS_KEY", "none"),
        "--sip-tls-ca": ("SFVOPI_SIP_TLS_CA", "the system's"),
        "--srtp": ("SFVOPI_SRTP", "off"),
        "--sip-advertise": ("SFVOPI_SIP_ADVERTISE", "the"),
        "--log-format": ("SFVOPI_LOG_FORMAT", "text"),
        "--log-level": ("SFVOPI_LOG_LEVEL", "info"),
        "--db": ("SFVOPI_DB", "sqlite:sfvopi.db"),
        "--default-country-code": ("SFVOPI_DEFAULT_CC", "91"),
    }
    blocks = re.split(r"\n(?=  --)", text)
    # Every option the help lists is checked here: a new one cannot go undocumented.
    assert set(re.findall(r"^  (--[a-z-]+)", text, re.M)) == set(options)
    for opt, (env, default) in options.items():
        block = next((b for b in blocks if b.lstrip().startswith(opt + " ")), None)
        assert block, f"{opt} missing from serve --help"
        assert f"[{env}]" in block, (opt, block)
        if default:
            assert f"default {default}" in block or f"default: {default}" in block, (opt, block)


def test_every_variable_in_help_is_honoured(tmp):
    """Each documented variable changes behaviour (spot checks that can fail)."""
    with fresh_db(tmp, "envs") as url:
        env = base_env(SFVOPI_DB=url, SFVOPI_LISTEN="127.0.0.1:0", SFVOPI_METRICS="off",
                       SFVOPI_LOG_FORMAT="json", SFVOPI_RATE_LIMIT="1", SFVOPI_RATE_BURST="1",
                       SFVOPI_THREADS="1")
        srv = Server(url, tmp, argv=[BIN, "serve"], env=env).start()
        try:
            assert requests.get(srv.url + "/metrics", timeout=5).status_code == 404
            org = srv.make_org()
            h = {"X-API-Key": org.key}
            assert requests.get(srv.url + "/sfvopi/apps", headers=h).status_code == 200
            r = requests.get(srv.url + "/sfvopi/apps", headers=h)
            assert r.status_code == 429 and r.headers["X-RateLimit-Limit"] == "1"
        finally:
            srv.stop()
        assert '"threads":1' in srv.log
        assert all(l.startswith("{") for l in srv.log.splitlines() if "listening on" not in l)


def test_call_and_admin_variables_are_honoured(tmp):
    """SFVOPI_SIP_LISTEN turns calls on, SFVOPI_ADMIN_LISTEN moves /metrics off the API port."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind(("127.0.0.1", 0))
        sip_port = u.getsockname()[1]
    with fresh_db(tmp, "callenv") as url:
        env = base_env(SFVOPI_DB=url, SFVOPI_LISTEN="127.0.0.1:0",
                       SFVOPI_SIP_LISTEN=f"127.0.0.1:{sip_port}",
                       SFVOPI_ADMIN_LISTEN="127.0.0.1:0", SFVOPI_MAX_CALLS="3")
        srv = Server(url, tmp, argv=[BIN, "serve"], env=env).start()
        try:
            assert requests.get(srv.url + "/metrics", timeout=5).status_code == 404
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                with pytest.raises(OSError):  # the SIP port is taken by the server now
                    u.bind(("127.0.0.1", sip_port))
        finally:
            srv.stop()
        assert f"sip listening on 127.0.0.1:{sip_port}" in srv.log
        assert re.search(r"^admin listening on 127\.0\.0\.1:\d+$", srv.log, re.M), srv.log


def test_version():
    cp = subprocess.run([BIN, "--version"], capture_output=True, text=True, timeout=10)
    assert cp.returncode == 0
    assert re.fullmatch(r"sfvopi \d+\.\d+\.\d+\n", cp.stdout)
