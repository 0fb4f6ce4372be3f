"""Authentication and organisation isolation (spec/API.md section 1, Authentication)."""

import time

import pytest

from conftest import (
    MSG_APP_NOT_FOUND, MSG_NOT_LINKED, MSG_NUM_APP_NOT_FOUND, MSG_NUM_NOT_OWNED, MSG_UNAUTH,
    assert_error, cli_ok, new_number, ok, wait_until,
)

# Every authenticated route, with a body valid for it. {app} and {num} are filled per test.
ROUTES = [
    ("GET", "/apps", None),
    ("POST", "/apps", {"name": "x", "answer_url": "https://example.com/a"}),
    ("GET", "/apps/{app}", None),
    ("PUT", "/apps/{app}", {"name": "changed"}),
    ("DELETE", "/apps/{app}", None),
    ("GET", "/apps/{app}/numbers", None),
    ("POST", "/apps/{app}/numbers", {"voip_number": "{num}"}),
    ("DELETE", "/apps/{app}/numbers/{num}", None),
    ("GET", "/available-numbers", None),
]
ROUTE_IDS = [f"{m} {p}" for m, p, _ in ROUTES]


def fill(path, payload, app, num):
    path = path.replace("{app}", app).replace("{num}", num)
    if payload is not None:
        payload = {k: (v.replace("{num}", num) if isinstance(v, str) else v)
                   for k, v in payload.items()}
    return path, payload


def send(client, method, path, payload, **kw):
    if payload is None:
        return client.request(method, path, **kw)
    return client.request(method, path, json=payload, **kw)


# Bad keys, each a function of a real, valid key of the organisation.
BAD_KEYS = {
    "missing": lambda k: None,
    "empty": lambda k: "",
    "garbage": lambda k: "abc",
    "prefix-only": lambda k: "sfvk_",
    "short": lambda k: "sfvk_abc123",
    "unknown-well-formed": lambda k: "sfvk_" + "A1b2C3d4E5" * 4 + "xyz",
    "upper-prefix": lambda k: "SFVK_" + k[5:],
    "wrong-prefix": lambda k: "sfvx_" + k[5:],
    "extra-char": lambda k: k + "a",
    "missing-char": lambda k: k[:-1],
    "flipped-last": lambda k: k[:-1] + ("B" if k[-1] != "B" else "C"),
    "bearer": lambda k: "Bearer " + k,
    "key-prefix-12": lambda k: k[:12],
    "non-alnum": lambda k: k[:-1] + "!",
}


@pytest.fixture(scope="module")
def victim(server):
    """An organisation with an app and a linked number; nothing in this module may change it."""
    org = server.make_org(user=1)
    api = org.client()
    app = api.create_app(name="victim")
    linked, free = org.add_numbers(2)
    api.link(app["app_id"], linked)
    return org, app, linked, free


def victim_unchanged(victim):
    org, app, linked, free = victim
    api = org.client()
    assert api.get_app(app["app_id"]) == app
    assert [x["voip_number"] for x in api.numbers(app["app_id"])] == [linked]
    assert api.list_apps() == [app]
    assert free in api.available_numbers()


@pytest.mark.parametrize("kind", list(BAD_KEYS))
@pytest.mark.parametrize("method,path,payload", ROUTES, ids=ROUTE_IDS)
def test_bad_key_401_on_every_route(victim, kind, method, path, payload):
    org, app, linked, free = victim
    key = BAD_KEYS[kind](org.key)
    p, b = fill(path, payload, app["app_id"], free)
    assert_error(send(org.client(key=key), method, p, b), 401, MSG_UNAUTH)
    victim_unchanged(victim)


@pytest.mark.parametrize("method,path,payload", ROUTES, ids=ROUTE_IDS)
def test_bad_key_401_even_when_app_missing(victim, prefix, method, path, payload):
    org = victim[0]
    p, b = fill(path, payload, "sfv_app_000000000000", new_number())
    c = org.client(prefix, key="sfvk_" + "Z" * 43)
    assert_error(send(c, method, p, b), 401, MSG_UNAUTH)
    assert_error(send(org.client(prefix, key=None), method, p, b), 401, MSG_UNAUTH)


@pytest.mark.parametrize("method,path,payload", ROUTES, ids=ROUTE_IDS)
def test_bad_key_401_before_body_checks(victim, method, path, payload):
    """Authentication is decided on the headers: an invalid body still gives 401."""
    org, app, _, free = victim
    p, _ = fill(path, payload, app["app_id"], free)
    for body in (b"{", b"[]", b"\xff\xfe"):
        resp = org.client(key=None).request(method, p, data=body,
                                            headers={"Content-Type": "application/json"})
        assert_error(resp, 401, MSG_UNAUTH)


@pytest.mark.parametrize("header", ["X-API-Key", "x-api-key", "X-API-KEY", "x-Api-kEy"])
def test_header_name_case_insensitive(org, header, prefix):
    c = org.client(prefix, key=None)
    assert ok(c.get("/apps", headers={header: org.key})) == []
    app = ok(c.post("/apps", json={"name": "h", "answer_url": "https://e.com/"},
                    headers={header: org.key}))
    assert ok(c.get(f"/apps/{app['app_id']}", headers={header: org.key})) == app


def test_revoked_key_stops_working(server, org):
    """A revoked key stops working on every node within 5 seconds (per-worker caches included):
    from 6 s after the revocation on, every request with it, on any route, is a 401."""
    other = org.new_key(name="to-revoke")
    c_other = org.client(key=other)
    app = c_other.create_app()
    key_id = org.key_id(other)
    assert cli_ok(server.cli("key", "revoke", key_id)) == []
    revoked_at = time.monotonic()
    assert wait_until(lambda: c_other.get("/apps").status_code == 401, timeout=6.0), \
        "revoked key still accepted after 6 s"
    time.sleep(max(0.0, revoked_at + 6.0 - time.monotonic()))
    for _ in range(3):  # several rounds, so that every worker thread answers at least once
        for method, path, payload in ROUTES:
            p, b = fill(path, payload, app["app_id"], new_number())
            assert_error(send(c_other, method, p, b), 401, MSG_UNAUTH)
    # The organisation's other key is unaffected, and the app still exists.
    assert org.client().get_app(app["app_id"]) == app
    rows = [r.split("\t") for r in cli_ok(server.cli("key", "list", "--org", org.id))]
    assert [r[3:4] for r in rows if int(r[0]) == key_id] == [["REVOKED"]]


def test_keys_of_one_org_share_resources(server, org):
    k2 = org.new_key()
    a = org.client().create_app()
    assert org.client(key=k2).get_app(a["app_id"]) == a
    ok(org.client(key=k2).delete(f"/apps/{a['app_id']}"))
    assert org.client().list_apps() == []


# ---------------------------------------------------------------------------------------------
# Another organisation's resources do not exist for the caller: 404 with the route's message.

@pytest.fixture
def intruder(server):
    org = server.make_org()
    (own,) = org.add_numbers(1)
    own_app = org.client().create_app(name="intruder app")
    return org, own_app, own


def test_isolation_list_apps(victim, intruder, prefix):
    org_b, own_app, _ = intruder
    assert org_b.client(prefix).list_apps() == [own_app]
    victim_unchanged(victim)


def test_isolation_get_app(victim, intruder, prefix):
    app = victim[1]
    assert_error(intruder[0].client(prefix).get(f"/apps/{app['app_id']}"), 404, MSG_APP_NOT_FOUND)


def test_isolation_update_app(victim, intruder, prefix):
    app = victim[1]
    c = intruder[0].client(prefix)
    assert_error(c.put(f"/apps/{app['app_id']}", json={"name": "hacked"}), 404, MSG_APP_NOT_FOUND)
    assert_error(c.put(f"/apps/{app['app_id']}", json={}), 404, MSG_APP_NOT_FOUND)
    victim_unchanged(victim)


def test_isolation_delete_app(victim, intruder, prefix):
    app = victim[1]
    assert_error(intruder[0].client(prefix).delete(f"/apps/{app['app_id']}"), 404,
                 MSG_APP_NOT_FOUND)
    victim_unchanged(victim)


def test_isolation_list_numbers(victim, intruder, prefix):
    app = victim[1]
    assert_error(intruder[0].client(prefix).get(f"/apps/{app['app_id']}/numbers"), 404,
                 MSG_NUM_APP_NOT_FOUND)


def test_isolation_link_to_other_orgs_app(victim, intruder, prefix):
    org_b, _, own = intruder
    app = victim[1]
    c = org_b.client(prefix)
    # Even with the intruder's own, free number.
    assert_error(c.post(f"/apps/{app['app_id']}/numbers", json={"voip_number": own}), 404,
                 MSG_NUM_APP_NOT_FOUND)
    assert own in c.available_numbers()
    victim_unchanged(victim)


def test_isolation_unlink_from_other_orgs_app(victim, intruder, prefix):
    _, app, linked, _ = victim
    assert_error(intruder[0].client(prefix).delete(f"/apps/{app['app_id']}/numbers/{linked}"),
                 404, MSG_NUM_APP_NOT_FOUND)
    victim_unchanged(victim)


def test_isolation_cannot_link_other_orgs_number(victim, intruder, prefix):
    org_b, own_app, _ = intruder
    _, _, linked, free = victim
    c = org_b.client(prefix)
    for num in (free, linked):
        assert_error(c.post(f"/apps/{own_app['app_id']}/numbers", json={"voip_number": num}),
                     400, MSG_NUM_NOT_OWNED)
    assert c.numbers(own_app["app_id"]) == []
    victim_unchanged(victim)


def test_isolation_cannot_unlink_other_orgs_number_from_own_app(victim, intruder):
    org_b, own_app, _ = intruder
    linked = victim[2]
    assert_error(org_b.client().delete(f"/apps/{own_app['app_id']}/numbers/{linked}"),
                 404, MSG_NOT_LINKED)
    victim_unchanged(victim)


def test_isolation_available_numbers(victim, intruder, prefix):
    org_b, _, own = intruder
    assert org_b.client(prefix).available_numbers() == [own]
    assert victim[3] not in org_b.client(prefix).available_numbers()


def test_isolation_same_number_free_text_never_leaks(victim, intruder):
    """The 404 bodies for another org's app are byte-identical to a nonexistent app's."""
    c = intruder[0].client()
    app = victim[1]
    for method, suffix in [("GET", ""), ("GET", "/numbers"), ("DELETE", "")]:
        theirs = c.request(method, f"/apps/{app['app_id']}{suffix}")
        missing = c.request(method, f"/apps/sfv_app_000000000000{suffix}")
        assert (theirs.status_code, theirs.content) == (missing.status_code, missing.content)
    victim_unchanged(victim)
