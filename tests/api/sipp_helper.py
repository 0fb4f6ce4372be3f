"""Run SIPp scenarios (tests/sipp/*.xml) as the carrier side of sfvopi calls, and read back what
they saw.

SIPp writes every SIP message it sends or receives to a message log (-trace_msg -message_file)
and its <log> actions to a log file (-trace_logs -log_file); `Sipp.messages()` parses the former
into `SipMsg` objects so that a test can assert SIP details (Request-URI, headers, SDP).
Every run is bounded twice: by the scenarios' own recv timeouts and SIPp's global -timeout, and by
the subprocess timeout of `wait()`.
"""

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from datetime import datetime
from pathlib import Path

SIPP = shutil.which("sipp")
SCENARIOS = Path(__file__).resolve().parents[1] / "sipp"

_SEP = re.compile(r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\s*$", re.M)
_HEAD = re.compile(r"^\w+ message (received|sent) ")


def port_taken(port, udp=True):
    """Whether something holds `port` on 127.0.0.1, probed by binding it (a listener sees
    nothing)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        return False
    except OSError:
        return True
    finally:
        s.close()


# Every port handed out to a test by this process, whatever the helper that picked it. A port is
# often picked long before it is bound (a server's trunk port is bound only when a test's SIPp
# starts; an --rtp-ports range only call by call), so probing by binding is not enough: without this
# record a later pick (a SIPp media port, another range) could take it in between.
_HANDED_OUT = set()


def claim(ports):
    """Record `ports` as handed out; False (and nothing recorded) when one of them already was."""
    ports = list(ports)
    if any(p in _HANDED_OUT for p in ports):
        return False
    _HANDED_OUT.update(ports)
    return True


def free_udp_port(even=False):
    """A UDP port free on 127.0.0.1 right now and never handed out before (SIPp wants an even one
    for media: it also binds port+2 for video, and each may take the next port for RTCP)."""
    for _ in range(500):
        port = random.randrange(32000, 60000, 2 if even else 1)
        if any(port_taken(p) for p in ((port, port + 2) if even else (port,))):
            continue
        if claim(range(port, port + 4) if even else (port,)):
            return port
    raise RuntimeError("no free UDP port")


def free_rtp_range(size, step=3):
    """A range of `size` UDP ports for --rtp-ports, free on 127.0.0.1 (every `step`th probed) and
    never handed out before."""
    for _ in range(100):
        low = random.randrange(32000, 65000 - size, 2)
        ports = range(low, low + size)
        if any(p in _HANDED_OUT for p in ports) or any(port_taken(p) for p in ports[::step]):
            continue
        if claim(ports):
            return low, low + size - 1
    raise RuntimeError("no free RTP range")


RINGING_BLOCK = """<send>
<![CDATA[

SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]>
</send>

<pause milliseconds="200"/>
"""


def render(template, workdir, name, **values):
    """Write a copy of scenario `template` (a name in tests/sipp or a path) with @KEY@ replaced
    by values[KEY] (see out_reject.xml); return its path."""
    src = Path(template)
    if not src.suffix:
        src = SCENARIOS / (template + ".xml")
    text = src.read_text()
    for k, v in values.items():
        text = text.replace(f"@{k}@", v)
    left = re.findall(r"@[A-Z_]+@", text)
    assert not left, f"unreplaced placeholders {left} in {src}"
    dst = Path(workdir) / f"{name}.xml"
    dst.write_text(text)
    return dst


def add_header(scenario, workdir, name, after_line, header):
    """Copy scenario with `header` added after the first line that starts with `after_line`
    (e.g. a Reason header in a BYE); return its path."""
    src = Path(scenario)
    if not src.suffix:
        src = SCENARIOS / (scenario + ".xml")
    lines = src.read_text().split("\n")
    i = next(i for i, line in enumerate(lines) if line.startswith(after_line))
    j = next(j for j in range(i, len(lines)) if lines[j].startswith("CSeq:"))
    lines.insert(j + 1, header)
    dst = Path(workdir) / f"{name}.xml"
    dst.write_text("\n".join(lines))
    return dst


class SipMsg:
    """One SIP message from a SIPp message log."""

    def __init__(self, direction, text, when=None):
        self.direction = direction  # "in" (SIPp received it) or "out" (SIPp sent it)
        self.time = when  # seconds (epoch, SIPp's local clock), from the log's separator line
        text = text.replace("\r\n", "\n").strip("\n")
        head, _, self.body = text.partition("\n\n")
        lines = head.split("\n")
        self.first_line = lines[0].strip()
        self.headers = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and self.headers:
                k, v = self.headers[-1]
                self.headers[-1] = (k, v + " " + line.strip())
            elif ":" in line:
                k, v = line.split(":", 1)
                self.headers.append((k.strip().lower(), v.strip()))
        parts = self.first_line.split(" ", 2)
        if parts[0].startswith("SIP/"):
            self.status, self.method, self.uri = int(parts[1]), None, None
        else:
            self.status, self.method, self.uri = None, parts[0], parts[1] if len(parts) > 1 else ""

    _COMPACT = {"f": "from", "t": "to", "i": "call-id", "v": "via", "m": "contact",
                "c": "content-type", "l": "content-length"}

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k == name or self._COMPACT.get(k) == name:
                return v
        return default

    @property
    def cseq_method(self):
        v = self.header("cseq", "")
        return v.split()[-1] if v else None

    @property
    def uri_user(self):
        """The user part of the Request-URI (requests only)."""
        m = re.match(r"^(?:sips?|tel):([^@;>]+)@", self.uri or "")
        return m.group(1) if m else None

    def sdp_codecs(self):
        """rtpmap encoding names of the SDP body, in m= order (e.g. ['PCMA', 'telephone-event'])."""
        maps = dict(re.findall(r"^a=rtpmap:(\d+) ([^/\s]+)", self.body, re.M))
        m = re.search(r"^m=audio \d+ \S+ ([\d ]+)$", self.body, re.M)
        static = {"0": "PCMU", "8": "PCMA"}
        return [maps.get(pt, static.get(pt, pt)) for pt in (m.group(1).split() if m else [])]

    def sdp_media(self):
        """(connection address, audio port) of the SDP body, or None."""
        c = re.search(r"^c=IN IP4 (\S+)", self.body, re.M)
        m = re.search(r"^m=audio (\d+) ", self.body, re.M)
        return (c.group(1) if c else None, int(m.group(1)) if m else None)

    def __repr__(self):
        return f"<SipMsg {self.direction} {self.first_line!r}>"


class Sipp:
    """One SIPp process running one scenario of tests/sipp (or a path) for one call (-m 1).

    remote: "host:port" for a UAC scenario (SIPp sends the INVITE); None for a UAS one, which
    listens on `port`. keys: generic keywords (-key NAME VALUE) such as caller or cause.
    local_ip: the loopback address SIPp binds and sends from (127.0.0.2, 127.0.0.3... are all
    loopback, which lets allowlist tests use several sources).
    """

    def __init__(self, scenario, workdir, *, remote=None, service=None, port=None, keys=None,
                 duration_ms=None, global_timeout_s=45, extra=(), local_ip="127.0.0.1"):
        if SIPP is None:
            raise RuntimeError("sipp is not installed")
        path = Path(scenario)
        if not path.suffix:
            path = SCENARIOS / (scenario + ".xml")
        self.scenario = path
        self.workdir = Path(workdir)
        self.port = port or free_udp_port()
        self.media_port = free_udp_port(even=True)
        tag = f"{path.stem}-{self.port}-{time.monotonic_ns()}"
        self.msg_file = self.workdir / f"{tag}.messages.log"
        self.log_file = self.workdir / f"{tag}.logs.log"
        self.err_file = self.workdir / f"{tag}.errors.log"
        self.out_file = self.workdir / f"{tag}.screen.log"
        self.local_ip = local_ip
        self.argv = [SIPP, "-sf", str(path), "-i", local_ip, "-p", str(self.port),
                     "-mp", str(self.media_port), "-m", "1", "-nostdin",
                     "-timeout", f"{global_timeout_s}s", "-timeout_error",
                     "-trace_msg", "-message_file", str(self.msg_file),
                     "-trace_logs", "-log_file", str(self.log_file),
                     "-trace_err", "-error_file", str(self.err_file)]
        if service is not None:
            self.argv += ["-s", str(service)]
        for k, v in (keys or {}).items():
            self.argv += ["-key", k, str(v)]
        if duration_ms is not None:
            self.argv += ["-d", str(int(duration_ms))]
        self.argv += list(extra)
        if remote is not None:
            self.argv.append(remote)
        self.proc = None
        self.started = None

    def start(self):
        self._out = open(self.out_file, "wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=subprocess.STDOUT, cwd=self.workdir,
                                     start_new_session=True)
        return self

    def wait_listening(self, timeout=5):
        """For a UAS: wait until SIPp has bound its SIP port."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"sipp exited early (rc={self.proc.returncode}):\n"
                                     + self.report())
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.bind((self.local_ip, self.port))
            except OSError:
                return self
            finally:
                s.close()
            time.sleep(0.02)
        raise AssertionError("sipp did not bind its port:\n" + self.report())

    def wait(self, timeout=40):
        """Wait for SIPp to end; return its exit code (0: the call followed the scenario)."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"sipp still running after {timeout} s:\n" + self.report())
        self._out.close()
        return rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        if getattr(self, "_out", None) and not self._out.closed:
            self._out.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.kill()

    # -- what it saw -------------------------------------------------------------------------
    def messages(self):
        try:
            text = self.msg_file.read_text(errors="replace")
        except FileNotFoundError:
            return []
        out = []
        pieces = _SEP.split(text)  # [before, stamp1, chunk1, stamp2, chunk2, ...]
        for stamp, chunk in zip(pieces[1::2], pieces[2::2]):
            chunk = chunk.strip("\r\n")
            first, _, rest = chunk.partition("\n")
            m = _HEAD.match(first)
            if m:
                when = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()
                out.append(SipMsg("in" if m.group(1) == "received" else "out", rest, when))
        return out

    def _pick(self, direction, method, status, cseq):
        return [m for m in self.messages() if m.direction == direction
                and (method is None or m.method == method)
                and (status is None or m.status == status)
                and (cseq is None or m.cseq_method == cseq)]

    def received(self, method=None, status=None, cseq=None):
        """Messages SIPp received: requests by method, responses by status (and CSeq method)."""
        return self._pick("in", method, status, cseq)

    def sent(self, method=None, status=None, cseq=None):
        return self._pick("out", method, status, cseq)

    def logs(self):
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def report(self):
        parts = [f"argv: {' '.join(self.argv)}"]
        for f in (self.out_file, self.err_file, self.msg_file):
            try:
                parts.append(f"--- {f.name}\n{f.read_text(errors='replace')[-6000:]}")
            except FileNotFoundError:
                pass
        return "\n".join(parts)
