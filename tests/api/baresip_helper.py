"""baresip 1.0 as an independent SIP peer (the carrier side of TLS and SRTP calls), test
certificates made with the openssl CLI, tone WAVs and their Goertzel analysis, and a loopback
packet capture (tcpdump) with the checks that nothing leaves in clear.

    ca = make_ca(tmp)                                   # Pki: CA, certificates for names/IPs
    srv = ca.issue("server", dns=["localhost"], ips=["127.0.0.1"])
    bob = Baresip(tmp, "bob", cert=srv.combined, cafile=ca.cert, answer=True,
                  tone=write_tone(tmp / "bob.wav", 1000, 6))
    with Capture(tmp / "call.pcap", ports=bob.ports()) as cap, bob:
        bob.wait_ready()
        ...
    assert not find_cleartext_sip(cap.packets())

baresip's own log lines (stdout; found on Debian 12's baresip-core 1.0.0 with libre 1.1.0;
`LOG` holds their patterns, matched line by line once ANSI colours are stripped):

    ready            "baresip is ready."
    incoming call    "call: answering call on line 1 from sip:alice@127.0.0.1:P with 200"
                     (answermode=auto); answermode=manual: "sip:bob@127.0.0.1:P: Incoming call
                     from:  sip:alice@127.0.0.1:P - (press 'a' to accept)"
    SRTP             "srtp: audio: SRTP is Enabled (cryptosuite=AES_CM_128_HMAC_SHA1_80)", on
                     each side, just before "Call established"
    established      "alice@127.0.0.1: Call established: sip:bob@127.0.0.1:P;transport=tls"
    media            "stream: incoming rtp for 'audio' established, receiving from 127.0.0.1:R"
    remote hang-up   "sip:alice@127.0.0.1:P: session closed: Connection reset by peer": libre
                     reports a BYE (or CANCEL) received as ECONNRESET; then "...: Call with
                     sip:alice@... terminated (duration: N secs)". The side that hangs up (-t,
                     SIGTERM) logs "ua: stop all (forced=0)" and only the "terminated" line.
    failures         "sip:bob@127.0.0.1:P;transport=tls: session closed: REASON", no
                     "Call established": REASON "Connection refused" (nothing on the TLS port),
                     "Connection reset by peer" (a TLS client meeting a plain TCP listener),
                     "488 Not Acceptable Here" (srtp-mand against plain RTP, either way; the
                     callee logs "call: no common audio codecs - rejected")
    audio source end "menu: audio error (0,end of file)": the menu hangs up when the tone WAV
                     ends, so a tone must outlast the call ("aufile: end of file" is also
                     printed once at the start, when the whole file has been loaded)

baresip 1.0 verifies no TLS server certificate: it completes calls to peers whose certificate
names another host, has expired, or comes from an unknown CA (sip_cafile only adds a CA).

Everything waits by polling the log or a file against a deadline; processes are stopped with
SIGTERM, then SIGKILL after a bound.
"""

import math
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
import warnings
import wave
from pathlib import Path

from sipp_helper import claim

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # deprecated in 3.11, still present: the reference G.711 encoder

BARESIP = shutil.which("baresip")
TCPDUMP = shutil.which("tcpdump")
OPENSSL = shutil.which("openssl")
MODULE_PATHS = ["/usr/lib/baresip/modules", "/usr/lib/x86_64-linux-gnu/baresip/modules",
                "/usr/local/lib/baresip/modules"]

RATE = 8000
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TRACE_HEAD = re.compile(r"^#\n(?P<proto>UDP|TCP|TLS) (?P<src>\S+) -> (?P<dst>\S+)\n", re.M)

# Patterns of baresip 1.0's log lines (one line each, after ANSI codes are stripped).
LOG = {
    "ready": r"^baresip is ready\.",
    "incoming": r"^call: answering call on line \d+ from (?P<peer>\S+) with (?P<code>\d+)"
                r"|: Incoming call from:\s+(?P<caller>\S+)",
    "srtp": r"^srtp: audio: SRTP is Enabled \(cryptosuite=(?P<suite>[A-Z0-9_]+)\)",
    "established": r"Call established: (?P<peer>\S+)",
    "rtp_in": r"^stream: incoming rtp for 'audio' established, receiving from (?P<addr>\S+)",
    "closed": r"^(?P<peer>\S+): session closed: (?P<reason>.*)$",
    "terminated": r": Call with (?P<peer>\S+) terminated \(duration: (?P<secs>\d+) secs\)",
    "ended": r"^\S+: session closed: .*$|: Call with \S+ terminated \(duration: \d+ secs\)",
    "rejected": r"^call: no common audio codecs - rejected",
    "source_end": r"^menu: audio error \((?P<code>\d+),(?P<what>.*)\)",
    "stopping": r"^ua: stop all",
}


# ---------------------------------------------------------------------------------------------
# Ports.

def _taken(port, kind):
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.bind(("127.0.0.1", port))
        return False
    except OSError:
        return True
    finally:
        s.close()


def ports_free(*ports):
    """Whether every port is free on 127.0.0.1 for both UDP and TCP (probed by binding)."""
    return not any(_taken(p, k) for p in ports for k in (socket.SOCK_DGRAM, socket.SOCK_STREAM))


def free_sip_port():
    """A port P such that P and P+1 are free for UDP and TCP: `sip_listen 127.0.0.1:P` binds
    UDP and TCP on P and TLS on P+1."""
    for _ in range(200):
        port = random.randrange(20000, 30000)
        if ports_free(port, port + 1) and claim((port, port + 1)):
            return port
    raise RuntimeError("no free SIP port pair")


def free_rtp_range(size=20):
    """(low, high): a range of UDP ports, free right now, for baresip's `rtp_ports` (so that a
    capture filter can name its media ports)."""
    for _ in range(100):
        low = random.randrange(40000, 60000 - size, 2)
        ports = range(low, low + size)
        if not any(_taken(p, socket.SOCK_DGRAM) for p in ports) and claim(ports):
            return low, low + size - 1
    raise RuntimeError("no free RTP range")


# ---------------------------------------------------------------------------------------------
# Certificates (openssl CLI).

class Cert:
    """A certificate and its key (PEM files); `combined` is both in one file, for baresip's
    sip_certificate."""

    def __init__(self, cert, key, combined):
        self.cert, self.key, self.combined = Path(cert), Path(key), Path(combined)

    def __repr__(self):
        return f"<Cert {self.cert}>"


def _openssl(*args, cwd=None):
    cp = subprocess.run([OPENSSL, *map(str, args)], capture_output=True, text=True, timeout=60,
                        cwd=cwd, stdin=subprocess.DEVNULL)
    if cp.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args))}: {cp.stderr}")
    return cp.stdout


KEYS = {"ec": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
        "rsa": ["-newkey", "rsa:2048"]}


class Pki:
    """A throwaway CA in `directory` (ca.pem, ca.key) that issues leaf certificates. key: "ec"
    (P-256, fast to make) or "rsa" (2048 bits) for the CA and every certificate it issues."""

    def __init__(self, directory, name="sfvopi test CA", key="ec"):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cert = self.dir / "ca.pem"
        self.key = self.dir / "ca.key"
        self.newkey = KEYS[key]
        _openssl("req", "-x509", *self.newkey, "-nodes", "-keyout", self.key,
                 "-out", self.cert, "-days", 2, "-subj", f"/CN={name}",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self._serial = 1000

    def issue(self, name, *, dns=(), ips=(), cn=None, expired=False, days=2):
        """A leaf certificate `name`.pem / `name`.key / `name`-combined.pem for DNS names `dns`
        and IP addresses `ips` (subjectAltName), CN `cn` (default: the first name). expired:
        valid from 2020-01-01 to 2020-01-02 (signed by the same CA, so only its dates are
        wrong)."""
        sans = [f"DNS:{d}" for d in dns] + [f"IP:{i}" for i in ips]
        cn = cn or (list(dns) + list(ips) + [name])[0]
        key, csr = self.dir / f"{name}.key", self.dir / f"{name}.csr"
        crt, combined = self.dir / f"{name}.pem", self.dir / f"{name}-combined.pem"
        _openssl("req", *self.newkey, "-nodes", "-keyout", key, "-out", csr,
                 "-subj", f"/CN={cn}")
        ext = self.dir / f"{name}.ext"
        lines = ["basicConstraints=CA:FALSE", "keyUsage=digitalSignature,keyEncipherment",
                 "extendedKeyUsage=serverAuth,clientAuth"]
        if sans:
            lines.append("subjectAltName=" + ",".join(sans))
        ext.write_text("\n".join(lines) + "\n")
        self._serial += 1
        if expired:
            self._sign_dated(csr, crt, ext, "20200101000000Z", "20200102000000Z")
        else:
            _openssl("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
                     "-set_serial", self._serial, "-days", days, "-extfile", ext, "-out", crt)
        combined.write_bytes(crt.read_bytes() + key.read_bytes())
        return Cert(crt, key, combined)

    def _sign_dated(self, csr, crt, ext, start, end):
        """Sign with explicit dates through `openssl ca` (x509 -req only knows -days)."""
        db = self.dir / f"ca-db-{self._serial}"
        db.mkdir()
        (db / "index.txt").write_text("")
        (db / "serial").write_text(f"{self._serial:04X}\n")
        conf = db / "ca.cnf"
        conf.write_text(f"""[ca]
default_ca = d
[d]
dir = {db}
database = {db}/index.txt
serial = {db}/serial
new_certs_dir = {db}
certificate = {self.cert}
private_key = {self.key}
default_md = sha256
policy = p
unique_subject = no
[p]
commonName = supplied
""")
        _openssl("ca", "-batch", "-config", conf, "-in", csr, "-out", crt, "-notext",
                 "-startdate", start, "-enddate", end, "-extfile", ext)


def make_ca(directory, name="sfvopi test CA", key="ec"):
    """A new CA under `directory` (see Pki.issue for its certificates)."""
    return Pki(directory, name, key)


def cert_info(path):
    """`openssl x509 -subject -ext subjectAltName -dates` of a certificate, as text."""
    return _openssl("x509", "-in", path, "-noout", "-subject", "-dates", "-ext",
                    "subjectAltName")


# ---------------------------------------------------------------------------------------------
# Audio: WAV files and tone detection.

def sine(freq, seconds, rate=RATE, amplitude=8000):
    """16-bit samples of a sine."""
    n = int(seconds * rate)
    return [int(amplitude * math.sin(2 * math.pi * freq * i / rate)) for i in range(n)]


def write_wav(path, samples, rate=RATE):
    """A 16-bit mono WAV of `samples`; returns its path."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(struct.pack(f"<{len(samples)}h", *samples))
    return Path(path)


def write_tone(path, freq, seconds, rate=RATE, amplitude=8000):
    """A 16-bit mono WAV with a sine of `freq` Hz lasting `seconds`; returns its path."""
    return write_wav(path, sine(freq, seconds, rate, amplitude), rate)


def read_wav(path):
    """(samples, rate) of a 16-bit WAV (the first channel if there are several)."""
    with wave.open(str(path), "rb") as w:
        ch, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
        raw = w.readframes(w.getnframes())
    if width != 2:
        raise ValueError(f"{path}: {8 * width}-bit samples, expected 16")
    n = len(raw) // 2
    samples = list(struct.unpack(f"<{n}h", raw[:2 * n]))
    return samples[::ch], rate


def voiced(samples, rate=RATE, frame_ms=20, threshold=200):
    """The part of `samples` from the first to the last 20 ms frame whose RMS exceeds
    `threshold` (leading and trailing silence cut off); [] if there is none."""
    size = rate * frame_ms // 1000
    loud = [i for i in range(0, len(samples) - size + 1, size)
            if math.sqrt(sum(x * x for x in samples[i:i + size]) / size) > threshold]
    return samples[loud[0]:loud[-1] + size] if loud else []


def goertzel(samples, freq, rate=RATE):
    """Power of `samples` at `freq` Hz (Goertzel, any frequency), normalised by length."""
    if not samples:
        return 0.0
    w = 2 * math.pi * freq / rate
    coeff = 2 * math.cos(w)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    return (s1 * s1 + s2 * s2 - coeff * s1 * s2) / len(samples) ** 2


def powers(samples, freqs, rate=RATE, block=1600):
    """{freq: mean Goertzel power over blocks of `block` samples} of `samples`."""
    blocks = [samples[i:i + block] for i in range(0, len(samples) - block + 1, block)]
    blocks = blocks or [samples]
    return {f: sum(goertzel(b, f, rate) for b in blocks) / len(blocks) for f in freqs}


OTHERS = (300, 440, 700, 1000, 1400, 2000, 2600, 3100)


def dominant(samples, candidates, rate=RATE):
    """The candidate frequency with the most power in the voiced part of `samples`."""
    p = powers(voiced(samples, rate), candidates, rate)
    return max(p, key=p.get)


def tone_ratio(samples, freq, others=OTHERS, rate=RATE):
    """Power at `freq` over the strongest of `others` (freq itself excluded), in the voiced
    part of `samples`; 0 when nothing is voiced. A clean tone through G.711 gives >> 100."""
    part = voiced(samples, rate)
    if not part:
        return 0.0
    others = [f for f in others if abs(f - freq) > 50]
    p = powers(part, [freq, *others], rate)
    return p[freq] / max(max(p[f] for f in others), 1e-9)


def wav_tone_ratio(path, freq, others=OTHERS):
    """tone_ratio of a WAV file (e.g. baresip's dump-...-dec.wav)."""
    samples, rate = read_wav(path)
    return tone_ratio(samples, freq, others, rate)


def g711(samples, law="alaw"):
    """`samples` encoded as G.711 (law "alaw" or "ulaw"), the standard Sun/ITU algorithm."""
    raw = struct.pack(f"<{len(samples)}h", *samples)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return audioop.lin2alaw(raw, 2) if law == "alaw" else audioop.lin2ulaw(raw, 2)


def g711_decode(data, law="alaw"):
    """G.711 bytes back to a list of 16-bit samples."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        raw = audioop.alaw2lin(data, 2) if law == "alaw" else audioop.ulaw2lin(data, 2)
    return list(struct.unpack(f"<{len(raw) // 2}h", raw))


def missing_tools():
    """Why a TLS/SRTP interop test cannot run here (baresip, tcpdump, openssl, root for a
    capture on lo), as reasons; empty when everything is there."""
    why = [f"{name} is not installed"
           for name, path in (("baresip (package baresip-core)", BARESIP), ("tcpdump", TCPDUMP),
                              ("openssl", OPENSSL)) if path is None]
    if os.geteuid() != 0:
        why.append("capturing on lo needs root")
    return why


# ---------------------------------------------------------------------------------------------
# baresip.

class Baresip:
    """One baresip process with its own config dir `workdir/name`.

    port: P (default: free_sip_port()); transport: "tls" (the account on P+1), "udp" or "tcp"
    (on P). mediaenc: "srtp-mand", "srtp", "srtp-mandf" or None (plain RTP). codecs:
    audio_codecs in order of preference ("PCMA", "PCMU"). answer: answermode=auto (a callee),
    else manual. tone: the WAV it sends (aufile; the call is hung up when it ends; default:
    60 s of 440 Hz). record: module sndfile writes dump-...-dec.wav (what it hears) and
    dump-...-enc.wav (what it sends) into `rec/`. cert: combined cert+key PEM
    (sip_certificate); cafile: CA PEM (sip_cafile). user: the account's user part, which an
    incoming INVITE's Request-URI must carry (else baresip answers "UA not found"). rtp_ports:
    (low, high), default a free range. extra_config: more config lines; account_params: more
    ";name=value" account parameters.
    """

    def __init__(self, workdir, name, *, user=None, port=None, transport="tls",
                 mediaenc="srtp-mand", codecs=("PCMA",), answer=False, tone=None, record=True,
                 cert=None, cafile=None, rtp_ports=None, extra_config=(), account_params=""):
        if BARESIP is None:
            raise RuntimeError("baresip is not installed")
        self.name = name
        self.user = user or name
        self.dir = Path(workdir) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rec_dir = self.dir / "rec"
        self.rec_dir.mkdir(exist_ok=True)
        self.port = port or free_sip_port()
        self.transport = transport
        self.mediaenc = mediaenc
        self.codecs = tuple(codecs)
        self.answer = answer
        self.tone = Path(tone) if tone else write_tone(self.dir / "tone.wav", 440, 60)
        self.record = record
        self.cert, self.cafile = cert, cafile
        self.rtp_ports = rtp_ports or free_rtp_range()
        self.extra_config = list(extra_config)
        self.account_params = account_params
        self.log_path = self.dir / "baresip.log"
        self.proc = None
        self.argv = None
        self.started = None
        self.write_config()

    # -- configuration -------------------------------------------------------------------------
    @property
    def sip_port(self):
        """The port of its transport: P+1 for TLS, P for UDP and TCP."""
        return self.port + 1 if self.transport == "tls" else self.port

    @property
    def uri(self):
        """The URI another baresip dials to reach this one. No transport parameter: the
        caller's account appends its own (dialling "...;transport=tls" from a TLS account
        sends a Request-URI with ";transport=tls;transport=tls")."""
        return f"sip:{self.user}@127.0.0.1:{self.sip_port}"

    @property
    def full_uri(self):
        """The URI with its transport parameter, for a peer that is not baresip."""
        t = "" if self.transport == "udp" else f";transport={self.transport}"
        return self.uri + t

    def ports(self):
        """Every port it uses (SIP P and P+1, its RTP/RTCP range), for a capture filter."""
        return [self.port, self.port + 1, (self.rtp_ports[0], self.rtp_ports[1] + 1)]

    def write_config(self):
        modpath = next((p for p in MODULE_PATHS if os.path.isdir(p)), MODULE_PATHS[0])
        lines = [
            f"module_path {modpath}",
            "poll_method epoll",
            f"sip_listen 127.0.0.1:{self.port}",
            "net_interface 127.0.0.1",
            "call_local_timeout 20",
            "call_max_calls 4",
            "audio_player alsa,null",
            "audio_alert alsa,null",
            f"audio_source aufile,{self.tone}",
            f"rtp_ports {self.rtp_ports[0]}-{self.rtp_ports[1]}",
            "rtcp_mux no",
            "jitter_buffer_delay 5-10",
            "statmode_default off",
            "module g711.so",
            "module aufile.so",
        ]
        if self.record:
            lines += ["module sndfile.so", f"snd_path {self.rec_dir}"]
        if self.cert:
            lines.append(f"sip_certificate {self.cert}")
        if self.cafile:
            lines.append(f"sip_cafile {self.cafile}")
        # srtp before account: the account's mediaenc must name a loaded module.
        lines += ["module srtp.so", "module_tmp account.so", "module_app menu.so"]
        lines += self.extra_config
        (self.dir / "config").write_text("\n".join(lines) + "\n")
        t = "" if self.transport == "udp" else f";transport={self.transport}"
        params = ";regint=0;audio_codecs=" + ",".join(self.codecs)
        if self.mediaenc:
            params += f";mediaenc={self.mediaenc}"
        params += ";answermode=" + ("auto" if self.answer else "manual")
        params += self.account_params
        account = f"<sip:{self.user}@127.0.0.1:{self.sip_port}{t}>{params}\n"
        (self.dir / "accounts").write_text(account)

    # -- process -------------------------------------------------------------------------------
    def start(self, dial=None, seconds=30, trace=False, extra_args=()):
        """Run it; `dial`: a URI dialled at start (`-e "/dial URI"`); it quits after `seconds`
        (-t), hanging up any call with a BYE (or a CANCEL). trace: -s, every SIP message sent
        and received in its log (see sip_messages())."""
        self.argv = [BARESIP, "-f", str(self.dir), "-t", str(int(seconds))]
        if trace:
            self.argv.append("-s")
        if dial:
            self.argv += ["-e", f"/dial {dial}"]
        self.argv += list(extra_args)
        self._log = open(self.log_path, "wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=self.dir,
                                     start_new_session=True)
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=5):
        """SIGTERM (baresip hangs up its calls and quits), then SIGKILL after `timeout`; returns
        the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode

    def wait_exit(self, timeout=30):
        """Wait for it to quit by itself (-t, or the end of its call); returns the exit code."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"baresip {self.name} still running after {timeout} s:\n"
                                 + self.report())
        return self.stop()

    def __enter__(self):
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- its log -------------------------------------------------------------------------------
    def log(self):
        """Its log so far, ANSI colours removed, CRLF and lone CR as line ends."""
        try:
            text = self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""
        return _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")

    def find(self, what):
        """Every match of LOG[what] (or a regex) in its log so far, as re.Match objects."""
        rx = re.compile(LOG.get(what, what), re.M)
        return list(rx.finditer(self.log()))

    def wait_log(self, what, timeout=10, n=1):
        """Wait for the `n`th line matching LOG[what] (or a regex); return its re.Match. Fails
        early if baresip exits first."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.find(what)
            if len(found) >= n:
                return found[n - 1]
            exited = self.proc is not None and self.proc.poll() is not None
            if exited or time.monotonic() > deadline:
                # a last look: the line may have been written as it exited
                found = self.find(what)
                if len(found) >= n:
                    return found[n - 1]
                why = "exited" if exited else f"not seen within {timeout} s"
                raise AssertionError(f"baresip {self.name}: {what!r} {why}:\n" + self.report())
            time.sleep(0.05)

    def wait_ready(self, timeout=10):
        """Wait until it has loaded its modules and listens."""
        return self.wait_log("ready", timeout)

    def wait_established(self, timeout=10):
        return self.wait_log("established", timeout)

    def wait_srtp(self, timeout=10):
        """Wait for SRTP; returns the crypto suite (e.g. AES_CM_128_HMAC_SHA1_80)."""
        return self.wait_log("srtp", timeout).group("suite")

    def wait_closed(self, timeout=15):
        """Wait for the end of its call: a "session closed: REASON" line (the peer ended it, or
        it failed: REASON "Connection reset by peer" for a BYE or CANCEL received, "488 Not
        Acceptable Here", "Connection refused"...) or "Call with ... terminated" (it hung up
        itself). Returns REASON, or None when it hung up."""
        self.wait_log("ended", timeout)
        closed = self.find("closed")
        return closed[-1].group("reason") if closed else None

    def sip_messages(self):
        """SIP messages of its trace (start(trace=True)), as sipp_helper.SipMsg with
        `direction` "in" or "out", `transport` "UDP", "TCP" or "TLS", `src` and `dst`. The trace
        is printed before TLS encryption and after decryption."""
        from sipp_helper import SipMsg
        text = self.log()
        heads = list(_TRACE_HEAD.finditer(text))
        out = []
        for i, m in enumerate(heads):
            end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
            raw = text[m.end():end]
            head, sep, rest = raw.partition("\n\n")
            clen = re.search(r"^(?:Content-Length|l):\s*(\d+)", head, re.M | re.I)
            body = rest[:int(clen.group(1))] if clen else ""
            msg = SipMsg("?", head + sep + body)
            # the trace does not say which way a message went: its top Via does (baresip puts
            # its listening port there; a response carries the requester's Via)
            via = re.search(r"SIP/2\.0/\S+\s+[^;:\s]+:(\d+)", msg.header("via", ""))
            mine = bool(via) and int(via.group(1)) in (self.port, self.port + 1)
            msg.direction = "out" if mine == (msg.method is not None) else "in"
            msg.transport = m.group("proto")
            msg.src, msg.dst = m.group("src"), m.group("dst")
            out.append(msg)
        return out

    def recordings(self):
        """{"dec": path, "enc": path} of sndfile's dumps (the last of each), once written."""
        out = {}
        for kind in ("dec", "enc"):
            files = sorted(self.rec_dir.glob(f"dump-*-{kind}.wav"))
            if files:
                out[kind] = files[-1]
        return out

    def heard(self):
        """Samples of what it received (dump-...-dec.wav); read after it stopped."""
        rec = self.recordings()
        assert "dec" in rec, f"baresip {self.name} recorded nothing:\n" + self.report()
        return read_wav(rec["dec"])[0]

    def report(self, tail=6000):
        return f"argv: {self.argv}\n--- {self.log_path}\n{self.log()[-tail:]}"


# ---------------------------------------------------------------------------------------------
# Packet capture.

class Packet:
    """One captured IPv4/IPv6 UDP or TCP packet."""

    __slots__ = ("time", "proto", "src", "sport", "dst", "dport", "payload")

    def __init__(self, t, proto, src, sport, dst, dport, payload):
        self.time, self.proto = t, proto
        self.src, self.sport, self.dst, self.dport = src, sport, dst, dport
        self.payload = payload

    def __repr__(self):
        return (f"<{self.proto} {self.src}:{self.sport} > {self.dst}:{self.dport} "
                f"{len(self.payload)} bytes>")


def _port_filter(ports):
    terms = []
    for p in ports:
        if isinstance(p, (tuple, list)):
            terms.append(f"portrange {p[0]}-{p[1]}")
        else:
            terms.append(f"port {p}")
    return " or ".join(terms)


class Capture:
    """tcpdump on `lo`, written to `path` packet by packet (-U), limited to `ports` (ints or
    (low, high) ranges; None: everything on lo). Packets longer than `snaplen` are cut (a
    SIP message or an RTP packet is far shorter). After stop(), counts() must show 0 "dropped
    by kernel" for a check of "nothing in clear" to mean anything."""

    def __init__(self, path, ports=None, iface="lo", snaplen=8192):
        if TCPDUMP is None:
            raise RuntimeError("tcpdump is not installed")
        self.path = Path(path)
        self.err_path = self.path.with_suffix(".tcpdump.log")
        # --immediate-mode: without it, packets reach tcpdump in blocks up to a second late,
        # and those of the last block are lost when it is stopped. In that mode each packet
        # takes a ring slot of the snap length: -s 0 (256 KiB) leaves 8 slots in the default
        # 2 MiB ring and the kernel drops packets; 8 KiB slots in 16 MiB are plenty.
        self.argv = [TCPDUMP, "-i", iface, "-n", "-U", "--immediate-mode", "-s", str(snaplen),
                     "-B", "16384", "-Z", "root", "-w", str(self.path)]
        if ports:
            self.argv += ["(" + _port_filter(ports) + ")"]
        self.proc = None

    def start(self, timeout=10):
        """Start tcpdump and wait until it says "listening on" (it captures from then on)."""
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self._err,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while "listening on" not in self.stderr():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"tcpdump did not start: {self.argv}\n{self.stderr()}")
            time.sleep(0.02)
        return self

    def stderr(self):
        try:
            return self.err_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def settle(self, quiet=0.3, timeout=3):
        """Wait until the capture file has not grown for `quiet` seconds (bounded)."""
        deadline = time.monotonic() + timeout
        size, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            now = self.path.stat().st_size if self.path.exists() else 0
            if now != size:
                size, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            time.sleep(0.05)

    def stop(self, timeout=5):
        """Let the file settle, then SIGINT (tcpdump flushes the file and prints its counts),
        SIGKILL after `timeout`."""
        if self.proc is not None and self.proc.poll() is None:
            self.settle()
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if getattr(self, "_err", None) and not self._err.closed:
            self._err.close()
        return self

    def counts(self):
        """tcpdump's closing counts: {"captured": n, "received by filter": n, "dropped by
        kernel": n} (after stop())."""
        return {m.group(2): int(m.group(1))
                for m in re.finditer(r"^(\d+) packets? ((?:captured|received by filter|dropped "
                                     r"by kernel))", self.stderr(), re.M)}

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def packets(self):
        """The captured UDP and TCP packets (read after stop())."""
        return read_pcap(self.path)


def read_pcap(path):
    """UDP and TCP packets of a classic pcap file of link type Ethernet (Linux `lo`), raw IP or
    Linux cooked (SLL): a list of Packet. Pure Python (struct)."""
    data = Path(path).read_bytes()
    if len(data) < 24:
        return []
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        raise ValueError(f"{path}: not a pcap file (magic {magic.hex()})")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(e + "I", data[20:24])[0]
    out, off = [], 24
    while off + 16 <= len(data):
        sec, frac, caplen, _ = struct.unpack(e + "IIII", data[off:off + 16])
        frame = data[off + 16:off + 16 + caplen]
        off += 16 + caplen
        t = sec + frac / (1e9 if nano else 1e6)
        if linktype == 1:  # DLT_EN10MB
            ethertype, ip = struct.unpack("!H", frame[12:14])[0], frame[14:]
            if ethertype == 0x8100:  # VLAN
                ethertype, ip = struct.unpack("!H", frame[16:18])[0], frame[18:]
        elif linktype == 113:  # DLT_LINUX_SLL
            ethertype, ip = struct.unpack("!H", frame[14:16])[0], frame[16:]
        elif linktype in (101, 12):  # raw IP
            ip = frame
            ethertype = 0x0800 if frame[:1] and frame[0] >> 4 == 4 else 0x86DD
        else:
            raise ValueError(f"{path}: unsupported link type {linktype}")
        pkt = _parse_ip(t, ethertype, ip)
        if pkt is not None:
            out.append(pkt)
    return out


def _parse_ip(t, ethertype, ip):
    if ethertype == 0x0800 and len(ip) >= 20:
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        proto = ip[9]
        src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
        body = ip[ihl:total] if total >= ihl else ip[ihl:]
    elif ethertype == 0x86DD and len(ip) >= 40:
        proto = ip[6]
        plen = struct.unpack("!H", ip[4:6])[0]
        src = socket.inet_ntop(socket.AF_INET6, ip[8:24])
        dst = socket.inet_ntop(socket.AF_INET6, ip[24:40])
        body = ip[40:40 + plen]  # extension headers are not followed
    else:
        return None
    if proto == 17 and len(body) >= 8:
        sport, dport, ulen = struct.unpack("!HHH", body[:6])
        return Packet(t, "udp", src, sport, dst, dport, body[8:ulen] if ulen >= 8 else body[8:])
    if proto == 6 and len(body) >= 20:
        sport, dport = struct.unpack("!HH", body[:4])
        doff = (body[12] >> 4) * 4
        return Packet(t, "tcp", src, sport, dst, dport, body[doff:])
    return None


# ---------------------------------------------------------------------------------------------
# Checks on a capture.

_SIP_REQUEST = re.compile(rb"(?:^|\n)(INVITE|ACK|BYE|CANCEL|OPTIONS|REGISTER|PRACK|UPDATE|INFO"
                          rb"|REFER|NOTIFY|SUBSCRIBE|MESSAGE|PUBLISH) sips?:[^ \r\n]+ SIP/2\.0")


def _flows(packets):
    """TCP payloads joined per direction (a SIP message may span segments)."""
    flows = {}
    for p in packets:
        if p.proto == "tcp" and p.payload:
            key = (p.src, p.sport, p.dst, p.dport)
            flows[key] = flows.get(key, b"") + p.payload
    return flows


def find_cleartext_sip(packets):
    """Packets (and joined TCP flows, as (key, bytes)) holding cleartext SIP: "SIP/2.0" or a
    request line such as "INVITE sip:...". Empty for SIP over TLS."""
    hits = [p for p in packets if b"SIP/2.0" in p.payload or _SIP_REQUEST.search(p.payload)]
    hits += [(k, v[:200]) for k, v in _flows(packets).items()
             if b"SIP/2.0" in v or _SIP_REQUEST.search(v)]
    return hits


def looks_rtp(payload):
    """Version 2 and at least a 12-byte header."""
    return len(payload) >= 12 and payload[0] >> 6 == 2


def rtp_payload(payload):
    """The RTP payload after the header (12 bytes, CSRCs, extension), or b"" when it is not RTP
    or the header runs past the packet."""
    if not looks_rtp(payload):
        return b""
    off = 12 + 4 * (payload[0] & 0x0F)
    if payload[0] & 0x10 and len(payload) >= off + 4:
        off += 4 + 4 * struct.unpack("!H", payload[off + 2:off + 4])[0]
    return payload[off:] if off <= len(payload) else b""


def _grams(enc, k):
    index = {}
    for i in range(len(enc) - k + 1):
        index.setdefault(enc[i:i + k], []).append(i)
    return index


def find_plain_audio(packets, samples, window=160, laws=("alaw", "ulaw"), max_diff=8):
    """UDP packets whose payload (RTP or not, anywhere in it) holds `window` consecutive bytes
    of `samples` encoded as G.711 A-law or mu-law: plain audio on the wire. Empty for SRTP.

    A window matches when at most `max_diff` of its bytes differ from the reference: encoders
    disagree on ties (libre, hence baresip, encodes negative multiples of 16 one A-law step
    away from ITU G.711 / audioop), a few bytes a frame for a sine. Candidates are found through
    8-byte grams of the reference, so the search is fast whatever the alignment."""
    k = 8
    refs = [(enc, _grams(enc, k)) for enc in (g711(samples, law) for law in laws)]
    probes = range(0, window - k + 1, max(1, (window - k) // 8))
    hits = []
    for p in packets:
        data = p.payload
        if p.proto != "udp" or len(data) < window:
            continue
        if any(_matches(data[s:s + window], refs, probes, k, max_diff)
               for s in range(len(data) - window + 1)):
            hits.append(p)
    return hits


def _matches(chunk, refs, probes, k, max_diff):
    for enc, grams in refs:
        tried = set()
        for off in probes:
            for i in grams.get(chunk[off:off + k], ())[:64]:
                start = i - off
                if start < 0 or start + len(chunk) > len(enc) or start in tried:
                    continue
                tried.add(start)
                ref = enc[start:start + len(chunk)]
                if sum(a != b for a, b in zip(chunk, ref)) <= max_diff:
                    return True
    return False


def summary(packets):
    """{(proto, port pair): count}, for failure messages."""
    out = {}
    for p in packets:
        k = (p.proto, min(p.sport, p.dport), max(p.sport, p.dport))
        out[k] = out.get(k, 0) + 1
    return out
