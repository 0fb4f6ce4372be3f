"""Streamed calls under the benchmark's load generator (bench/loadgen.c), at a small scale.

Thirty inbound calls at once from one process playing the carrier, every party, the stream agent
and the webhook receiver: every party frame reaches the agent byte-exact, every echoed playAudio
frame reaches its party byte-exact, no RTP packet is missing at any party, and every call ends
COMPLETED with no warning or error in the server's log. It checks the media path's batching (one
timer pacing every stream, the queue to the engine handing over many events a wake-up, several
WebSocket frames a write) under concurrent traffic, which the single-call suites cannot. Timing
figures are the benchmark's (bench/calls.py, bench/RESULTS.md); here only losses and bytes count.
"""

import os
import sys
from pathlib import Path

import pytest

from conftest import AUDIO_ONCE, SOURCE_BIN, fresh_db

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import calls  # noqa: E402

pytestmark = AUDIO_ONCE

if os.environ.get("SFVOPI_TEST_PG_URL"):
    # The media path never touches the database: once, in the SQLite pass, like the audio suites.
    pytest.skip("the media path is independent of the database backend: SQLite run only",
                allow_module_level=True)

CALLS = 30


@pytest.fixture(scope="module")
def loadgen():
    path = Path(SOURCE_BIN).resolve().parent / "bench" / "loadgen"
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} not found (make {path.parent.parent.name}/bench/loadgen)")
    calls.LOADGEN = str(path)
    return path


def test_thirty_streamed_calls_lose_nothing(loadgen, tmp_path):
    with fresh_db(tmp_path, "loadgen") as url:
        srv = calls.start_server(tmp_path, url, CALLS)
        try:
            number, ports = calls.make_app(srv)
            r = calls.run_loadgen(srv, number, ports, CALLS, rate=30, hold=6.0, warmup=1.0,
                                  window=3.0)
        finally:
            srv.stop()
    assert r["answered"] == CALLS, r["failed_by_code"]
    assert r["calls_up_in_window"] == CALLS
    # Party -> agent: every frame sent came as a media event, byte for byte.
    assert r["inbound_expected"] > CALLS * 200
    assert r["inbound_received"] == r["inbound_expected"]
    assert r["inbound_lost"] == 0 and r["inbound_mismatched"] == 0
    # Agent -> party: each of those frames was echoed and played back to its party, byte for
    # byte, none skipped (the loadgen leaves each call's first and last 200 ms out of these
    # counts, so an echo still queued at the hangup is one of its last few frames, not a loss).
    assert r["echoes_played"] + r["echoes_lost"] + r["echoes_queued_at_hangup"] == \
        r["inbound_received"]
    assert r["echoes_queued_at_hangup"] <= CALLS * 2
    assert r["echoes_lost"] == 0 and r["echoes_mismatched"] == 0
    assert r["rtp_lost_to_party"] == 0
    assert r["jitter"]["n"] > CALLS * 100
    assert r["hangup_completed"] == CALLS and r["hangup_webhooks"] == CALLS
    assert r["server_byes"] == 0
    assert (r["server_warn"], r["server_error"]) == (0, 0), r["server_log_examples"]
