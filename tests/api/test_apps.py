"""Apps: create, list, get, update, delete (spec/API.md section 2)."""

import json

import pytest

from conftest import (
    APP_FIELDS, APP_ID_RE, MSG_APP_NOT_FOUND, MSG_INVALID, MSG_NUM_APP_NOT_FOUND, NOT_UTF8,
    assert_compact, assert_error, assert_recent, ok, parse_ts,
)

ANSWER = "https://example.com/webhook/answer"


def body(**over):
    b = {"name": "My Voice App", "answer_url": ANSWER}
    b.update(over)
    return b


def without(key):
    b = body()
    del b[key]
    return b


# ---------------------------------------------------------------------------------------------
# Create.

def test_create_minimal_app(org, prefix):
    api = org.client(prefix)
    resp = api.post("/apps", json=body())
    app = ok(resp)
    assert resp.text.startswith('{"data":{"app_id":"sfv_app_')
    assert_compact(resp)
    assert list(app.keys()) == APP_FIELDS
    assert APP_ID_RE.match(app["app_id"]), app
    assert_recent(app["created_at"])
    assert app == {
        "app_id": app["app_id"], "org_id": org.id, "name": "My Voice App",
        "answer_url": ANSWER, "answer_method": "POST",
        "hangup_url": None, "hangup_method": "POST",
        "fallback_answer_url": None, "fallback_answer_method": "POST",
        "status": "ACTIVE", "created_by": 67890,
        "created_at": app["created_at"], "updated_at": None,
    }
    # Side effects: readable back under both prefixes, listed.
    for p in ("/sfvopi", "/superfone/sfvopi"):
        assert org.client(p).get_app(app["app_id"]) == app
        assert org.client(p).list_apps() == [app]


def test_create_full_app_methods_any_case_stored_upper(org, prefix):
    api = org.client(prefix)
    app = ok(api.post("/apps", json={
        "name": "Full", "answer_url": "http://a.example.com/answer", "answer_method": "get",
        "hangup_url": "https://h.example.com/hangup?x=1&y=2", "hangup_method": "Get",
        "fallback_answer_url": "https://f.example.com:8443/fb#frag",
        "fallback_answer_method": "pOsT",
    }))
    assert list(app.keys()) == APP_FIELDS
    assert {k: app[k] for k in APP_FIELDS[2:10]} == {
        "name": "Full", "answer_url": "http://a.example.com/answer", "answer_method": "GET",
        "hangup_url": "https://h.example.com/hangup?x=1&y=2", "hangup_method": "GET",
        "fallback_answer_url": "https://f.example.com:8443/fb#frag",
        "fallback_answer_method": "POST", "status": "ACTIVE",
    }
    assert app["updated_at"] is None
    assert api.get_app(app["app_id"]) == app


@pytest.mark.parametrize("method,stored", [
    ("POST", "POST"), ("GET", "GET"), ("post", "POST"), ("get", "GET"), ("Post", "POST"),
    ("gEt", "GET"),
])
def test_create_method_case_insensitive(api, method, stored):
    app = api.create_app(answer_method=method, hangup_method=method,
                         fallback_answer_method=method)
    assert (app["answer_method"], app["hangup_method"], app["fallback_answer_method"]) == \
        (stored, stored, stored)


def test_create_explicit_null_optional_urls_same_as_absent(api):
    app = api.create_app(hangup_url=None, fallback_answer_url=None)
    assert app["hangup_url"] is None and app["fallback_answer_url"] is None
    assert api.get_app(app["app_id"]) == app


@pytest.mark.parametrize("status", ["INACTIVE", "ACTIVE", "bogus"])
def test_create_ignores_status(api, status):
    app = api.create_app(status=status)
    assert app["status"] == "ACTIVE"
    assert api.get_app(app["app_id"])["status"] == "ACTIVE"


def test_create_ignores_unknown_and_server_owned_fields(api, org):
    app = api.create_app(foo=1, bar={"x": [1, 2]}, app_id="sfv_app_aaaaaaaaaaaa", org_id=1,
                         created_by=5, created_at="2000-01-01T00:00:00.000Z",
                         updated_at="2000-01-01T00:00:00.000Z")
    assert list(app.keys()) == APP_FIELDS
    assert app["app_id"] != "sfv_app_aaaaaaaaaaaa"
    assert app["org_id"] == org.id and app["created_by"] == 67890
    assert app["updated_at"] is None
    assert_recent(app["created_at"])


def test_created_by_null_for_key_without_user(server):
    org = server.make_org(user=None)
    app = org.client().create_app()
    assert app["created_by"] is None
    assert "created_by" in app


def test_created_by_follows_the_creating_key(server):
    org = server.make_org(user=111)
    other_key = org.new_key(user=222)
    a1 = org.client().create_app(name="by 111")
    a2 = org.client(key=other_key).create_app(name="by 222")
    assert (a1["created_by"], a2["created_by"]) == (111, 222)
    # Both keys see both apps of the organisation.
    assert [a["app_id"] for a in org.client(key=other_key).list_apps()] == \
        [a2["app_id"], a1["app_id"]]


def test_app_ids_unique(api):
    ids = [api.create_app(name=f"a{i}")["app_id"] for i in range(8)]
    assert len(set(ids)) == 8
    assert all(APP_ID_RE.match(i) for i in ids)


@pytest.mark.parametrize("name", [
    "x", "x" * 100, "é" * 100, "😀" * 100, "語" * 100, "e\u0301" * 50, "a\tb", " spaced ",
    'quo"te\\back/slash',
], ids=["1", "100-ascii", "100-latin1", "100-emoji", "100-cjk", "100-combining", "tab", "spaces",
        "escapes"])
@pytest.mark.parametrize("ascii_escapes", [True, False], ids=["escaped", "utf8"])
def test_create_name_valid(api, name, ascii_escapes):
    raw = json.dumps(body(name=name), ensure_ascii=ascii_escapes).encode("utf-8")
    app = ok(api.post("/apps", data=raw, headers={"Content-Type": "application/json"}))
    assert app["name"] == name
    assert api.get_app(app["app_id"])["name"] == name


def test_create_name_unicode_roundtrip_raw_bytes(api):
    app = ok(api.post("/apps", data='{"name":"\\ud83d\\ude00 ok","answer_url":"http://x.io/"}'))
    assert app["name"] == "😀 ok"


LONG_URL_OK = "https://example.com/" + "a" * (2048 - len("https://example.com/"))
LONG_URL_BAD = LONG_URL_OK + "a"
assert len(LONG_URL_OK.encode()) == 2048

GOOD_URLS = [
    "http://example.com", "https://example.com/", "http://localhost:8080/a/b?c=d&e=f#g",
    "https://127.0.0.1/hook", "https://sub.domain.example.co.in/x.php", LONG_URL_OK,
]
BAD_URLS = [
    ("no-scheme", "example.com/answer"),
    ("ftp", "ftp://example.com/answer"),
    ("ws", "ws://example.com/answer"),
    ("javascript", "javascript:alert(1)"),
    ("mailto", "mailto:a@example.com"),
    ("no-host", "http://"),
    ("no-host-path", "https:///path"),
    ("no-slashes", "http:example.com"),
    ("relative", "/webhook/answer"),
    ("empty", ""),
    ("space-host", "https://exa mple.com/"),
    ("space-path", "https://example.com/a b"),
    ("leading-space", " https://example.com/"),
    ("trailing-space", "https://example.com/ "),
    ("newline", "https://example.com/a\nb"),
    ("tab", "https://example.com/a\tb"),
    ("cr", "https://example.com/\r"),
    ("ctrl-01", "https://example.com/\x01"),
    ("ctrl-1f", "https://example.com/\x1f"),
    ("del", "https://example.com/\x7f"),
    ("nul", "https://example.com/\x00"),
    ("2049-bytes", LONG_URL_BAD),
    # 1035 characters but 2050 bytes: over the limit however non-ASCII is treated.
    ("multibyte-2050-bytes", "https://example.com/" + "é" * 1015),
]


@pytest.mark.parametrize("url", GOOD_URLS, ids=range(len(GOOD_URLS)))
@pytest.mark.parametrize("field", ["answer_url", "hangup_url", "fallback_answer_url"])
def test_create_url_valid(api, field, url):
    app = api.create_app(**{field: url})
    assert app[field] == url


# (id, body) pairs: each must be rejected with 400 Invalid request body and create nothing.
INVALID_CREATE = [
    ("empty-object", {}),
    ("missing-name", without("name")),
    ("missing-answer_url", without("answer_url")),
    ("only-optional", {"hangup_url": "https://example.com/h"}),
    ("name-null", body(name=None)),
    ("name-empty", body(name="")),
    ("name-101-ascii", body(name="x" * 101)),
    ("name-101-latin1", body(name="é" * 101)),
    ("name-101-emoji", body(name="😀" * 101)),
    ("name-101-combining", body(name="e\u0301" * 50 + "x")),
    ("name-int", body(name=123)),
    ("name-float", body(name=1.5)),
    ("name-true", body(name=True)),
    ("name-array", body(name=["a"])),
    ("name-object", body(name={"a": 1})),
    ("name-nul", body(name="a\u0000b")),
    ("answer_url-null", body(answer_url=None)),
    ("answer_url-int", body(answer_url=1)),
    ("answer_url-array", body(answer_url=[ANSWER])),
    ("answer_url-object", body(answer_url={"u": ANSWER})),
    ("answer_url-bool", body(answer_url=False)),
    ("answer_method-put", body(answer_method="PUT")),
    ("answer_method-empty", body(answer_method="")),
    ("answer_method-padded", body(answer_method=" POST")),
    ("answer_method-postx", body(answer_method="POSTX")),
    ("answer_method-int", body(answer_method=1)),
    ("answer_method-array", body(answer_method=["POST"])),
    ("answer_method-null", body(answer_method=None)),
    ("hangup_method-delete", body(hangup_method="DELETE")),
    ("hangup_method-null", body(hangup_method=None)),
    ("hangup_method-bool", body(hangup_method=True)),
    ("fallback_answer_method-head", body(fallback_answer_method="HEAD")),
    ("fallback_answer_method-null", body(fallback_answer_method=None)),
    ("fallback_answer_method-object", body(fallback_answer_method={})),
    ("hangup_url-int", body(hangup_url=7)),
    ("hangup_url-bool", body(hangup_url=True)),
    ("hangup_url-array", body(hangup_url=[])),
    ("fallback_answer_url-object", body(fallback_answer_url={})),
    ("fallback_answer_url-int", body(fallback_answer_url=0)),
] + [
    (f"{field}-{bid}", body(**{field: url}))
    for field in ("answer_url", "hangup_url", "fallback_answer_url")
    for bid, url in BAD_URLS
]


@pytest.mark.parametrize("payload", [b for _, b in INVALID_CREATE],
                         ids=[i for i, _ in INVALID_CREATE])
def test_create_invalid_body(shared_api, payload):
    before = shared_api.list_apps()
    assert_error(shared_api.post("/apps", json=payload), 400, MSG_INVALID)
    assert shared_api.list_apps() == before


# ---------------------------------------------------------------------------------------------
# List.

def test_list_empty(org, prefix):
    resp = org.client(prefix).get("/apps")
    assert ok(resp) == []
    assert resp.text == '{"data":[],"message":"success"}'


def test_list_newest_first_including_inactive(org, prefix):
    api = org.client(prefix)
    apps = [api.create_app(name=f"app {i}") for i in range(5)]
    ok(api.put(f"/apps/{apps[1]['app_id']}", json={"status": "INACTIVE"}))
    # Updating an old app must not move it: the order is by creation.
    ok(api.put(f"/apps/{apps[0]['app_id']}", json={"name": "renamed"}))
    listed = api.list_apps()
    assert [a["app_id"] for a in listed] == [a["app_id"] for a in reversed(apps)]
    assert [a["status"] for a in listed] == ["ACTIVE", "ACTIVE", "ACTIVE", "INACTIVE", "ACTIVE"]
    for a in listed:
        assert list(a.keys()) == APP_FIELDS
        assert api.get_app(a["app_id"]) == a


def test_list_returns_all_apps(api):
    """No parameters: all of the caller's apps, however many (no silent page size)."""
    ids = [api.create_app(name=f"many {i}")["app_id"] for i in range(120)]
    assert [a["app_id"] for a in api.list_apps()] == list(reversed(ids))


def test_list_query_string_ignored(api):
    app = api.create_app()
    assert api.get("/apps?limit=0&page=2").status_code == 200
    assert ok(api.get("/apps?limit=0&page=2")) == [app]


# ---------------------------------------------------------------------------------------------
# Get.

def test_get_app(org, prefix):
    created = org.client().create_app(hangup_url="https://example.com/h")
    resp = org.client(prefix).get(f"/apps/{created['app_id']}")
    assert ok(resp) == created
    assert resp.text.startswith('{"data":{"app_id":')
    assert_compact(resp)
    assert list(resp.json()["data"].keys()) == APP_FIELDS


@pytest.mark.parametrize("app_id", [
    "sfv_app_000000000000", "sfv_app_zzzzzzzzzzzz", "nope", "1", "sfv_app_",
])
def test_get_unknown_app(shared_org, prefix, app_id):
    assert_error(shared_org.client(prefix).get(f"/apps/{app_id}"), 404, MSG_APP_NOT_FOUND)


@pytest.mark.parametrize("app_id", ["x" * 1000, "abc%2Fdef", "sfv_app_%00", "%20"],
                         ids=["1000-chars", "encoded-slash", "encoded-nul", "space"])
def test_get_odd_app_ids(shared_org, app_id):
    assert_error(shared_org.client().get(f"/apps/{app_id}"), 404, MSG_APP_NOT_FOUND)


@pytest.mark.parametrize("app_id", list(NOT_UTF8.values()), ids=list(NOT_UTF8))
def test_app_id_not_utf8_is_not_found(shared_api, app_id):
    """get, update (after the body's checks) and delete: the plain 404, nothing changed."""
    app = shared_api.create_app()
    before = shared_api.list_apps()
    for resp in (shared_api.get(f"/apps/{app_id}"),
                 shared_api.put(f"/apps/{app_id}", json={"name": "x"}),
                 shared_api.put(f"/apps/{app_id}", json={}),
                 shared_api.delete(f"/apps/{app_id}")):
        assert_error(resp, 404, MSG_APP_NOT_FOUND)
    assert_error(shared_api.put(f"/apps/{app_id}", json={"name": None}), 400, MSG_INVALID)
    assert shared_api.list_apps() == before
    assert shared_api.get_app(app["app_id"]) == app


def test_get_app_id_is_exact(api):
    app = api.create_app()
    assert_error(api.get(f"/apps/{app['app_id'].upper()}"), 404, MSG_APP_NOT_FOUND)
    assert_error(api.get(f"/apps/{app['app_id']}x"), 404, MSG_APP_NOT_FOUND)
    assert_error(api.get(f"/apps/{app['app_id'][:-1]}"), 404, MSG_APP_NOT_FOUND)


# ---------------------------------------------------------------------------------------------
# Update.

FULL = {
    "name": "Before", "answer_url": "https://example.com/a", "answer_method": "POST",
    "hangup_url": "https://example.com/h", "hangup_method": "POST",
    "fallback_answer_url": "https://example.com/f", "fallback_answer_method": "POST",
}

UPDATES = [
    ("name", "After", "After"),
    ("name", "é" * 100, "é" * 100),
    ("name", "Before", "Before"),  # same value: still a modification
    ("answer_url", "http://new.example.org/answer", "http://new.example.org/answer"),
    ("answer_method", "get", "GET"),
    ("answer_method", "GET", "GET"),
    ("hangup_url", "https://new.example.org/h", "https://new.example.org/h"),
    ("hangup_url", None, None),
    ("hangup_method", "Get", "GET"),
    ("fallback_answer_url", "https://new.example.org/f", "https://new.example.org/f"),
    ("fallback_answer_url", None, None),
    ("fallback_answer_method", "gEt", "GET"),
    ("status", "INACTIVE", "INACTIVE"),
    ("status", "ACTIVE", "ACTIVE"),
]


@pytest.mark.parametrize("field,value,stored", UPDATES,
                         ids=[f"{f}={v!r:.20}" for f, v, _ in UPDATES])
def test_update_single_field(org, prefix, field, value, stored):
    api = org.client(prefix)
    before = api.create_app(**FULL)
    resp = api.put(f"/apps/{before['app_id']}", json={field: value})
    after = ok(resp)
    assert list(after.keys()) == APP_FIELDS
    assert_compact(resp)
    expected = dict(before, **{field: stored})
    expected["updated_at"] = after["updated_at"]
    assert after == expected
    assert after["updated_at"] is not None
    assert_recent(after["updated_at"])
    assert parse_ts(after["updated_at"]) >= parse_ts(before["created_at"])
    assert api.get_app(before["app_id"]) == after


def test_update_several_fields_at_once(api):
    before = api.create_app(**FULL)
    after = ok(api.put(f"/apps/{before['app_id']}", json={
        "name": "Many", "hangup_url": None, "fallback_answer_method": "get",
        "status": "INACTIVE", "unknown": [1, 2, 3],
    }))
    assert after == dict(before, name="Many", hangup_url=None, fallback_answer_method="GET",
                         status="INACTIVE", updated_at=after["updated_at"])
    assert after["updated_at"] is not None
    assert api.get_app(before["app_id"]) == after


def test_update_inactive_then_reactivate(api):
    app = api.create_app()
    resp = api.put(f"/apps/{app['app_id']}", json={"status": "INACTIVE"})
    assert ok(resp)["status"] == "INACTIVE"
    assert api.get_app(app["app_id"])["status"] == "INACTIVE"
    assert ok(api.put(f"/apps/{app['app_id']}", json={"status": "ACTIVE"}))["status"] == "ACTIVE"
    assert api.get_app(app["app_id"])["status"] == "ACTIVE"


def test_update_twice_moves_updated_at_forward(api):
    app = api.create_app()
    first = ok(api.put(f"/apps/{app['app_id']}", json={"name": "one"}))
    second = ok(api.put(f"/apps/{app['app_id']}", json={"name": "two"}))
    assert parse_ts(second["updated_at"]) >= parse_ts(first["updated_at"])
    assert second["created_at"] == app["created_at"]


@pytest.mark.parametrize("payload", [{}, {"unknown": 1}, {"foo": None, "bar": "x"}],
                         ids=["empty", "unknown", "unknowns"])
def test_update_without_known_field_returns_app_unchanged(api, payload):
    app = api.create_app(**FULL)
    assert ok(api.put(f"/apps/{app['app_id']}", json=payload)) == app
    again = api.get_app(app["app_id"])
    assert again == app and again["updated_at"] is None


def test_update_ignores_server_owned_fields(api, org):
    app = api.create_app()
    after = ok(api.put(f"/apps/{app['app_id']}", json={
        "name": "n", "app_id": "sfv_app_bbbbbbbbbbbb", "org_id": 99999, "created_by": 1,
        "created_at": "2000-01-01T00:00:00.000Z"}))
    assert after["app_id"] == app["app_id"] and after["org_id"] == org.id
    assert after["created_by"] == 67890 and after["created_at"] == app["created_at"]
    assert after["name"] == "n"


INVALID_UPDATE = [
    ("name-null", {"name": None}),
    ("name-empty", {"name": ""}),
    ("name-101", {"name": "x" * 101}),
    ("name-101-emoji", {"name": "😀" * 101}),
    ("name-int", {"name": 1}),
    ("name-array", {"name": ["a"]}),
    ("name-nul", {"name": "\u0000"}),
    ("answer_url-null", {"answer_url": None}),
    ("answer_url-ftp", {"answer_url": "ftp://example.com/a"}),
    ("answer_url-noscheme", {"answer_url": "example.com"}),
    ("answer_url-object", {"answer_url": {}}),
    ("answer_url-2049", {"answer_url": LONG_URL_BAD}),
    ("answer_method-null", {"answer_method": None}),
    ("answer_method-put", {"answer_method": "PUT"}),
    ("answer_method-int", {"answer_method": 2}),
    ("hangup_method-null", {"hangup_method": None}),
    ("hangup_method-bad", {"hangup_method": "PATCH"}),
    ("fallback_answer_method-null", {"fallback_answer_method": None}),
    ("fallback_answer_method-bad", {"fallback_answer_method": ""}),
    ("hangup_url-bad", {"hangup_url": "nope"}),
    ("hangup_url-int", {"hangup_url": 5}),
    ("hangup_url-space", {"hangup_url": "https://e.com/a b"}),
    ("fallback_answer_url-bad", {"fallback_answer_url": "http://"}),
    ("fallback_answer_url-array", {"fallback_answer_url": ["https://e.com"]}),
    ("status-null", {"status": None}),
    ("status-bogus", {"status": "BOGUS"}),
    ("status-deleted", {"status": "DELETED"}),
    ("status-int", {"status": 1}),
    ("status-bool", {"status": True}),
    ("valid-and-invalid", {"name": "fine", "answer_url": "bad"}),
    ("invalid-and-valid", {"status": "nope", "hangup_url": None}),
]


@pytest.mark.parametrize("payload", [b for _, b in INVALID_UPDATE],
                         ids=[i for i, _ in INVALID_UPDATE])
def test_update_invalid_body_changes_nothing(shared_api, payload):
    app = shared_api.create_app(**FULL)
    assert_error(shared_api.put(f"/apps/{app['app_id']}", json=payload), 400, MSG_INVALID)
    assert shared_api.get_app(app["app_id"]) == app


@pytest.mark.parametrize("payload", [{"name": "x"}, {}], ids=["field", "empty"])
def test_update_unknown_app(shared_org, prefix, payload):
    assert_error(shared_org.client(prefix).put("/apps/sfv_app_000000000000", json=payload),
                 404, MSG_APP_NOT_FOUND)


def test_update_invalid_body_on_unknown_app_is_400(shared_api):
    assert_error(shared_api.put("/apps/sfv_app_000000000000", json={"name": None}),
                 400, MSG_INVALID)
    assert_error(shared_api.put("/apps/sfv_app_000000000000", data=b"{"), 400, MSG_INVALID)


# ---------------------------------------------------------------------------------------------
# Delete.

def test_delete_app(org, prefix):
    api = org.client(prefix)
    keep = api.create_app(name="keep")
    gone = api.create_app(name="gone")
    resp = api.delete(f"/apps/{gone['app_id']}")
    assert ok(resp) == {"deleted": True}
    assert resp.text == '{"data":{"deleted":true},"message":"success"}'
    assert_error(api.get(f"/apps/{gone['app_id']}"), 404, MSG_APP_NOT_FOUND)
    assert_error(api.delete(f"/apps/{gone['app_id']}"), 404, MSG_APP_NOT_FOUND)
    assert_error(api.put(f"/apps/{gone['app_id']}", json={"name": "x"}), 404, MSG_APP_NOT_FOUND)
    assert_error(api.get(f"/apps/{gone['app_id']}/numbers"), 404, MSG_NUM_APP_NOT_FOUND)
    assert api.list_apps() == [keep]
    assert api.get_app(keep["app_id"]) == keep


def test_delete_inactive_app(api):
    app = api.create_app()
    ok(api.put(f"/apps/{app['app_id']}", json={"status": "INACTIVE"}))
    assert ok(api.delete(f"/apps/{app['app_id']}")) == {"deleted": True}
    assert api.list_apps() == []


@pytest.mark.parametrize("app_id", ["sfv_app_000000000000", "nope"])
def test_delete_unknown_app(shared_api, app_id):
    assert_error(shared_api.delete(f"/apps/{app_id}"), 404, MSG_APP_NOT_FOUND)


def test_delete_ignores_body(api):
    app = api.create_app()
    assert ok(api.delete(f"/apps/{app['app_id']}", data=b'{"x":1}',
                         headers={"Content-Type": "application/json"})) == {"deleted": True}
    assert api.list_apps() == []
