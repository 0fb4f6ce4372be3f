#!/usr/bin/python3
"""Streamed-call benchmark with the C load generator (by hand; not part of CI).

One sfvopi server on a fresh SQLite database; for each level N of --calls, build/bench/loadgen
places N inbound calls at --rate calls/s and plays the carrier, every party (20 ms PCMA frames),
the stream agent (echoing each inbound frame back with playAudio) and the webhook receiver. Over a
measured window with all calls up it reports the server's CPU (utime+stime from /proc/<pid>/stat,
sampled when the loadgen opens and closes its window), the loadgen's own CPU, the RTP jitter at
the parties (kernel receive times), frames lost or altered in each direction, the latency of
party -> agent media and of playAudio -> party, and the hangup webhooks' final statuses.
--setup-rate R runs the call set-up test instead: many short calls without a stream, placed at
R calls/s.

    flock /tmp/sfvopi-bench.lock /usr/bin/python3 bench/calls.py --calls 100,250,500
    flock /tmp/sfvopi-bench.lock /usr/bin/python3 bench/calls.py --setup-rate 200

Needs build/sfvopi (or $SFVOPI_BIN) and build/bench/loadgen (make build/bench/loadgen).
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "api"))

from conftest import BIN, Server, fresh_db  # noqa: E402
from sipp_helper import claim, free_rtp_range, free_udp_port  # noqa: E402

LOADGEN = os.environ.get("LOADGEN_BIN") or str(HERE.parent / "build" / "bench" / "loadgen")
CALLER = "+14155550100"


def free_tcp_port():
    for _ in range(100):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if claim([port]):
            return port
    raise RuntimeError("no free TCP port")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid):
    """{thread name/tid: CPU seconds} of every thread of `pid`."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                head, rest = f.read().rsplit(")", 1)
        except OSError:
            continue
        fields = rest.split()
        name = head.split("(", 1)[1]
        out[f"{name}/{tid}"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def machine_busy():
    """(busy, total) jiffies of the whole machine, all cores."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def log_problems(text):
    """Counts of warn and error lines in a stretch of the server's log, and a few examples."""
    warn = [ln for ln in text.splitlines() if " level=warn " in ln]
    err = [ln for ln in text.splitlines() if " level=error " in ln]
    return len(warn), len(err), (err + warn)[:5]


def run_loadgen(srv, number, ports, n, rate, hold, warmup, window, no_stream=False, phases=1):
    """One loadgen run; returns its JSON report plus the server's CPU over the same window."""
    agent_port, hook_port = ports
    argv = [LOADGEN, "--sip", f"127.0.0.1:{srv.sip_port}", "--number", number, "--caller",
            CALLER, "--calls", str(n), "--rate", str(rate), "--hold", str(hold), "--warmup",
            str(warmup), "--window", str(window), "--agent-port", str(agent_port),
            "--webhook-port", str(hook_port), "--phases", str(phases)]
    if no_stream:
        argv.append("--no-stream")
    log_start = len(srv.log)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    marks = {}
    lines = []

    def read_stderr():
        # The loadgen says when its window opens and closes; the server's CPU is read then.
        for line in proc.stderr:
            lines.append(line.rstrip())
            for what in ("window open", "window closed"):
                if line.rstrip().endswith(what):
                    marks[what] = (time.time(), cpu_seconds(srv.proc.pid),
                                   thread_cpu(srv.proc.pid), machine_busy())

    t = threading.Thread(target=read_stderr, daemon=True)
    t.start()
    killer = threading.Timer(hold + n / rate + 90, proc.kill)
    killer.start()
    out = proc.stdout.read()
    proc.wait()
    killer.cancel()
    t.join(5)
    if proc.returncode != 0 or not out.strip():
        sys.exit(f"loadgen failed (rc={proc.returncode}):\n" + "\n".join(lines[-20:]))
    r = json.loads(out)
    r["loadgen_stderr"] = lines
    if "window open" in marks and "window closed" in marks:
        (w0, c0, t0, m0), (w1, c1, t1, m1) = marks["window open"], marks["window closed"]
        r["server_cpu_pct"] = (c1 - c0) / (w1 - w0) * 100
        # The busiest server threads (an event loop at 100% is the bottleneck) and how busy the
        # whole machine was (other processes share its cores).
        th = sorted(((t1[k] - t0.get(k, 0)) / (w1 - w0) * 100, k) for k in t1)
        r["server_threads_pct"] = {k: round(v, 1) for v, k in reversed(th[-4:])}
        r["machine_busy_pct"] = (m1[0] - m0[0]) / max(1, m1[1] - m0[1]) * 100 * os.cpu_count()
        up = r["calls_up_in_window"] or n
        r["server_cpu_ms_per_call_s"] = (c1 - c0) * 1000 / (w1 - w0) / up
    time.sleep(0.5)  # the last log lines of the calls' ends
    r["server_warn"], r["server_error"], r["server_log_examples"] = \
        log_problems(srv.log[log_start:])
    return r


def start_server(work, url, most):
    """An sfvopi server on url that lets the loadgen place `most` calls at once from 127.0.0.1."""
    sip_port = free_udp_port()
    rtp_low, rtp_high = free_rtp_range(max(4 * most + 100, 400))
    argv = [BIN, "--db", url, "serve", "--listen", "127.0.0.1:0", "--threads", "2",
            "--sip-listen", f"127.0.0.1:{sip_port}",
            "--sip-trunk", f"sip:127.0.0.1:{free_udp_port()}",
            "--sip-allow", "127.0.0.1", "--sip-invite-rate", "100000",
            "--max-calls", str(max(500, 2 * most)),
            "--rtp-ports", f"{rtp_low}-{rtp_high}"]
    srv = Server(url, work, argv=argv).start()
    srv.sip_port = sip_port
    return srv


def make_app(srv):
    """An org with one number linked to an app whose webhooks are the loadgen's; returns the
    number and the loadgen's (agent, webhook) ports."""
    ports = (free_tcp_port(), free_tcp_port())
    org = srv.make_org()
    api = org.client()
    number = org.add_numbers(1)[0]
    app = api.create_app(name="bench-calls", answer_url=f"http://127.0.0.1:{ports[1]}/answer",
                         hangup_url=f"http://127.0.0.1:{ports[1]}/hangup")
    api.link(app["app_id"], number)
    return number, ports


def ms(d, key):
    v = d.get(key)
    return float("nan") if v is None else v


def print_table(rows):
    head = (f"{'calls':>5} {'srv ms/call-s':>13} {'srv CPU%':>8} {'lg CPU%':>7} "
            f"{'jit mean':>8} {'jit p99':>7} {'jit max':>7} {'lost in':>7} {'lost out':>8} "
            f"{'q@end':>6} {'rtp lost':>8} {'mism':>4} {'media p50':>9} {'media p99':>9} "
            f"{'play p99':>8} {'play p99 empty':>14} {'COMPLETED':>10} {'warn/err':>8}")
    print(head)
    for r in rows:
        j = r["jitter"]
        print(f"{r['calls']:>5} {r.get('server_cpu_ms_per_call_s', float('nan')):>13.3f} "
              f"{r.get('server_cpu_pct', float('nan')):>8.1f} {r['cpu_ms_per_s'] / 10:>7.1f} "
              f"{ms(j, 'mean_ms'):>8.3f} {ms(j, 'p99_ms'):>7.3f} {ms(j, 'max_ms'):>7.3f} "
              f"{r['inbound_lost']:>7} {r['echoes_lost']:>8} {r['echoes_queued_at_hangup']:>6} "
              f"{r['rtp_lost_to_party']:>8} "
              f"{r['inbound_mismatched'] + r['echoes_mismatched']:>4} "
              f"{ms(r['media_latency'], 'p50_ms'):>9.3f} {ms(r['media_latency'], 'p99_ms'):>9.3f} "
              f"{ms(r['play_latency'], 'p99_ms'):>8.3f} "
              f"{ms(r['play_latency_empty_queue'], 'p99_ms'):>14.3f} "
              f"{str(r['hangup_completed']) + '/' + str(r['calls']):>10} "
              f"{str(r['server_warn']) + '/' + str(r['server_error']):>8}")
    for r in rows:
        if "server_threads_pct" in r:
            print(f"{r['calls']:>5} calls: busiest server threads (% of a core) "
                  f"{r['server_threads_pct']}; whole machine {r['machine_busy_pct']:.0f}% of "
                  f"{os.cpu_count() * 100}%; loadgen ticks late max "
                  f"{r['loadgen_tick_late_max_ms']:.1f} ms, missed {r['loadgen_ticks_missed']}")
    print("(ms unless stated; lost in: party frames the agent never got; lost out: echoes the "
          "party never got though a later one came; q@end: echoes still queued at hangup; rtp lost: RTP sequence gaps at the parties; CPU% of one core)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", default="100,250,500", help="concurrency levels, comma-separated")
    ap.add_argument("--rate", type=float, default=100, help="calls placed a second")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds after the last answer")
    ap.add_argument("--window", type=float, default=10.0, help="measured seconds per level")
    ap.add_argument("--setup-rate", type=float, help="run the set-up test at this many calls/s")
    ap.add_argument("--setup-calls", type=int, default=2000, help="calls in the set-up test")
    ap.add_argument("--setup-hold", type=float, default=1.0, help="hold time in the set-up test")
    ap.add_argument("--phases", type=int, default=1,
                    help="spread the parties' frames over this many slots of each 20 ms "
                    "(1: all at once, the worst burst; 20: as calls begun at random times)")
    ap.add_argument("--json", action="store_true", help="print the raw results")
    args = ap.parse_args()
    if not os.access(LOADGEN, os.X_OK):
        sys.exit(f"{LOADGEN} not found (make build/bench/loadgen)")
    levels = [int(x) for x in args.calls.split(",") if x]
    most = max(levels + ([min(args.setup_calls, int(args.setup_rate * (args.setup_hold + 3)))]
                         if args.setup_rate else []))
    work = Path(tempfile.mkdtemp(prefix="sfvopi-calls-"))
    rows = []
    try:
        with fresh_db(work, "bench") as url:
            srv = start_server(work, url, most)
            try:
                number, ports = make_app(srv)
                if args.setup_rate:
                    print(f"... set-up test: {args.setup_calls} calls at {args.setup_rate}/s",
                          file=sys.stderr, flush=True)
                    r = run_loadgen(srv, number, ports, args.setup_calls, args.setup_rate,
                                    args.setup_hold, 0, 0, no_stream=True)
                    rows.append(r)
                    s = r["invite_to_200"]
                    print(f"set-up: {r['answered']}/{r['calls']} answered at "
                          f"{r['setup_rate']:.1f} calls/s (asked {args.setup_rate:g}); "
                          f"INVITE->200 p50 {ms(s, 'p50_ms'):.2f} ms p99 {ms(s, 'p99_ms'):.2f} ms "
                          f"max {ms(s, 'max_ms'):.2f} ms; failed {r['failed_by_code']}; "
                          f"COMPLETED {r['hangup_completed']}/{r['hangup_webhooks']}; "
                          f"server BYEs {r['server_byes']}; server log warn/error "
                          f"{r['server_warn']}/{r['server_error']}")
                else:
                    for n in levels:
                        print(f"... {n} streamed calls", file=sys.stderr, flush=True)
                        hold = n / args.rate + args.warmup + args.window + 1.5
                        rows.append(run_loadgen(srv, number, ports, n, args.rate, hold,
                                                args.warmup, args.window, phases=args.phases))
                        time.sleep(1.0)
                    print_table(rows)
            finally:
                srv.stop()
                log = srv.log
                w, e, ex = log_problems(log)
                if w or e:
                    print(f"server log: {w} warn, {e} error lines, e.g.:", file=sys.stderr)
                    for line in ex:
                        print("  " + line[:300], file=sys.stderr)
                    shutil.copy(srv.log_path, "/tmp/sfvopi-calls-server.log")
                    print("  (whole log kept in /tmp/sfvopi-calls-server.log)", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        for r in rows:
            r.pop("loadgen_stderr", None)
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
