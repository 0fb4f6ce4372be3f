"""Self-test of the carrier scenarios of tests/sipp: each is run against a SIPp peer on loopback
(no sfvopi involved), so that a failure of tests/api/test_calls_sip.py points at the server, not
at the XML.

Run: /usr/bin/python3 -m pytest -q tests/sipp/selftest
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "api"))
sys.dont_write_bytecode = True

from sipp_helper import RINGING_BLOCK, SIPP, Sipp, add_header, render  # noqa: E402

pytestmark = pytest.mark.skipif(SIPP is None, reason="sipp (package sip-tester) is not installed")

HERE = Path(__file__).resolve().parent
CALLED = "+918000099999"
CALLER = "+14155550100"


def pair(tmp_path, uas, uac, uas_kw=None, uac_kw=None, timeout=30):
    """Run UAS scenario `uas` and UAC scenario `uac` against it; return both, after they ended,
    asserting both exited 0."""
    server = Sipp(uas, tmp_path, **(uas_kw or {})).start().wait_listening()
    try:
        kw = {"service": CALLED, "keys": {"caller": CALLER}}
        kw.update(uac_kw or {})
        kw["keys"] = {"caller": CALLER, **(uac_kw or {}).get("keys", {})}
        client = Sipp(uac, tmp_path, remote=f"127.0.0.1:{server.port}", **kw).start()
        try:
            rc_c = client.wait(timeout)
            if rc_c != 0:
                server.kill()
            rc_s = server.wait(timeout)
            assert (rc_c, rc_s) == (0, 0), \
                f"uac rc={rc_c} uas rc={rc_s}\nUAC:\n{client.report()}\nUAS:\n{server.report()}"
            return server, client
        finally:
            client.kill()
    finally:
        server.kill()


def test_in_answer_bye_against_out_time_limit(tmp_path):
    uas, uac = pair(tmp_path, "out_time_limit", "in_answer_bye", uac_kw={"duration_ms": 1000})
    # -d is the talk time: the BYE follows the answer by about a second (message log times).
    waited = uas.received("BYE")[0].time - uas.sent(status=200, cseq="INVITE")[0].time
    assert 0.9 <= waited <= 1.5, waited
    inv = uas.received("INVITE")
    assert len(inv) == 1 and inv[0].uri_user == CALLED
    assert inv[0].sdp_codecs() == ["PCMA", "PCMU", "telephone-event"]
    assert CALLER in inv[0].header("from")
    assert uas.received("BYE") and uac.received(status=200, cseq="BYE")
    assert uac.received(status=200, cseq="INVITE")[0].sdp_codecs() == ["PCMA",
                                                                       "telephone-event"]


def test_in_wait_bye_against_out_answer(tmp_path):
    uas, uac = pair(tmp_path, "out_answer", "in_wait_bye", uas_kw={"duration_ms": 300})
    bye = uac.received("BYE")
    assert len(bye) == 1
    # The UAS's BYE is a proper in-dialog request: From/To swapped, both tags present.
    inv = uas.received("INVITE")[0]
    assert bye[0].header("call-id") == inv.header("call-id")
    assert ";tag=" in bye[0].header("from") and ";tag=" in bye[0].header("to")
    assert bye[0].header("to").split(";tag=")[1] == inv.header("from").split(";tag=")[1]
    assert uas.received(status=200, cseq="BYE")


def test_out_answer_bye_target_sends_the_bye_to_the_contact(tmp_path):
    """The BYE goes to the INVITE's Contact (here the UAC's own address), found and logged."""
    uas, uac = pair(tmp_path, "out_answer_bye_target", "in_wait_bye",
                    uas_kw={"duration_ms": 300})
    assert f"TARGET 127.0.0.1:{uac.port} " in uas.logs(), uas.logs()
    assert len(uac.received("BYE")) == 1 and uas.received(status=200, cseq="BYE")


def test_in_cancel_against_out_no_answer_is_canceled(tmp_path):
    uas, uac = pair(tmp_path, "out_no_answer", "in_cancel", uac_kw={"keys": {"cause": 31}})
    assert "OUTCOME canceled" in uac.logs()
    cancel = uas.received("CANCEL")
    assert len(cancel) == 1 and cancel[0].header("reason") == "Q.850;cause=31"
    inv = uas.received("INVITE")[0]
    assert cancel[0].header("via") == inv.header("via")
    assert uac.received(status=487) and uac.received(status=200, cseq="CANCEL")
    acks = uas.received("ACK")
    assert len(acks) == 1 and acks[0].header("via") == inv.header("via")


@pytest.mark.parametrize("cancel_code", [200, 481])
def test_in_cancel_answered_branch(tmp_path, cancel_code):
    scen = tmp_path / f"uas_answer_crossing_cancel_{cancel_code}.xml"
    scen.write_text((HERE / "uas_answer_crossing_cancel.xml").read_text()
                    .replace("@CANCEL_CODE@", str(cancel_code)))
    uas, uac = pair(tmp_path, str(scen), "in_cancel", uac_kw={"keys": {"cause": 16}})
    assert "OUTCOME answered" in uac.logs()
    assert uac.received(status=cancel_code, cseq="CANCEL")
    assert uas.received("CANCEL") and uas.received("ACK") and uas.received("BYE")


@pytest.mark.parametrize("code", [404, 480, 503])
def test_in_unlinked_against_refusal(tmp_path, code):
    scen = tmp_path / f"uas_refuse_{code}.xml"
    scen.write_text((HERE / "uas_refuse.xml").read_text().replace("@CODE@", str(code)))
    uas, uac = pair(tmp_path, str(scen), "in_unlinked")
    assert [m.status for m in uac.received() if m.status >= 200] == [code]
    assert len(uas.received("ACK")) == 1


def test_out_busy_against_in_unlinked(tmp_path):
    uas, uac = pair(tmp_path, "out_busy", "in_unlinked")
    busy = uac.received(status=486)
    assert len(busy) == 1 and busy[0].header("reason").startswith("Q.850;cause=17")
    assert len(uas.received("ACK")) == 1


def test_out_reject_template_against_in_unlinked(tmp_path):
    scen = render("out_reject", tmp_path, "out_reject_480", RING=RINGING_BLOCK,
                  CODE="480 Temporarily Unavailable", REASON="Reason: Q.850;cause=17")
    uas, uac = pair(tmp_path, str(scen), "in_unlinked")
    assert [m.status for m in uac.received()] == [180, 480]
    assert uac.received(status=480)[0].header("reason") == "Q.850;cause=17"


def test_out_silent_ends_cleanly_without_cancel(tmp_path):
    """out_silent answers nothing and, without a CANCEL, ends successfully after its 8 s wait
    (the INVITE's retransmissions meanwhile are absorbed)."""
    with Sipp("out_silent", tmp_path) as server:
        server.wait_listening()
        with Sipp("in_unlinked", tmp_path, remote=f"127.0.0.1:{server.port}", service=CALLED,
                  keys={"caller": CALLER}, global_timeout_s=9) as client:
            assert server.wait(15) == 0, server.report()
            assert client.wait(15) != 0  # nobody answered it: its global timeout fails it
    assert len(server.received("INVITE")) >= 2  # retransmissions reached it


def test_add_header_puts_a_reason_in_the_bye(tmp_path):
    scen = add_header("in_answer_bye", tmp_path, "bye_reason", "BYE ",
                      "Reason: Q.850;cause=31")
    uas, uac = pair(tmp_path, "out_time_limit", str(scen), uac_kw={"duration_ms": 100})
    assert uas.received("BYE")[0].header("reason") == "Q.850;cause=31"
    assert uas.received("INVITE")[0].header("reason") is None
