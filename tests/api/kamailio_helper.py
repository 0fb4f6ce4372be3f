"""Run Kamailio 5.6 as the carrier's registrar (and inbound proxy) for sfvopi's SIP registration
tests, and read back what it holds and what it saw.

    with Kamailio(tmp_path, users={"alice": "secret"}, route_to_user="alice") as kam:
        srv = Server(..., register to kam.addr as alice/secret ...)
        first = kam.wait_binding("alice", timeout=5)        # a dict, see bindings()
        kam.wait_binding("alice", lambda b: b["cseq"] > first["cseq"], timeout=10)  # a refresh
        [r["expires"] for r in kam.registers("alice")]      # every REGISTER, in order
        Sipp("in_answer_bye", tmp_path, service="+918000010000", remote=kam.addr, ...)
        # -> sfvopi gets INVITE sip:alice@<its contact> with To: <sip:+918000010000@...>
        srv.stop(); kam.wait_no_binding("alice", timeout=5)  # the un-REGISTER

The configuration is tests/kamailio/registrar.cfg.in with its placeholders filled:
- REGISTER: `auth_check("$fd", "subscriber", "1")` (realm = From domain; auth user, From user
  and To user must be equal), else a 401 challenge (MD5; `qop="auth"` unless qop=False); a
  wrong password or an unknown user is challenged again (401), or refused with 403 when
  bad_auth_reply=403; then `save("location")`. Bindings live in memory (usrloc db_mode 0).
  Nonce counts are not checked and a nonce lives 300 s (auth's nonce_expire default), so a
  refresh that reuses cached credentials is accepted without a new 401.
- Expiry: ul.dump shows the remaining whole seconds, counting down to 0; the usrloc timer runs
  every second here (default 60 s), so a binding not refreshed leaves ul.dump between 0 and about
  1 s after it reached 0 (lookup() ignores it from then on).
- registrar min_expires (2 here, 60 in Kamailio): a shorter expiry is raised to it in the 200
  (`Contact: <...>;expires=MIN`, min_expires_mode 0), or refused after authentication with
  `423 Interval Too Brief` + `Min-Expires: MIN` when reply_423=True; expires 0 always removes.
  default_expires applies when the REGISTER gives no expiry at all.
- route_to_user: an initial INVITE whose Request-URI is Kamailio itself (sip:NUMBER@addr) gets
  its user rewritten to that user, lookup("location"), record_route() and t_relay(): the
  registered UA receives `INVITE sip:USER@<its contact, params included>` with a
  `Record-Route: <sip:127.0.0.1:PORT;lr;ftag=...>` and the caller's To header untouched
  (`To: <sip:NUMBER@addr>`); 404 when that user has no binding, 482 when the INVITE comes from
  that very contact (the registered UA calling out through Kamailio would get its own call
  back). Without route_to_user such an INVITE gets 403. In-dialog requests are loose-routed
  both ways; CANCEL follows its INVITE (a Reason header goes along). An in-dialog request
  without Kamailio's Route (a UA that ignored Record-Route) gets `404 Not here`: the SIPp UAS
  scenarios of tests/sipp do not copy Record-Route into their responses, so a SIPp callee
  behind this proxy needs `[last_Record-Route:]` in its 180/200.
- Every REGISTER, INVITE, in-dialog request, CANCEL and reply to a relayed request is one xlog
  line, `KAMLOG<TAB>KIND<TAB>key=value...`, on Kamailio's stderr (`log_file`): events(),
  registers().

Kamailio runs in the foreground (`-DD -E`) in its own session, so stop() can kill its whole
process group (several processes; if the main process dies, the others
keep running and answering kamcmd until killed); start() first checks the configuration
(`kamailio -c`) and raises with its output, then waits, bounded, until the SIP port is bound and
`kamcmd core.version` answers on the ctl socket (about 0.06 s). It runs as root without
complaint (no -u/-g needed). Nothing is written outside the work directory (no FIFO, no
jsonrpcs, runtime dir `-Y` inside it) except, for a work directory too long for a unix socket
path, the ctl socket, so that instances can run side by side.
"""

import atexit
import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from sipp_helper import claim, port_taken

KAMAILIO = shutil.which("kamailio") or ("/usr/sbin/kamailio"
                                        if os.path.exists("/usr/sbin/kamailio") else None)
KAMCMD = shutil.which("kamcmd") or ("/usr/sbin/kamcmd"
                                    if os.path.exists("/usr/sbin/kamcmd") else None)
MPATH = "/usr/lib/x86_64-linux-gnu/kamailio/modules/"
DBTEXT_SCHEMA = Path("/usr/share/kamailio/dbtext/kamailio")
TEMPLATE = Path(__file__).resolve().parents[1] / "kamailio" / "registrar.cfg.in"

_SUN_PATH_MAX = 100  # sockaddr_un.sun_path is 108 bytes; pytest's tmp paths can be longer
_NAME_RE = re.compile(r"^[A-Za-z0-9_.+@-]+$")
_running = set()  # started and not yet stopped (strong references: see _stop_all)


@atexit.register
def _stop_all():
    """A test that forgot stop() must not leave Kamailio running after the session."""
    for kam in list(_running):
        kam.stop()


def _md5(s):
    return hashlib.md5(s.encode()).hexdigest()


def _group_alive(pgid):
    """Pids of live (non-zombie) processes in process group `pgid`, read from /proc: a zombie
    still answers kill(-pgid, 0), so that cannot tell whether anything is left running."""
    alive = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(d))
    return alive


def parse_kamcmd_tree(text):
    """kamcmd's printing of an RPC structure ("{", "Key: value", "Key: {", "}") as nested lists
    of (key, value) pairs; keys repeat (one "Contact" per contact), hence lists, not dicts."""
    root = []
    stack = [root]
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line == "{":
            if stack[-1] is root and not root:
                continue  # the outermost brace
            node = []
            stack[-1].append(("", node))
            stack.append(node)
        elif line == "}":
            if len(stack) > 1:
                stack.pop()
        elif line.endswith(": {") or line.endswith(":{"):
            node = []
            stack[-1].append((line[:line.rindex(":")].strip(), node))
            stack.append(node)
        else:
            key, sep, value = line.partition(":")
            stack[-1].append((key.strip(), value.strip()) if sep else ("", line))
    return root


def _children(node, key):
    return [v for k, v in node if k == key and isinstance(v, list)]


def _value(node, key):
    for k, v in node:
        if k == key and not isinstance(v, list):
            return v
    return None


def _int_or_none(v):
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _contact_dict(aor, node):
    """One binding from ul.dump. Expires there is the remaining lifetime in seconds, or a word:
    "expired" (past its expiry, waiting for the usrloc timer), "deleted", "permanent"."""
    raw = {k: v for k, v in node if not isinstance(v, list)}
    exp_raw = raw.get("Expires")
    expires = _int_or_none(exp_raw)
    if expires is None and exp_raw in ("expired", "deleted"):
        expires = 0
    received = raw.get("Received")
    return {
        "aor": aor,
        "contact": raw.get("Address"),
        "expires": expires,  # None: permanent
        "cseq": _int_or_none(raw.get("CSeq")),
        "call_id": raw.get("Call-ID"),
        "user_agent": raw.get("User-Agent"),
        "received": None if received in (None, "[not set]") else received,
        "last_modified": _int_or_none(raw.get("Last-Modified")),
        "q": raw.get("Q"),
        "socket": raw.get("Socket"),
        "ruid": raw.get("Ruid"),
        "raw": raw,
    }


def parse_ul_dump(text):
    """The bindings of `kamcmd ul.dump` output: one dict per contact (see _contact_dict)."""
    out = []
    top = parse_kamcmd_tree(text)
    for domains in _children(top, "Domains"):
        for domain in _children(domains, "Domain"):
            for aors in _children(domain, "AoRs"):
                for info in _children(aors, "Info"):
                    aor = _value(info, "AoR")
                    for contacts in _children(info, "Contacts"):
                        for c in _children(contacts, "Contact"):
                            out.append(_contact_dict(aor, c))
    return out


def _field(v):
    return None if v in ("", "<null>") else v


def parse_events(text):
    """The KAMLOG lines of a Kamailio log as dicts: "kind" (REGISTER, INVITE, INDIALOG, CANCEL,
    REPLY), "t" (Kamailio's wall clock, float seconds) and the line's key=value fields ("<null>"
    and empty values as None). REGISTER events also get "cseq" (int), "expires_header" and
    "contact_expires" (ints or None) and "expires": what the registrant asked for, the
    contact's expires parameter before the Expires header (None: neither, the registrar's
    default applies)."""
    events = []
    for line in text.splitlines():
        i = line.find("KAMLOG\t")
        if i < 0:
            continue
        parts = line[i:].rstrip("\r\n").split("\t")
        ev = {"kind": parts[1] if len(parts) > 1 else ""}
        for p in parts[2:]:
            k, _, v = p.partition("=")
            ev[k] = _field(v)
        ev["t"] = float(ev["t"]) if ev.get("t") else None
        if "cseq" in ev:
            ev["cseq"] = _int_or_none(ev["cseq"])
        if "status" in ev:
            ev["status"] = _int_or_none(ev["status"])
        if ev["kind"] == "REGISTER":
            ev["expires_header"] = _int_or_none(ev.pop("expires", None))
            ev["contact_expires"] = _int_or_none(ev.pop("cexpires", None))
            ev["expires"] = (ev["contact_expires"] if ev["contact_expires"] is not None
                             else ev["expires_header"])
        events.append(ev)
    return events


class Kamailio:
    """One Kamailio process: a registrar with digest auth for `users` ({name: password}, realm
    and subscriber domain `domain`) on 127.0.0.1:port, UDP and (tcp=True) TCP.

    min_expires / default_expires / max_expires: the registrar's limits, in seconds;
    reply_423: answer an expiry below min_expires with 423 instead of raising it;
    qop: challenge with qop="auth" (else no qop); bad_auth_reply: 401 (challenge again) or 403
    for a wrong password or an unknown user; route_to_user: see the module docstring;
    port: a fixed port (default: a free one); tcp: listen on TCP too, same port; children: SIP
    worker processes per listener (default 1: with two UDP workers a 180 and the 200 that
    follows it at once are read by different processes and can be relayed in either order, as
    with any parallel proxy; a scenario that requires the 180 then fails now and then).
    Files go to a new kamailio-* directory under `workdir`.
    """

    def __init__(self, workdir, users, *, domain="127.0.0.1", min_expires=2,
                 default_expires=60, max_expires=3600, reply_423=False, qop=True,
                 bad_auth_reply=401, route_to_user=None, port=None, tcp=True, children=1):
        if KAMAILIO is None or KAMCMD is None:
            raise RuntimeError("kamailio/kamcmd are not installed (Debian package kamailio)")
        # db_text separates fields with ':' and rows with newlines, and the names go into the
        # configuration as strings: keep them plain.
        for name in [domain, *users] + ([route_to_user] if route_to_user else []):
            if not _NAME_RE.match(name):
                raise ValueError(f"unsupported user or domain name {name!r}")
        for pw in users.values():
            if not pw or any(c in pw for c in ":\n\r\\"):
                raise ValueError(f"password {pw!r}: empty, or ':', newline or backslash in it")
        if bad_auth_reply not in (401, 403):
            raise ValueError("bad_auth_reply is 401 or 403")
        self.users = dict(users)
        self.domain = domain
        self.min_expires = min_expires
        self.default_expires = default_expires
        self.max_expires = max_expires
        self.reply_423 = reply_423
        self.qop = qop
        self.bad_auth_reply = bad_auth_reply
        self.route_to_user = route_to_user
        self.tcp = tcp
        self.children = children
        self._fixed_port = port
        self.port = None
        self.workdir = Path(tempfile.mkdtemp(prefix="kamailio-", dir=workdir))
        self.dbdir = self.workdir / "db"
        self.cfg_path = self.workdir / "kamailio.cfg"
        self.log_file = self.workdir / "kamailio.stderr.log"
        self.out_file = self.workdir / "kamailio.stdout.log"
        self._ctl_dir = None
        ctl = self.workdir / "ctl"
        if len(str(ctl)) > _SUN_PATH_MAX:
            self._ctl_dir = Path(tempfile.mkdtemp(prefix="kam-"))
            ctl = self._ctl_dir / "ctl"
        self.ctl = ctl
        self.proc = None
        self.argv = None
        self.startup_s = None  # seconds from spawn to ready, for the curious

    # -- setup ---------------------------------------------------------------------------------
    def _write_db(self):
        """db_text tables: `version` and an empty `subscriber` from the package, plus one row per
        user. ha1/ha1b must be filled although calculate_ha1 ignores them: an empty field is
        NULL, and a NULL in these NOT NULL columns makes the whole table fail to load."""
        self.dbdir.mkdir(exist_ok=True)
        shutil.copy(DBTEXT_SCHEMA / "version", self.dbdir / "version")
        rows = [(DBTEXT_SCHEMA / "subscriber").read_text().rstrip("\n")]
        d = self.domain
        for i, (user, pw) in enumerate(self.users.items(), 1):
            rows.append(f"{i}:{user}:{d}:{pw}:{_md5(f'{user}:{d}:{pw}')}:"
                        f"{_md5(f'{user}@{d}:{d}:{pw}')}")
        (self.dbdir / "subscriber").write_text("\n".join(rows) + "\n")

    def _render(self):
        defines = []
        if self.route_to_user:
            defines.append(f'#!define ROUTE_TO_USER "{self.route_to_user}"')
        if self.bad_auth_reply == 403:
            defines.append("#!define BAD_AUTH_403")
        listen = [f"listen=udp:127.0.0.1:{self.port}"]
        listen += [f"listen=tcp:127.0.0.1:{self.port}"] if self.tcp else ["disable_tcp=yes"]
        values = {
            "DEFINES": "\n".join(defines), "CHILDREN": str(self.children),
            "LISTEN": "\n".join(listen), "MPATH": MPATH, "CTL": str(self.ctl),
            "MIN_EXPIRES": str(self.min_expires),
            "MIN_EXPIRES_MODE": "1" if self.reply_423 else "0",
            "DEFAULT_EXPIRES": str(self.default_expires), "MAX_EXPIRES": str(self.max_expires),
            "DBDIR": str(self.dbdir), "QOP_FLAGS": "1" if self.qop else "0",
        }
        text = TEMPLATE.read_text()
        for k, v in values.items():
            text = text.replace(f"@{k}@", v)
        left = re.findall(r"@[A-Z_]+@", text)
        assert not left, f"unreplaced placeholders {left} in {TEMPLATE}"
        self.cfg_path.write_text(text)

    def _pick_port(self):
        """A port free on 127.0.0.1 for UDP (and TCP when listening on both)."""
        for _ in range(200):
            port = random.randrange(32000, 60000)
            if port_taken(port, udp=True) or (self.tcp and port_taken(port, udp=False)):
                continue
            if claim((port,)):
                return port
        raise RuntimeError("no free port for kamailio")

    def check_config(self):
        """`kamailio -c` on the rendered configuration; raises with its output on failure."""
        cp = subprocess.run([KAMAILIO, "-c", "-f", str(self.cfg_path), "-Y", str(self.workdir)],
                            capture_output=True, text=True, errors="replace", timeout=30,
                            stdin=subprocess.DEVNULL)
        if cp.returncode != 0:
            raise RuntimeError(f"kamailio -c failed (rc={cp.returncode}) for {self.cfg_path}:\n"
                               f"{cp.stdout}\n{cp.stderr}")
        return cp.stdout + cp.stderr

    # -- process -------------------------------------------------------------------------------
    def start(self, timeout=15):
        """Render, check, spawn, and wait until ready. A port lost to a race between the probe
        and Kamailio's bind is retried with another one (unless the port was given)."""
        self._write_db()
        _running.add(self)
        for _ in range(3):
            self.port = self._fixed_port or self._pick_port()
            self._render()
            try:
                self.check_config()
            except RuntimeError:
                self.stop()
                raise
            if self._spawn(timeout):
                return self
            lost = "Address already in use" in self.log()
            self._halt(timeout)
            if self._fixed_port or not lost:
                break
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"kamailio did not become ready (argv: {self.argv}); log:\n{tail}")

    def _spawn(self, timeout):
        self.argv = [KAMAILIO, "-f", str(self.cfg_path), "-DD", "-E", "-Y", str(self.workdir),
                     "-w", str(self.workdir)]
        self._err = open(self.log_file, "wb")  # a retry starts a fresh log
        self._out = open(self.out_file, "wb")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=self._err, cwd=self.workdir, start_new_session=True)
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if port_taken(self.port, udp=True) and self.ctl.exists():
                cp = self._kamcmd("core.version", check=False, timeout=2)
                if cp is not None and cp.returncode == 0:
                    self.startup_s = time.monotonic() - t0
                    return True
            time.sleep(0.05)
        return False

    def stop(self, timeout=10):
        """Stop Kamailio (see _halt) and remove what lives outside the work directory. Returns
        the exit code of a Kamailio that had already died on its own (its log tail is printed,
        shown with the failing test's output), else None."""
        _running.discard(self)
        died = self.proc.poll() if self.proc is not None else None
        if died is not None:
            print(f"kamailio had exited by itself (rc={died}); log tail:\n{self.log_tail(4000)}")
        self._halt(timeout)
        if self._ctl_dir is not None:
            shutil.rmtree(self._ctl_dir, ignore_errors=True)
        return died

    def _halt(self, timeout):
        """SIGTERM to the whole process group (Kamailio's main process then stops its
        children), SIGKILL after `timeout`, and wait until no process of the group is left."""
        if self.proc is not None:
            pgid = self.proc.pid  # start_new_session: the leader's pid is the group id
            if self.proc.poll() is None:
                try:
                    os.killpg(pgid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    pass
            deadline = time.monotonic() + timeout
            while _group_alive(pgid):
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except ProcessLookupError:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"kamailio processes {_group_alive(pgid)} survive SIGKILL")
                time.sleep(0.05)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"kamailio {self.proc.pid} was not reaped") from None
            self.proc = None
        for f in ("_err", "_out"):
            fh = getattr(self, f, None)
            if fh is not None and not fh.closed:
                fh.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    # -- RPC -----------------------------------------------------------------------------------
    def _kamcmd(self, *args, check=True, timeout=5):
        try:
            cp = subprocess.run([KAMCMD, "-s", f"unix:{self.ctl}", *map(str, args)],
                                capture_output=True, text=True, errors="replace",
                                timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            if check:
                raise AssertionError(f"kamcmd {' '.join(map(str, args))} hung for {timeout} s;"
                                     f" kamailio log:\n{self.log_tail()}") from None
            return None
        if check and cp.returncode != 0:
            raise AssertionError(f"kamcmd {' '.join(map(str, args))} failed (rc={cp.returncode})"
                                 f": {cp.stdout}{cp.stderr}\nkamailio log:\n{self.log_tail()}")
        return cp

    def rpc(self, *args, timeout=5):
        """Any RPC command through kamcmd (e.g. "ul.lookup", "location", "alice"); its stdout."""
        return self._kamcmd(*args, timeout=timeout).stdout

    def bindings(self, aor_user=None):
        """Bindings held now (ul.dump), as dicts: aor, contact, expires (remaining seconds; 0 once
        past expiry), cseq, call_id, user_agent, received (None unless set), last_modified
        (epoch seconds), q, socket, ruid, and raw (every field as printed)."""
        found = parse_ul_dump(self.rpc("ul.dump"))
        return [b for b in found if aor_user is None or b["aor"] == aor_user]

    def drop_bindings(self, user):
        """Forget `user`'s bindings (ul.rm), as a carrier that lost its registrations would."""
        self.rpc("ul.rm", "location", user)

    def wait_binding(self, user, pred=None, timeout=10, interval=0.1):
        """Poll until `user` has a live binding (expires > 0) for which pred(binding) holds;
        return that binding. On timeout: AssertionError with the bindings and the log tail."""
        deadline = time.monotonic() + timeout
        while True:
            live = [b for b in self.bindings(user) if b["expires"] is None or b["expires"] > 0]
            for b in live:
                if pred is None or pred(b):
                    return b
            if time.monotonic() > deadline:
                raise AssertionError(f"no binding for {user!r} matching {pred} within {timeout} s;"
                                     f" bindings: {live}\nREGISTERs: {self.registers(user)}\n"
                                     f"kamailio log:\n{self.log_tail()}")
            time.sleep(interval)

    def wait_no_binding(self, user, timeout=10, interval=0.1):
        """Poll until `user` has no binding at all (removed by expires=0, or expired and swept
        by the usrloc timer, which runs every second)."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.bindings(user)
            if not left:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{user!r} still bound after {timeout} s: {left}\n"
                                     f"REGISTERs: {self.registers(user)}\n"
                                     f"kamailio log:\n{self.log_tail()}")
            time.sleep(interval)

    # -- log -----------------------------------------------------------------------------------
    def log(self):
        """Everything Kamailio wrote to stderr so far (its log, -E)."""
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, chars=6000):
        return self.log()[-chars:]

    def events(self, kind=None):
        """The KAMLOG events so far, in order (see parse_events), of one kind if given."""
        return [e for e in parse_events(self.log()) if kind is None or e["kind"] == kind]

    def registers(self, user=None, result=None):
        """REGISTER events (From user `user`), in order. result: "challenged" (no credentials),
        "saved" (authenticated and applied), "auth-failed:RC" (rechallenged: RC -2 is a wrong
        password, -3 an unknown user, -8 an auth user other than From/To),
        "forbidden:RC" (403), "save-failed" (e.g. 423 Interval Too Brief)."""
        return [e for e in self.events("REGISTER")
                if (user is None or e.get("user") == user)
                and (result is None or e.get("result") == result)]

    def wait_registers(self, user, count, result="saved", timeout=10, interval=0.1):
        """Poll until `count` REGISTERs of `user` with `result` have arrived; return them all."""
        deadline = time.monotonic() + timeout
        while True:
            regs = self.registers(user, result)
            if len(regs) >= count:
                return regs
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(regs)} of {count} {result} REGISTERs of {user!r} "
                                     f"within {timeout} s: {self.registers(user)}\n"
                                     f"kamailio log:\n{self.log_tail()}")
            time.sleep(interval)
