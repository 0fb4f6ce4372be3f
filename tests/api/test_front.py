"""The SIP front of contrib/kamailio (SIP.md section 5, README "Calls on several nodes"):
Kamailio 5.6 running contrib/kamailio/kamailio.cfg itself, in front of two sfvopi nodes on
127.0.0.2 and 127.0.0.3 (each on a SQLite file of its own, provisioned alike: the front does not
care where records go), SIPp as the carrier on 127.0.0.10.

- The shipped files: the configuration checks as it is, and its example lists load.
- Calls go round-robin to the nodes; a stranger gets no answer, a carrier's OPTIONS a 200.
- A draining node (OPTIONS 503) is taken out within 10 s and back once it answers again; a
  dead one (no answer) likewise, and a call sent to it meanwhile goes to the other node.
- An in-dialog BYE sent by a node for a call another node holds (a dead node's call, ended by
  a survivor) reaches the carrier.
- pike: a carrier address that floods is dropped, another one still calls.

The multi-node behaviour of sfvopi itself (a dead node's calls ended, commands across nodes) is
tests/api/test_cluster.py's. Measured times go to front-times.json in pytest's base temporary
directory. About 30 s; runs once, in the plain build's SQLite pass.
"""

import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from cluster_helper import (CALLER, CARRIER_IP, FRONT_CFG, FRONT_IP, STRANGER_IP, Front, Node,
                            Times, carrier_scenario, wait_for)
from conftest import ASAN, STRICT, cli_ok, new_number
from fake_customer import FakeCustomer, reply_stream
from kamailio_helper import KAMAILIO
from sipp_helper import Sipp, render

if shutil.which("kamailio") is None or shutil.which("kamcmd") is None or \
        shutil.which("sipp") is None:
    if STRICT:
        raise RuntimeError("kamailio, kamcmd and sipp must be installed "
                           "(SFVOPI_TEST_STRICT=1: every check must run)")
    pytest.skip("kamailio or sipp is not installed", allow_module_level=True)
if ASAN or os.environ.get("SFVOPI_TEST_PG_URL"):
    pytest.skip("the front runs once: in the plain build's SQLite pass", allow_module_level=True)

CONTRIB = FRONT_CFG.parent
OUT_BOUND_S = 10  # SIP.md section 5: a dead or draining node is out within 10 s
FLOODER_IP = "127.0.0.12"

# A node's BYE for a dialog it did not set up (the survivor of a dead node ending its call):
# built from the dialog alone, sent to the front as the route set says. @...@ are filled by the
# test; the Call-ID is the dialog's, given to SIPp with -cid_str.
NODE_BYE = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="node_bye">
<send retrans="500">
<![CDATA[

BYE @RURI@ SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
Route: @ROUTE@
From: @FROM@
To: @TO@
Call-ID: [call_id]
CSeq: 7 BYE
Max-Forwards: 70
Content-Length: 0

]]>
</send>
<recv response="200" timeout="5000"/>
</scenario>
"""


@pytest.fixture(scope="module")
def times(tmp_path_factory):
    return Times(tmp_path_factory.getbasetemp() / "front-times.json")


class Setup:
    def __init__(self, work, fc):
        self.work = work
        self.fc = fc
        self.number = new_number()
        self.a = Node("a", "127.0.0.2", f"sqlite:{work}/a.db", work,
                      extra=["--drain-timeout", "20"])
        self.b = Node("b", "127.0.0.3", f"sqlite:{work}/b.db", work,
                      extra=["--drain-timeout", "20"])
        self.nodes = [self.a, self.b]
        self.front = Front(work, nodes=[n.sip_uri for n in self.nodes])

    def start(self):
        self.front.start()
        for n in self.nodes:
            n.start()
            org = n.srv.make_org()
            cli_ok(n.srv.cli("number", "add", "--org", org.id, "--provider", "p", self.number))
            api = org.client()
            app = api.create_app(name="front", answer_url=self.fc.url("/answer"),
                                 hangup_url=self.fc.url("/hangup"))
            api.link(app["app_id"], self.number)
        for n in self.nodes:
            self.front.wait_in(n.sip_uri, 10)
        return self

    def stop(self):
        for n in self.nodes:
            n.stop()
        self.front.stop()

    def call(self, scenario="in_answer_bye", *, front=None, local_ip=CARRIER_IP,
             duration_ms=300, timeouts=None):
        front = front or self.front
        path = carrier_scenario(scenario, self.work, timeouts=timeouts) if timeouts \
            else scenario
        return Sipp(path, self.work, remote=f"{FRONT_IP}:{front.port}", service=self.number,
                    keys={"caller": CALLER}, duration_ms=duration_ms,
                    local_ip=local_ip).start()

    def owner(self):
        live = [n for n in self.nodes if n.alive and n.calls_active() > 0]
        assert len(live) == 1, [(n.name, n.calls_active()) for n in live]
        return live[0]

    def other(self, node):
        return self.b if node is self.a else self.a


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    with FakeCustomer(default=reply_stream()) as fc:
        s = Setup(tmp_path_factory.mktemp("front"), fc)
        try:
            yield s.start()
        finally:
            s.stop()


@pytest.fixture(autouse=True)
def both_in(setup):
    """Every test starts with both nodes running and taken by the front."""
    for n in setup.nodes:
        if not n.alive:
            n.stop()
            n.start()
    for n in setup.nodes:
        setup.front.wait_in(n.sip_uri, 10)


def sipp_ok(sipp, timeout=40):
    rc = sipp.wait(timeout)
    assert rc == 0, f"sipp exit code {rc}\n{sipp.report()}"


def setup_time(sipp):
    inv = sipp.sent(method="INVITE")[0]
    ok = sipp.received(status=200, cseq="INVITE")[0]
    return ok.time - inv.time


# ---------------------------------------------------------------------------------------------

def test_shipped_configuration_checks_and_its_example_lists_load(tmp_path):
    cp = subprocess.run([KAMAILIO, "-c", "-f", str(FRONT_CFG)], capture_output=True, text=True,
                        timeout=30, stdin=subprocess.DEVNULL)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "config file ok" in cp.stdout + cp.stderr
    front = Front(tmp_path, lists=(CONTRIB / "dispatcher.list", CONTRIB / "address.list"))
    with front:
        example_nodes = re.findall(r"^1 (sip:\S+)", (CONTRIB / "dispatcher.list").read_text(),
                                   re.M)
        assert example_nodes and set(front.node_flags()) == set(example_nodes)
        dump = front.address_dump()
        for addr in re.findall(r"^1 (\S+)", (CONTRIB / "address.list").read_text(), re.M):
            assert addr in dump, dump


def test_calls_go_round_robin_to_the_nodes(setup):
    before = {n.name: n.calls_total() for n in setup.nodes}
    callers = [setup.call() for _ in range(4)]
    for c in callers:
        sipp_ok(c)
    wait_for(lambda: all(n.calls_total() - before[n.name] == 2 for n in setup.nodes), 10, 0.1,
             "two calls on each node")
    last = setup.front.dispatched()[-4:]
    assert sorted(last) == sorted([setup.a.sip_uri, setup.b.sip_uri] * 2), last
    # The dialog passes the front: it record-routed every call.
    for c in callers:
        rr = c.received(status=200, cseq="INVITE")[0].header("record-route", "")
        assert f"{FRONT_IP}:{setup.front.port}" in rr, rr


def test_strangers_get_no_answer_carriers_keepalives_do(setup, tmp_path):
    for method in ("INVITE", "OPTIONS"):
        sc = render("in_silence", tmp_path, f"silence-{method}", METHOD=method)
        s = Sipp(sc, tmp_path, remote=f"{FRONT_IP}:{setup.front.port}", service=setup.number,
                 keys={"caller": CALLER}, local_ip=STRANGER_IP).start()
        sipp_ok(s, 20)
        assert s.received() == [], s.received()
    s = Sipp("options", tmp_path, remote=f"{FRONT_IP}:{setup.front.port}", service="front",
             keys={"caller": "carrier"}, local_ip=CARRIER_IP).start()
    sipp_ok(s, 20)


def test_draining_node_is_taken_out_and_back(setup, times):
    live = setup.call("in_wait_bye", timeouts={"30000": "60000"})
    owner = wait_for(lambda: [n for n in setup.nodes if n.calls_active() > 0], 10, 0.1,
                     "the live call on a node")[0]
    other = setup.other(owner)
    t0 = time.monotonic()
    owner.signal(signal.SIGTERM)  # drains: OPTIONS and INVITE get 503, the live call goes on
    setup.front.wait_out(owner.sip_uri, OUT_BOUND_S)
    times.record("draining node taken out (SIGTERM -> out)", time.monotonic() - t0)
    new = setup.call()
    sipp_ok(new)
    assert setup.front.dispatched()[-1] == other.sip_uri
    assert live.proc.poll() is None, "the draining node's call ended"
    owner.signal(signal.SIGTERM)  # the drain ends: the call is hung up, through the front
    sipp_ok(live)
    assert live.received(method="BYE")
    assert owner.srv.proc.wait(10) == 0
    owner.stop()
    t0 = time.monotonic()
    owner.start()
    setup.front.wait_in(owner.sip_uri, OUT_BOUND_S)
    times.record("restarted node taken back (start -> in)", time.monotonic() - t0)


def test_dead_node_is_taken_out_and_its_calls_go_to_the_other(setup, times):
    victim, survivor = setup.a, setup.b
    before = survivor.calls_total()
    victim.kill9()
    t0 = time.monotonic()
    # Sent at once, before any probe: one of them meets the dead node, times out there (2 s)
    # and is sent to the other.
    callers = [setup.call() for _ in range(2)]
    for c in callers:
        sipp_ok(c)
        times.record("call answered right after a node died (INVITE -> 200)", setup_time(c))
        assert setup_time(c) < 5
    wait_for(lambda: survivor.calls_total() - before == 2, 10, 0.1, "both calls on the survivor")
    assert any("retried on node " + survivor.sip_uri in line
               for line in setup.front.log().splitlines()), setup.front.log_tail()
    setup.front.wait_out(victim.sip_uri, OUT_BOUND_S)
    took = times.record("dead node taken out (kill -9 -> out)", time.monotonic() - t0)
    assert took < OUT_BOUND_S
    victim.stop()
    t0 = time.monotonic()
    victim.start()
    setup.front.wait_in(victim.sip_uri, OUT_BOUND_S)
    times.record("restarted node taken back (start -> in)", time.monotonic() - t0)


def test_dead_node_without_calls_is_taken_out_by_the_probes(setup, times):
    victim = setup.b
    victim.kill9()
    t0 = time.monotonic()
    setup.front.wait_out(victim.sip_uri, OUT_BOUND_S)
    took = times.record("dead node without traffic taken out by the probes (kill -9 -> out)",
                        time.monotonic() - t0)
    assert took < OUT_BOUND_S
    assert f"node down {victim.sip_uri}" in setup.front.log()


def test_bye_from_another_node_reaches_the_carrier(setup, tmp_path):
    """A node ends a call it does not hold, from the dialog alone (what a survivor does for a
    dead node's call): its BYE, routed to the front by the dialog's route set, comes from a
    node's address, and the front relays it to the carrier."""
    caller = setup.call("in_wait_bye", timeouts={"30000": "60000"})
    wait_for(lambda: caller.received(status=200, cseq="INVITE"), 10, 0.05, "the answer")
    owner = setup.owner()
    ok = caller.received(status=200, cseq="INVITE")[0]
    invite = caller.sent(method="INVITE")[0]
    contact = re.search(r"<([^>]+)>", invite.header("contact")).group(1)
    # The BYE from the node's side: From and To swapped, to the carrier's Contact, through the
    # Record-Route set.
    scenario = tmp_path / "node_bye.xml"
    text = NODE_BYE
    for k, v in {"RURI": contact, "ROUTE": ok.header("record-route"), "FROM": ok.header("to"),
                 "TO": ok.header("from")}.items():
        text = text.replace(f"@{k}@", v)
    scenario.write_text(text)
    other = setup.other(owner)
    # SIPp matches the 200 to its call by Call-ID: the dialog's is the call's (-cid_str).
    bye = Sipp(scenario, tmp_path, remote=f"{FRONT_IP}:{setup.front.port}",
               local_ip=other.ip, extra=["-cid_str", ok.header("call-id")]).start()
    sipp_ok(bye, 20)
    sipp_ok(caller, 20)
    got = caller.received(method="BYE")
    assert len(got) == 1 and got[0].header("call-id") == ok.header("call-id"), got
    # The owner still thinks the call is up: kill it, and start it again.
    owner.kill9()


def test_pike_drops_a_carrier_that_floods(setup, tmp_path):
    front = Front(tmp_path, nodes=[n.sip_uri for n in setup.nodes],
                  carriers=[CARRIER_IP, FLOODER_IP], defines={"PIKE_DENSITY": "16"})
    with front:
        for n in setup.nodes:
            front.wait_in(n.sip_uri, 10)
        flood = Sipp("flood_invite", tmp_path, remote=f"{FRONT_IP}:{front.port}",
                     service="+15005550000", keys={"caller": "+15005550001"},
                     local_ip=FLOODER_IP, extra=["-nr", "-r", "400", "-m", "400"]).start()
        flood.wait(30)
        wait_for(lambda: FLOODER_IP in front.floods(), 5, 0.1, "the flood logged")
        relayed = [line for line in front.log().splitlines()
                   if f"from {FLOODER_IP}:" in line and "to node" in line]
        assert len(relayed) < 100, len(relayed)
        # Another carrier address calls as usual.
        c = setup.call(front=front)
        sipp_ok(c)
