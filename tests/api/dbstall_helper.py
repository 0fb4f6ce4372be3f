"""Streamed calls while PostgreSQL stalls (SIP.md section 4: the media path never waits for the
database). Shared by tests/api/test_media_db_stall.py and bench/dbstall.py.

Ten inbound calls stream both tracks to an echo agent while each party sends 20 ms PCMA frames
(the agent and the parties are bench/streams.py's, in their own processes, with kernel receive
times). A second SIPp places short calls (answered, BYE after 1 s) from a few seconds before the
stall to its end. Then every process of the cluster is SIGSTOPped for `stall` seconds and
SIGCONTed. Reports the gaps between RTP packets received at each party, before and during the
stall (the stall window runs to 2 s after SIGCONT)."""

import contextlib
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from sipp_helper import SCENARIOS, SIPP, free_udp_port  # noqa: E402
from streams import agent_main, party_main  # noqa: E402

from fake_customer import reply_json  # noqa: E402

N_CALLS = 10
SETTLE = 2.0   # s after the ramp-up before the baseline window
BASELINE = 4.0  # s of the window before the stall
AFTER = 2.0    # s after SIGCONT still counted in the stall window
SHORT_LEAD = 3.0  # s before the stall the short calls start


@contextlib.contextmanager
def cluster_stopped(cluster_dir):
    """Every process of the cluster stopped (SIGSTOP); SIGCONT on the way out, whatever
    happened."""
    with open(os.path.join(cluster_dir, "data", "postmaster.pid")) as f:
        postmaster = int(f.readline())
    stopped = []
    try:
        os.kill(postmaster, signal.SIGSTOP)
        stopped.append(postmaster)
        # Stopped, the postmaster forks no more: these are all of its processes.
        kids = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True,
                              timeout=10).stdout.split()
        for pid in map(int, kids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
        yield
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def gaps(arrivals, t0, t1):
    """Every gap (ms) between consecutive packets received at each party within [t0, t1]."""
    out = []
    for times in arrivals:
        w = sorted(t for t in times if t0 <= t <= t1)
        out += [(b - a) * 1000 for a, b in zip(w, w[1:])]
    return out


def summary(g):
    if not g:
        return {"max_ms": float("nan"), "p99_ms": float("nan"), "n": 0}
    s = sorted(g)
    return {"max_ms": s[-1], "p99_ms": s[min(len(s) - 1, int(len(s) * 0.99))], "n": len(s)}


def sipp(argv, work, name):
    out = open(work / f"{name}.log", "wb")
    return subprocess.Popen([SIPP, *argv], stdin=subprocess.DEVNULL, stdout=out,
                            stderr=subprocess.STDOUT, cwd=work, start_new_session=True), out


def run_stall(srv, number, fc, work, cluster_dir, stall):
    """Runs the scenario once; returns the gap figures, the stall's monotonic and wall times and
    the SIPp exit codes."""
    a_parent, a_child = mp.Pipe()
    agent = mp.Process(target=agent_main, args=(a_child,), daemon=True)
    agent.start()
    agent_port = a_parent.recv()
    fc.on("/answer", reply_json({"stream": {"url": f"ws://127.0.0.1:{agent_port}/ws",
                                            "direction": "BOTH", "bidirectional": True,
                                            "keep_call_alive": True}}))
    p_parent, p_child = mp.Pipe()
    parties = mp.Process(target=party_main, args=(p_child, N_CALLS), daemon=True)
    parties.start()
    ports = p_parent.recv()
    csv = work / "parties.csv"
    csv.write_text("SEQUENTIAL\n" + "".join(f"{p};\n" for p in ports))
    scen = work / "stall_in_stream.xml"
    scen.write_text((SCENARIOS / "in_stream.xml").read_text().replace("[party_port]", "[field0]"))
    ramp = N_CALLS / 50.0 + 0.5
    talk_ms = int((ramp + SETTLE + BASELINE + stall + AFTER + 1.5) * 1000)
    long_argv = ["-sf", str(scen), "-inf", str(csv), "-s", number, "-key", "caller",
                 "+14155550100", "-d", str(talk_ms), "-i", "127.0.0.1", "-p",
                 str(free_udp_port()), "-mp", str(free_udp_port(even=True)), "-m", str(N_CALLS),
                 "-l", str(N_CALLS), "-r", "50", "-nostdin", "-timeout",
                 f"{int(talk_ms / 1000) + 30}s", "-timeout_error", f"127.0.0.1:{srv.sip_port}"]
    n_short = int((SHORT_LEAD + stall) * 2)
    short_argv = ["-sf", str(SCENARIOS / "in_answer_bye.xml"), "-s", number, "-key", "caller",
                  "+14155550101", "-d", "1000", "-i", "127.0.0.1", "-p", str(free_udp_port()),
                  "-mp", str(free_udp_port(even=True)), "-m", str(n_short), "-r", "2", "-nostdin",
                  "-timeout", f"{int(SHORT_LEAD + stall) + 40}s", f"127.0.0.1:{srv.sip_port}"]
    long_p, long_out = sipp(long_argv, work, "sipp-long")
    short_p = short_out = None
    res = {}
    try:
        time.sleep(ramp + SETTLE)
        res["w0"] = time.time()
        time.sleep(BASELINE - SHORT_LEAD)
        short_p, short_out = sipp(short_argv, work, "sipp-short")
        time.sleep(SHORT_LEAD)
        res["stall_wall"] = (time.time(), None)
        if stall > 0:
            with cluster_stopped(cluster_dir):
                time.sleep(stall)
        res["stall_wall"] = (res["stall_wall"][0], time.time())
        time.sleep(AFTER)
        res["w1"] = time.time()
        res["long_rc"] = long_p.wait(timeout=talk_ms / 1000 + 40)
        res["short_rc"] = short_p.wait(timeout=60)
    finally:
        for p in (long_p, short_p):
            if p and p.poll() is None:
                p.kill()
                p.wait()
        for f in (long_out, short_out):
            if f:
                f.close()
        p_parent.send("stop")
        arrivals = p_parent.recv()
        a_parent.send("stop")
        a_parent.recv()
        parties.join(5)
        agent.join(5)
    s0, _ = res["stall_wall"]
    res["before"] = summary(gaps(arrivals, res["w0"], s0))
    res["during"] = summary(gaps(arrivals, s0, res["w1"]))
    res["per_party_max_ms"] = [summary(gaps([a], res["w0"], res["w1"]))["max_ms"]
                               for a in arrivals]
    res["packets"] = [len(a) for a in arrivals]
    return res


def _free_tcp_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def private_cluster():
    """A throwaway PostgreSQL cluster of our own (scripts/pg.sh), so that stopping it disturbs
    nobody else: yields (cluster_dir, url)."""
    import shutil
    import tempfile
    cluster_dir = tempfile.mkdtemp(prefix="sfvopi-pgstall.", dir="/tmp")
    env = dict(os.environ, SFVOPI_PG_PORT=str(_free_tcp_port()))
    try:
        cp = subprocess.run(["sh", str(REPO / "scripts" / "pg.sh"), "start", cluster_dir],
                            capture_output=True, text=True, timeout=120, env=env)
        assert cp.returncode == 0, f"pg.sh start failed: {cp.stderr}"
        yield cluster_dir, cp.stdout.strip()
    finally:
        subprocess.run(["sh", str(REPO / "scripts" / "pg.sh"), "stop", cluster_dir],
                       capture_output=True, timeout=120)
        shutil.rmtree(cluster_dir, ignore_errors=True)


@contextlib.contextmanager
def stall_server(binary, url, work):
    """sfvopi serving on url with the call engine on loopback; yields (srv, org, number, fc)."""
    from conftest import Server
    from fake_customer import FakeCustomer
    with FakeCustomer() as fc:
        sip_port = free_udp_port()
        rtp_low = free_udp_port(even=True)
        argv = [binary, "--db", url, "serve", "--listen", "127.0.0.1:0", "--threads", "2",
                "--sip-listen", f"127.0.0.1:{sip_port}",
                "--sip-trunk", f"sip:127.0.0.1:{free_udp_port()}",
                "--rtp-ports", f"{rtp_low}-{rtp_low + 399}"]
        srv = Server(url, work, argv=argv).start()
        srv.sip_port = sip_port
        try:
            org = srv.make_org()
            api = org.client()
            number = org.add_numbers(1)[0]
            app = api.create_app(name="stall", answer_url=fc.url("/answer"),
                                 hangup_url=fc.url("/hangup"))
            api.link(app["app_id"], number)
            yield srv, org, number, fc
        finally:
            srv.stop()
