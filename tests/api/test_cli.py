"""The operator command line (spec/CLI.md): output formats, exit codes, option handling, demo."""

import json
import re
import socket
import shlex
import shutil
import subprocess
import urllib.parse

import pytest
import requests

from conftest import (
    KEY_RE, TS_RE, Server, base_env, cli_ok, fresh_db, new_number, ok, run_cli, wait_until,
)

ANY_KEY = re.compile(r"sfvk_[A-Za-z0-9]{32,}")


@pytest.fixture
def db(tmp_path):
    """A fresh, empty database for one test."""
    with fresh_db(tmp_path, "cli") as url:
        yield url


def sf(db, *args, **kw):
    return run_cli(*args, db_url=db, **kw)


def create_org(db, name="Acme"):
    out = cli_ok(sf(db, "org", "create", "--name", name))
    assert len(out) == 1 and re.fullmatch(r"[1-9][0-9]*", out[0]), out
    return int(out[0])


def create_key(db, org_id, *extra):
    out = cli_ok(sf(db, "key", "create", "--org", org_id, *extra))
    assert len(out) == 1 and KEY_RE.match(out[0]), out
    return out[0]


def rows(cp):
    return [line.split("\t") for line in cli_ok(cp)]


def assert_failed(cp, rc=1):
    """A failed operation: exit 1, nothing on stdout, one `sfvopi: ...` line on stderr, no key."""
    assert cp.returncode == rc, f"rc={cp.returncode}\nstdout={cp.stdout}\nstderr={cp.stderr}"
    assert cp.stdout == "", cp.stdout
    lines = [x for x in cp.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, f"expected one error line, got: {cp.stderr!r}"
    assert lines[0].startswith("sfvopi: ") and len(lines[0]) > len("sfvopi: "), lines
    assert not ANY_KEY.search(cp.stderr)


# ---------------------------------------------------------------------------------------------
# org

def test_org_create_and_list(db):
    assert cli_ok(sf(db, "org", "list")) == []
    a = create_org(db, "Acme Corp")
    b = create_org(db, "Ünïcødé Org")
    assert a != b
    assert sorted(rows(sf(db, "org", "list"))) == sorted([[str(a), "Acme Corp"],
                                                         [str(b), "Ünïcødé Org"]])


def test_org_create_prints_only_the_id(db):
    cp = sf(db, "org", "create", "--name", "Solo")
    assert cp.returncode == 0
    assert re.fullmatch(r"[1-9][0-9]*\n", cp.stdout), repr(cp.stdout)


# ---------------------------------------------------------------------------------------------
# key

def test_key_create_and_list(db):
    org = create_org(db)
    other = create_org(db, "Other")
    k1 = create_key(db, org)
    k2 = create_key(db, org, "--name", "ci key", "--user", "67890")
    k3 = create_key(db, other, "--name", "theirs")
    assert len({k1, k2, k3}) == 3
    cp = sf(db, "key", "list", "--org", org)
    listed = rows(cp)
    for k in (k1, k2, k3):
        assert k not in cp.stdout and k not in cp.stderr  # never the whole key again
    assert all(len(r) == 5 for r in listed), listed
    ids = [int(r[0]) for r in listed]
    assert ids == sorted(ids) and len(ids) == 2  # by id, only this org's keys
    assert [r[1:4] for r in listed] == [[k1[:12], "-", "ACTIVE"], [k2[:12], "ci key", "ACTIVE"]]
    for r in listed:
        assert r[4].strip() != "", r
    assert [r[1:4] for r in rows(sf(db, "key", "list", "--org", other))] == \
        [[k3[:12], "theirs", "ACTIVE"]]


def test_key_create_prints_only_the_key(db):
    org = create_org(db)
    cp = sf(db, "key", "create", "--org", org)
    assert cp.returncode == 0
    assert re.fullmatch(r"sfvk_[A-Za-z0-9]{32,}\n", cp.stdout), repr(cp.stdout)
    assert cp.stdout.strip() not in cp.stderr


def test_key_stored_only_as_hash(db, tmp_path):
    """API.md: keys are stored only as a hash; the plaintext is shown once, at creation."""
    org = create_org(db)
    key = create_key(db, org, "--name", "hashed")
    secret = key[12:]  # everything after the displayable prefix
    if db.startswith("sqlite:"):
        path = db[len("sqlite:"):]
        blob = b""
        for suffix in ("", "-wal", "-journal"):
            try:
                with open(path + suffix, "rb") as f:
                    blob += f.read()
            except FileNotFoundError:
                pass
        assert blob, "database file not found"
        dump = blob.decode("latin-1")
    else:
        cp = subprocess.run(["pg_dump", "--data-only", db], capture_output=True, text=True,
                            timeout=60)
        assert cp.returncode == 0, cp.stderr
        dump = cp.stdout
    assert "hashed" in dump  # the label is there: we are looking at the right data
    assert key not in dump and secret not in dump


def test_key_revoke(db):
    org = create_org(db)
    key = create_key(db, org)
    keep = create_key(db, org)
    (kid,) = [int(r[0]) for r in rows(sf(db, "key", "list", "--org", org)) if r[1] == key[:12]]
    cp = sf(db, "key", "revoke", kid)
    assert (cp.returncode, cp.stdout) == (0, "")
    status = {r[1]: r[3] for r in rows(sf(db, "key", "list", "--org", org))}
    assert status == {key[:12]: "REVOKED", keep[:12]: "ACTIVE"}
    # Revoking a revoked key succeeds and changes nothing.
    cp = sf(db, "key", "revoke", kid)
    assert (cp.returncode, cp.stdout) == (0, "")
    assert {r[1]: r[3] for r in rows(sf(db, "key", "list", "--org", org))} == status


def test_key_revoke_unknown_id(db):
    org = create_org(db)
    create_key(db, org)
    assert_failed(sf(db, "key", "revoke", "999999"))


def test_key_create_for_missing_org(db):
    assert_failed(sf(db, "key", "create", "--org", "999999"))
    assert_failed(sf(db, "key", "create", "--org", "999999", "--user", "5", "--name", "x"))


def test_revoked_key_rejected_by_server(server):
    org = server.make_org()
    key = org.new_key()
    assert ok(org.client(key=key).get("/apps")) == []
    cli_ok(server.cli("key", "revoke", org.key_id(key)))
    assert wait_until(lambda: org.client(key=key).get("/apps").status_code == 401, timeout=6), \
        "revoked key still accepted after 6 s"
    assert ok(org.client().get("/apps")) == []


# ---------------------------------------------------------------------------------------------
# number

def test_number_add_normalises_and_prints_e164(db):
    org = create_org(db)
    nums = [new_number() for _ in range(6)]
    nat = [n[3:] for n in nums]
    forms = [nat[0], "0" + nat[1], "91" + nat[2], f"+91 {nat[3][:5]}-{nat[3][5:]}",
             "0091" + nat[4], nums[5]]
    assert cli_ok(sf(db, "number", "add", "--org", org, "--provider", "exotel", *forms)) == nums
    listed = rows(sf(db, "number", "list", "--org", org))
    assert all(len(r) == 5 for r in listed), listed
    assert sorted(r[1:] for r in listed) == sorted([n, "exotel", "ACTIVE", "-"] for n in nums)
    ids = [int(r[0]) for r in listed]
    assert len(set(ids)) == 6 and all(i > 0 for i in ids)


def test_number_add_partial_failure(db):
    org = create_org(db)
    good = new_number()
    cp = sf(db, "number", "add", "--org", org, "--provider", "p", "not-a-number", good)
    assert cp.returncode == 1, (cp.stdout, cp.stderr)
    assert cp.stdout.splitlines() == [good]
    err = [x for x in cp.stderr.splitlines() if x.strip()]
    assert len(err) == 1 and err[0].startswith("sfvopi: "), cp.stderr
    assert [r[1] for r in rows(sf(db, "number", "list", "--org", org))] == [good]


def test_number_add_duplicate_in_any_org(db):
    a = create_org(db, "A")
    b = create_org(db, "B")
    num, other = new_number(), new_number()
    assert cli_ok(sf(db, "number", "add", "--org", a, "--provider", "p", num)) == [num]
    # Already in A's inventory: an error for that number, the other is still added.
    cp = sf(db, "number", "add", "--org", b, "--provider", "q", num[3:], other)
    assert cp.returncode == 1
    assert cp.stdout.splitlines() == [other]
    assert [r[1] for r in rows(sf(db, "number", "list", "--org", b))] == [other]
    assert [r[1:3] for r in rows(sf(db, "number", "list", "--org", a))] == [[num, "p"]]
    # Same org again is also a duplicate.
    cp = sf(db, "number", "add", "--org", a, "--provider", "p", num)
    assert_failed(cp)


def test_number_add_missing_org(db):
    assert_failed(sf(db, "number", "add", "--org", "999999", "--provider", "p", new_number()))


def test_number_disable_enable(db):
    org = create_org(db)
    num = new_number()
    cli_ok(sf(db, "number", "add", "--org", org, "--provider", "p", num))
    cp = sf(db, "number", "disable", num)
    assert (cp.returncode, cp.stdout) == (0, "")
    assert [r[3] for r in rows(sf(db, "number", "list", "--org", org))] == ["INACTIVE"]
    cp = sf(db, "number", "enable", "0" + num[3:])
    assert (cp.returncode, cp.stdout) == (0, "")
    assert [r[3] for r in rows(sf(db, "number", "list", "--org", org))] == ["ACTIVE"]


@pytest.mark.parametrize("sub", ["disable", "enable", "remove"])
def test_number_commands_on_unknown_number(db, sub):
    create_org(db)
    assert_failed(sf(db, "number", sub, new_number()))


def test_number_remove(db):
    org = create_org(db)
    a, b = new_number(), new_number()
    cli_ok(sf(db, "number", "add", "--org", org, "--provider", "p", a, b))
    cp = sf(db, "number", "remove", a[3:])
    assert (cp.returncode, cp.stdout) == (0, "")
    assert [r[1] for r in rows(sf(db, "number", "list", "--org", org))] == [b]
    # Removed numbers can be added again (to any org).
    other = create_org(db, "Other")
    assert cli_ok(sf(db, "number", "add", "--org", other, "--provider", "p", a)) == [a]


def test_number_list_shows_link_and_remove_refused_while_linked(server):
    org = server.make_org()
    api = org.client()
    app = api.create_app()
    num, free = org.add_numbers(2, provider="plivo")
    api.link(app["app_id"], num)
    listed = {r[1]: r for r in rows(server.cli("number", "list", "--org", org.id))}
    assert listed[num][1:] == [num, "plivo", "ACTIVE", app["app_id"]]
    assert listed[free][1:] == [free, "plivo", "ACTIVE", "-"]
    assert_failed(server.cli("number", "remove", num))
    assert [x["voip_number"] for x in api.numbers(app["app_id"])] == [num]
    ok(api.delete(f"/apps/{app['app_id']}/numbers/{num}"))
    cp = server.cli("number", "remove", num)
    assert (cp.returncode, cp.stdout) == (0, "")
    assert num not in [r[1] for r in rows(server.cli("number", "list", "--org", org.id))]
    assert api.available_numbers() == [free]


def test_disable_keeps_existing_link(server):
    org = server.make_org()
    api = org.client()
    app = api.create_app()
    (num,) = org.add_numbers(1)
    link = api.link(app["app_id"], num)
    cli_ok(server.cli("number", "disable", num))
    listed = {r[1]: r for r in rows(server.cli("number", "list", "--org", org.id))}
    assert listed[num][3:] == ["INACTIVE", app["app_id"]]
    assert api.numbers(app["app_id"]) == [link]


# ---------------------------------------------------------------------------------------------
# Exit codes.

USAGE_ERRORS = [
    [],
    ["bogus"],
    ["org"],
    ["org", "bogus"],
    ["org", "create"],
    ["org", "create", "--name"],
    ["org", "list", "--bogus"],
    ["--bogus", "org", "list"],
    ["key"],
    ["key", "create"],
    ["key", "create", "--org"],
    ["key", "create", "--org", "abc"],
    ["key", "create", "--org", "1x"],
    ["key", "create", "--org", "1", "--user", "abc"],
    ["key", "list"],
    ["key", "list", "--org", "abc"],
    ["key", "revoke"],
    ["key", "revoke", "abc"],
    ["key", "bogus"],
    ["number"],
    ["number", "bogus"],
    ["number", "add", "--org", "1", "--provider", "p"],
    ["number", "add", "--org", "abc", "--provider", "p", "8000012345"],
    ["number", "add", "--provider", "p", "8000012345"],
    ["number", "add", "--org", "1", "8000012345"],
    ["number", "list"],
    ["number", "list", "--org", "abc"],
    ["number", "remove"],
    ["number", "disable"],
    ["number", "enable"],
    ["serve", "--threads", "abc"],
    ["serve", "--listen"],
    ["serve", "--bogus"],
    ["serve", "--listen", "garbage"],
    ["serve", "--listen", "127.0.0.1:99999"],
    ["serve", "--listen", "::1:8080"],
    ["serve", "--admin-listen", "127.0.0.1"],
    ["serve", "--sip-listen", "pbx.example.net:5060"],
    ["serve", "--sip-listen", "127.0.0.1:0"],
    ["serve", "--media-ip", "media.example.net"],
    ["serve", "--db", "mysql://db/x"],
    ["--db", "sqlite:", "org", "list"],
    ["--default-country-code", "abc", "org", "list"],
    ["demo", "--bogus"],
]


@pytest.mark.parametrize("args", USAGE_ERRORS, ids=[" ".join(a) or "(none)" for a in USAGE_ERRORS])
def test_usage_errors_exit_2(db, args):
    cp = sf(db, *args, timeout=10)
    assert cp.returncode == 2, f"rc={cp.returncode}\nstdout={cp.stdout}\nstderr={cp.stderr}"
    assert cp.stderr.strip() != "", "usage must go to stderr"
    assert cp.stdout == ""
    # Bad usage changes nothing.
    assert cli_ok(sf(db, "org", "list")) == []


@pytest.mark.parametrize("args,msg", [
    (["serve", "--listen", "garbage"],
     "sfvopi: --listen must be HOST:PORT, port 0 to 65535 (IPv6 as [::1]:8080)"),
    (["serve", "--sip-listen", "127.0.0.1:0"],
     "sfvopi: --sip-listen must be a comma-separated list of [udp:|tcp:|tls:]IP:PORT (IPv6 as "
     "[::1]:5060): the value '127.0.0.1:0' is not [udp:|tcp:|tls:]IP:PORT with a port from 1 to "
     "65535"),
    (["serve", "--media-ip", "media.example.net"], "sfvopi: --media-ip must be an IP address"),
    (["--db", "mysql://db/x", "org", "list"], "sfvopi: --db must be sqlite:PATH or postgresql://..."),
])
def test_malformed_values_are_named_then_usage(args, msg):
    cp = run_cli(*args, timeout=10)
    assert cp.returncode == 2 and cp.stdout == ""
    lines = cp.stderr.splitlines()
    assert lines[0] == msg, cp.stderr
    assert lines[1].startswith("usage: sfvopi"), cp.stderr


# Text arguments that are not UTF-8 (raw bytes, passed through Python's surrogateescape).
NOT_UTF8_ARGS = {
    "org-name-latin1": (["org", "create", "--name", "Caf\udce9"], "--name"),
    "org-name-overlong": (["org", "create", "--name", "\udcc0\udc80"], "--name"),
    "key-name-surrogate": (["key", "create", "--org", "{org}", "--name", "k\udced\udca0\udc80"],
                           "--name"),
    "provider-truncated": (["number", "add", "--org", "{org}", "--provider", "p\udcc3(",
                            "{number}"], "--provider"),
    "provider-above-10ffff": (["number", "add", "--org", "{org}", "--provider",
                               "\udcf4\udc90\udc80\udc80", "{number}"], "--provider"),
}


@pytest.mark.parametrize("case", list(NOT_UTF8_ARGS))
def test_text_argument_not_utf8_is_a_usage_error(db, case):
    """The same usage error on SQLite and PostgreSQL (which would refuse such text), and the
    database is left as it was."""
    org = create_org(db)
    args, opt = NOT_UTF8_ARGS[case]
    number = new_number()
    cp = sf(db, *[a.format(org=org, number=number) for a in args])
    assert cp.returncode == 2 and cp.stdout == "", cp
    lines = cp.stderr.splitlines()
    assert lines[0] == f"sfvopi: {opt} must be valid UTF-8 text", cp.stderr
    assert lines[1].startswith("usage: sfvopi"), cp.stderr
    assert rows(sf(db, "org", "list")) == [[str(org), "Acme"]]
    assert cli_ok(sf(db, "key", "list", "--org", org)) == []
    assert cli_ok(sf(db, "number", "list", "--org", org)) == []


def test_unreachable_database_is_one_line_with_its_cause(tmp_path):
    """CLI.md: one line on stderr that names what was wrong, never a stack of driver messages."""
    cp = run_cli("--db", f"sqlite:{tmp_path}/missing/dir/x.db", "org", "list", timeout=10)
    assert (cp.returncode, cp.stdout) == (1, "")
    assert cp.stderr == "sfvopi: cannot open database: database unavailable: " \
                        "unable to open database file\n", cp.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        cp = run_cli("--db", f"postgresql://sfvopi@127.0.0.1:{port}/x", "org", "list", timeout=10)
    assert (cp.returncode, cp.stdout) == (1, "")
    assert len(cp.stderr.splitlines()) == 1, cp.stderr
    assert cp.stderr.startswith("sfvopi: cannot open database: database unavailable: "), cp.stderr
    assert "Connection refused" in cp.stderr, cp.stderr


def test_db_option_without_value_exit_2():
    cp = run_cli("--db", timeout=10)
    assert cp.returncode == 2
    assert cp.stderr.strip() != ""


HELP = [
    ["--help"], ["-h"], ["serve", "--help"], ["org", "create", "--help"], ["org", "list", "-h"],
    ["key", "create", "-h"], ["key", "list", "--help"], ["key", "revoke", "--help"],
    ["number", "add", "--help"], ["number", "list", "--help"], ["number", "remove", "-h"],
    ["demo", "--help"],
]


@pytest.mark.parametrize("args", HELP, ids=[" ".join(a) for a in HELP])
def test_help_exit_0(db, args):
    cp = sf(db, *args, timeout=10)
    assert cp.returncode == 0, f"rc={cp.returncode}\nstdout={cp.stdout}\nstderr={cp.stderr}"
    assert (cp.stdout + cp.stderr).strip() != ""
    assert not ANY_KEY.search(cp.stdout + cp.stderr)
    # --help only prints usage: it does not run the command (no demo org, no server).
    assert cli_ok(sf(db, "org", "list")) == []


# ---------------------------------------------------------------------------------------------
# Global options and environment.

def test_global_options_before_or_after_subcommand(db):
    a = create_org(db, "Before")
    out = cli_ok(run_cli("org", "create", "--name", "After", "--db", db))
    b = int(out[0])
    before = cli_ok(run_cli("--db", db, "org", "list"))
    after = cli_ok(run_cli("org", "list", "--db", db))
    assert before == after
    assert sorted(before) == sorted([f"{a}\tBefore", f"{b}\tAfter"])
    num = new_number()
    assert cli_ok(run_cli("number", "add", "--org", a, "--db", db, "--provider", "p",
                          num)) == [num]


def test_db_env_and_option_precedence(tmp_path):
    with fresh_db(tmp_path, "env") as env_db, fresh_db(tmp_path, "opt") as opt_db:
        env = base_env(SFVOPI_DB=env_db)
        out = cli_ok(run_cli("org", "create", "--name", "FromEnv", env=env))
        env_org = int(out[0])
        assert cli_ok(run_cli("--db", env_db, "org", "list")) == [f"{env_org}\tFromEnv"]
        # The option beats the environment variable.
        out = cli_ok(run_cli("--db", opt_db, "org", "create", "--name", "FromOpt", env=env))
        opt_org = int(out[0])
        assert cli_ok(run_cli("--db", opt_db, "org", "list")) == [f"{opt_org}\tFromOpt"]
        assert cli_ok(run_cli("org", "list", env=env)) == [f"{env_org}\tFromEnv"]
        assert cli_ok(run_cli("org", "list", "--db", opt_db, env=env)) == [f"{opt_org}\tFromOpt"]


def test_default_db_is_sqlite_file_in_cwd(tmp_path):
    cp = run_cli("org", "create", "--name", "Default", cwd=tmp_path)
    assert cp.returncode == 0, cp.stderr
    assert (tmp_path / "sfvopi.db").is_file()
    assert cli_ok(run_cli("--db", f"sqlite:{tmp_path / 'sfvopi.db'}", "org", "list")) == \
        [f"{cp.stdout.strip()}\tDefault"]


def test_default_country_code(db):
    org = create_org(db)
    # Default 91.
    assert cli_ok(sf(db, "number", "add", "--org", org, "--provider", "p", "7000000123")) == \
        ["+917000000123"]
    # Option, before and after the subcommand.
    assert cli_ok(sf(db, "--default-country-code", "1", "number", "add", "--org", org,
                     "--provider", "p", "2025550123")) == ["+12025550123"]
    assert cli_ok(sf(db, "number", "add", "--default-country-code", "1", "--org", org,
                     "--provider", "p", "2025550124")) == ["+12025550124"]
    # Environment variable, and the option beats it.
    env = base_env(SFVOPI_DEFAULT_CC="44")
    assert cli_ok(sf(db, "number", "add", "--org", org, "--provider", "p", "2071234567",
                     env=env)) == ["+442071234567"]
    assert cli_ok(sf(db, "--default-country-code", "1", "number", "add", "--org", org,
                     "--provider", "p", "2025550125", env=env)) == ["+12025550125"]


# ---------------------------------------------------------------------------------------------
# demo

DEMO_NUMBERS = [f"+91800000000{i}" for i in range(1, 6)]


def test_demo_on_empty_database(db, tmp_path):
    cp = sf(db, "demo")
    assert cp.returncode == 0, cp.stderr
    keys = set(ANY_KEY.findall(cp.stdout))
    assert len(keys) == 1, cp.stdout
    (key,) = keys
    curl_lines = [ln.strip() for ln in cp.stdout.splitlines() if ln.strip().startswith("curl")]
    assert len(curl_lines) >= 1 and key in curl_lines[0], cp.stdout  # ready to paste: has the key
    orgs = rows(sf(db, "org", "list"))
    assert [r[1] for r in orgs] == ["Demo"]
    org_id = orgs[0][0]
    nums = rows(sf(db, "number", "list", "--org", org_id))
    assert sorted(r[1:] for r in nums) == [[n, "demo", "ACTIVE", "-"] for n in DEMO_NUMBERS]
    keys_listed = rows(sf(db, "key", "list", "--org", org_id))
    assert [r[1:2] + r[3:4] for r in keys_listed] == [[key[:12], "ACTIVE"]]

    # The printed key works against a server on that database.
    srv = Server(db, tmp_path).start()
    try:
        resp = requests.get(srv.url + "/sfvopi/available-numbers", headers={"X-API-Key": key},
                            timeout=10)
        avail = ok(resp)
        assert [a["voip_number"] for a in avail] == DEMO_NUMBERS
        assert all(a["provider"] == "demo" and a["status"] == "ACTIVE" for a in avail)
        app = ok(requests.post(srv.url + "/superfone/sfvopi/apps", headers={"X-API-Key": key},
                               json={"name": "demo app", "answer_url": "https://e.com/a"},
                               timeout=10))
        assert app["org_id"] == int(org_id)
        # Paste the curl line, pointed at this server instead of the default address.
        if shutil.which("curl"):
            argv = shlex.split(curl_lines[0])
            urls = [i for i, a in enumerate(argv) if re.match(r"https?://", a)]
            assert len(urls) == 1, curl_lines[0]
            parts = urllib.parse.urlsplit(argv[urls[0]])
            argv[urls[0]] = urllib.parse.urlunsplit(parts._replace(netloc=f"127.0.0.1:{srv.port}"))
            out = subprocess.run(argv, capture_output=True, timeout=30)
            assert out.returncode == 0, out.stderr
            assert json.loads(out.stdout)["message"] == "success", out.stdout
    finally:
        assert srv.stop() == 0

    # Second run: already set up, nothing created, no key printed.
    cp = sf(db, "demo")
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.strip() != ""
    assert not ANY_KEY.search(cp.stdout + cp.stderr)
    assert rows(sf(db, "org", "list")) == orgs
    assert len(rows(sf(db, "key", "list", "--org", org_id))) == 1
    assert len(rows(sf(db, "number", "list", "--org", org_id))) == 5


def test_demo_on_database_with_an_org(db):
    org = create_org(db, "Existing")
    cp = sf(db, "demo")
    assert cp.returncode == 0, cp.stderr
    assert not ANY_KEY.search(cp.stdout + cp.stderr)
    assert rows(sf(db, "org", "list")) == [[str(org), "Existing"]]
    assert cli_ok(sf(db, "number", "list", "--org", org)) == []
    assert cli_ok(sf(db, "key", "list", "--org", org)) == []


def test_key_list_created_at_is_a_timestamp(db):
    """CLI.md leaves CREATED_AT's format open; it must at least be one non-empty field."""
    org = create_org(db)
    create_key(db, org)
    (r,) = rows(sf(db, "key", "list", "--org", org))
    assert r[4] and "\t" not in r[4]
    if "T" in r[4]:
        assert TS_RE.match(r[4]) or re.match(r"^\d{4}-\d\d-\d\dT", r[4]), r[4]
