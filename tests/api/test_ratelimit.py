"""Per-API-key rate limiting (Beyond the docs): a token bucket per key and node,
`--rate-limit N` requests a second (default 100, 0 = off), `--rate-burst N` (default 200).

Over the limit: 429 {"message":"Too many requests"} with Retry-After (whole seconds, >= 1). Every
authenticated response, 429 and 4xx after authentication included, carries X-RateLimit-Limit
(the burst), X-RateLimit-Remaining and X-RateLimit-Reset (seconds until the bucket is full).
Unauthenticated answers (401, /healthz) carry none and are not limited. The check comes right
after authentication: a 401 is never a 429, and a limited request with a bad body is a 429.
"""

import math
import time

import pytest
import requests

from conftest import BIN, MSG_UNAUTH, Server, assert_json_ct, base_env, fresh_db, run_cli

RATE, BURST = 5, 10
MSG_429 = "Too many requests"
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


def serve(db_url, workdir, *extra, env=None):
    argv = [BIN, "--db", db_url, "serve", "--listen", "127.0.0.1:0", "--threads", "2", *extra]
    return Server(db_url, workdir, argv=argv, env=env if env is not None else base_env()).start()


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("rl")
    with fresh_db(workdir, "rl") as url:
        srv = serve(url, workdir, "--rate-limit", str(RATE), "--rate-burst", str(BURST))
        yield srv
        srv.stop()


@pytest.fixture
def org(limited):
    """A fresh organisation, so a fresh key and a full bucket."""
    return limited.make_org(user=9)


def get(srv, key, path="/sfvopi/apps", session=None, **kw):
    headers = {"X-API-Key": key} if key is not None else {}
    return (session or requests).get(srv.url + path, headers=headers, timeout=10, **kw)


def rate(resp):
    """The three rate headers as ints, asserting they are well-formed."""
    vals = []
    for h in RATE_HEADERS:
        v = resp.headers.get(h)
        assert v is not None and v.isdigit(), f"{h}={v!r} on {resp.status_code} {resp.text[:100]}"
        vals.append(int(v))
    limit, remaining, reset = vals
    assert limit == BURST, vals
    assert 0 <= remaining <= BURST, vals
    # Seconds until full, from a bucket holding between `remaining` and `remaining + 1` tokens.
    lo = math.floor((BURST - remaining - 1) / RATE)
    hi = math.ceil((BURST - remaining) / RATE)
    assert lo <= reset <= hi, vals
    return limit, remaining, reset


def no_rate_headers(resp):
    present = [h for h in RATE_HEADERS + ("Retry-After",) if h in resp.headers]
    assert not present, f"{present} on {resp.status_code} {resp.text[:100]}"


def assert_429(resp):
    assert resp.status_code == 429, f"{resp.status_code} {resp.text[:200]}"
    assert_json_ct(resp)
    assert resp.json() == {"message": MSG_429}
    assert resp.text == '{"message":"Too many requests"}'
    ra = resp.headers.get("Retry-After")
    assert ra is not None and ra.isdigit() and int(ra) >= 1, ra
    _, remaining, reset = rate(resp)
    assert remaining == 0 and reset >= 1
    return int(ra)


def exhaust(srv, key, session, max_requests=40):
    """Send requests as fast as possible until the first 429; return (200 count, elapsed, 429)."""
    t0 = time.monotonic()
    n = 0
    for _ in range(max_requests):
        r = get(srv, key, session=session)
        if r.status_code == 429:
            return n, time.monotonic() - t0, r
        assert r.status_code == 200, r.text
        n += 1
    raise AssertionError(f"no 429 after {max_requests} requests")


# ---------------------------------------------------------------------------------------------


def test_headers_on_authenticated_responses(limited, org):
    s = requests.Session()
    r = get(limited, org.key, session=s)
    assert r.status_code == 200
    assert rate(r)[:2] == (BURST, BURST - 1)
    assert "Retry-After" not in r.headers
    # 4xx answers after authentication carry them too, and count.
    r2 = get(limited, org.key, "/sfvopi/apps/sfv_app_000000000000", session=s)
    assert r2.status_code == 404
    assert rate(r2)[1] <= BURST - 2 + 1
    r3 = s.post(limited.url + "/sfvopi/apps", headers={"X-API-Key": org.key}, data=b"[", timeout=10)
    assert r3.status_code == 400
    assert rate(r3)[1] <= BURST - 3 + 1
    r4 = get(limited, org.key, "/sfvopi/available-numbers", session=s)
    assert r4.status_code == 200 and rate(r4)


def test_burst_then_429(limited, org):
    s = requests.Session()
    n, elapsed, r = exhaust(limited, org.key, s)
    # The whole burst passes; refill during the run may add a few (RATE per second).
    assert BURST <= n <= BURST + math.ceil(RATE * elapsed) + 1, (n, elapsed)
    retry_after = assert_429(r)
    assert retry_after <= math.ceil(1 / RATE) + 1, retry_after
    # A limited POST is refused before its body is looked at (429, not 400), and does nothing.
    hdr = {"X-API-Key": org.key}
    for attempt in range(3):
        p = s.post(limited.url + "/sfvopi/apps", headers=hdr, json={"name": 5}, timeout=10)
        if p.status_code == 429:
            break
        assert p.status_code == 400, p.text  # a token came back meanwhile: drain, try again
        exhaust(limited, org.key, s)
    assert_429(p)
    created = set()
    for attempt in range(3):
        p = s.post(limited.url + "/sfvopi/apps", headers=hdr,
                   json={"name": "x", "answer_url": "https://e.com/a"}, timeout=10)
        if p.status_code == 429:
            break
        assert p.status_code == 200, p.text
        created.add(p.json()["data"]["app_id"])  # a token came back meanwhile
        exhaust(limited, org.key, s)
    assert_429(p)
    time.sleep(BURST / RATE + 0.3)
    apps = get(limited, org.key, session=s)
    assert apps.status_code == 200
    made = {a["app_id"] for a in apps.json()["data"] if a["name"] == "x"}
    assert made == created, "a request answered 429 created an app"


def test_refill_after_waiting(limited, org):
    s = requests.Session()
    _, _, r = exhaust(limited, org.key, s)
    retry_after = assert_429(r)
    time.sleep(retry_after + 0.05)
    ok = get(limited, org.key, session=s)
    assert ok.status_code == 200, ok.text
    _, remaining, reset = rate(ok)
    # Full again after X-RateLimit-Reset seconds: the next request leaves BURST - 1.
    time.sleep(reset + 0.3)
    full = get(limited, org.key, session=s)
    assert full.status_code == 200 and rate(full)[1] == BURST - 1, full.headers


def test_keys_are_limited_independently(limited, org):
    other_key = org.new_key(name="second")
    s = requests.Session()
    _, _, r = exhaust(limited, org.key, s)
    assert_429(r)
    r2 = get(limited, other_key, session=s)
    assert r2.status_code == 200, r2.text
    assert rate(r2)[1] == BURST - 1
    assert_429(get(limited, org.key, session=s))


def test_unauthenticated_not_limited_and_without_headers(limited, org):
    s = requests.Session()
    _, _, r = exhaust(limited, org.key, s)
    assert_429(r)
    for key in (None, "sfvk_" + "x" * 40, org.key + "x") * 10:
        u = get(limited, key, session=s)
        assert u.status_code == 401 and u.json() == {"message": MSG_UNAUTH}, u.text
        no_rate_headers(u)
    for _ in range(30):
        h = get(limited, None, "/healthz", session=s)
        assert h.status_code == 200 and h.json() == {"status": "ok"}
        no_rate_headers(h)


def test_limit_off(tmp_path):
    with fresh_db(tmp_path, "off") as url:
        srv = serve(url, tmp_path, "--rate-limit", "0", "--rate-burst", "1")
        try:
            org = srv.make_org()
            s = requests.Session()
            for i in range(300):
                r = get(srv, org.key, session=s)
                assert r.status_code == 200, (i, r.text)
                no_rate_headers(r)
        finally:
            assert srv.stop() == 0


def test_default_limit_headers(tmp_path):
    """Without option or variable: 100 a second, burst 200."""
    with fresh_db(tmp_path, "default") as url:
        srv = serve(url, tmp_path)
        try:
            org = srv.make_org()
            r = get(srv, org.key)
            assert r.status_code == 200
            assert r.headers.get("X-RateLimit-Limit") == "200"
            assert r.headers.get("X-RateLimit-Remaining") == "199"
            assert r.headers.get("X-RateLimit-Reset") == "1"
        finally:
            assert srv.stop() == 0


def test_environment_variables(tmp_path):
    with fresh_db(tmp_path, "env") as url:
        srv = serve(url, tmp_path, env=base_env(SFVOPI_RATE_LIMIT="1", SFVOPI_RATE_BURST="3"))
        try:
            org = srv.make_org()
            s = requests.Session()
            codes = [get(srv, org.key, session=s).status_code for _ in range(5)]
            assert codes[:3] == [200, 200, 200] and 429 in codes[3:], codes
            r = get(srv, org.key, session=s)
            assert r.headers.get("X-RateLimit-Limit") == "3"
        finally:
            assert srv.stop() == 0


def test_option_beats_environment(tmp_path):
    with fresh_db(tmp_path, "beats") as url:
        srv = serve(url, tmp_path, "--rate-limit", "1", "--rate-burst", "2",
                    env=base_env(SFVOPI_RATE_LIMIT="0", SFVOPI_RATE_BURST="50"))
        try:
            org = srv.make_org()
            s = requests.Session()
            codes = [get(srv, org.key, session=s).status_code for _ in range(4)]
            assert codes[:2] == [200, 200] and 429 in codes[2:], codes
        finally:
            assert srv.stop() == 0


BAD_VALUES = [
    ("--rate-limit", "-1"), ("--rate-limit", "abc"), ("--rate-limit", "1.5"),
    ("--rate-limit", ""), ("--rate-limit", "99999999999999999999"), ("--rate-limit", "5x"),
    ("--rate-burst", "0"), ("--rate-burst", "-5"), ("--rate-burst", "x"),
    ("--rate-burst", "99999999999999999999"),
]


@pytest.mark.parametrize("opt,value", BAD_VALUES, ids=[f"{o}={v}" for o, v in BAD_VALUES])
def test_invalid_option_exits_2(tmp_path, opt, value):
    with fresh_db(tmp_path, "bad") as url:
        cp = run_cli("serve", "--listen", "127.0.0.1:0", opt, value, db_url=url, timeout=5)
    assert cp.returncode == 2, (cp.returncode, cp.stderr)
    assert opt in cp.stderr, cp.stderr


@pytest.mark.parametrize("var,value", [("SFVOPI_RATE_LIMIT", "abc"), ("SFVOPI_RATE_LIMIT", "-1"),
                                       ("SFVOPI_RATE_BURST", "0"), ("SFVOPI_RATE_BURST", "1e3")])
def test_invalid_environment_exits_2(tmp_path, var, value):
    with fresh_db(tmp_path, "badenv") as url:
        cp = run_cli("serve", "--listen", "127.0.0.1:0", db_url=url, timeout=10,
                     env=base_env(**{var: value}))
    assert cp.returncode == 2, (cp.returncode, cp.stderr)
    assert var in cp.stderr, cp.stderr


def test_missing_value_exits_2(tmp_path):
    with fresh_db(tmp_path, "noval") as url:
        cp = run_cli("serve", "--listen", "127.0.0.1:0", "--rate-limit", db_url=url, timeout=5)
    assert cp.returncode == 2, (cp.returncode, cp.stderr)
