#!/usr/bin/env python3
"""Reliability figures for docs/RELIABILITY.md, from commands anyone can rerun.

    /usr/bin/python3 scripts/reliability.py [--fuzz-seconds N] [--pg] [--san]

Runs every fuzz harness for N seconds (`make fuzz`), then the hostile-input, slow-client,
crash, shutdown, rate-limit and secret tests of the API suite with a JUnit report, and prints
Markdown tables: executions per harness, test outcomes per suite, and the figures the tests
record (kill rounds, slow connections held, memory under a flood). --pg runs the same tests on
a throwaway PostgreSQL cluster as well; --san uses the ASan+UBSan build. Needs what `make test`
installs. Exit status 1 if any harness or test failed.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import OrderedDict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SUITES = [
    ("tests/api/test_hostile.py", "hostile HTTP (raw sockets)"),
    ("tests/api/test_slow.py", "slow clients, connection limit, flood"),
    ("tests/api/test_crash.py", "SIGKILL mid-traffic, restart, check"),
    ("tests/api/test_shutdown.py", "SIGTERM with requests in flight"),
    ("tests/api/test_ratelimit.py", "per-key rate limit"),
    ("tests/api/test_cli.py::test_key_stored_only_as_hash", "key plaintext not in the database"),
    ("tests/api/test_cli.py::test_key_create_and_list", "key plaintext not in `key list`"),
    ("tests/api/test_conventions.py::test_log_never_holds_keys_or_bodies",
     "key, body not in the log"),
    ("tests/api/test_operability.py::test_text_access_log_has_every_field_and_no_secret",
     "no auth header in access lines"),
]


def run_fuzz(seconds):
    """make fuzz: one block per harness, '== name (N s)' then libFuzzer's final stats."""
    cp = subprocess.run(["make", "--no-print-directory", "fuzz", f"FUZZ_SECONDS={seconds}"],
                        cwd=REPO, capture_output=True, text=True)
    rows, cur = [], None
    for line in cp.stdout.splitlines():
        m = re.match(r"^== (fuzz_\w+)", line)
        if m:
            cur = {"name": m.group(1), "execs": "?", "cov": "?", "corp": "?", "rss": "?"}
            rows.append(cur)
            continue
        if cur is None:
            continue
        m = re.match(r"^stat::number_of_executed_units:\s+(\d+)", line)
        if m:
            cur["execs"] = int(m.group(1))
        m = re.match(r"^stat::peak_rss_mb:\s+(\d+)", line)
        if m:
            cur["rss"] = m.group(1)
        m = re.search(r"DONE\s+cov: (\d+).*corp: (\d+)/", line)
        if m:
            cur["cov"], cur["corp"] = m.group(1), m.group(2)
    return cp.returncode, rows, cp.stdout + cp.stderr


def run_tests(binary, pg_url):
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "junit.xml")
        env = dict(os.environ, SFVOPI_BIN=str(binary))
        env.pop("SFVOPI_TEST_PG_URL", None)
        if pg_url:
            env["SFVOPI_TEST_PG_URL"] = pg_url
        cmd = ["/usr/bin/python3", "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "-o", "junit_family=xunit1", f"--junitxml={report}"] + [s for s, _ in SUITES]
        cp = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        tree = ET.parse(report)
    counts = OrderedDict((s, [0, 0, 0]) for s, _ in SUITES)  # passed, failed, skipped
    props = OrderedDict()
    for tc in tree.iter("testcase"):
        # pytest names files relative to its rootdir (tests/api, where pytest.ini is).
        file = "tests/api/" + os.path.basename(tc.get("file") or "")
        base = tc.get("name", "").split("[", 1)[0]
        key = next((s for s, _ in SUITES if s == f"{file}::{base}"), None) or \
            next((s for s, _ in SUITES if s == file), None)
        if key is None:
            continue
        if tc.find("failure") is not None or tc.find("error") is not None:
            counts[key][1] += 1
        elif tc.find("skipped") is not None:
            counts[key][2] += 1
        else:
            counts[key][0] += 1
        for p in tc.iter("property"):
            props[p.get("name")] = p.get("value")
    return cp.returncode, counts, props, cp.stdout[-3000:]


def pg_start(tmp):
    cp = subprocess.run(["sh", "scripts/pg.sh", "start", tmp], cwd=REPO, capture_output=True,
                        text=True, check=True)
    return cp.stdout.strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fuzz-seconds", type=int, default=30, help="per harness (default 30)")
    ap.add_argument("--pg", action="store_true", help="run the tests on PostgreSQL too")
    ap.add_argument("--san", action="store_true", help="test the ASan+UBSan build")
    args = ap.parse_args()

    build = "build-san" if args.san else "build"
    subprocess.run(["make", "--no-print-directory", f"SAN={1 if args.san else ''}"], cwd=REPO,
                   check=True, stdout=subprocess.DEVNULL)
    binary = REPO / build / "sfvopi"
    failed = False

    print(f"## Fuzzing: each harness {args.fuzz_seconds} s (clang-14 libFuzzer, ASan+UBSan)\n")
    rc, rows, out = run_fuzz(args.fuzz_seconds)
    print("| harness | executions | coverage (edges) | corpus | peak RSS |")
    print("|---|---|---|---|---|")
    for r in rows:
        execs = f"{r['execs']:,}" if isinstance(r["execs"], int) else r["execs"]
        print(f"| `{r['name']}` | {execs} | {r['cov']} | {r['corp']} | {r['rss']} MB |")
    if rc != 0:
        failed = True
        print(f"\n**make fuzz failed (exit {rc})**:\n\n```\n{out[-3000:]}\n```")
    print()

    backends = [("SQLite", None)]
    pg_dir = None
    if args.pg:
        pg_dir = tempfile.mkdtemp(prefix="sfvopi-pg.")
        backends.append(("PostgreSQL", pg_start(pg_dir)))
    try:
        for label, url in backends:
            rc, counts, props, tail = run_tests(binary, url)
            print(f"## Tests on {label} ({build}/sfvopi)\n")
            print("| suite | what | passed | failed | skipped |")
            print("|---|---|---|---|---|")
            for s, what in SUITES:
                p, f, k = counts[s]
                print(f"| `{s.replace('tests/api/', '')}` | {what} | {p} | {f} | {k} |")
            print("\n| figure | value |")
            print("|---|---|")
            for name, value in props.items():
                print(f"| {name.replace('_', ' ')} | {value} |")
            print()
            if rc != 0:
                failed = True
                print(f"**pytest failed (exit {rc})**:\n\n```\n{tail}\n```\n")
    finally:
        if pg_dir:
            subprocess.run(["sh", "scripts/pg.sh", "stop", pg_dir], cwd=REPO)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
