"""Conventions shared by every route (spec/API.md sections 1 and 5): routing, order of checks,
body rules, envelope, Content-Type, X-Request-Id, operational endpoints."""

import http.client
import json
import re
import socket

import pytest
import requests

from conftest import (
    BODY_LIMIT, MSG_APP_NOT_FOUND, MSG_INVALID, MSG_METHOD, MSG_NOT_FOUND, MSG_NUM_APP_NOT_FOUND,
    MSG_TOO_LARGE, MSG_UNAUTH, assert_compact, assert_error, assert_json_ct, ok,
    raw_http,
)

NO_APP = "sfv_app_000000000000"
# The spec only says "a new random one"; hold it to printable ASCII without spaces.
GENERATED_ID_RE = re.compile(r"^[\x21-\x7e]{1,128}$")


# ---------------------------------------------------------------------------------------------
# Operational endpoints.

@pytest.mark.parametrize("path,expected", [("/healthz", {"status": "ok"}),
                                           ("/readyz", {"status": "ready"})])
@pytest.mark.parametrize("key", [None, "garbage"], ids=["nokey", "badkey"])
def test_health_endpoints(server, path, expected, key):
    headers = {"X-API-Key": key} if key else {}
    resp = requests.get(server.url + path, headers=headers, timeout=10)
    assert resp.status_code == 200, resp.text
    assert_json_ct(resp)
    assert resp.json() == expected
    assert resp.text == json.dumps(expected, separators=(",", ":"))


# ---------------------------------------------------------------------------------------------
# Routing: unknown path 404, wrong method 405 with Allow. Both come before authentication.

UNKNOWN_PATHS = [
    "/", "/sfvopi", "/sfvopi/", "/superfone", "/superfone/sfvopi", "/superfone/", "/sfvopi/app",
    "/sfvopi/appsx", "/sfvopi/apps/x/y", "/sfvopi/apps/x/numbers/y/z", "/sfvopi/apps/x/number",
    "/sfvopi/available-numbers/1", "/sfvopi/available_numbers", "/superfone/sfvopi/nope",
    "/superfone/superfone/sfvopi/apps", "/api/sfvopi/apps", "/sfvopi/sfvopi/apps",
    "/superfone/apps", "/healthz/x", "/sfvopi/healthz", "/superfone/readyz", "/favicon.ico",
    "/SFVOPI/apps", "/sfvopi/APPS", "/sfvopi/apps/x/numbers/y/z/w",
]


@pytest.mark.parametrize("path", UNKNOWN_PATHS)
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_unknown_path_404(server, shared_org, path, method):
    for key in (None, "garbage", shared_org.key):
        headers = {"X-API-Key": key} if key else {}
        resp = requests.request(method, server.url + path, headers=headers, timeout=10)
        assert_error(resp, 404, MSG_NOT_FOUND)
        assert_compact(resp)


WRONG_METHODS = [
    ("/apps", ["PUT", "DELETE", "PATCH"], {"GET", "POST"}),
    ("/apps/" + NO_APP, ["POST", "PATCH"], {"GET", "PUT", "DELETE"}),
    ("/apps/" + NO_APP + "/numbers", ["PUT", "DELETE", "PATCH"], {"GET", "POST"}),
    ("/apps/" + NO_APP + "/numbers/+918000000001", ["GET", "POST", "PUT", "PATCH"], {"DELETE"}),
    ("/available-numbers", ["POST", "PUT", "DELETE", "PATCH"], {"GET"}),
]
WRONG_CASES = [(prefix + p, m, allowed) for p, ms, allowed in WRONG_METHODS for m in ms
               for prefix in ("/sfvopi", "/superfone/sfvopi")]
WRONG_CASES += [("/healthz", m, {"GET"}) for m in ("POST", "PUT", "DELETE")]
WRONG_CASES += [("/readyz", m, {"GET"}) for m in ("POST", "PUT", "DELETE")]


def allow_set(resp):
    allow = resp.headers.get("Allow")
    assert allow, f"405 without Allow header: {dict(resp.headers)}"
    return {m.strip().upper() for m in allow.split(",") if m.strip()}


@pytest.mark.parametrize("path,method,allowed", WRONG_CASES,
                         ids=[f"{m} {p}" for p, m, _ in WRONG_CASES])
def test_wrong_method_405_with_allow(server, shared_org, path, method, allowed):
    for key in (None, "garbage", shared_org.key):
        headers = {"X-API-Key": key} if key else {}
        # An invalid body must not matter either.
        resp = requests.request(method, server.url + path, headers=headers, timeout=10,
                                data=b"{")
        assert_error(resp, 405, MSG_METHOD)
        got = allow_set(resp)
        assert allowed <= got, f"Allow {got} lacks {allowed - got}"
        assert method not in got
        assert got <= allowed | {"HEAD", "OPTIONS"}, f"Allow {got} lists methods not served"


@pytest.mark.parametrize("path", ["/sfvopi/nope", "/superfone/sfvopi/apps/x/y", "/"])
def test_unknown_path_404_before_413(server, shared_org, path):
    big = big_body(BODY_LIMIT + 100)
    resp = requests.post(server.url + path, data=big, timeout=10,
                         headers={"X-API-Key": shared_org.key, "Content-Type": "application/json"})
    assert_error(resp, 404, MSG_NOT_FOUND)


def test_wrong_method_405_before_413(server):
    big = b"{" + b" " * (BODY_LIMIT + 10) + b"}"
    resp = requests.patch(server.url + "/sfvopi/apps", data=big, timeout=10)
    assert_error(resp, 405, MSG_METHOD)


# ---------------------------------------------------------------------------------------------
# Order of checks: 401 before 413 before 400 before 404.

def big_body(size=BODY_LIMIT + 1, valid=True):
    """A body of exactly `size` bytes: a valid create body padded by an unknown field."""
    head = b'{"name":"big","answer_url":"https://example.com/a","pad":"'
    tail = b'"}' if valid else b'"'
    pad = size - len(head) - len(tail)
    assert pad >= 0
    b = head + b"x" * pad + tail
    assert len(b) == size
    return b


BODY_ROUTES = [
    ("POST", "/apps"), ("PUT", "/apps/{app}"), ("POST", "/apps/{app}/numbers"),
]


@pytest.fixture(scope="module")
def target(shared_org):
    """An existing app in the shared organisation."""
    return shared_org.client().create_app(name="target")


def route_path(path, app_id):
    return path.replace("{app}", app_id)


@pytest.mark.parametrize("method,path", BODY_ROUTES, ids=[f"{m} {p}" for m, p in BODY_ROUTES])
@pytest.mark.parametrize("app_exists", [True, False], ids=["app", "noapp"])
def test_order_401_before_413(shared_org, target, method, path, app_exists):
    p = route_path(path, target["app_id"] if app_exists else NO_APP)
    for key in (None, "garbage"):
        resp = shared_org.client(key=key).request(method, p, data=big_body(70000, valid=False),
                                                  headers={"Content-Type": "application/json"})
        assert_error(resp, 401, MSG_UNAUTH)


@pytest.mark.parametrize("method,path", BODY_ROUTES, ids=[f"{m} {p}" for m, p in BODY_ROUTES])
@pytest.mark.parametrize("key", [None, "garbage"], ids=["nokey", "badkey"])
def test_401_decided_on_headers_without_the_body(server, shared_org, target, method, path, key):
    """API.md: "API key: 401 (decided on the headers, before the body is read)". A client that
    announces a body and waits (Expect: 100-continue) gets the 401 without sending the body."""
    p = "/sfvopi" + route_path(path, target["app_id"])
    head = f"{method} {p} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    if key:
        head += f"X-API-Key: {key}\r\n"
    head += "Content-Length: 1000\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    try:
        sock.sendall(head.encode())
        resp = http.client.HTTPResponse(sock)
        try:
            resp.begin()  # skips a 100 Continue and waits for the final response
        except (socket.timeout, TimeoutError):
            pytest.fail("no final response within 5 s without the body: 401 not decided on headers")
        data = resp.read()
    finally:
        sock.close()
    assert resp.status == 401, (resp.status, data)
    assert json.loads(data) == {"message": MSG_UNAUTH}


@pytest.mark.parametrize("method,path", BODY_ROUTES, ids=[f"{m} {p}" for m, p in BODY_ROUTES])
@pytest.mark.parametrize("app_exists", [True, False], ids=["app", "noapp"])
@pytest.mark.parametrize("valid", [True, False], ids=["json", "badjson"])
def test_order_413_before_400_and_404(shared_org, target, method, path, app_exists, valid):
    api = shared_org.client()
    before = api.list_apps()
    p = route_path(path, target["app_id"] if app_exists else NO_APP)
    resp = api.request(method, p, data=big_body(BODY_LIMIT + 1, valid=valid),
                       headers={"Content-Type": "application/json"})
    assert_error(resp, 413, MSG_TOO_LARGE)
    assert api.list_apps() == before


@pytest.mark.parametrize("method,path", [("PUT", "/apps/{app}"), ("POST", "/apps/{app}/numbers")])
@pytest.mark.parametrize("payload", [b"{", b"[]", b"null", b'{"name":null,"voip_number":5}'])
def test_order_400_before_404(shared_org, method, path, payload):
    resp = shared_org.client().request(method, route_path(path, NO_APP), data=payload,
                                       headers={"Content-Type": "application/json"})
    assert_error(resp, 400, MSG_INVALID)


def test_order_404_after_valid_body(shared_org):
    api = shared_org.client()
    assert_error(api.put(f"/apps/{NO_APP}", json={"name": "x"}), 404, MSG_APP_NOT_FOUND)
    assert_error(api.post(f"/apps/{NO_APP}/numbers", json={"voip_number": "+918000000001"}),
                 404, MSG_NUM_APP_NOT_FOUND)


# ---------------------------------------------------------------------------------------------
# Body size limit.

def test_body_of_exactly_64k_accepted(shared_org, prefix):
    api = shared_org.client(prefix)
    app = ok(api.post("/apps", data=big_body(BODY_LIMIT),
                      headers={"Content-Type": "application/json"}))
    assert app["name"] == "big" and "pad" not in app
    ok(api.delete(f"/apps/{app['app_id']}"))


def test_body_over_64k_rejected(shared_org, prefix):
    api = shared_org.client(prefix)
    before = api.list_apps()
    resp = api.post("/apps", data=big_body(BODY_LIMIT + 1),
                    headers={"Content-Type": "application/json"})
    assert_error(resp, 413, MSG_TOO_LARGE)
    assert_compact(resp)
    assert api.list_apps() == before


def test_chunked_body_over_64k_rejected(server, shared_org):
    """Without Content-Length the limit still holds (Transfer-Encoding: chunked)."""
    api = shared_org.client()
    before = api.list_apps()
    body = big_body(BODY_LIMIT + 4096)
    head = (f"POST /sfvopi/apps HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {shared_org.key}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n").encode()
    chunks = [head]
    for i in range(0, len(body), 8192):
        part = body[i:i + 8192]
        chunks.append(f"{len(part):x}\r\n".encode() + part + b"\r\n")
    chunks.append(b"0\r\n\r\n")
    assert_error(raw_http(server, chunks), 413, MSG_TOO_LARGE)
    assert api.list_apps() == before


def test_chunked_small_body_accepted(server, shared_org):
    body = b'{"name":"chunked","answer_url":"https://example.com/a"}'
    head = (f"POST /sfvopi/apps HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {shared_org.key}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n").encode()
    chunks = [head, b"10\r\n" + body[:16] + b"\r\n",
              f"{len(body) - 16:x}\r\n".encode() + body[16:] + b"\r\n", b"0\r\n\r\n"]
    app = ok(raw_http(server, chunks))
    assert app["name"] == "chunked"
    ok(shared_org.client().delete(f"/apps/{app['app_id']}"))


@pytest.mark.parametrize("method,path", [("GET", "/apps"), ("GET", "/available-numbers"),
                                         ("DELETE", "/apps/{app}"),
                                         ("GET", "/apps/{app}/numbers")])
def test_body_limit_applies_to_every_route(shared_org, method, path):
    """Order of checks (every route): 3. body over 64 KiB: 413."""
    api = shared_org.client()
    app = api.create_app(name="limit victim")
    resp = api.request(method, route_path(path, app["app_id"]), data=big_body(BODY_LIMIT + 100),
                       headers={"Content-Type": "application/json"})
    assert_error(resp, 413, MSG_TOO_LARGE)
    assert api.get_app(app["app_id"]) == app  # the DELETE did not happen


# ---------------------------------------------------------------------------------------------
# Body format rules, for every route that takes a body.

class BodyRoute:
    """Sets up one body-taking route for a test and checks its side effects."""

    def __init__(self, kind, org):
        self.kind, self.org, self.api = kind, org, org.client()
        if kind == "create":
            self.method, self.path, self.field = "POST", "/apps", "name"
            self.valid = {"name": "ct app", "answer_url": "https://example.com/a"}
            self.rest = b',"answer_url":"https://example.com/a"'
        elif kind == "update":
            self.app = self.api.create_app(name="original")
            self.method, self.path, self.field = "PUT", f"/apps/{self.app['app_id']}", "name"
            self.valid = {"name": "ct changed"}
            self.rest = b""
        else:
            self.app = self.api.create_app(name="link target")
            (self.num,) = org.add_numbers(1)
            self.method, self.path = "POST", f"/apps/{self.app['app_id']}/numbers"
            self.field = "voip_number"
            self.valid = {"voip_number": self.num}
            self.rest = b""

    def send(self, data, content_type="application/json"):
        headers = {} if content_type is None else {"Content-Type": content_type}
        return self.api.request(self.method, self.path, data=data, headers=headers)

    def with_raw_string(self, raw):
        """The valid body with the tested string field's content replaced by raw bytes."""
        return b'{"' + self.field.encode() + b'":"' + raw + b'"' + self.rest + b"}"

    def assert_nothing_changed(self):
        if self.kind == "create":
            assert self.api.list_apps() == []
        elif self.kind == "update":
            assert self.api.get_app(self.app["app_id"]) == self.app
        else:
            assert self.api.numbers(self.app["app_id"]) == []

    def assert_applied(self, resp):
        data = ok(resp)
        if self.kind == "create":
            assert data["name"] == "ct app"
            assert self.api.list_apps() == [data]
        elif self.kind == "update":
            assert data["name"] == "ct changed" and data["updated_at"] is not None
            assert self.api.get_app(self.app["app_id"]) == data
        else:
            assert data["voip_number"] == self.num
            assert self.api.numbers(self.app["app_id"]) == [data]


KINDS = ["create", "update", "link"]

WHOLE_BODIES = {
    "empty": b"",
    "open-brace": b"{",
    "not-json": b"not json",
    "array": b"[]",
    "array-of-object": b'[{"name":"x","answer_url":"https://example.com/a","voip_number":"1"}]',
    "string": b'"hello"',
    "number": b"123",
    "null": b"null",
    "true": b"true",
    "trailing-garbage": b'{"name":"x","answer_url":"https://e.com/"} x',
    "two-objects": b'{"name":"x"}{"name":"y"}',
    "single-quotes": b"{'name': 'x'}",
    "trailing-comma": b'{"name":"x",}',
    "nan": b'{"name":NaN}',
    "unquoted-key": b"{name:\"x\"}",
    "comment": b'{"name":"x" /* c */}',
}

STRING_CORRUPTIONS = {
    "invalid-utf8-ff": b"\xff",
    "invalid-utf8-overlong": b"\xc0\xaf",
    "invalid-utf8-surrogate": b"\xed\xa0\x80",
    "invalid-utf8-truncated": b"ab\xe2\x82",
    "invalid-utf8-latin1": b"caf\xe9",
    "escaped-nul": b"a\\u0000b",
    "escaped-nul-only": b"\\u0000",
    "lone-surrogate-escape": b"\\ud800",
    "raw-control-char": b"a\x01b",
    "raw-newline": b"a\nb",
    "raw-nul": b"a\x00b",
    "bad-escape": b"\\x41",
}


@pytest.mark.parametrize("name", list(WHOLE_BODIES))
@pytest.mark.parametrize("kind", KINDS)
def test_invalid_whole_body(org, kind, name):
    r = BodyRoute(kind, org)
    assert_error(r.send(WHOLE_BODIES[name]), 400, MSG_INVALID)
    r.assert_nothing_changed()


@pytest.mark.parametrize("name", list(STRING_CORRUPTIONS))
@pytest.mark.parametrize("kind", KINDS)
def test_invalid_string_bytes(org, kind, name):
    r = BodyRoute(kind, org)
    assert_error(r.send(r.with_raw_string(STRING_CORRUPTIONS[name])), 400, MSG_INVALID)
    r.assert_nothing_changed()


@pytest.mark.parametrize("raw", [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"caf\xe9"],
                         ids=["ff", "overlong", "surrogate", "latin1"])
@pytest.mark.parametrize("kind", KINDS)
def test_invalid_utf8_in_unknown_field(org, kind, raw):
    """Not valid UTF-8 JSON is a 400 even where the field itself would be ignored."""
    r = BodyRoute(kind, org)
    data = json.dumps(r.valid).encode()[:-1] + b',"ignored":"' + raw + b'"}'
    assert_error(r.send(data), 400, MSG_INVALID)
    r.assert_nothing_changed()


@pytest.mark.parametrize("ctype", ["text/plain", "text/plain; charset=utf-8",
                                   "application/x-www-form-urlencoded",
                                   "multipart/form-data; boundary=xyz", "application/xml",
                                   "application/octet-stream"])
@pytest.mark.parametrize("kind", KINDS)
def test_non_json_content_type_rejected(org, kind, ctype):
    r = BodyRoute(kind, org)
    assert_error(r.send(json.dumps(r.valid).encode(), content_type=ctype), 400, MSG_INVALID)
    r.assert_nothing_changed()


@pytest.mark.parametrize("ctype", ["application/json", "application/json; charset=utf-8",
                                   "application/json;charset=UTF-8", None],
                         ids=["plain", "charset", "charset-nospace", "no-content-type"])
@pytest.mark.parametrize("kind", KINDS)
def test_json_content_types_accepted(org, kind, ctype):
    r = BodyRoute(kind, org)
    r.assert_applied(r.send(json.dumps(r.valid).encode(), content_type=ctype))


@pytest.mark.parametrize("kind", KINDS)
def test_json_content_type_is_case_insensitive(org, kind):
    """RFC 9110: media type names are case-insensitive."""
    r = BodyRoute(kind, org)
    r.assert_applied(r.send(json.dumps(r.valid).encode(), content_type="Application/JSON"))


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_fields_ignored(org, kind):
    r = BodyRoute(kind, org)
    payload = dict(r.valid, unknown="x", nested={"a": [1, {"b": None}]}, n=1.5e300, t=True)
    r.assert_applied(r.send(json.dumps(payload).encode()))


@pytest.mark.parametrize("kind", KINDS)
def test_whitespace_around_json_accepted(org, kind):
    r = BodyRoute(kind, org)
    r.assert_applied(r.send(b" \r\n\t" + json.dumps(r.valid, indent=2).encode() + b"\n "))


def test_deeply_nested_unknown_field_does_not_crash(server, shared_org):
    """Whatever the verdict, a hostile body is a 4xx or a success, never a crash."""
    depth = 20000
    data = (b'{"name":"deep","answer_url":"https://example.com/a","x":' + b"[" * depth
            + b"]" * depth + b"}")
    assert len(data) < BODY_LIMIT
    resp = shared_org.client().post("/apps", data=data,
                                    headers={"Content-Type": "application/json"})
    assert resp.status_code in (200, 400), resp.text
    assert_json_ct(resp)
    if resp.status_code == 400:
        assert_error(resp, 400, MSG_INVALID)
    else:
        ok(shared_org.client().delete(f"/apps/{resp.json()['data']['app_id']}"))
    assert requests.get(server.url + "/healthz", timeout=10).status_code == 200


# ---------------------------------------------------------------------------------------------
# Envelope: compact JSON, {"data":..., "message":"success"}, JSON content type on everything.

def test_envelope_and_compact_json_on_every_success(org, prefix):
    api = org.client(prefix)
    (num,) = org.add_numbers(1)
    app = api.create_app()
    responses = [
        api.post("/apps", json={"name": "e", "answer_url": "https://example.com/a"}),
        api.get("/apps"),
        api.get(f"/apps/{app['app_id']}"),
        api.put(f"/apps/{app['app_id']}", json={"name": "f"}),
        api.post(f"/apps/{app['app_id']}/numbers", json={"voip_number": num}),
        api.get(f"/apps/{app['app_id']}/numbers"),
        api.get("/available-numbers"),
        api.delete(f"/apps/{app['app_id']}/numbers/{num}"),
        api.delete(f"/apps/{app['app_id']}"),
    ]
    for resp in responses:
        ok(resp)
        assert resp.text.startswith('{"data":'), resp.text
        assert resp.text.endswith(',"message":"success"}'), resp.text
        assert_compact(resp)


# ---------------------------------------------------------------------------------------------
# X-Request-Id.

VALID_IDS = ["abc", "1", "A-Z.a_z:0-9", "x" * 128, "req:2026-02-02T10:30:00.000Z",
             "0123456789abcdef0123456789abcdef", "-", "...", "a:b:c"]
INVALID_IDS = ["a b", "x" * 129, "abc/def", "a,b", "abc!", "a\tb", "caf\u00e9", "a;b", "{x}",
               "a=b", "", "%41"]


def request_kinds(server, org):
    """(label, callable taking headers) for responses of every shape."""
    app = org.client().create_app()
    u = server.url
    k = {"X-API-Key": org.key}
    return [
        ("200 healthz", lambda h: requests.get(u + "/healthz", headers=h, timeout=10)),
        ("200 list", lambda h: requests.get(u + "/sfvopi/apps", headers={**k, **h}, timeout=10)),
        ("200 get", lambda h: requests.get(u + f"/superfone/sfvopi/apps/{app['app_id']}",
                                           headers={**k, **h}, timeout=10)),
        ("400", lambda h: requests.post(u + "/sfvopi/apps", data=b"{", headers={**k, **h},
                                        timeout=10)),
        ("401", lambda h: requests.get(u + "/sfvopi/apps", headers=h, timeout=10)),
        ("404 path", lambda h: requests.get(u + "/nope", headers=h, timeout=10)),
        ("404 app", lambda h: requests.get(u + f"/sfvopi/apps/{NO_APP}", headers={**k, **h},
                                           timeout=10)),
        ("405", lambda h: requests.patch(u + "/sfvopi/apps", headers=h, timeout=10)),
        ("413", lambda h: requests.post(u + "/sfvopi/apps", data=big_body(),
                                        headers={**k, **h}, timeout=10)),
    ]


def test_request_id_echoed_when_valid(server, org):
    for label, do in request_kinds(server, org):
        for rid in VALID_IDS:
            resp = do({"X-Request-Id": rid})
            assert_json_ct(resp)
            assert resp.headers.get("X-Request-Id") == rid, (label, rid, resp.headers)


def test_request_id_replaced_when_invalid(server, org):
    for label, do in request_kinds(server, org):
        for rid in INVALID_IDS:
            resp = do({"X-Request-Id": rid.encode("latin-1")})
            got = resp.headers.get("X-Request-Id")
            assert got, (label, rid, resp.headers)
            assert got != rid, (label, rid)
            assert GENERATED_ID_RE.match(got), (label, got)


def test_request_id_generated_when_absent(server, org):
    seen = set()
    for label, do in request_kinds(server, org):
        for _ in range(2):
            resp = do({})
            got = resp.headers.get("X-Request-Id")
            assert got and GENERATED_ID_RE.match(got), (label, got)
            seen.add(got)
    assert len(seen) == 2 * len(request_kinds(server, org)), "generated request ids repeat"


def test_log_never_holds_keys_or_bodies(server, org):
    """STYLE.md, Logging: never log bodies, keys or auth headers (a short prefix is fine)."""
    marker = "body-marker-7f3a9c"
    wrong = "sfvk_" + "Q" * 43
    api = org.client()
    app = api.create_app(name=marker, answer_url=f"https://example.com/{marker}")
    ok(api.put(f"/apps/{app['app_id']}", json={"name": marker + "2"}))
    api.post("/apps", data=b'{"name":"' + marker.encode() + b'"', headers={})  # 400
    requests.get(server.url + "/sfvopi/apps", headers={"X-API-Key": wrong}, timeout=10)
    requests.get(server.url + "/sfvopi/apps", headers={"x-api-key": org.key[:-1]}, timeout=10)
    log = server.log
    assert org.key not in log
    assert org.key[12:] not in log  # not even the secret part after the prefix
    assert wrong not in log and org.key[:-1] not in log
    assert marker not in log


def test_request_id_header_name_case_insensitive(server):
    resp = requests.get(server.url + "/healthz", headers={"x-request-id": "lower.case"}, timeout=10)
    assert resp.headers.get("X-Request-Id") == "lower.case"
