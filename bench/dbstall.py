#!/usr/bin/python3
"""Media while PostgreSQL stalls (by hand; not part of CI; SIP.md section 4).

Ten streamed inbound calls (bench/streams.py's echo agent and parties) and short calls arriving
and ending, on a PostgreSQL cluster of the benchmark's own whose every process is SIGSTOPped for
--stall seconds (0: no stall). Prints the longest gap and the 99th percentile of the gaps between
RTP packets received at the parties, before the stall and from its start to 2 s after it.

    /usr/bin/python3 bench/dbstall.py --stall 10

Needs build/sfvopi (or $SFVOPI_BIN), sipp, PostgreSQL 15 server binaries and
python3-websockets. Goal: the longest gap under 60 ms.
"""

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "api"))

from dbstall_helper import private_cluster, run_stall, stall_server  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stall", type=float, default=10.0, help="seconds PostgreSQL stays stopped")
    args = ap.parse_args()
    binary = os.environ.get("SFVOPI_BIN") or str(HERE.parent / "build" / "sfvopi")
    work = Path(tempfile.mkdtemp(prefix="sfvopi-dbstall-"))
    try:
        with private_cluster() as (cluster_dir, url), \
                stall_server(binary, url, work) as (srv, _org, number, fc):
            r = run_stall(srv, number, fc, work, cluster_dir, args.stall)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"stall {args.stall:g} s   sipp rc long={r['long_rc']} short={r['short_rc']}")
    for k in ("before", "during"):
        print(f"{k:>7}: longest gap {r[k]['max_ms']:8.1f} ms   p99 {r[k]['p99_ms']:6.1f} ms   "
              f"gaps {r[k]['n']}")
    print("longest gap per party (ms):", " ".join(f"{x:.0f}" for x in r["per_party_max_ms"]))


if __name__ == "__main__":
    main()
