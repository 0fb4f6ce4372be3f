"""A scriptable DNS server on UDP 127.0.0.1, the far end of sfvopi's --dns-server, so that a test
decides what the SIP trunk resolves to (RFC 3263: NAPTR, then SRV `_sip._udp.HOST`, then A/AAAA)
and sees every question sfvopi asked.

    with DnsServer() as dns:
        dns.add_naptr("trunk.test", 10, 10, "s", "SIP+D2U", "", "_sip._udp.trunk.test")
        dns.add_srv("_sip._udp.trunk.test", 10, 10, sipp.port, "a.trunk.test")
        dns.add_a("a.trunk.test", "127.0.0.1")
        srv = Server(..., argv=[..., "--dns-server", dns.addr])
        dns.wait_query("_sip._udp.trunk.test", "SRV", timeout=5)

It answers as an authoritative server would (AA=1; RA=1 as well, since clients ask with RD=1
and dig warns without it): records of the asked type; NOERROR with an empty answer and the SOA
in authority when the name exists without them (NODATA, including empty non-terminals such as
`_udp.trunk.test`); NXDOMAIN (also with the SOA) when nothing is at or below the name. Like
real servers, an SRV answer carries the A/AAAA records of its targets in the additional section
(libre's SIP client takes addresses from there and then asks no A/AAAA query of its own; turn
`srv_additional` off to see those queries); a NAPTR answer can carry the SRV records of its
replacement and their addresses too (`naptr_additional`, off by default, so that the SRV query
is seen). Names are case-insensitive and stored without the trailing dot.

libre 1.1.0's DNS client, the consumer, shaped some choices:
- it ignores the TC bit and reads up to 8192 bytes per datagram, so answers are never truncated
  (keep tables small: above 512 bytes a stricter resolver would want TCP, which this server
  does not offer);
- it caches nothing, so every lookup is a query seen here and TTLs only matter to what sfvopi
  does with them;
- an unanswered query (`silence`) is sent 20 times and fails with ETIMEDOUT after about 71.5 s
  (0.5 + 1 + 2 + 17 * 4 s): a silenced NAPTR holds a SIP request that long before libre goes on
  to SRV; a SERVFAIL (`set_rcode`) comes back at once, as an empty answer, to a client with one
  server;
- it reads neither AA nor the authority section: NXDOMAIN, NODATA and SERVFAIL all mean "no
  records" to its SIP client, which then goes on to the next step.
Every query is recorded (thread-safe) with its arrival time, answered or not.
"""

import collections
import ipaddress
import socket
import struct
import threading
import time

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28,
         "SRV": 33, "NAPTR": 35, "OPT": 41, "ANY": 255}
TYPE_NAMES = {v: k for k, v in TYPES.items()}
RCODES = {"NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4, "REFUSED": 5}
CLASS_IN, CLASS_ANY = 1, 255

Query = collections.namedtuple("Query", "time name type")
Query.__doc__ = """One question received: time.monotonic() on arrival, the name (lower case, no
trailing dot) and the type's name ("SRV", or "TYPE65" for one without a name here)."""

_RR = collections.namedtuple("_RR", "type ttl data")


def type_code(t):
    """A record type as its number, from a name ("SRV", any case) or a number."""
    if isinstance(t, int):
        return t
    try:
        return TYPES[t.upper()]
    except KeyError:
        if t.upper().startswith("TYPE") and t[4:].isdigit():
            return int(t[4:])
        raise ValueError(f"unknown DNS type {t!r}") from None


def type_name(code):
    return TYPE_NAMES.get(code, f"TYPE{code}")


def norm(name):
    """The stored form of a name: lower case, without the trailing dot ("" is the root)."""
    name = name.strip().rstrip(".").lower()
    labels = name.split(".") if name else []
    if any(not 0 < len(lab.encode()) < 64 for lab in labels) or len(name.encode()) > 253:
        raise ValueError(f"bad DNS name {name!r}")
    return name


def _u16(v, what):
    """A 16-bit field, checked when the record is added (not later, in the server's thread)."""
    if not isinstance(v, int) or not 0 <= v <= 0xFFFF:
        raise ValueError(f"{what} must be an integer 0..65535, not {v!r}")
    return v


# ---------------------------------------------------------------------------------------------
# Wire format (RFC 1035 section 4).

class _Writer:
    """A response being built, with name compression for owner names and the names inside
    CNAME/NS/SOA data (RFC 3597 section 4 allows no more: SRV targets, RFC 2782, and NAPTR
    replacements, RFC 3403, are written in full)."""

    def __init__(self):
        self.buf = bytearray()
        self.offsets = {}  # lower-case name -> offset of its first full occurrence

    def name(self, name, compress=True):
        labels = name.split(".") if name else []
        for i in range(len(labels)):
            suffix = ".".join(labels[i:]).lower()
            if compress and suffix in self.offsets:
                self.buf += struct.pack("!H", 0xC000 | self.offsets[suffix])
                return
            if len(self.buf) < 0x3FFF and suffix not in self.offsets:
                self.offsets[suffix] = len(self.buf)
            lab = labels[i].encode()
            self.buf += bytes([len(lab)]) + lab
        self.buf.append(0)

    def string(self, s):
        b = s.encode()
        if len(b) > 255:
            raise ValueError(f"character-string longer than 255 bytes: {s!r}")
        self.buf += bytes([len(b)]) + b

    def rr(self, owner, rr):
        self.name(owner)
        self.buf += struct.pack("!HHIH", rr.type, CLASS_IN, rr.ttl, 0)
        start = len(self.buf)
        t, d = rr.type, rr.data
        if t == TYPES["A"]:
            self.buf += ipaddress.IPv4Address(d[0]).packed
        elif t == TYPES["AAAA"]:
            self.buf += ipaddress.IPv6Address(d[0]).packed
        elif t == TYPES["CNAME"]:
            self.name(d[0])
        elif t == TYPES["SRV"]:
            self.buf += struct.pack("!HHH", d[0], d[1], d[2])
            self.name(d[3], compress=False)
        elif t == TYPES["NAPTR"]:
            self.buf += struct.pack("!HH", d[0], d[1])
            for s in d[2:5]:
                self.string(s)
            self.name(d[5], compress=False)
        elif t == TYPES["SOA"]:
            self.name(d[0])
            self.name(d[1])
            self.buf += struct.pack("!IIIII", *d[2:])
        else:
            raise ValueError(f"cannot encode type {t}")
        struct.pack_into("!H", self.buf, start - 2, len(self.buf) - start)


def _read_name(msg, pos):
    """(name as sent, position after it); follows compression pointers, at most 64 of them."""
    labels, end, hops = [], None, 0
    while True:
        if pos >= len(msg):
            raise ValueError("name runs past the message")
        n = msg[pos]
        if n & 0xC0 == 0xC0:
            if hops > 64 or pos + 1 >= len(msg):
                raise ValueError("bad compression pointer")
            hops += 1
            if end is None:
                end = pos + 2
            pos = ((n & 0x3F) << 8) | msg[pos + 1]
        elif n & 0xC0:
            raise ValueError("unsupported label type")
        elif n == 0:
            return ".".join(labels), (pos + 1 if end is None else end)
        else:
            labels.append(msg[pos + 1:pos + 1 + n].decode("ascii", "replace"))
            pos += 1 + n


# ---------------------------------------------------------------------------------------------

class DnsServer:
    """An authoritative DNS server for whatever names the test adds, on UDP 127.0.0.1:`port`
    (0: any free port; the real one is `.port`, and `.addr` is "127.0.0.1:PORT"), answering from
    a daemon thread until `stop()`."""

    def __init__(self, port=0, *, srv_additional=True, naptr_additional=False, negative_ttl=5):
        # Both switches may be flipped while running.
        self.srv_additional = srv_additional
        self.naptr_additional = naptr_additional
        self.negative_ttl = negative_ttl  # SOA minimum: how long a resolver may cache "no"
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.05)  # the thread polls `_stop` this often
        self.port = self.sock.getsockname()[1]
        self.addr = f"127.0.0.1:{self.port}"
        self._cv = threading.Condition()
        self._rrs = {}  # name -> [_RR], in insertion order
        self._silenced = set()  # (name, type code or None)
        self._rcodes = {}  # name -> forced rcode
        self._queries = []
        self._errors = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=f"dns-{self.port}", daemon=True)
        self._thread.start()

    # -- the table ----------------------------------------------------------------------------
    def _add(self, name, rr):
        if not isinstance(rr.ttl, int) or not 0 <= rr.ttl < 1 << 31:
            raise ValueError(f"bad TTL {rr.ttl!r}")
        with self._cv:
            self._rrs.setdefault(norm(name), []).append(rr)
        return self

    def add_a(self, name, ip, ttl=60):
        return self._add(name, _RR(TYPES["A"], ttl, (str(ipaddress.IPv4Address(ip)),)))

    def add_aaaa(self, name, ip6, ttl=60):
        return self._add(name, _RR(TYPES["AAAA"], ttl, (str(ipaddress.IPv6Address(ip6)),)))

    def add_srv(self, name, priority, weight, port, target, ttl=60):
        """`name` like "_sip._udp.trunk.test"; `target` "." means "no service here"."""
        return self._add(name, _RR(TYPES["SRV"], ttl, (_u16(priority, "priority"),
                                                        _u16(weight, "weight"),
                                                        _u16(port, "port"), norm(target))))

    def add_naptr(self, name, order, pref, flags, service, regexp, replacement, ttl=60):
        """E.g. ("trunk.test", 10, 10, "s", "SIP+D2U", "", "_sip._udp.trunk.test")."""
        for s in (flags, service, regexp):
            if len(s.encode()) > 255:
                raise ValueError(f"NAPTR string longer than 255 bytes: {s!r}")
        return self._add(name, _RR(TYPES["NAPTR"], ttl, (_u16(order, "order"),
                                                          _u16(pref, "preference"), flags,
                                                          service, regexp,
                                                          norm(replacement or "."))))

    def add_cname(self, name, target, ttl=60):
        """An alias; queries for `name` of another type get the CNAME and what is at `target`
        (followed here, up to 8 links). Do not mix it with other records at `name`."""
        return self._add(name, _RR(TYPES["CNAME"], ttl, (norm(target),)))

    def remove(self, name, type=None):
        """Drop the records at `name` (of `type` only, when given: a name or a number)."""
        name = norm(name)
        with self._cv:
            if type is None:
                self._rrs.pop(name, None)
            else:
                code = type_code(type)
                left = [rr for rr in self._rrs.get(name, []) if rr.type != code]
                if left:
                    self._rrs[name] = left
                else:
                    self._rrs.pop(name, None)
        return self

    def clear(self):
        """Forget every record, silence and forced rcode (not the query log)."""
        with self._cv:
            self._rrs.clear()
            self._silenced.clear()
            self._rcodes.clear()
        return self

    def records(self):
        """A copy of the table: {name: [(type name, ttl, data tuple)]}, for failure messages."""
        with self._cv:
            return {n: [(type_name(rr.type), rr.ttl, rr.data) for rr in rrs]
                    for n, rrs in self._rrs.items()}

    # -- misbehaviour -------------------------------------------------------------------------
    def silence(self, name, type=None):
        """Answer nothing to queries for `name` (of `type` only, when given); they are still
        recorded. libre gives up on a silenced query after about 71.5 s."""
        with self._cv:
            self._silenced.add((norm(name), None if type is None else type_code(type)))
        return self

    def unsilence(self, name=None):
        """Answer `name` again (every name, when None)."""
        with self._cv:
            if name is None:
                self._silenced.clear()
            else:
                self._silenced = {s for s in self._silenced if s[0] != norm(name)}
        return self

    def set_rcode(self, name, rcode):
        """Answer queries for `name` with this rcode ("SERVFAIL", "REFUSED", a number) and no
        records; rcode None goes back to normal answers."""
        with self._cv:
            if rcode is None:
                self._rcodes.pop(norm(name), None)
            else:
                self._rcodes[norm(name)] = RCODES[rcode.upper()] if isinstance(rcode, str) \
                    else int(rcode)
        return self

    # -- what was asked -----------------------------------------------------------------------
    def queries(self, name=None, qtype=None, since=None):
        """Every query received, oldest first, as `Query` (time.monotonic(), name, type name)
        tuples; filtered on name, type and arrival time (>= since) when given."""
        name = None if name is None else norm(name)
        qtype = None if qtype is None else type_name(type_code(qtype))
        with self._cv:
            return [q for q in self._queries
                    if (name is None or q.name == name) and (qtype is None or q.type == qtype)
                    and (since is None or q.time >= since)]

    def wait_query(self, qname, qtype=None, timeout=5.0, *, n=1, since=None):
        """Wait until `n` queries for `qname` (of `qtype`, if given; since `since`, if given)
        have arrived; return the n-th. Raises AssertionError, listing every query seen, after
        `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                got = self.queries(qname, qtype, since)
                if len(got) >= n:
                    return got[n - 1]
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(round(q.time - self._t0, 3), q.name, q.type) for q in self._queries]
                    raise AssertionError(
                        f"DNS: expected {n} {qtype or 'any-type'} query(ies) for {qname} within "
                        f"{timeout} s, got {len(got)}; all queries (s since the first): {seen}")
                self._cv.wait(left)

    @property
    def _t0(self):
        return self._queries[0].time if self._queries else 0.0

    @property
    def errors(self):
        """Packets this server could not handle (malformed, or a record it cannot encode):
        a test that expects clean traffic asserts this is empty."""
        with self._cv:
            return list(self._errors)

    # -- serving ------------------------------------------------------------------------------
    def _run(self):
        while not self._stop:
            try:
                msg, src = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                reply = self._handle(msg)
            except Exception as e:  # a bad packet or record must not end the server
                with self._cv:
                    self._errors.append(f"{src}: {type(e).__name__}: {e} (packet {msg[:64]!r})")
                continue
            if reply is not None:
                try:
                    self.sock.sendto(reply, src)
                except OSError:
                    pass

    def _handle(self, msg):
        """The response bytes for one datagram, or None to send nothing."""
        if len(msg) < 12:
            raise ValueError("shorter than a DNS header")
        qid, flags, qdcount = struct.unpack("!HHH", msg[:6])
        if flags & 0x8000:
            return None  # a response: never answer those
        opcode = (flags >> 11) & 0xF
        rd = flags & 0x0100

        def header(rcode, an=0, ns=0, ar=0, qd=1):
            return struct.pack("!HHHHHH", qid, 0x8000 | (opcode << 11) | 0x0400 | rd | 0x0080
                               | rcode, qd, an, ns, ar)

        if qdcount != 1:
            return header(RCODES["FORMERR"], qd=0)
        qname, pos = _read_name(msg, 12)
        if pos + 4 > len(msg):
            raise ValueError("question runs past the message")
        qtype, qclass = struct.unpack("!HH", msg[pos:pos + 4])
        question = msg[12:pos + 4] if b"\xc0" not in msg[12:pos] else None
        name = norm(qname) if qname else ""

        with self._cv:
            self._queries.append(Query(time.monotonic(), name, type_name(qtype)))
            self._cv.notify_all()
            if (name, None) in self._silenced or (name, qtype) in self._silenced:
                return None
            forced = self._rcodes.get(name)
            answer, authority, additional, rcode = self._lookup(name, qtype)
        if opcode != 0:
            rcode, answer, authority, additional = RCODES["NOTIMP"], [], [], []
        elif qclass not in (CLASS_IN, CLASS_ANY):
            rcode, answer, authority, additional = RCODES["REFUSED"], [], [], []
        elif forced is not None:
            rcode, answer, authority, additional = forced, [], [], []

        w = _Writer()
        w.buf += header(rcode, len(answer), len(authority), len(additional))
        if question is not None:
            w.buf += question  # the question exactly as asked (case included)
        else:
            w.name(qname)
            w.buf += struct.pack("!HH", qtype, qclass)
        # Register the question's name for compression (it was copied, not written).
        if question is not None and qname:
            w.offsets.setdefault(name, 12)
            labels = qname.split(".")
            off = 12
            for i in range(1, len(labels)):
                off += 1 + len(labels[i - 1].encode())
                w.offsets.setdefault(".".join(labels[i:]).lower(), off)
        for owner, rr in answer + authority + additional:
            w.rr(owner, rr)
        if len(w.buf) > 512:
            # Sent whole all the same (libre reads it); flagged because a resolver that honours
            # RFC 1035's UDP limit would need TC and TCP, which this server does not do.
            with self._cv:
                self._errors.append(f"answer for {name} {type_name(qtype)} is {len(w.buf)} "
                                    "bytes, over the 512 of plain DNS over UDP")
        return bytes(w.buf)

    def _lookup(self, name, qtype):
        """(answer, authority, additional, rcode) for one question, each section a list of
        (owner, _RR). Called with the lock held."""
        answer, chain, seen = [], name, set()
        while True:
            rrs = self._rrs.get(chain, [])
            cname = [rr for rr in rrs if rr.type == TYPES["CNAME"]]
            if cname and qtype not in (TYPES["CNAME"], TYPES["ANY"]) and chain not in seen \
                    and len(seen) < 8:
                seen.add(chain)
                answer.append((chain, cname[0]))
                chain = cname[0].data[0]
                continue
            break
        answer += [(chain, rr) for rr in rrs if qtype == TYPES["ANY"] or rr.type == qtype]
        additional = []
        if any(rr.type == TYPES["SRV"] for _, rr in answer) and self.srv_additional:
            additional += self._addresses([rr.data[3] for _, rr in answer
                                           if rr.type == TYPES["SRV"]])
        if any(rr.type == TYPES["NAPTR"] for _, rr in answer) and self.naptr_additional:
            for _, rr in answer:
                if rr.type != TYPES["NAPTR"] or not rr.data[5]:
                    continue
                flag = rr.data[2].lower()
                if flag == "s":
                    srvs = [rr2 for rr2 in self._rrs.get(rr.data[5], [])
                            if rr2.type == TYPES["SRV"]]
                    additional += [(rr.data[5], s) for s in srvs]
                    additional += self._addresses([s.data[3] for s in srvs])
                elif flag == "a":
                    additional += self._addresses([rr.data[5]])
        if answer:
            return answer, [], additional, RCODES["NOERROR"]
        exists = chain in self._rrs or any(n.endswith("." + chain) or not chain
                                           for n in self._rrs)
        return [], [self._soa(chain)], [], RCODES["NOERROR"] if exists else RCODES["NXDOMAIN"]

    def _addresses(self, names):
        out, done = [], set()
        for n in names:
            if n in done or not n:
                continue
            done.add(n)
            out += [(n, rr) for rr in self._rrs.get(n, [])
                    if rr.type in (TYPES["A"], TYPES["AAAA"])]
        return out

    def _soa(self, name):
        """The SOA of the zone this server pretends to hold `name` in: its last label (so
        "test." for "trunk.test"), or the root."""
        zone = name.rsplit(".", 1)[-1] if name else ""
        return zone, _RR(TYPES["SOA"], self.negative_ttl,
                         (f"ns.{zone}".rstrip("."), f"hostmaster.{zone}".rstrip("."),
                          1, 3600, 600, 86400, self.negative_ttl))

    # -- life ---------------------------------------------------------------------------------
    def stop(self):
        """Stop answering: close the socket and join the thread (bounded). Idempotent."""
        self._stop = True
        self._thread.join(2)
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
