"""Several sfvopi nodes behind the Kamailio front of contrib/kamailio (README "Calls on several
nodes", SIP.md section 5), for tests/api/test_cluster.py and tests/api/test_front.py.

    front = Front(workdir, nodes=[a.sip_uri, b.sip_uri], carriers=["127.0.0.10"]).start()
    front.wait_in(a.sip_uri, timeout=10)          # probed and taken in
    a.kill9(); took = front.wait_out(a.sip_uri, timeout=10)   # seconds until taken out

`Front` runs contrib/kamailio/kamailio.cfg itself, never a copy: the test's addresses go in as
`-A NAME=VALUE` defines on Kamailio's command line (LISTEN, DISPATCHER_LIST, ADDRESS_LIST,
CTL_SOCKET, and any tunable the file names), and the dispatcher and address lists, which are
data, are written into the work directory. Process handling (a session of its own, the whole
group stopped, readiness by kamcmd) is kamailio_helper's.

`Node` is one `sfvopi serve` on its own loopback address (127.0.0.2, 127.0.0.3, ...) with its own
SIP port and RTP range, sending outbound calls through the front (`--sip-outbound-proxy`) to the
carrier's trunk, and taking SIP from the front alone (`--sip-allow 127.0.0.1`). It can be killed
with SIGKILL and started again with the same options.

The carrier is SIPp on a loopback address of its own (CARRIER_IP), listed in the front's address
file. A SIPp UAS behind the front must copy Record-Route into its 180/200, or the ACK and BYE
that follow do not pass the front (kamailio_helper's docstring): `carrier_scenario()` writes such
copies of tests/sipp scenarios into the work directory.
"""

import contextlib
import json
import random
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

from conftest import BIN, REPO, Server, base_env
from kamailio_helper import KAMAILIO, Kamailio
from sipp_helper import SCENARIOS, Sipp, claim

FRONT_CFG = REPO / "contrib" / "kamailio" / "kamailio.cfg"
FRONT_IP = "127.0.0.1"
CARRIER_IP = "127.0.0.10"
STRANGER_IP = "127.0.0.11"


# ---------------------------------------------------------------------------------------------
# Ports on one loopback address.

def udp_bound(ip, port):
    """Whether something holds UDP `port` on `ip` (probed by binding it)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((ip, port))
        return False
    except OSError:
        return True
    finally:
        s.close()


def free_port(ip, even=False):
    """A UDP port free on `ip` and on 127.0.0.1 (and on 0.0.0.0: a wildcard bind would show)."""
    for _ in range(500):
        port = random.randrange(30000, 60000, 2 if even else 1)
        if udp_bound(ip, port) or udp_bound("127.0.0.1", port):
            continue
        if claim((port,)):  # two nodes never get the same port
            return port
    raise RuntimeError(f"no free UDP port on {ip}")


def free_range(ip, size):
    """`size` consecutive UDP ports for --rtp-ports, free on `ip` (every 7th probed) and not
    overlapping another range handed out here."""
    for _ in range(100):
        low = random.randrange(30000, 60000 - size, 2)
        ports = range(low, low + size)
        if any(udp_bound(ip, p) or udp_bound("127.0.0.1", p) for p in ports[::7]):
            continue
        if claim(ports):
            return low, low + size - 1
    raise RuntimeError(f"no free RTP range on {ip}")


def wait_for(pred, timeout, interval=0.1, what="condition"):
    """Poll pred() until it returns something true; return it, or raise AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# The front.

def parse_dispatcher_list(text):
    """`kamcmd dispatcher.list` as {destination URI: flags} (flags "AP": active and probed,
    "IP": inactive and probed, "TP": trying, "DX": disabled)."""
    out = {}
    uri = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("URI:"):
            uri = line[4:].strip()
        elif line.startswith("FLAGS:") and uri is not None:
            out[uri] = line[6:].strip()
            uri = None
    return out


class Front(Kamailio):
    """Kamailio running contrib/kamailio/kamailio.cfg on 127.0.0.1 (a free UDP port).

    nodes: destination URIs of dispatcher set 1 (the nodes that take calls); other_nodes: URIs
    listed in set 2 (nodes that may send in-dialog requests but get no new calls); carriers:
    addresses of the address file's group 1. defines: more -A values (e.g. {"PIKE_DENSITY":
    "20"}). children: SIP worker processes (1: a 180 and the 200 right after it are relayed in
    order, see kamailio_helper)."""

    def __init__(self, workdir, *, nodes=(), other_nodes=(), carriers=(CARRIER_IP,),
                 defines=None, children=1, lists=None):
        super().__init__(workdir, {}, tcp=False, children=children)
        self.cfg_path = FRONT_CFG
        self.node_uris = list(nodes)
        self.other_node_uris = list(other_nodes)
        self.carriers = list(carriers)
        self.defines = dict(defines or {})
        self.given_lists = lists is not None
        self.dispatcher_file, self.address_file = lists or (self.workdir / "dispatcher.list",
                                                            self.workdir / "address.list")

    # Kamailio.start() calls these: the data files (unless `lists` named existing ones: the
    # dispatcher file and the address file), then nothing to render (the file is contrib's).
    def _write_db(self):
        if self.given_lists:
            return
        lines = [f"1 {u} 0 0" for u in self.node_uris]
        lines += [f"2 {u} 0 0" for u in self.other_node_uris]
        self.dispatcher_file.write_text("\n".join(lines) + "\n")
        self.address_file.write_text("".join(f"1 {a} 32 0 carrier\n" for a in self.carriers))

    def _render(self):
        pass

    def _args(self):
        defines = {
            "LISTEN": f"udp:{FRONT_IP}:{self.port}",
            "DISPATCHER_LIST": f'"{self.dispatcher_file}"',
            "ADDRESS_LIST": f'"{self.address_file}"',
            "CTL_SOCKET": f'"unix:{self.ctl}"',
            **self.defines,
        }
        argv = ["-f", str(self.cfg_path), "-Y", str(self.workdir)]
        for k, v in defines.items():
            argv += ["-A", f"{k}={v}"]
        return argv

    def check_config(self):
        cp = subprocess.run([KAMAILIO, "-c", *self._args()], capture_output=True, text=True,
                            errors="replace", timeout=30, stdin=subprocess.DEVNULL)
        if cp.returncode != 0:
            raise RuntimeError(f"kamailio -c failed (rc={cp.returncode}) for {self.cfg_path}:\n"
                               f"{cp.stdout}\n{cp.stderr}")
        return cp.stdout + cp.stderr

    def _spawn(self, timeout):
        # Kamailio.start() picked self.port; the argv is contrib's file with our defines.
        self.argv = [KAMAILIO, *self._args(), "-DD", "-E", "-n", str(self.children),
                     "-w", str(self.workdir)]
        self._err = open(self.log_file, "wb")
        self._out = open(self.out_file, "wb")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=self._err, cwd=self.workdir, start_new_session=True)
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if udp_bound(FRONT_IP, self.port) and self.ctl.exists():
                cp = self._kamcmd("core.version", check=False, timeout=2)
                if cp is not None and cp.returncode == 0:
                    self.startup_s = time.monotonic() - t0
                    return True
            time.sleep(0.05)
        return False

    @property
    def uri(self):
        return f"sip:{FRONT_IP}:{self.port}"

    # -- the dispatcher's view of the nodes ------------------------------------------------------
    def node_flags(self):
        return parse_dispatcher_list(self.rpc("dispatcher.list"))

    def _wait_flags(self, uri, pred, timeout, what):
        t0 = time.monotonic()
        deadline = t0 + timeout
        while True:
            flags = self.node_flags().get(uri)
            if flags is not None and pred(flags):
                return time.monotonic() - t0
            if time.monotonic() > deadline:
                raise AssertionError(f"node {uri} not {what} within {timeout} s: "
                                     f"{self.node_flags()}\nkamailio log:\n{self.log_tail()}")
            time.sleep(0.05)

    def wait_in(self, uri, timeout=10):
        """Wait until `uri` is active (selected for new calls); return the seconds waited."""
        return self._wait_flags(uri, lambda f: f.startswith("A"), timeout, "active")

    def wait_out(self, uri, timeout=10):
        """Wait until `uri` is inactive or disabled (no new calls); return the seconds waited."""
        return self._wait_flags(uri, lambda f: f[:1] in ("I", "D"), timeout, "taken out")

    # -- what it logged -------------------------------------------------------------------------
    def dispatched(self):
        """The node URI of every call the front sent to a node, in order (retries included:
        "retried" entries name the next node tried)."""
        return [a or b for a, b in re.findall(
            r"sfvopi-front: call to \S+ (?:from \S+ to node (\S+)|retried on node (\S+))",
            self.log())]

    def address_dump(self):
        """The carrier addresses the front loaded, single ones and subnets
        (permissions.addressDump, permissions.subnetDump), as text."""
        return self.rpc("permissions.addressDump") + self.rpc("permissions.subnetDump")

    def floods(self):
        return re.findall(r"sfvopi-front: flood from carrier address (\S+),", self.log())


# ---------------------------------------------------------------------------------------------
# Nodes.

class Node:
    """One `sfvopi serve` with the call engine on loopback address `ip`.

    node_id: its --node-id (None: not given). trunk: the carrier's --sip-trunk URI; proxy: the
    front's URI for --sip-outbound-proxy (None: straight to the trunk). extra: more serve
    options. The HTTP API listens on 127.0.0.1 (a free port, new at every start)."""

    def __init__(self, name, ip, db_url, workdir, *, node_id=None, trunk=None, proxy=None,
                 sip_allow=FRONT_IP, extra=(), env=None):
        self.name = name
        self.ip = ip
        self.db_url = db_url
        self.workdir = Path(workdir)
        self.node_id = node_id
        self.trunk = trunk
        self.proxy = proxy
        self.sip_allow = sip_allow
        self.extra = list(extra)
        self.sip_port = free_port(ip)
        self.rtp = free_range(ip, 60)
        self.env = env if env is not None else base_env(SFVOPI_RATE_LIMIT="0",
                                                        SFVOPI_DRAIN_TIMEOUT="0")
        self.srv = None
        self.started = None  # monotonic time of the last start

    @property
    def argv(self):
        argv = [BIN, "--db", self.db_url, "serve", "--listen", "127.0.0.1:0", "--threads", "2",
                "--sip-listen", f"{self.ip}:{self.sip_port}",
                "--rtp-ports", f"{self.rtp[0]}-{self.rtp[1]}",
                "--sip-allow", self.sip_allow, "--rtp-timeout", "0"]
        if self.node_id is not None:
            argv += ["--node-id", self.node_id]
        if self.trunk is not None:
            argv += ["--sip-trunk", self.trunk]
        if self.proxy is not None:
            argv += ["--sip-outbound-proxy", self.proxy]
        return argv + self.extra

    @property
    def sip_uri(self):
        return f"sip:{self.ip}:{self.sip_port}"

    @property
    def url(self):
        return self.srv.url

    @property
    def alive(self):
        return self.srv is not None and self.srv.proc.poll() is None

    def start(self, timeout=20):
        self.srv = Server(self.db_url, self.workdir, argv=self.argv, env=self.env)
        self.srv.start(timeout=timeout)
        self.started = time.monotonic()
        wait_for(lambda: udp_bound(self.ip, self.sip_port), 5, 0.02,
                 f"SIP port {self.ip}:{self.sip_port} bound by {self.name}")
        return self

    def kill9(self):
        """SIGKILL, as a crash or a lost machine; returns the wall-clock time of the kill."""
        t = time.time()
        self.srv.stop(signal.SIGKILL)
        return t

    def stop(self, timeout=10):
        """SIGTERM, and a second one a moment later that ends a drain (a node started with
        --drain-timeout would otherwise wait for its live calls); returns the exit code."""
        if self.srv is None:
            return None
        if self.srv.proc.poll() is None:
            self.srv.proc.send_signal(signal.SIGTERM)
            try:
                self.srv.proc.wait(0.3)
            except subprocess.TimeoutExpired:
                self.srv.proc.send_signal(signal.SIGTERM)
        return self.srv.stop(signal.SIGTERM, timeout)

    def signal(self, sig):
        self.srv.proc.send_signal(sig)

    @property
    def log(self):
        return self.srv.log if self.srv is not None else ""

    def client(self, key, prefix="/sfvopi"):
        return self.srv.client(key, prefix)

    # -- metrics --------------------------------------------------------------------------------
    def metrics(self):
        r = requests.get(self.url + "/metrics", timeout=10)
        assert r.status_code == 200, r.text
        return r.text

    def metric_sum(self, name):
        """The sum of every sample of metric `name` (all label sets)."""
        total = 0.0
        for m in re.finditer(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", self.metrics(),
                             re.M):
            total += float(m.group(1))
        return total

    def calls_total(self):
        return self.metric_sum("sfvopi_calls_total")

    def calls_active(self):
        return self.metric_sum("sfvopi_calls_active")


# ---------------------------------------------------------------------------------------------
# Carrier scenarios.

def carrier_scenario(name, workdir, *, record_route=False, timeouts=None):
    """A copy of tests/sipp/<name>.xml in `workdir` for a carrier behind the front, its path.

    record_route: a UAS copies the INVITE's Record-Route into every response it sends to it
    (`[last_Record-Route:]` after its `[last_CSeq:]` line), as RFC 3261 12.1.1 wants.
    timeouts: {old: new} recv timeouts (in ms) to replace, e.g. {"30000": "90000"} for a
    wait for BYE that must outlast a node's death."""
    text = (SCENARIOS / f"{name}.xml").read_text()
    if record_route:
        # Responses to the INVITE only: [last_Record-Route:] of a request without one would
        # be an empty line, the end of the headers.
        out, last_recv, in_response = [], None, False
        for line in text.split("\n"):
            m = re.match(r'\s*<recv request="(\w+)"', line)
            if m:
                last_recv = m.group(1)
            if line.startswith("SIP/2.0 "):
                in_response = last_recv == "INVITE"
            out.append(line)
            if in_response and line.strip() == "[last_CSeq:]":
                out.append("[last_Record-Route:]")
                in_response = False
        text = "\n".join(out)
    for old, new in (timeouts or {}).items():
        text = text.replace(f'timeout="{old}"', f'timeout="{new}"')
    dst = Path(workdir) / f"front-{name}-{random.randrange(10**9)}.xml"
    dst.write_text(text)
    return dst


# ---------------------------------------------------------------------------------------------
# A whole cluster: PostgreSQL, nodes, the front, the carrier, the customer.

CALLER = "+14155550100"  # the carrier's caller on inbound calls
CALLEE = "+14155550123"  # the callee of outbound calls
SIPP_TIMEOUT_S = 150  # SIPp's own bound on a run (-timeout): the longest test is shorter


class Times:
    """Measured durations, kept in a JSON file (rewritten at every record) and printed (shown
    with pytest -s), so that a run's figures can be quoted."""

    def __init__(self, path):
        self.path = Path(path)
        self.values = {}

    def record(self, name, seconds):
        self.values.setdefault(name, []).append(round(seconds, 3))
        self.path.write_text(json.dumps(self.values, indent=1, sort_keys=True) + "\n")
        print(f"[cluster time] {name}: {seconds:.3f} s")
        return seconds


class Cluster:
    """PostgreSQL (a private cluster in pg_dir, at db_url), nodes A and B (127.0.0.2/.3,
    dispatcher set 1) and C (127.0.0.4, set 2: no new calls, a judge of dead nodes like the
    others), the front, and one organisation with a number linked to an app whose webhooks go
    to `fc`. Outbound calls go through the front to the carrier's trunk, SIPp on
    CARRIER_IP:trunk_port."""

    def __init__(self, workdir, pg_dir, db_url, fc):
        self.work = Path(workdir)
        self.pg_dir = pg_dir
        self.db_url = db_url
        self.fc = fc
        self.trunk_port = free_port(CARRIER_IP)
        trunk = f"sip:{CARRIER_IP}:{self.trunk_port}"
        self.a = Node("a", "127.0.0.2", db_url, self.work, node_id="node-a", trunk=trunk)
        self.b = Node("b", "127.0.0.3", db_url, self.work, node_id="node-b", trunk=trunk)
        self.c = Node("c", "127.0.0.4", db_url, self.work, node_id="node-c", trunk=trunk)
        self.nodes = [self.a, self.b, self.c]
        self.front = Front(self.work, nodes=[self.a.sip_uri, self.b.sip_uri],
                           other_nodes=[self.c.sip_uri])
        self.org = None
        self.sipps = []

    def start(self):
        self.front.start()
        for n in self.nodes:
            n.proxy = self.front.uri
            n.start()
        for n in (self.a, self.b):
            self.front.wait_in(n.sip_uri, 10)
        self.org = self.a.srv.make_org()
        self.number, self.app = self.new_line("cluster")
        return self

    def stop(self):
        for n in self.nodes:
            n.stop()
        self.front.stop()

    def new_line(self, name):
        """A number linked to a new app whose webhooks go to the fake customer: (number, app)."""
        number = self.org.add_numbers(1)[0]
        api = self.api(self.a)
        app = api.create_app(name=name, answer_url=self.fc.url("/answer"),
                             hangup_url=self.fc.url("/hangup"))
        api.link(app["app_id"], number)
        return number, app

    def ensure_up(self):
        """Start again any node a test killed, and wait until the front takes A and B."""
        for n in self.nodes:
            if not n.alive:
                n.stop()
                n.start()
        for n in (self.a, self.b):
            self.front.wait_in(n.sip_uri, 10)

    def api(self, node, prefix="/sfvopi"):
        return node.client(self.org.key, prefix)

    def other(self, node):
        return self.b if node is self.a else self.a

    # -- the database -----------------------------------------------------------------------------
    def psql(self, sql):
        cp = subprocess.run(["psql", self.db_url, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                             "-c", sql], capture_output=True, text=True, timeout=30)
        assert cp.returncode == 0, f"psql failed: {cp.stderr}"
        return cp.stdout.strip()

    def pg_restart(self):
        """Stop PostgreSQL (fast shutdown: sessions cut) and start it again on the same port;
        returns the seconds it was down."""
        t0 = time.monotonic()
        for cmd in ("down", "start"):
            cp = subprocess.run(["sh", str(REPO / "scripts" / "pg.sh"), cmd, self.pg_dir],
                                capture_output=True, text=True, timeout=120)
            assert cp.returncode == 0, f"pg.sh {cmd} failed: {cp.stderr}"
        return time.monotonic() - t0

    # -- the carrier ------------------------------------------------------------------------------
    def call_in(self, scenario, *, number=None, duration_ms=None, timeouts=None):
        """SIPp calling `number` (default: the cluster's) through the front, started."""
        path = carrier_scenario(scenario, self.work, timeouts=timeouts) if timeouts \
            else scenario
        s = Sipp(path, self.work, remote=f"{FRONT_IP}:{self.front.port}",
                 service=number or self.number, keys={"caller": CALLER},
                 duration_ms=duration_ms, local_ip=CARRIER_IP,
                 global_timeout_s=SIPP_TIMEOUT_S)
        self.sipps.append(s)
        return s.start()

    @contextlib.contextmanager
    def carrier_uas(self, scenario, *, timeouts=None, duration_ms=None):
        """SIPp answering on the trunk (a scenario with Record-Route copied), listening; killed
        on the way out."""
        path = carrier_scenario(scenario, self.work, record_route=True, timeouts=timeouts)
        s = Sipp(path, self.work, port=self.trunk_port, local_ip=CARRIER_IP,
                 duration_ms=duration_ms, global_timeout_s=SIPP_TIMEOUT_S)
        self.sipps.append(s)
        with s:
            s.wait_listening()
            yield s

    def kill_sipps(self):
        """Whatever SIPp a test left running (a failed one) does not outlive it."""
        for s in self.sipps:
            s.kill()
        self.sipps.clear()

    # -- calls ------------------------------------------------------------------------------------
    def place_call(self, node, number=None):
        """POST /calls through `node` from `number` (default: the cluster's) to CALLEE."""
        body = {"from": number or self.number, "to": CALLEE,
                "answer_url": self.fc.url("/answer"), "hangup_url": self.fc.url("/hangup")}
        r = self.api(node).post("/calls", json=body)
        assert r.status_code == 200, r.text
        return r.json()["data"]

    def record(self, node, call_id):
        r = self.api(node).get(f"/calls/{call_id}", timeout=30)
        assert r.status_code == 200, r.text
        return r.json()["data"]

    def wait_status(self, node, call_id, statuses, timeout):
        """Poll the record through `node` until its call_status is one of `statuses`."""
        seen = {}

        def done():
            seen["rec"] = self.record(node, call_id)
            return seen["rec"]["call_status"] in statuses and seen["rec"]

        try:
            return wait_for(done, timeout, 0.1, f"call {call_id} in {statuses}")
        except AssertionError as e:
            raise AssertionError(f"{e}: last record {seen.get('rec')}") from None

    def answer_hits(self):
        return self.fc.requests("/answer")

    def wait_new_answer(self, before, timeout=10):
        """The call_uuid of the first answer webhook after the `before` first ones."""
        hits = self.fc.wait_for(before + 1, path="/answer", timeout=timeout)
        return hits[before].payload["call_uuid"]

    def hangups(self, call_id):
        return [h for h in self.fc.requests("/hangup") if h.payload.get("call_uuid") == call_id]

    def owner_of(self, call_id):
        """The node whose --node-id the call's record names (SIP.md section 5)."""
        node_id = self.psql(f"SELECT node_id FROM calls WHERE call_uuid = '{call_id}'")
        found = [n for n in self.nodes if n.node_id == node_id]
        assert found, f"call {call_id} owned by {node_id!r}, not one of the nodes"
        return found[0]

    def wait_judging(self, nodes, timeout=25):
        """Wait until each node judges others: its heartbeats have been steady for 15 s (engine
        log "heartbeats steady: judging other nodes", not followed by "not judging")."""
        def judging(n):
            log = n.log
            return log.rfind("heartbeats steady: judging other nodes") > \
                log.rfind("not judging other nodes")

        for n in nodes:
            wait_for(lambda: judging(n), timeout, 0.2, f"node {n.name} judging")
