"""The carrier scenarios against libre (the SIP stack of sfvopi's call engine) instead of SIPp:
re_peer.c, compiled on the fly, plays sfvopi's side. Skipped without sipp, a C compiler or
libre's development files.

Run: /usr/bin/python3 -m pytest -q tests/sipp/selftest
"""

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "api"))
sys.dont_write_bytecode = True

from sipp_helper import RINGING_BLOCK, SIPP, Sipp, free_udp_port, render  # noqa: E402

HERE = Path(__file__).resolve().parent


def _libre_flags():
    if not shutil.which("pkg-config"):
        return None
    cp = subprocess.run(["pkg-config", "--cflags", "--libs", "libre"], capture_output=True,
                        text=True)
    return cp.stdout.split() if cp.returncode == 0 else None


_FLAGS = _libre_flags()
pytestmark = [
    pytest.mark.skipif(SIPP is None, reason="sipp (package sip-tester) is not installed"),
    pytest.mark.skipif(_FLAGS is None or not shutil.which("cc"),
                       reason="needs cc and libre's development files (pkg-config libre)"),
]


@pytest.fixture(scope="module")
def re_peer(tmp_path_factory):
    out = tmp_path_factory.mktemp("re_peer") / "re_peer"
    # The defines are those the Makefile builds sfvopi with: libre's headers need them.
    cp = subprocess.run(["cc", "-std=c17", "-D_GNU_SOURCE", "-DHAVE_INTTYPES_H",
                         "-DHAVE_STDBOOL_H", "-o", str(out), str(HERE / "re_peer.c"), *_FLAGS],
                        capture_output=True, text=True, timeout=60)
    if cp.returncode != 0:
        pytest.skip(f"re_peer.c does not build against this libre:\n{cp.stderr[-2000:]}")
    return str(out)


def run_peer(re_peer, port, mode, ms=0, dest=None):
    argv = [re_peer, str(port), mode, str(ms)] + ([dest] if dest else [])
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop_peer(p, wait=8):
    try:
        out = p.communicate(timeout=wait)[0]
    except subprocess.TimeoutExpired:
        p.terminate()
        out = p.communicate(timeout=5)[0]
    return out


def inbound(re_peer, tmp_path, scenario, mode, ms=0, keys=None, duration_ms=None):
    port = free_udp_port()
    p = run_peer(re_peer, port, mode, ms)
    try:
        time.sleep(0.2)
        with Sipp(scenario, tmp_path, remote=f"127.0.0.1:{port}", service="+918000010000",
                  keys={"caller": "+14155550100", **(keys or {})},
                  duration_ms=duration_ms) as c:
            rc = c.wait(40)
    finally:
        p.terminate()
    out = stop_peer(p)
    assert rc == 0, f"{out}\n{c.report()}"
    return c, out


def outbound(re_peer, tmp_path, scenario, mode, ms=0, duration_ms=None):
    port = free_udp_port()
    with Sipp(scenario, tmp_path, port=port, duration_ms=duration_ms) as s:
        s.wait_listening()
        p = run_peer(re_peer, free_udp_port(), mode, ms, f"sip:+14155550123@127.0.0.1:{port}")
        rc = s.wait(40)
        out = stop_peer(p)
    assert rc == 0, f"{out}\n{s.report()}"
    return s, out


def test_in_answer_bye(re_peer, tmp_path):
    c, out = inbound(re_peer, tmp_path, "in_answer_bye", "uas-answer", duration_ms=500)
    assert "peer: established" in out and "closed err=104" in out  # closed by our BYE


def test_in_cancel(re_peer, tmp_path):
    """libre answers in the same step as the 180, so the CANCEL arrives too late."""
    c, out = inbound(re_peer, tmp_path, "in_cancel", "uas-answer", keys={"cause": 31})
    assert "OUTCOME answered" in c.logs()


def test_in_wait_bye(re_peer, tmp_path):
    c, out = inbound(re_peer, tmp_path, "in_wait_bye", "uas-bye", 500)
    assert c.received("BYE")


@pytest.mark.parametrize("code", [404, 480, 503])
def test_in_unlinked(re_peer, tmp_path, code):
    c, out = inbound(re_peer, tmp_path, "in_unlinked", "uas-reject", code)
    assert [m.status for m in c.received() if m.status >= 200] == [code]


def test_out_answer(re_peer, tmp_path):
    s, out = outbound(re_peer, tmp_path, "out_answer", "uac", duration_ms=500)
    assert "progress 180" in out and "established" in out and "closed err=104" in out


def test_out_time_limit(re_peer, tmp_path):
    s, out = outbound(re_peer, tmp_path, "out_time_limit", "uac-bye", 500)
    assert s.received("BYE")


def test_out_busy(re_peer, tmp_path):
    s, out = outbound(re_peer, tmp_path, "out_busy", "uac")
    assert "scode=486" in out and "cause=17" in out


def test_out_no_answer(re_peer, tmp_path):
    s, out = outbound(re_peer, tmp_path, "out_no_answer", "uac-cancel", 1000)
    assert s.received("CANCEL") and s.received("ACK")


def test_out_reject(re_peer, tmp_path):
    scen = render("out_reject", tmp_path, "rej", RING=RINGING_BLOCK,
                  CODE="480 Temporarily Unavailable", REASON="Reason: Q.850;cause=17")
    s, out = outbound(re_peer, tmp_path, scen, "uac")
    assert "progress 180" in out and "scode=480" in out and "cause=17" in out


def test_out_silent(re_peer, tmp_path):
    s, out = outbound(re_peer, tmp_path, "out_silent", "uac-cancel", 1000)
    assert "hanging up" in out
