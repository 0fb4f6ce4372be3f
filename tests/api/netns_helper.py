"""A NAT test topology in network namespaces of the test's own: sfvopi behind a NAT box, the
carrier outside it.

    with NatTopology(rtp_ports=(20000, 20099)) as t:
        with t.entered(t.priv):          # this thread's sockets and children: in `priv`
            server = Server(...).start()  # sfvopi, --sip-listen 10.77.1.2:5060
            fc = FakeCustomer()           # its webhooks: 127.0.0.1 of `priv`
        sipp = t.popen(t.carrier, ["sipp", ...])   # `ip netns exec CARRIER sipp ...`

Three namespaces, named sfv<pid>-<random>-{priv,nat,carrier} (a run never meets another's):

    priv     10.77.1.2/24 on eth0, default route via 10.77.1.1
    nat      in0 10.77.1.1/24 (to priv), out0 198.51.100.1/24 (to carrier); ip_forward on;
             nftables table `ip sfvopi_nat`: masquerade of 10.77.1.0/24 leaving out0, DNAT of
             UDP 5060 and the RTP range arriving on out0 for 198.51.100.1 to 10.77.1.2
    carrier  198.51.100.2/24 on eth0 and nothing else: no route at all to 10.77.1.0/24

Loopback is up in each. The veth pairs are created inside the namespaces (`ip -n NS link add
... peer ... netns OTHER`), so the host's own namespace never holds an interface, an address, a
route or a rule of this topology; deleting the namespaces removes everything (veths, nftables
table, sysctls). The addresses are private (RFC 1918) and documentation (RFC 5737) ranges.

The test process reaches the namespaces in two ways:
- `entered(ns)` moves the *calling thread* into a namespace (setns(2) on the thread; the
  namespace of a network socket is fixed when it is created, and a child inherits the namespace
  of the thread that forks it). A server started there (sfvopi, its HTTP API on 127.0.0.1) and a
  fake customer created there (bound on 127.0.0.1) are in that namespace, and HTTP requests
  made there go to its loopback: the API and the webhooks need no extra link to the host.
- `popen(ns, argv)` runs a command with `ip netns exec`.

Every command is bounded (subprocess timeouts, socket timeouts). Namespaces left by a run that
was killed (its pid gone) are removed by the next one.
"""

import contextlib
import ctypes
import os
import re
import secrets
import socket
import subprocess
import time

PRIV_IP = "10.77.1.2"
NAT_IN_IP = "10.77.1.1"
NAT_OUT_IP = "198.51.100.1"
CARRIER_IP = "198.51.100.2"
SIP_PORT = 5060
NFT_TABLE = "sfvopi_nat"

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_NAME_RE = re.compile(r"^sfv(\d+)-[0-9a-f]{6}-(priv|nat|carrier)$")


def missing_tools():
    """What this topology needs and is not here (root, ip, nft); empty when all is there."""
    out = []
    if os.geteuid() != 0:
        out.append("root (network namespaces)")
    for tool in ("ip", "nft"):
        if not any(os.access(os.path.join(d, tool), os.X_OK)
                   for d in os.environ.get("PATH", "").split(":") + ["/usr/sbin", "/sbin"]):
            out.append(f"{tool} (iproute2, nftables)")
    return out


def _run(*argv, timeout=20, check=True):
    cp = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                        timeout=timeout, stdin=subprocess.DEVNULL)
    if check and cp.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))}: rc={cp.returncode} {cp.stderr.strip()}")
    return cp


def _setns(fd):
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def remove_stale():
    """Delete namespaces of this helper left by runs whose process is gone (a SIGKILLed test)."""
    cp = _run("ip", "netns", "list", check=False)
    for line in cp.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = _NAME_RE.match(name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            _run("ip", "netns", "del", name, check=False)


def nft_ruleset(rtp_ports):
    """The NAT box's nftables table (loaded with `nft -f` in the `nat` namespace)."""
    low, high = rtp_ports
    return f"""table ip {NFT_TABLE} {{
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        iifname "out0" ip daddr {NAT_OUT_IP} udp dport {{ {SIP_PORT}, {low}-{high} }} \\
            dnat to {PRIV_IP}
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "out0" ip saddr 10.77.1.0/24 masquerade
    }}
}}
"""


class NatTopology:
    """The three namespaces (see the module docstring); a context manager that builds them on
    entry and always removes them on exit, also when building failed half way."""

    def __init__(self, rtp_ports=(20000, 20099), udp_timeout=None):
        """rtp_ports: the (low, high) UDP range forwarded besides 5060. udp_timeout: seconds
        after which the NAT box forgets an idle UDP flow (net.netfilter.nf_conntrack_udp_timeout
        and _stream of its namespace; kernel defaults 30 and 120 when None), so that a test can
        make a later datagram rely on the DNAT rule instead of the masquerade's entry."""
        self.rtp_ports = tuple(rtp_ports)
        self.udp_timeout = udp_timeout
        base = f"sfv{os.getpid()}-{secrets.token_hex(3)}"
        self.priv, self.nat, self.carrier = (f"{base}-{n}" for n in ("priv", "nat", "carrier"))
        self.names = [self.priv, self.nat, self.carrier]
        self.created = []
        self.setup_seconds = None

    # -- life ---------------------------------------------------------------------------------
    def __enter__(self):
        t0 = time.monotonic()
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        self.setup_seconds = time.monotonic() - t0
        return self

    def __exit__(self, *exc):
        self.close()

    def _build(self):
        remove_stale()
        for ns in self.names:
            _run("ip", "netns", "add", ns)
            self.created.append(ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        priv, nat, carrier = self.priv, self.nat, self.carrier
        # The veths are born inside the namespaces: the host never sees them.
        _run("ip", "-n", nat, "link", "add", "in0", "type", "veth", "peer", "name", "eth0",
             "netns", priv)
        _run("ip", "-n", nat, "link", "add", "out0", "type", "veth", "peer", "name", "eth0",
             "netns", carrier)
        for ns, dev, addr in ((priv, "eth0", f"{PRIV_IP}/24"), (nat, "in0", f"{NAT_IN_IP}/24"),
                              (nat, "out0", f"{NAT_OUT_IP}/24"),
                              (carrier, "eth0", f"{CARRIER_IP}/24")):
            _run("ip", "-n", ns, "addr", "add", addr, "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "up")
        _run("ip", "-n", priv, "route", "add", "default", "via", NAT_IN_IP)
        # A new namespace may inherit the host's sysctls (net.core.devconf_inherit_init_net):
        # say what the NAT box needs instead of trusting defaults.
        for key, value in (("net.ipv4.ip_forward", 1), ("net.ipv4.conf.all.rp_filter", 0),
                           ("net.ipv4.conf.default.rp_filter", 0),
                           ("net.ipv4.conf.in0.rp_filter", 0),
                           ("net.ipv4.conf.out0.rp_filter", 0)):
            _run("ip", "netns", "exec", nat, "sysctl", "-q", "-w", f"{key}={value}")
        cp = subprocess.run(["ip", "netns", "exec", nat, "nft", "-f", "-"],
                            input=nft_ruleset(self.rtp_ports), capture_output=True, text=True,
                            timeout=20)
        if cp.returncode != 0:
            raise RuntimeError(f"nft -f in {nat}: {cp.stderr.strip()}")
        if self.udp_timeout is not None:  # the conntrack sysctls exist once nft loaded it
            for key in ("nf_conntrack_udp_timeout", "nf_conntrack_udp_timeout_stream"):
                _run("ip", "netns", "exec", nat, "sysctl", "-q", "-w",
                     f"net.netfilter.{key}={int(self.udp_timeout)}")
        # The interfaces are up when their addresses are usable (no DAD for IPv4, but the
        # carrier of a veth comes up asynchronously).
        deadline = time.monotonic() + 5
        while True:
            states = [_run("ip", "-n", ns, "-o", "link", "show", dev).stdout
                      for ns, dev in ((priv, "eth0"), (nat, "in0"), (nat, "out0"),
                                      (carrier, "eth0"))]
            if all("LOWER_UP" in s for s in states):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"veths not up after 5 s: {states}")
            time.sleep(0.02)

    def close(self):
        """Remove the nftables table and the namespaces this topology created (idempotent)."""
        if self.nat in self.created:
            _run("ip", "netns", "exec", self.nat, "nft", "delete", "table", "ip", NFT_TABLE,
                 check=False)
        for ns in reversed(self.created):
            _run("ip", "netns", "del", ns, check=False)
        self.created = []

    # -- inside the namespaces ----------------------------------------------------------------
    def exec_argv(self, ns):
        """The prefix that runs a command in namespace `ns`."""
        return ["ip", "netns", "exec", ns]

    def popen(self, ns, argv, **kw):
        """`ip netns exec NS ARGV...` as a Popen (keyword arguments passed on)."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen(self.exec_argv(ns) + [str(a) for a in argv], **kw)

    def run(self, ns, *argv, timeout=20, check=True):
        """`ip netns exec NS ARGV...`, waited for (bounded); the CompletedProcess."""
        return _run(*self.exec_argv(ns), *argv, timeout=timeout, check=check)

    @contextlib.contextmanager
    def entered(self, ns):
        """Move the calling thread into namespace `ns` for the block, then back where it was.
        Sockets created and processes started by this thread in the block belong to `ns` (and
        stay there afterwards)."""
        back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                _setns(target)
            finally:
                os.close(target)
            try:
                yield
            finally:
                _setns(back)
        finally:
            os.close(back)

    def conntrack(self):
        """The NAT box's connection tracking table (/proc), for diagnostics; '' if absent."""
        cp = self.run(self.nat, "cat", "/proc/net/nf_conntrack", check=False)
        return cp.stdout if cp.returncode == 0 else ""

    def udp_probe(self, src_ns, src_ip, dst_ns, listen_ip, to_ip, port, timeout=1.0):
        """Send one UDP datagram from (src_ip, port) in `src_ns` to (to_ip, port), received by a
        socket bound on (listen_ip, port) in `dst_ns`, which answers to whatever source it saw.
        Returns {"sent": error or None, "arrived_from": (ip, port) or None, "reply": bool}:
        whether the datagram went out, from where it arrived (after NAT), and whether the answer
        found its way back. Bounded by `timeout` per direction."""
        with self.entered(dst_ns):
            rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with self.entered(src_ns):
            tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        result = {"sent": None, "arrived_from": None, "reply": False}
        try:
            rx.bind((listen_ip, port))
            tx.bind((src_ip, port))
            rx.settimeout(timeout)
            tx.settimeout(timeout)
            token = secrets.token_hex(8).encode()
            try:
                tx.sendto(token, (to_ip, port))
            except OSError as e:
                result["sent"] = f"{type(e).__name__}: {e.strerror}"
                return result
            try:
                data, peer = rx.recvfrom(100)
            except socket.timeout:
                return result
            if data == token:
                result["arrived_from"] = peer
                rx.sendto(b"re:" + token, peer)
                try:
                    result["reply"] = tx.recv(100) == b"re:" + token
                except socket.timeout:
                    pass
            return result
        finally:
            rx.close()
            tx.close()


def wait_for(pred, timeout, interval=0.02):
    """Poll `pred` until it is true or `timeout` seconds passed; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)

