#!/usr/bin/python3
"""sfvopi benchmark suite (run by hand or with `make bench`; never a CI gate).

Seeds a small and a large SQLite database through the store interface
(build/bench/seed), starts a fresh `sfvopi serve` on loopback for each, runs
every scenario with `wrk -t2 -c64 -d10s --latency`, runs the same paths
against Debian's nginx-light returning the exact same bytes (the baseline),
and appends a report to bench/RESULTS.md. wrk, the server and nginx share the
machine's cores, so figures are given as ratios to the baseline measured in
the same run.

With --tls it measures HTTPS instead: list numbers and healthz on the small
database over plain HTTP, over sfvopi's own TLS (--tls-cert, a throwaway
P-256 certificate) and through nginx terminating TLS in front of plain
sfvopi (the README's reverse-proxy block), and appends that report.

usage: bench/run.py [--duration 10] [--large-orgs 5000] [--small-orgs 5] [--tls]
                    [--out bench/RESULTS.md]
"""

import argparse
import datetime
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(REPO, "build", "sfvopi")
SEED = os.path.join(REPO, "build", "bench", "seed")
WRK = ["wrk", "-t2", "-c64", "--latency"]


def free_port():
    """A free port below the kernel's ephemeral range, so that no client
    socket of another process can take it between this check and the bind."""
    import random
    for _ in range(200):
        port = random.randint(20000, 30000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise SystemExit("no free port")


def seed(db, orgs):
    out = subprocess.run([SEED, "--db", "sqlite:" + db, "--orgs", str(orgs)], check=True,
                         capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in out.split())


def start_server(db, extra=()):
    port = free_port()
    t0 = time.monotonic()
    proc = subprocess.Popen([BIN, "--db", "sqlite:" + db, "serve", "--listen",
                             f"127.0.0.1:{port}", "--log-level", "warn", "--rate-limit", "0",
                             *extra], stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    started_ms = (time.monotonic() - t0) * 1000
    if "listening on" not in line:
        raise SystemExit(f"server did not start: {line}")
    return proc, port, started_ms


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def fetch(port, method, path, key, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"X-API-Key": key}
    if body is not None:
        headers["Content-Type"] = "application/json"
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def parse_wrk(out):
    def val(pattern, conv=float):
        m = re.search(pattern, out)
        return conv(m.group(1)) if m else None

    def ms(token):
        m = re.match(r"([\d.]+)(us|ms|s)", token)
        f = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
        return float(m.group(1)) * f

    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    return {
        "rps": val(r"Requests/sec:\s+([\d.]+)"),
        "p50_ms": ms(p50.group(1)) if p50 else None,
        "p99_ms": ms(p99.group(1)) if p99 else None,
        "non2xx": val(r"Non-2xx or 3xx responses:\s+(\d+)", int) or 0,
        "errors": out.count("Socket errors"),
        "writes_ok": val(r"writes_ok (\d+)", int),
        "writes_bad": val(r"writes_not_200 (\d+)", int),
    }


def wrk(port, path, key, duration, script=None, env=None, scheme="http"):
    cmd = WRK + [f"-d{duration}s", "-H", f"X-API-Key: {key}"]
    if script:
        cmd += ["-s", script]
    cmd.append(f"{scheme}://127.0.0.1:{port}{path}")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         env={**os.environ, **(env or {})}).stdout
    r = parse_wrk(out)
    r["cmd"] = " ".join(cmd)
    return r


def nginx_baseline(bodies, duration, workdir):
    """Runs nginx-light answering each path with the given bytes; returns rps per path."""
    port = free_port()
    locs = []
    for i, (path, body) in enumerate(bodies.items()):
        text = body.decode().replace("\\", "\\\\").replace("'", "\\'")
        if "$" in text:
            raise SystemExit("a response body holds '$', which nginx would interpolate")
        if len(text) < 4000:
            locs.append(f"        location = {path} {{ return 200 '{text}'; }}")
        else:
            # nginx caps a config parameter at 4 KiB: longer bodies come
            # from a file (sendfile), which is no slower for nginx.
            fname = os.path.join(workdir, f"body{i}.json")
            with open(fname, "wb") as f:
                f.write(body)
            os.chmod(fname, 0o644)
            os.chmod(workdir, 0o755)  # nginx's workers are not root
            locs.append(f"        location = {path} {{ alias {fname}; }}")
    with open(os.path.join(REPO, "bench", "nginx.conf.in")) as f:
        conf = f.read()
    conf = (conf.replace("@DIR@", workdir).replace("@PORT@", str(port))
            .replace("@LOCATIONS@", "\n".join(locs)))
    path = os.path.join(workdir, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    proc = subprocess.Popen(["nginx", "-c", path, "-p", workdir], stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if proc.poll() is not None:
                raise SystemExit("nginx did not start: see " + workdir + "/nginx-error.log")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        res = {}
        for p, body in bodies.items():
            got = subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}{p}"],
                                 capture_output=True).stdout
            if got != body:
                raise SystemExit(f"nginx does not answer {p} with the same bytes: "
                                 f"{got[:200]!r} vs {body[:200]!r}")
            res[p] = wrk(port, p, "-", duration)
        return res
    finally:
        proc.send_signal(signal.SIGQUIT)
        proc.wait(timeout=10)


def run_size(label, orgs, duration, workdir):
    db = os.path.join(workdir, f"{label}.db")
    t0 = time.monotonic()
    ids = seed(db, orgs)
    seed_s = time.monotonic() - t0
    proc, port, started_ms = start_server(db)
    key, app = ids["KEY"], ids["APP"]
    scenarios = {
        # No key check, no database: what the HTTP layer alone costs.
        "healthz (no key, no database)": "/healthz",
        "list numbers (10 links)": f"/sfvopi/apps/{app}/numbers",
        "get app": f"/sfvopi/apps/{app}",
        "list apps (20)": "/sfvopi/apps",
        "available numbers (100)": "/sfvopi/available-numbers",
    }
    res, bodies = {}, {}
    try:
        for name, path in scenarios.items():
            status, body = fetch(port, "GET", path, key)
            assert status == 200, (name, status, body)
            bodies[path] = body
            res[name] = wrk(port, path, key, duration)
            assert res[name]["non2xx"] == 0, (name, res[name])
        status, body = fetch(port, "GET", "/sfvopi/apps", "sfvk_" + "x" * 43)
        assert status == 401
        res["rejected key (401)"] = wrk(port, "/sfvopi/apps", "sfvk_" + "x" * 43, duration)
        res["write mix (link/unlink)"] = wrk(
            port, f"/sfvopi/apps/{app}/numbers", key, duration,
            script=os.path.join(REPO, "bench", "writemix.lua"),
            env={"KEY": key, "APP": app, "FREE_FIRST": ids["FREE_FIRST"], "POOL": "50"})
        rss = peak_rss_kib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    return {"ids": ids, "seed_s": seed_s, "started_ms": started_ms, "res": res, "rss_kib": rss,
            "bodies": bodies, "scenarios": scenarios}


NGINX_TLS = """worker_processes 1;
daemon off;
pid @DIR@/nginx-tls.pid;
error_log @DIR@/nginx-tls-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 1000000;
    upstream sfvopi {
        server 127.0.0.1:@UPSTREAM@;
        keepalive 16;
    }
    server {
        listen 127.0.0.1:@PORT@ ssl;
        ssl_certificate @DIR@/cert.pem;
        ssl_certificate_key @DIR@/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            proxy_pass http://sfvopi;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }
    }
}
"""


def run_tls(a):
    """Plain HTTP, sfvopi's TLS and nginx's TLS in front, on the small database."""
    workdir = tempfile.mkdtemp(prefix="sfvopi-bench-tls.")
    os.chmod(workdir, 0o755)  # nginx's workers are not root
    cert, key = os.path.join(workdir, "cert.pem"), os.path.join(workdir, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    os.chmod(key, 0o644)
    db = os.path.join(workdir, "small.db")
    ids = seed(db, a.small_orgs)
    key_, app = ids["KEY"], ids["APP"]
    paths = {"list numbers (10 links)": f"/sfvopi/apps/{app}/numbers",
             "healthz (no key, no database)": "/healthz"}
    res = {}
    procs = []
    try:
        plain, pport, _ = start_server(db)
        procs.append(plain)
        tls, tport, _ = start_server(db, ["--tls-cert", cert, "--tls-key", key])
        procs.append(tls)
        nport = free_port()
        conf = os.path.join(workdir, "nginx-tls.conf")
        with open(conf, "w") as f:
            f.write(NGINX_TLS.replace("@DIR@", workdir).replace("@PORT@", str(nport))
                    .replace("@UPSTREAM@", str(pport)))
        nginx = subprocess.Popen(["nginx", "-c", conf, "-p", workdir], stderr=subprocess.DEVNULL)
        procs.append(nginx)
        targets = (("plain HTTP", pport, "http"), ("sfvopi TLS", tport, "https"),
                   ("nginx TLS -> plain sfvopi", nport, "https"))
        for name, path in paths.items():
            want = fetch(pport, "GET", path, key_)[1]
            for label, port, scheme in targets:
                for _ in range(100):
                    got = subprocess.run(["curl", "-sk", "-H", f"X-API-Key: {key_}",
                                          f"{scheme}://127.0.0.1:{port}{path}"],
                                         capture_output=True).stdout
                    if got:
                        break
                    time.sleep(0.05)
                if got != want:
                    raise SystemExit(f"{label} answers {path} differently: {got[:200]!r}")
                res[(name, label)] = wrk(port, path, key_, a.duration, scheme=scheme)
                assert res[(name, label)]["non2xx"] == 0, res[(name, label)]
    finally:
        for i, p in enumerate(procs):  # the servers, then nginx (SIGQUIT: graceful)
            p.send_signal(signal.SIGQUIT if i == 2 else signal.SIGTERM)
            p.wait(timeout=15)
        if os.environ.get("BENCH_KEEP") is None:
            shutil.rmtree(workdir, ignore_errors=True)
    report_tls(a, ids, paths, targets, res)


def report_tls(a, ids, paths, targets, res):
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    lines = [f"## {now} — commit {rev}: HTTPS", "",
             f"Machine: {os.cpu_count()} cores, {cpu}. wrk (2 threads), the server (threads = "
             "cores) and nginx (1 worker) share these cores.",
             f"Command: `bench/run.py --tls --duration {a.duration} --small-orgs "
             f"{a.small_orgs}`; each row: `wrk -t2 -c64 -d{a.duration}s --latency -H "
             "'X-API-Key: KEY' URL` with URL `http://` or `https://` (64 connections, each "
             "kept alive for the whole run, so one handshake per connection); server: `sfvopi "
             "serve --log-level warn --rate-limit 0`, plus `--tls-cert cert.pem --tls-key "
             "key.pem` (a P-256 certificate) for sfvopi TLS; nginx TLS: nginx-light with the "
             "README's reverse-proxy block (upstream keepalive 16) in front of the plain server.",
             f"Database: small, {ids['NUMBERS']} numbers / {ids['APPS']} apps.", "",
             "| scenario | transport | req/s | p50 ms | p99 ms | × plain HTTP |",
             "|---|---|---|---|---|---|"]
    for name in paths:
        base = res[(name, "plain HTTP")]["rps"]
        for label, _, _ in targets:
            r = res[(name, label)]
            lines.append(f"| {name} | {label} | {r['rps']:.0f} | {r['p50_ms']:.2f} | "
                         f"{r['p99_ms']:.2f} | {r['rps'] / base:.2f} |")
    lines.append("")
    text = "\n".join(lines) + "\n"
    print(text)
    header = "# Benchmark results\n\nNewest first. Produced by `make bench` (bench/run.py).\n\n"
    old = ""
    if os.path.exists(a.out):
        with open(a.out) as f:
            old = f.read()
        if old.startswith(header):
            old = old[len(header):]
    with open(a.out, "w") as f:
        f.write(header + text + "\n" + old)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--small-orgs", type=int, default=5)
    ap.add_argument("--large-orgs", type=int, default=5000)
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "RESULTS.md"))
    ap.add_argument("--tls", action="store_true", help="measure HTTPS (see the top)")
    a = ap.parse_args()
    for tool in ("wrk", "nginx", "curl") + (("openssl",) if a.tls else ()):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: apt-get install -y wrk nginx-light curl "
                             "openssl")
    if a.tls:
        run_tls(a)
        return
    workdir = tempfile.mkdtemp(prefix="sfvopi-bench.")
    try:
        small = run_size("small", a.small_orgs, a.duration, workdir)
        large = run_size("large", a.large_orgs, a.duration, workdir)
        paths = {p: small["bodies"][p] for p in small["scenarios"].values()}
        base = nginx_baseline(paths, a.duration, workdir)
    finally:
        if os.environ.get("BENCH_KEEP") is None:
            shutil.rmtree(workdir, ignore_errors=True)
    report(a, small, large, base)


def report(a, small, large, base):
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    lines = [f"## {now} — commit {rev}", "",
             f"Machine: {os.cpu_count()} cores, {cpu}. wrk (2 threads), the server (threads = "
             "cores) and nginx share these cores.",
             f"Command: `bench/run.py --duration {a.duration} --small-orgs {a.small_orgs} "
             f"--large-orgs {a.large_orgs}`; each scenario: `wrk -t2 -c64 -d{a.duration}s "
             "--latency -H 'X-API-Key: KEY' URL`; server: `sfvopi serve --log-level warn "
             "--rate-limit 0` (no access log, like the nginx baseline with `access_log off`).",
             f"Databases: small {small['ids']['NUMBERS']} numbers / {small['ids']['APPS']} apps "
             f"(seeded in {small['seed_s']:.1f} s); large {large['ids']['NUMBERS']} numbers / "
             f"{large['ids']['APPS']} apps (seeded in {large['seed_s']:.1f} s). 10 links per app.",
             "",
             "| scenario | small req/s | p50 ms | p99 ms | × nginx | large req/s | p50 ms | p99 ms "
             "| large/small |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in small["res"]:
        s, l = small["res"][name], large["res"][name]
        path = small["scenarios"].get(name)
        ratio = f"{s['rps'] / base[path]['rps']:.2f}" if path in base else "—"
        lines.append(f"| {name} | {s['rps']:.0f} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | "
                     f"{ratio} | {l['rps']:.0f} | {l['p50_ms']:.2f} | {l['p99_ms']:.2f} | "
                     f"{l['rps'] / s['rps']:.2f} |")
    lines.append("")
    lines.append("nginx baseline (same bytes): " + ", ".join(
        f"{name} {base[p]['rps']:.0f} req/s" for name, p in small["scenarios"].items()))
    for label, r in (("small", small), ("large", large)):
        w = r["res"]["write mix (link/unlink)"]
        lines.append(f"Write mix ({label}): {w['rps']:.0f} durable writes/s "
                     f"({w['writes_ok']} answered 200, {w['writes_bad']} not 200).")
    lines.append(f"Peak RSS (VmHWM): small {small['rss_kib'] / 1024:.1f} MiB, large "
                 f"{large['rss_kib'] / 1024:.1f} MiB. Start to 'listening on': small "
                 f"{small['started_ms']:.0f} ms, large {large['started_ms']:.0f} ms.")
    lines.append("")
    text = "\n".join(lines) + "\n"
    print(text)
    header = "# Benchmark results\n\nNewest first. Produced by `make bench` (bench/run.py).\n\n"
    old = ""
    if os.path.exists(a.out):
        with open(a.out) as f:
            old = f.read()
        if old.startswith(header):
            old = old[len(header):]
    with open(a.out, "w") as f:
        f.write(header + text + "\n" + old)


if __name__ == "__main__":
    main()
