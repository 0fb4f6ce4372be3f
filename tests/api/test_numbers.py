"""Numbers: link, list, unlink, available numbers (spec/API.md section 3)."""

import re
import sqlite3
import subprocess

import pytest

from conftest import (
    AVAILABLE_FIELDS, LINK_FIELDS, MSG_APP_NOT_FOUND, MSG_INVALID, MSG_NOT_LINKED,
    MSG_NUM_APP_NOT_FOUND, MSG_NUM_CONFLICT, MSG_NUM_NOT_OWNED, NOT_UTF8, PG_URL, Org, Server,
    assert_compact, assert_error,
    assert_recent, cli_ok, fresh_db, new_number, ok, parse_ts,
)


def national(e164):
    """+9180000NNNNN -> 80000NNNNN"""
    assert e164.startswith("+91") and len(e164) == 13
    return e164[3:]


def link_forms(e164):
    """Every spelling from API.md section 1 that must normalise to `e164`."""
    n = national(e164)
    return {
        "e164": e164,
        "national": n,
        "zero-national": "0" + n,
        "cc-national": "91" + n,
        "spaced-dashed": f"+91 {n[:5]}-{n[5:]}",
        "double-zero": "0091" + n,
        "double-zero-spaced": f"00 91 {n}",
        "dots-parens": f"(+91) {n[:5]}.{n[5:]}",
        "tab": f"+91\t{n}",
        "dashes": f"+91-{n[:3]}-{n[3:6]}-{n[6:]}",
        "padded": f"  {e164}\t ",
        "zero-national-spaced": f"0{n[:5]} {n[5:]}",
    }


def unlink_forms(e164):
    """Path spellings for DELETE .../numbers/:voip_number that mean `e164`."""
    n = national(e164)
    return {
        "raw-plus": e164,
        "pct-2B": "%2B" + e164[1:],
        "pct-2b-lower": "%2b" + e164[1:],
        "leading-space": "%20" + e164[1:],
        "national": n,
        "zero-national": "0" + n,
        "cc-national": "91" + n,
        "double-zero": "0091" + n,
        "pct-spaced-dashed": f"%2B91%20{n[:5]}-{n[5:]}",
        "all-pct": "".join(f"%{ord(c):02X}" for c in e164),
        "pct-tab": f"%2B91%09{n}",
        "pct-parens-dots": f"%2B91%28{n[:5]}%29.{n[5:]}",
    }


def expected_link(app, number, org_id, created_at):
    return {"app_id": app["app_id"], "voip_number": number, "org_id": org_id,
            "status": "ACTIVE", "created_at": created_at, "updated_at": None}


# ---------------------------------------------------------------------------------------------
# Link.

def test_link_number(org, prefix):
    api = org.client(prefix)
    app = api.create_app()
    (num,) = org.add_numbers(1)
    resp = api.post(f"/apps/{app['app_id']}/numbers", json={"voip_number": num})
    link = ok(resp)
    assert list(link.keys()) == LINK_FIELDS
    assert resp.text.startswith('{"data":{"app_id":')
    assert_compact(resp)
    assert link == expected_link(app, num, org.id, link["created_at"])
    assert_recent(link["created_at"])
    # Side effects: listed on the app, gone from the free numbers, CLI shows the app.
    assert api.numbers(app["app_id"]) == [link]
    assert num not in api.available_numbers()
    rows = [r.split("\t") for r in cli_ok(org.server.cli("number", "list", "--org", org.id))]
    assert [r[1:] for r in rows if r[1] == num] == [[num, "testprov", "ACTIVE", app["app_id"]]]


@pytest.mark.parametrize("form", list(link_forms("+918000099999")))
def test_link_normalises_number(org, form):
    api = org.client()
    app = api.create_app()
    (num,) = org.add_numbers(1)
    link = api.link(app["app_id"], link_forms(num)[form])
    assert link["voip_number"] == num
    assert [x["voip_number"] for x in api.numbers(app["app_id"])] == [num]


def test_link_spec_examples_all_mean_the_same_number(server):
    """API.md: 8000000001, 08000000001, 918000000001, +91 80000-00001 and 00918000000001
    all mean +918000000001."""
    org = server.make_org()
    api = org.client()
    assert cli_ok(server.cli("number", "add", "--org", org.id, "--provider", "exotel",
                             "+918000000001")) == ["+918000000001"]
    app = api.create_app()
    first = api.link(app["app_id"], "8000000001")
    assert first["voip_number"] == "+918000000001"
    for form in ["08000000001", "918000000001", "+91 80000-00001", "00918000000001",
                 "+918000000001"]:
        # Idempotent: each spelling finds the same link.
        assert api.link(app["app_id"], form) == first, form
    assert api.numbers(app["app_id"]) == [first]
    for form in ["8000000001", "08000000001", "918000000001", "+91 80000-00001",
                 "00918000000001"]:
        relinked = api.link(app["app_id"], form)
        assert relinked["voip_number"] == "+918000000001"
        assert ok(api.delete(f"/apps/{app['app_id']}/numbers/{form.replace(' ', '%20')}")) \
            == {"deleted": True}, form
        assert api.numbers(app["app_id"]) == []


@pytest.mark.parametrize("stored,form", [
    ("+14155550123", "14155550123"),      # 11 digits starting with ITU code 1
    ("+447911123456", "447911123456"),    # 12 digits starting with 44
    ("+447911123457", "00 44 7911 123457"),
    ("+8613800138000", "8613800138000"),  # 13 digits starting with 86
    ("+123456789012345", "123456789012345"),  # 15 digits, the maximum
], ids=["us", "uk", "uk-00", "cn", "15-digits"])
def test_link_international_forms(server, stored, form):
    org = server.make_org()
    api = org.client()
    out = cli_ok(server.cli("number", "add", "--org", org.id, "--provider", "p", stored))
    assert out == [stored]
    app = api.create_app()
    assert api.link(app["app_id"], form)["voip_number"] == stored
    digits = form.replace(" ", "%20")
    assert ok(api.delete(f"/apps/{app['app_id']}/numbers/{digits}")) == {"deleted": True}
    assert api.available_numbers() == [stored]


def test_link_idempotent_same_app(api, org):
    app = api.create_app()
    (num,) = org.add_numbers(1)
    first = api.link(app["app_id"], num)
    second = api.link(app["app_id"], num)
    third = api.link(app["app_id"], national(num))
    assert first == second == third
    assert api.numbers(app["app_id"]) == [first]


def test_link_conflict_with_other_app(api, org):
    a1 = api.create_app(name="one")
    a2 = api.create_app(name="two")
    (num,) = org.add_numbers(1)
    link = api.link(a1["app_id"], num)
    assert_error(api.post(f"/apps/{a2['app_id']}/numbers", json={"voip_number": num}),
                 409, MSG_NUM_CONFLICT)
    assert_error(api.post(f"/apps/{a2['app_id']}/numbers", json={"voip_number": national(num)}),
                 409, MSG_NUM_CONFLICT)
    assert api.numbers(a1["app_id"]) == [link]
    assert api.numbers(a2["app_id"]) == []


def test_link_conflict_with_inactive_app(api, org):
    a1 = api.create_app(name="one")
    a2 = api.create_app(name="two")
    (num,) = org.add_numbers(1)
    api.link(a1["app_id"], num)
    ok(api.put(f"/apps/{a1['app_id']}", json={"status": "INACTIVE"}))
    assert_error(api.post(f"/apps/{a2['app_id']}/numbers", json={"voip_number": num}),
                 409, MSG_NUM_CONFLICT)


def test_link_to_inactive_app_allowed(api, org):
    app = api.create_app()
    ok(api.put(f"/apps/{app['app_id']}", json={"status": "INACTIVE"}))
    (num,) = org.add_numbers(1)
    link = api.link(app["app_id"], num)
    assert link["status"] == "ACTIVE"
    assert api.numbers(app["app_id"]) == [link]
    assert ok(api.delete(f"/apps/{app['app_id']}/numbers/{num}")) == {"deleted": True}
    assert api.numbers(app["app_id"]) == []


def test_link_number_not_in_inventory(api):
    app = api.create_app()
    num = new_number()  # never added anywhere
    assert_error(api.post(f"/apps/{app['app_id']}/numbers", json={"voip_number": num}),
                 400, MSG_NUM_NOT_OWNED)
    assert api.numbers(app["app_id"]) == []


def test_link_disabled_number(server, api, org):
    app = api.create_app()
    (num,) = org.add_numbers(1)
    assert num in api.available_numbers()
    cp = server.cli("number", "disable", num)
    assert cli_ok(cp) == []
    assert num not in api.available_numbers()
    assert_error(api.post(f"/apps/{app['app_id']}/numbers", json={"voip_number": num}),
                 400, MSG_NUM_NOT_OWNED)
    assert api.numbers(app["app_id"]) == []
    assert cli_ok(server.cli("number", "enable", national(num))) == []
    assert num in api.available_numbers()
    assert api.link(app["app_id"], num)["voip_number"] == num


def test_disabled_number_keeps_existing_link_but_cannot_be_relinked(server, api, org):
    app = api.create_app()
    (num,) = org.add_numbers(1)
    link = api.link(app["app_id"], num)
    cli_ok(server.cli("number", "disable", num))
    assert api.numbers(app["app_id"]) == [link]  # existing links stay
    # Check 4 (inventory status) comes before check 6 (idempotent success).
    assert_error(api.post(f"/apps/{app['app_id']}/numbers", json={"voip_number": num}),
                 400, MSG_NUM_NOT_OWNED)
    assert ok(api.delete(f"/apps/{app['app_id']}/numbers/{num}")) == {"deleted": True}
    assert num not in api.available_numbers()


INVALID_LINK = [
    ("empty-object", {}),
    ("null", {"voip_number": None}),
    ("int", {"voip_number": 8000000001}),
    ("float", {"voip_number": 918000000001.0}),
    ("bool", {"voip_number": True}),
    ("array", {"voip_number": ["+918000000001"]}),
    ("object", {"voip_number": {"n": "+918000000001"}}),
    ("empty", {"voip_number": ""}),
    ("spaces", {"voip_number": "   "}),
    ("letters", {"voip_number": "abc"}),
    ("plus-only", {"voip_number": "+"}),
    ("nine-digits", {"voip_number": "800000000"}),
    ("short-e164", {"voip_number": "+1234567"}),
    ("plus-zero", {"voip_number": "+0918000000001"}),
    ("sixteen-digits", {"voip_number": "+9180000000011234"}),
    ("letter-inside", {"voip_number": "+91800000000a"}),
    ("plus-inside", {"voip_number": "91+8000000001"}),
    ("two-plus", {"voip_number": "++918000000001"}),
    ("nul", {"voip_number": "+918000000001\u0000"}),
    ("slash", {"voip_number": "+91/8000000001"}),
    ("other-name", {"number": "+918000000001"}),
    ("zero-then-11-digits", {"voip_number": "080000000012"}),  # no country code starts with 0
    ("unassigned-cc-28", {"voip_number": "28123456789"}),  # ITU zone 2: 280-289 are spare
    ("double-zero-zero", {"voip_number": "000918000000001"}),
]


@pytest.mark.parametrize("payload", [b for _, b in INVALID_LINK], ids=[i for i, _ in INVALID_LINK])
def test_link_invalid_body(shared_org, payload):
    api = shared_org.client()
    app = api.create_app()
    assert_error(api.post(f"/apps/{app['app_id']}/numbers", json=payload), 400, MSG_INVALID)
    # The same invalid body on an app that does not exist: 400 comes before 404.
    assert_error(api.post("/apps/sfv_app_000000000000/numbers", json=payload), 400, MSG_INVALID)
    assert api.numbers(app["app_id"]) == []


def test_link_unknown_app(api, org, prefix):
    (num,) = org.add_numbers(1)
    c = org.client(prefix)
    assert_error(c.post("/apps/sfv_app_000000000000/numbers", json={"voip_number": num}),
                 404, MSG_NUM_APP_NOT_FOUND)
    # App check (3) comes before the inventory check (4).
    assert_error(c.post("/apps/sfv_app_000000000000/numbers",
                        json={"voip_number": new_number()}), 404, MSG_NUM_APP_NOT_FOUND)
    assert num in api.available_numbers()


def test_link_after_app_deleted(api, org):
    app = api.create_app()
    (num,) = org.add_numbers(1)
    ok(api.delete(f"/apps/{app['app_id']}"))
    assert_error(api.post(f"/apps/{app['app_id']}/numbers", json={"voip_number": num}),
                 404, MSG_NUM_APP_NOT_FOUND)


# ---------------------------------------------------------------------------------------------
# List the app's numbers.

def test_list_numbers_empty(org, prefix):
    api = org.client(prefix)
    app = org.client().create_app()
    resp = api.get(f"/apps/{app['app_id']}/numbers")
    assert ok(resp) == []
    assert resp.text == '{"data":[],"message":"success"}'


def test_list_numbers_newest_first(org, prefix):
    api = org.client(prefix)
    app = api.create_app()
    nums = org.add_numbers(4)
    links = [api.link(app["app_id"], n) for n in nums]
    listed = api.numbers(app["app_id"])
    assert listed == list(reversed(links))
    for x in listed:
        assert list(x.keys()) == LINK_FIELDS
    # Unlinking one keeps the order of the rest; relinking puts it first.
    ok(api.delete(f"/apps/{app['app_id']}/numbers/{nums[1]}"))
    assert [x["voip_number"] for x in api.numbers(app["app_id"])] == [nums[3], nums[2], nums[0]]
    relinked = api.link(app["app_id"], nums[1])
    assert relinked["updated_at"] is None
    assert [x["voip_number"] for x in api.numbers(app["app_id"])] == \
        [nums[1], nums[3], nums[2], nums[0]]


def test_list_numbers_only_this_apps(api, org):
    a1 = api.create_app()
    a2 = api.create_app()
    n1, n2 = org.add_numbers(2)
    l1 = api.link(a1["app_id"], n1)
    l2 = api.link(a2["app_id"], n2)
    assert api.numbers(a1["app_id"]) == [l1]
    assert api.numbers(a2["app_id"]) == [l2]


@pytest.mark.parametrize("app_id", ["sfv_app_000000000000", "nope"])
def test_list_numbers_unknown_app(shared_org, prefix, app_id):
    assert_error(shared_org.client(prefix).get(f"/apps/{app_id}/numbers"),
                 404, MSG_NUM_APP_NOT_FOUND)


# ---------------------------------------------------------------------------------------------
# Unlink.

@pytest.mark.parametrize("form", list(unlink_forms("+918000099999")))
def test_unlink_path_forms(org, form):
    api = org.client()
    app = api.create_app()
    (num,) = org.add_numbers(1)
    api.link(app["app_id"], num)
    resp = api.delete(f"/apps/{app['app_id']}/numbers/{unlink_forms(num)[form]}")
    assert ok(resp) == {"deleted": True}
    assert resp.text == '{"data":{"deleted":true},"message":"success"}'
    assert api.numbers(app["app_id"]) == []
    assert num in api.available_numbers()


def test_unlink_leading_space_is_read_as_plus(server, org):
    """A leading space is read as `+`, not dropped: `%204420712345` is +4420712345, whereas the
    10-digit national reading of `4420712345` would be +914420712345."""
    api = org.client()
    uk = "+4420712345"
    assert cli_ok(server.cli("number", "add", "--org", org.id, "--provider", "p", uk)) == [uk]
    app = api.create_app()
    for form in ["%204420712345", "+4420712345", "%2B4420712345"]:
        assert api.link(app["app_id"], uk)["voip_number"] == uk
        assert ok(api.delete(f"/apps/{app['app_id']}/numbers/{form}")) == {"deleted": True}, form
        assert api.numbers(app["app_id"]) == []
    # Without the `+`, the same digits are a national number: a different, unlinked number.
    api.link(app["app_id"], uk)
    assert_error(api.delete(f"/apps/{app['app_id']}/numbers/4420712345"), 404, MSG_NOT_LINKED)
    assert [x["voip_number"] for x in api.numbers(app["app_id"])] == [uk]


def test_unlink_then_link_elsewhere(org, prefix):
    api = org.client(prefix)
    a1 = api.create_app(name="first")
    a2 = api.create_app(name="second")
    (num,) = org.add_numbers(1)
    old = api.link(a1["app_id"], num)
    assert ok(api.delete(f"/apps/{a1['app_id']}/numbers/{num}")) == {"deleted": True}
    assert api.numbers(a1["app_id"]) == []
    assert num in api.available_numbers()
    new = api.link(a2["app_id"], num)
    assert new == {"app_id": a2["app_id"], "voip_number": num, "org_id": org.id,
                   "status": "ACTIVE", "created_at": new["created_at"], "updated_at": None}
    assert parse_ts(new["created_at"]) >= parse_ts(old["created_at"])
    assert api.numbers(a2["app_id"]) == [new]
    assert num not in api.available_numbers()
    # And back to the first app after unlinking from the second.
    ok(api.delete(f"/apps/{a2['app_id']}/numbers/{num}"))
    assert api.link(a1["app_id"], num)["app_id"] == a1["app_id"]


def test_unlink_not_linked(api, org):
    app = api.create_app()
    other = api.create_app()
    n_free, n_other = org.add_numbers(2)
    api.link(other["app_id"], n_other)
    # In the inventory but not linked.
    assert_error(api.delete(f"/apps/{app['app_id']}/numbers/{n_free}"), 404, MSG_NOT_LINKED)
    # Linked, but to another app: that link must survive.
    assert_error(api.delete(f"/apps/{app['app_id']}/numbers/{n_other}"), 404, MSG_NOT_LINKED)
    assert [x["voip_number"] for x in api.numbers(other["app_id"])] == [n_other]
    # Not in any inventory.
    assert_error(api.delete(f"/apps/{app['app_id']}/numbers/{new_number()}"), 404, MSG_NOT_LINKED)


def test_unlink_twice(api, org):
    app = api.create_app()
    (num,) = org.add_numbers(1)
    api.link(app["app_id"], num)
    ok(api.delete(f"/apps/{app['app_id']}/numbers/{num}"))
    assert_error(api.delete(f"/apps/{app['app_id']}/numbers/{num}"), 404, MSG_NOT_LINKED)


@pytest.mark.parametrize("bad", ["abc", "123", "%2B", "%2B0918000000001", "%00",
                                 "%2B91800000000a", "+1234567", "%2B9180000000011234",
                                 "%2B91%2F8000000001", "x" * 1000])
def test_unlink_invalid_number(shared_org, bad):
    api = shared_org.client()
    app = api.create_app()
    assert_error(api.delete(f"/apps/{app['app_id']}/numbers/{bad}"), 404, MSG_NOT_LINKED)


def test_unlink_unknown_app(api, org, prefix):
    app = api.create_app()
    (num,) = org.add_numbers(1)
    api.link(app["app_id"], num)
    c = org.client(prefix)
    assert_error(c.delete(f"/apps/sfv_app_000000000000/numbers/{num}"), 404, MSG_NUM_APP_NOT_FOUND)
    # App check first, even for an invalid number.
    assert_error(c.delete("/apps/sfv_app_000000000000/numbers/abc"), 404, MSG_NUM_APP_NOT_FOUND)
    assert [x["voip_number"] for x in api.numbers(app["app_id"])] == [num]


@pytest.mark.parametrize("bad", list(NOT_UTF8.values()), ids=list(NOT_UTF8))
def test_path_params_not_utf8(shared_org, bad):
    """An app id that is not UTF-8 names no app, on every number route, after the body's checks
    and before the number's; a number that is not UTF-8 is linked to nothing."""
    api = shared_org.client()
    app = api.create_app()
    num, free = shared_org.add_numbers(2)
    api.link(app["app_id"], num)
    assert_error(api.post(f"/apps/{bad}/numbers", json={"voip_number": free}),
                 404, MSG_NUM_APP_NOT_FOUND)
    assert_error(api.post(f"/apps/{bad}/numbers", json={"voip_number": new_number()}),
                 404, MSG_NUM_APP_NOT_FOUND)
    assert_error(api.post(f"/apps/{bad}/numbers", json={"voip_number": "abc"}), 400, MSG_INVALID)
    assert_error(api.get(f"/apps/{bad}/numbers"), 404, MSG_NUM_APP_NOT_FOUND)
    assert_error(api.delete(f"/apps/{bad}/numbers/{num}"), 404, MSG_NUM_APP_NOT_FOUND)
    assert_error(api.delete(f"/apps/{bad}/numbers/{bad}"), 404, MSG_NUM_APP_NOT_FOUND)
    assert_error(api.delete(f"/apps/{app['app_id']}/numbers/{bad}"), 404, MSG_NOT_LINKED)
    assert_error(api.delete(f"/apps/{app['app_id']}/numbers/{num}{bad}"), 404, MSG_NOT_LINKED)
    assert [x["voip_number"] for x in api.numbers(app["app_id"])] == [num]
    assert free in api.available_numbers()


# ---------------------------------------------------------------------------------------------
# Delete app frees its numbers.

def test_delete_app_frees_numbers(server, org, prefix):
    api = org.client(prefix)
    app = api.create_app()
    nums = org.add_numbers(3)
    for n in nums:
        api.link(app["app_id"], n)
    assert not set(nums) & set(api.available_numbers())
    assert ok(api.delete(f"/apps/{app['app_id']}")) == {"deleted": True}
    avail = api.available_numbers()
    assert [n for n in avail if n in nums] == nums  # id ascending = insertion order
    rows = [r.split("\t") for r in cli_ok(server.cli("number", "list", "--org", org.id))]
    assert sorted(r[4] for r in rows if r[1] in nums) == ["-", "-", "-"]
    other = api.create_app()
    for n in nums:
        assert api.link(other["app_id"], n)["app_id"] == other["app_id"]
    assert len(api.numbers(other["app_id"])) == 3


# ---------------------------------------------------------------------------------------------
# Available numbers.

def test_available_numbers(server, org, prefix):
    api = org.client(prefix)
    assert api.available() == []
    resp = api.get("/available-numbers")
    assert resp.text == '{"data":[],"message":"success"}'
    first = org.add_numbers(2, provider="exotel")
    second = org.add_numbers(2, provider="plivo")
    resp = api.get("/available-numbers")
    avail = ok(resp)
    assert_compact(resp)
    rows = {r.split("\t")[1]: int(r.split("\t")[0])
            for r in cli_ok(server.cli("number", "list", "--org", org.id))}
    expected = [{"id": rows[n], "voip_number": n, "provider": p, "status": "ACTIVE"}
                for n, p in zip(first + second, ["exotel"] * 2 + ["plivo"] * 2)]
    assert avail == expected
    for a in avail:
        assert list(a.keys()) == AVAILABLE_FIELDS
        assert isinstance(a["id"], int) and a["id"] > 0
    ids = [a["id"] for a in avail]
    assert ids == sorted(ids) and len(set(ids)) == 4
    # Link one: it disappears; the rest keep their order.
    app = api.create_app()
    api.link(app["app_id"], second[0])
    assert api.available() == [expected[0], expected[1], expected[3]]
    # Unlink: it is back in id order.
    ok(api.delete(f"/apps/{app['app_id']}/numbers/{second[0]}"))
    assert api.available() == expected


# What migration 0009 added, taken away again: the database as schema
# version 8 left it, for the upgrade test below.
DOWNGRADE_0009 = {
    "sqlite": """DROP TRIGGER links_linked_insert; DROP TRIGGER links_linked_update;
        DROP TRIGGER links_linked_delete; DROP INDEX numbers_org_free;
        ALTER TABLE numbers DROP COLUMN linked;
        CREATE INDEX numbers_org_available ON numbers(org_id, status, id, e164, provider);
        DELETE FROM schema_migrations WHERE version = 9;""",
    "postgresql": """DROP TRIGGER links_linked ON links; DROP FUNCTION links_keep_linked();
        DROP INDEX numbers_org_free; ALTER TABLE numbers DROP COLUMN linked;
        CREATE INDEX numbers_org_available ON numbers(org_id, status, id)
            INCLUDE (e164, provider);
        DELETE FROM schema_migrations WHERE version = 9;""",
}


def run_sql(db_url, sql):
    """Run SQL on the test's database behind the server's back."""
    if PG_URL:
        cp = subprocess.run(["psql", db_url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
                            capture_output=True, text=True, timeout=60)
        assert cp.returncode == 0, cp.stderr
        return
    con = sqlite3.connect(db_url.removeprefix("sqlite:"), timeout=10)
    try:
        con.executescript(sql)
    finally:
        con.close()


def test_available_numbers_after_upgrade(tmp_path):
    """Available numbers read a flag on each number (migration 0009). The upgrade sets it from
    the links already there, and the database keeps it whoever writes a link: a node of the
    previous version during a rolling upgrade writes links without knowing of it."""
    with fresh_db(tmp_path) as url:
        srv = Server(url, tmp_path).start()
        try:
            org = srv.make_org()
            nums = org.add_numbers(4)
            api = org.client()
            app = api.create_app()["app_id"]
            api.link(app, nums[0])
            api.link(app, nums[2])
        finally:
            srv.stop()
        run_sql(url, DOWNGRADE_0009["postgresql" if PG_URL else "sqlite"])
        # Written under schema 8: one more link, one unlink.
        run_sql(url, "INSERT INTO links(app_id, org_id, number_id, voip_number, status, "
                     f"created_at) SELECT '{app}', org_id, id, e164, 'ACTIVE', 1 FROM numbers "
                     f"WHERE e164 = '{nums[1]}'")
        run_sql(url, f"UPDATE links SET status = 'INACTIVE' WHERE voip_number = '{nums[2]}'")

        srv = Server(url, tmp_path).start()
        try:
            api = Org(srv, org.id, org.name, None).client(key=org.key)
            assert api.available_numbers() == [nums[2], nums[3]]
            # Links written by other code than sfvopi's operations.
            run_sql(url, f"UPDATE links SET status = 'INACTIVE' WHERE voip_number = '{nums[0]}'")
            assert api.available_numbers() == [nums[0], nums[2], nums[3]]
            run_sql(url, "INSERT INTO links(app_id, org_id, number_id, voip_number, status, "
                         f"created_at) SELECT '{app}', org_id, id, e164, 'ACTIVE', 2 FROM "
                         f"numbers WHERE e164 = '{nums[3]}'")
            assert api.available_numbers() == [nums[0], nums[2]]
            run_sql(url, f"DELETE FROM links WHERE voip_number = '{nums[1]}'")
            assert api.available_numbers() == nums[:3]
            # And through the API, as before.
            api.link(app, nums[2])
            assert api.available_numbers() == nums[:2]
            ok(api.delete(f"/apps/{app}"))
            assert api.available_numbers() == nums
        finally:
            srv.stop()


def test_many_numbers_listed_in_full(server, org):
    api = org.client()
    nums = org.add_numbers(120)
    avail = api.available()
    assert [a["voip_number"] for a in avail] == nums
    ids = [a["id"] for a in avail]
    assert all(a < b for a, b in zip(ids, ids[1:])), "ids not ascending (numerically)"
    app = api.create_app()
    links = [api.link(app["app_id"], n) for n in nums[:60]]
    assert api.numbers(app["app_id"]) == list(reversed(links))
    assert api.available_numbers() == nums[60:]


def test_available_numbers_id_order_not_number_order(server, org):
    api = org.client()
    hi, lo = new_number(), new_number()
    hi, lo = max(hi, lo), min(hi, lo)
    # Add the larger number first: it gets the smaller id.
    assert cli_ok(server.cli("number", "add", "--org", org.id, "--provider", "p", hi)) == [hi]
    assert cli_ok(server.cli("number", "add", "--org", org.id, "--provider", "p", lo)) == [lo]
    assert api.available_numbers() == [hi, lo]


def test_available_numbers_excludes_removed(server, org):
    api = org.client()
    a, b = org.add_numbers(2)
    assert cli_ok(server.cli("number", "remove", a)) == []
    assert api.available_numbers() == [b]
    app = api.create_app()
    assert_error(api.post(f"/apps/{app['app_id']}/numbers", json={"voip_number": a}),
                 400, MSG_NUM_NOT_OWNED)


def test_available_numbers_linked_to_inactive_app_not_free(api, org):
    app = api.create_app()
    (num,) = org.add_numbers(1)
    api.link(app["app_id"], num)
    ok(api.put(f"/apps/{app['app_id']}", json={"status": "INACTIVE"}))
    assert num not in api.available_numbers()


def test_link_object_field_formats(api, org):
    app = api.create_app()
    (num,) = org.add_numbers(1)
    link = api.link(app["app_id"], num)
    assert re.match(r"^\+[1-9][0-9]{7,14}$", link["voip_number"])
    assert isinstance(link["org_id"], int) and link["org_id"] == org.id
    parse_ts(link["created_at"])


def test_app_not_found_message_differs_per_route(shared_org):
    """App routes say 'SFVoPI app not found'; number routes say 'App not found'."""
    api = shared_org.client()
    assert_error(api.get("/apps/sfv_app_000000000000"), 404, MSG_APP_NOT_FOUND)
    assert_error(api.get("/apps/sfv_app_000000000000/numbers"), 404, MSG_NUM_APP_NOT_FOUND)
