"""Registration with a real registrar (spec/SIP.md section 3): Kamailio 5.6 plays a carrier that
authenticates REGISTER with digest (auth_db on db_text) and routes inbound calls to the
registered contact, the way registration trunks do (Request-URI = the registered user, To = the
number). kamailio_helper.Kamailio runs it; SIPp plays the PSTN caller behind it.

Run once: in the plain build's SQLite pass (registration touches no database, and the refresh
makes these tests take several seconds each). Every wait is bounded.
"""

import os
import re
import shutil

import pytest
import requests

import test_calls_sip as base
from conftest import ASAN, STRICT, base_env, wait_until
from fake_customer import FakeCustomer, reply_stream
from kamailio_helper import Kamailio
from sipp_helper import Sipp

if shutil.which("kamailio") is None or shutil.which("kamcmd") is None:
    if STRICT:
        raise RuntimeError("kamailio (Debian package kamailio) is not installed "
                           "(SFVOPI_TEST_STRICT=1: every check must run)")
    pytest.skip("kamailio is not installed", allow_module_level=True)
if ASAN or os.environ.get("SFVOPI_TEST_PG_URL"):
    pytest.skip("registration runs once: in the plain build's SQLite pass",
                allow_module_level=True)

USER = "alice"
PASSWORD = "kam-secret-7c1f"
EXPIRES = 3  # seconds: a refresh comes after 90 % of it


@pytest.fixture
def fc():
    with FakeCustomer(default=reply_stream()) as f:
        yield f


def registered(srv):
    text = requests.get(srv.url + "/metrics", timeout=5).text
    m = re.search(r"^sfvopi_sip_registered (\d)$", text, re.M)
    assert m, text
    return int(m.group(1))


def register_args(tmp_path, kam, password):
    pw = tmp_path / "password"
    pw.write_text(password + "\n")
    pw.chmod(0o600)
    return ("--sip-register", "--sip-user", USER, "--sip-password-file", str(pw),
            "--sip-register-expires", str(EXPIRES))


def test_register_refresh_inbound_call_and_unregister(tmp_path, fc):
    with Kamailio(tmp_path, {USER: PASSWORD}, min_expires=2, route_to_user=USER) as kam:
        with base.engine_server(tmp_path, *register_args(tmp_path, kam, PASSWORD),
                                trunk=f"sip:{kam.addr}",
                                env=base_env(SFVOPI_RATE_LIMIT="0",
                                             SFVOPI_DRAIN_TIMEOUT="0")) as srv:
            first = kam.wait_binding(USER, timeout=10)
            assert first["contact"].startswith(f"sip:{USER}@127.0.0.1:{srv.sip_port}"), first
            assert 0 < first["expires"] <= EXPIRES, first
            assert wait_until(lambda: registered(srv) == 1, timeout=5)
            # The refresh: the same registration (Call-ID), a later CSeq, before it expires.
            again = kam.wait_binding(USER, lambda b: b["cseq"] > first["cseq"],
                                     timeout=EXPIRES + 5)
            assert again["call_id"] == first["call_id"], (first, again)
            assert registered(srv) == 1

            # A call for the number, sent by the carrier to the registered contact.
            line = base.Line(srv, fc)
            caller = Sipp("in_answer_bye", tmp_path, remote=kam.addr, service=line.number,
                          keys={"caller": base.CALLER}, duration_ms=500)
            with caller:
                base.finish(srv, caller)
            answer, hangup = base.expect_hits(fc, "/answer", "/hangup")
            assert (answer.payload["to"], answer.payload["from"]) == (line.number, base.CALLER)
            assert hangup.payload["call_status"] == "COMPLETED", hangup.payload
            relayed = [e for e in kam.events("INVITE")]
            assert relayed, kam.log_tail()
        # Shutdown: REGISTER with expires 0, and the binding is gone.
        kam.wait_no_binding(USER, timeout=5)
        assert any(r["expires"] == 0 and r["result"] == "saved" for r in kam.registers(USER)), \
            kam.registers(USER)
    assert "unregistered" in srv.log
    assert PASSWORD not in srv.log


def test_wrong_password_is_refused_without_a_loop(tmp_path, fc):
    with Kamailio(tmp_path, {USER: PASSWORD}, min_expires=2) as kam:
        with base.engine_server(tmp_path, *register_args(tmp_path, kam, "not-the-password"),
                                trunk=f"sip:{kam.addr}",
                                env=base_env(SFVOPI_RATE_LIMIT="0",
                                             SFVOPI_DRAIN_TIMEOUT="0")) as srv:
            kam.wait_registers(USER, 2, result=None, timeout=10)
            assert wait_until(lambda: "registration refused" in srv.log, timeout=5), srv.log
            # One challenge answered, the second ends the attempt: libre alone would retry up
            # to 16 times in a row. Its next attempt waits its backoff (30 s or more).
            n = len(kam.registers(USER))
            assert not wait_until(lambda: len(kam.registers(USER)) > n, timeout=2)
            assert n == 2, kam.registers(USER)
            assert registered(srv) == 0
            assert kam.bindings(USER) == []
        assert "answered one already" in srv.log
