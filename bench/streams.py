#!/usr/bin/python3
"""Audio stream benchmark (by hand; not part of CI).

For each concurrency level N: N inbound calls placed at once by one SIPp (tests/sipp/in_stream.xml
with each call's party port read from an injection file), every call streaming both tracks
(direction BOTH, bidirectional) to an agent that echoes each inbound media payload back with
playAudio, while every party sends 20 ms PCMA frames. Over a measured window with all calls up
it reports:
  - the RTP inter-arrival jitter at the parties: mean absolute deviation of the gaps between
    consecutive packets from 20 ms, and its 99th percentile (kernel receive times,
    SO_TIMESTAMPNS, so the benchmark's own scheduling does not count);
  - the server's CPU seconds per call-second (utime+stime from /proc/<pid>/stat over the window,
    divided by N x window).

The agent and the parties run in their own processes so that neither's Python work delays the
other's measurements.

    /usr/bin/python3 bench/streams.py --calls 10,25 --window 10

Needs build/sfvopi (or $SFVOPI_BIN), sipp and python3-websockets (10.x).
"""

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import selectors
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "api"))

from conftest import Server, fresh_db  # noqa: E402
from fake_customer import FakeCustomer, reply_json  # noqa: E402
from sipp_helper import SCENARIOS, SIPP, free_udp_port  # noqa: E402

FRAME = 160
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


# ---------------------------------------------------------------------------------------------
# The agent: a WebSocket server echoing inbound audio back (own process).

def agent_main(conn):
    import websockets

    stats = {"connections": 0, "media_in": 0, "media_out": 0, "played": 0, "other": 0}

    async def handler(ws, path):
        stats["connections"] += 1
        try:
            async for raw in ws:
                m = json.loads(raw)
                ev = m.get("event")
                if ev == "media":
                    if m["media"]["track"] == "inbound":
                        stats["media_in"] += 1
                        md = m["media"]
                        await ws.send(json.dumps({"event": "playAudio", "media": {
                            "contentType": md["contentType"], "sampleRate": md["sampleRate"],
                            "payload": md["payload"]}}))
                        stats["played"] += 1
                    else:
                        stats["media_out"] += 1
                else:
                    stats["other"] += 1
        except websockets.ConnectionClosed:
            pass

    async def main():
        server = await websockets.serve(handler, "127.0.0.1", 0, max_size=None,
                                        ping_interval=None)
        conn.send(server.sockets[0].getsockname()[1])
        loop = asyncio.get_running_loop()
        while True:
            if await loop.run_in_executor(None, conn.poll, 0.2):
                conn.recv()
                conn.send(dict(stats))
                break
        server.close()

    asyncio.run(main())


# ---------------------------------------------------------------------------------------------
# The parties: one UDP socket per call, sending 20 ms frames and timing arrivals (own process).

def party_main(conn, n):
    socks = []
    sel = selectors.DefaultSelector()
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
        socks.append(s)
    conn.send([s.getsockname()[1] for s in socks])
    peers = [None] * n
    arrivals = [[] for _ in range(n)]  # kernel receive times (CLOCK_REALTIME seconds)
    seq = [0] * n
    ts = [0] * n
    payload = bytes((k * 3 + 1) & 0xFF for k in range(FRAME))
    next_send = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= next_send:
            for i, s in enumerate(socks):
                if peers[i]:
                    hdr = struct.pack("!BBHII", 0x80, 8, seq[i], ts[i], 0x1000 + i)
                    seq[i] = (seq[i] + 1) & 0xFFFF
                    ts[i] = (ts[i] + FRAME) & 0xFFFFFFFF
                    try:
                        s.sendto(hdr + payload, peers[i])
                    except OSError:
                        pass
            next_send += 0.02
            if next_send < now:
                next_send = now + 0.02
        for key, _ in sel.select(max(0.0, min(0.005, next_send - time.monotonic()))):
            s, i = key.fileobj, key.data
            while True:
                try:
                    data, anc, _f, src = s.recvmsg(2048, 64)
                except BlockingIOError:
                    break
                if peers[i] is None:
                    peers[i] = src
                t = None
                for level, kind, val in anc:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                        sec, nsec = struct.unpack("qq", val[:16])
                        t = sec + nsec / 1e9
                arrivals[i].append(t if t is not None else time.time())
        if conn.poll(0):
            conn.recv()
            conn.send(arrivals)
            break
    for s in socks:
        s.close()


# ---------------------------------------------------------------------------------------------

def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def jitter(arrivals, t0, t1):
    devs = []
    for times in arrivals:
        w = [t for t in times if t0 <= t <= t1]
        devs += [abs((b - a) - 0.020) for a, b in zip(w, w[1:])]
    if not devs:
        return float("nan"), float("nan"), 0
    devs.sort()
    return (sum(devs) / len(devs) * 1000, devs[min(len(devs) - 1, int(len(devs) * 0.99))] * 1000,
            len(devs))


def run_level(srv, number, fc, work, n, window, settle):
    a_parent, a_child = mp.Pipe()
    agent = mp.Process(target=agent_main, args=(a_child,), daemon=True)
    agent.start()
    agent_port = a_parent.recv()
    fc.on("/answer", reply_json({"stream": {"url": f"ws://127.0.0.1:{agent_port}/ws",
                                            "direction": "BOTH", "bidirectional": True,
                                            "keep_call_alive": True}}))
    p_parent, p_child = mp.Pipe()
    parties = mp.Process(target=party_main, args=(p_child, n), daemon=True)
    parties.start()
    ports = p_parent.recv()

    csv = work / f"parties-{n}.csv"
    csv.write_text("SEQUENTIAL\n" + "".join(f"{p};\n" for p in ports))
    scen = work / "bench_in_stream.xml"
    scen.write_text((SCENARIOS / "in_stream.xml").read_text().replace("[party_port]", "[field0]"))
    ramp = n / 50.0 + 0.5
    talk_ms = int((ramp + settle + window + 1.0) * 1000)
    out = open(work / f"sipp-{n}.log", "wb")
    argv = [SIPP, "-sf", str(scen), "-inf", str(csv), "-s", number, "-key", "caller",
            "+14155550100", "-d", str(talk_ms), "-i", "127.0.0.1", "-p", str(free_udp_port()),
            "-mp", str(free_udp_port(even=True)), "-m", str(n), "-l", str(n), "-r", "50",
            "-nostdin", "-timeout", f"{int(talk_ms / 1000) + 30}s", "-timeout_error",
            f"127.0.0.1:{srv.sip_port}"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                            cwd=work, start_new_session=True)
    try:
        time.sleep(ramp + settle)
        w0, c0 = time.time(), cpu_seconds(srv.proc.pid)
        time.sleep(window)
        w1, c1 = time.time(), cpu_seconds(srv.proc.pid)
        rc = proc.wait(timeout=talk_ms / 1000 + 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.close()
    p_parent.send("stop")
    arrivals = p_parent.recv()
    a_parent.send("stop")
    stats = a_parent.recv()
    parties.join(5)
    agent.join(5)
    mad, p99, ngaps = jitter(arrivals, w0, w1)
    return {"calls": n, "sipp_rc": rc, "jitter_mad_ms": mad, "jitter_p99_ms": p99,
            "gaps": ngaps, "cpu_per_call_s": (c1 - c0) / (n * (w1 - w0)),
            "cpu_total_pct": (c1 - c0) / (w1 - w0) * 100, **stats}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", default="10,25,50", help="concurrency levels, comma-separated")
    ap.add_argument("--window", type=float, default=10.0, help="measured seconds per level")
    ap.add_argument("--settle", type=float, default=1.5, help="seconds after the ramp-up")
    args = ap.parse_args()
    if SIPP is None:
        sys.exit("sipp is not installed")
    levels = [int(x) for x in args.calls.split(",") if x]
    work = Path(tempfile.mkdtemp(prefix="sfvopi-bench-"))
    rows = []
    try:
        with fresh_db(work, "bench") as url, FakeCustomer() as fc:
            sip_port = free_udp_port()
            rtp_low = free_udp_port(even=True)
            argv = [os.environ.get("SFVOPI_BIN") or str(HERE.parent / "build" / "sfvopi"),
                    "--db", url, "serve", "--listen", "127.0.0.1:0", "--threads", "2",
                    "--sip-listen", f"127.0.0.1:{sip_port}",
                    "--sip-trunk", f"sip:127.0.0.1:{free_udp_port()}",
                    "--rtp-ports", f"{rtp_low}-{rtp_low + 399}"]
            srv = Server(url, work, argv=argv).start()
            srv.sip_port = sip_port
            try:
                time.sleep(0.3)
                org = srv.make_org()
                api = org.client()
                number = org.add_numbers(1)[0]
                app = api.create_app(name="bench", answer_url=fc.url("/answer"),
                                     hangup_url=fc.url("/hangup"))
                api.link(app["app_id"], number)
                for n in levels:
                    print(f"... {n} concurrent calls", file=sys.stderr, flush=True)
                    rows.append(run_level(srv, number, fc, work, n, args.window, args.settle))
            finally:
                srv.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'calls':>5} {'jitter MAD ms':>13} {'jitter p99 ms':>13} {'gaps':>7} "
          f"{'CPU s/call-s':>12} {'CPU %':>6} {'media in':>9} {'media out':>9} "
          f"{'playAudio':>9} {'sipp rc':>7}")
    for r in rows:
        print(f"{r['calls']:>5} {r['jitter_mad_ms']:>13.3f} {r['jitter_p99_ms']:>13.3f} "
              f"{r['gaps']:>7} {r['cpu_per_call_s']:>12.5f} {r['cpu_total_pct']:>6.1f} "
              f"{r['media_in']:>9} {r['media_out']:>9} {r['played']:>9} {r['sipp_rc']:>7}")


if __name__ == "__main__":
    main()
