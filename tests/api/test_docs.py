"""Docs that run: the README's "A short tour" against a live server.

The tour's ```sh blocks are run, in order, by one bash process, exactly as written except for
two documented, strict substitutions:
  - the address `http://127.0.0.1:8080` becomes the test server's;
  - a placeholder assignment (a value with `...` in it, which a reader fills in by hand) is
    filled the way the reader is told to: `KEY=sfvk_...` with the key that `sfvopi demo` (what
    `make run` runs) printed, `APP=sfv_app_...` with `data.app_id` of the previous command's
    answer. Any other placeholder fails the test, so that the README and this runner cannot
    drift apart silently.
Every command must exit 0 and every curl must print a JSON body with `"message":"success"`.

The "Calls" section's examples run too, each found by its place in that section (the README's
structure changing so that one cannot be found fails the test, it never skips it):
  - the `sfvopi serve ... --sip-listen ... --sip-trunk ... --rtp-ports ...` block: every option
    is one `serve --help` lists, and the command, run as written with `sfvopi` on PATH and only
    its addresses made loopback ones (the API on 127.0.0.1:0, SIP and the trunk on free local UDP
    ports; the RTP range as written, bound only per call), reaches "sip listening on" and exits 0
    on SIGTERM;
  - the outbound curl under "Outbound.": run by bash as written, with the address made the
    test server's and `$H` the X-API-Key header of the key `sfvopi demo` printed (its
    +918000000001 linked to an app), against a server whose trunk is a closed local port; it
    must exit 0 and print JSON of the shape of the comment under it (`...` stands for a value),
    and the call it placed must be found by GET /sfvopi/calls/:id, by both ids;
  - the echo agent under "The audio stream.": run as written by /usr/bin/python3 (Debian's
    python3-websockets), listening on 127.0.0.1 and a free port instead of the hard-coded
    0.0.0.0:8765, with the answer webhook replying the Stream JSON shown after it (its URL made
    the agent's); a SIPp carrier calls a linked number, a test RTP party sends 50 frames of
    PCMA and must hear every one of them back, byte for byte, in order.
"""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time

import pytest
import requests

from conftest import (BIN, KEY_RE, REPO, Client, Server, base_env, fresh_db, ok,
                      skip_unless_strict, wait_until)
from fake_customer import FakeCustomer, reply_json
from sipp_helper import SIPP, Sipp, free_rtp_range, free_udp_port, port_taken

README = REPO / "README.md"
TOUR_HEADING = "## A short tour"
DOC_URL = "http://127.0.0.1:8080"


def tour_blocks(text):
    """The ```sh blocks of the "A short tour" section, in order."""
    start = text.index(TOUR_HEADING + "\n")
    end = text.find("\n## ", start + len(TOUR_HEADING))
    section = text[start:end if end >= 0 else len(text)]
    return re.findall(r"^```sh\n(.*?)^```$", section, flags=re.S | re.M)


def logical_lines(block):
    """Commands of a shell block: backslash continuations joined; blanks and comments dropped."""
    out, cur = [], ""
    for line in block.splitlines():
        if cur:
            cur += "\n" + line
        elif line.strip() == "" or line.lstrip().startswith("#"):
            continue
        else:
            cur = line
        if not cur.endswith("\\"):
            out.append(cur)
            cur = ""
    assert not cur, f"unterminated continuation: {cur!r}"
    return out


PLACEHOLDER_RE = re.compile(r"^([A-Z_][A-Z0-9_]*)=(\S*\.\.\.\S*)(\s+#.*)?$")


def build_script(steps, key, outdir):
    """The bash script: each command's stdout to outdir/N.out, its exit code to outdir/N.rc."""
    lines = ["set -u", "set -o pipefail"]
    commands = []
    last_out = None
    for i, step in enumerate(steps):
        m = PLACEHOLDER_RE.match(step)
        if m:
            name, value = m.group(1), m.group(2)
            if name == "KEY" and value == "sfvk_...":
                lines.append(f"KEY='{key}'")
            elif name == "APP" and value == "sfv_app_...":
                assert last_out is not None, "APP=sfv_app_... before any command"
                lines.append(
                    "APP=$(/usr/bin/python3 -c 'import json,sys; "
                    "print(json.load(open(sys.argv[1]))[\"data\"][\"app_id\"])' "
                    f"'{last_out}')")
            else:
                pytest.fail(f"README tour: unknown placeholder {step!r}; teach test_docs.py "
                            f"how a reader fills it in")
            continue
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", step) and " " not in step.split("=", 1)[0]:
            lines.append(step)  # an ordinary assignment, run as written
            continue
        out = outdir / f"{i}.out"
        lines.append(f"{{\n{step}\n}} > '{out}' 2> '{outdir / f'{i}.err'}'; "
                     f"echo $? > '{outdir / f'{i}.rc'}'")
        commands.append((i, step, out))
        last_out = out
    return "\n".join(lines) + "\n", commands


def test_readme_tour_runs(server, tmp_path):
    text = README.read_text(encoding="utf-8")
    blocks = tour_blocks(text)
    assert blocks, "README.md has no ```sh block under '## A short tour'"
    steps = [s for b in blocks for s in logical_lines(b)]
    assert all(DOC_URL in s for s in steps if s.startswith("curl")), \
        "a tour curl does not use the documented address"
    steps = [s.replace(DOC_URL, server.url) for s in steps]

    # What `make run` does before serving: `sfvopi demo` on a fresh database.
    demo = server.cli("demo", "--listen", f"127.0.0.1:{server.port}")
    assert demo.returncode == 0, demo.stderr
    keys = [w for w in demo.stdout.split() if KEY_RE.match(w.strip("'"))]
    assert keys, f"sfvopi demo printed no key:\n{demo.stdout}"
    key = keys[0].strip("'")
    # ...whose printed curl line works too.
    tries = [ln for ln in demo.stdout.splitlines() if ln.startswith("curl ")]
    assert len(tries) == 1, demo.stdout
    steps.insert(0, tries[0])

    outdir = tmp_path / "out"
    outdir.mkdir()
    script, commands = build_script(steps, key, outdir)
    (tmp_path / "tour.sh").write_text(script)
    cp = subprocess.run(["bash", "--noprofile", "--norc", str(tmp_path / "tour.sh")],
                        capture_output=True, text=True, timeout=120, cwd=tmp_path,
                        stdin=subprocess.DEVNULL)
    assert cp.returncode == 0, f"tour script failed: {cp.stderr}\n{script}"
    assert len(commands) >= 6, commands

    answers = []
    for i, step, out in commands:
        rc = (outdir / f"{i}.rc").read_text().strip()
        stdout = out.read_text()
        stderr = (outdir / f"{i}.err").read_text()
        assert rc == "0", f"step {step!r} exited {rc}: {stdout}{stderr}"
        if step.startswith("curl"):
            try:
                body = json.loads(stdout)
            except ValueError:
                pytest.fail(f"step {step!r} printed no JSON: {stdout!r} {stderr!r}")
            assert isinstance(body, dict) and body.get("message") == "success", (step, body)
            answers.append((step, body["data"]))

    # What the tour says happens, happened.
    free = [a["voip_number"] for a in answers[0][1]]
    assert free == [f"+91800000000{i}" for i in range(1, 6)], answers[0]
    by_kind = {}
    for step, data in answers:
        if "/numbers" in step and "-d '" in step:
            by_kind["link"] = data
        elif "-X DELETE" in step:
            by_kind["unlink"] = data
        elif step.rstrip().endswith("/numbers"):
            by_kind["list"] = data
        elif step.rstrip().endswith("/apps") and "-d '" in step:
            by_kind["create"] = data
    assert set(by_kind) == {"create", "link", "list", "unlink"}, [s for s, _ in answers]
    app_id = by_kind["create"]["app_id"]
    assert by_kind["link"]["app_id"] == app_id
    assert by_kind["link"]["voip_number"] == "+918000000001"
    assert [n["voip_number"] for n in by_kind["list"]] == ["+918000000001"]
    assert by_kind["unlink"] == {"deleted": True}


def test_runner_rejects_unknown_placeholders(tmp_path):
    with pytest.raises(pytest.fail.Exception, match="unknown placeholder"):
        build_script(["NUM=+91...   # a number"], "k", tmp_path)


def test_logical_lines_joins_continuations():
    block = "A=1\n# c\n\ncurl -s \\\n  -d x \\\n  http://h/p\nB=2   # b\n"
    assert logical_lines(block) == ["A=1", "curl -s \\\n  -d x \\\n  http://h/p", "B=2   # b"]


# ---------------------------------------------------------------------------------------------
# The "Calls" section: where its examples are.

CALLS_HEADING = "## Calls"
FENCE_RE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```$", flags=re.S | re.M)


def doc_section(text, heading):
    """The body of a `## ` section of the README, up to the next `## ` heading."""
    m = re.search(rf"^{re.escape(heading)}\n", text, flags=re.M)
    if not m:
        pytest.fail(f"README.md has no '{heading}' section")
    end = text.find("\n## ", m.end())
    return text[m.end():end if end >= 0 else len(text)]


def fenced(text):
    """The fenced blocks of `text`, in order: (language, body dedented by its fence's indent,
    end offset of the closing fence)."""
    out = []
    for m in FENCE_RE.finditer(text):
        indent = m.group(1)
        lines = m.group(3).splitlines(keepends=True)
        stray = [ln for ln in lines if ln.strip() and not ln.startswith(indent)]
        assert not stray, f"a line of a fenced block is outside its indent: {stray[0]!r}"
        body = "".join(ln[len(indent):] if ln.strip() else "\n" for ln in lines)
        out.append((m.group(2), body, m.end()))
    return out


def one_block(text, lang, where):
    """The one ```lang block of `text`: (body, end offset). Fails the test unless exactly one."""
    blocks = [(body, end) for lg, body, end in fenced(text) if lg == lang]
    if len(blocks) != 1:
        pytest.fail(f"README.md, {where}: expected one ```{lang} block, found {len(blocks)}; "
                    f"teach test_docs.py the README's new structure")
    return blocks[0]


def doc_item(section, label):
    """The top-level list item of a section that starts with `- **label**`, up to the next
    top-level item or the end of the section."""
    starts = [m.start() for m in re.finditer(r"^- ", section, flags=re.M)]
    mine = [s for s in starts if section.startswith(f"- **{label}**", s)]
    if len(mine) != 1:
        pytest.fail(f"README.md, '{CALLS_HEADING}': expected one item '- **{label}**', "
                    f"found {len(mine)}")
    after = [s for s in starts if s > mine[0]]
    return section[mine[0]:after[0] if after else len(section)]


def calls_serve_command(text):
    """The `sfvopi serve` command: the one ```sh block of the section before its list."""
    section = doc_section(text, CALLS_HEADING)
    first_item = re.search(r"^- ", section, flags=re.M)
    intro = section[:first_item.start() if first_item else len(section)]
    body, _ = one_block(intro, "sh", f"'{CALLS_HEADING}' before its list")
    steps = logical_lines(body)
    if len(steps) != 1 or not steps[0].startswith("sfvopi serve "):
        pytest.fail(f"README.md, '{CALLS_HEADING}': the sh block is not one `sfvopi serve` "
                    f"command: {steps!r}")
    return steps[0]


def set_option(command, option, value):
    """`command` with the value of `option` (which must appear exactly once) replaced."""
    found = list(re.finditer(rf"(?<![\w-]){re.escape(option)} (\S+)", command))
    if len(found) != 1:
        pytest.fail(f"README.md: expected {option} once in {command!r}, found {len(found)}")
    m = found[0]
    return command[:m.start(1)] + value + command[m.end(1):], m.group(1)


def matches_shape(want, got, where="$"):
    """Assert that `got` has the shape of `want`, a JSON value shown in the README: the same
    keys in the same order, the same literal values, except that a string with `...` in it
    stands for a value: `...` alone for any value, otherwise for a string with that text around
    any non-empty part (`sfv_ob_req_...`)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), \
            f"{where}: keys {list(got) if isinstance(got, dict) else got!r}, README {list(want)}"
        for k in want:
            matches_shape(want[k], got[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: {got!r} vs {want!r}"
        for i, (w, g) in enumerate(zip(want, got)):
            matches_shape(w, g, f"{where}[{i}]")
    elif want == "...":
        assert got is not None, f"{where}: null where the README shows a value"
    elif isinstance(want, str) and "..." in want:
        rx = ".+".join(re.escape(part) for part in want.split("..."))
        assert isinstance(got, str) and re.fullmatch(rx, got, flags=re.S), \
            f"{where}: {got!r} does not match the README's {want!r}"
    else:
        assert type(got) is type(want) and got == want, f"{where}: {got!r}, README {want!r}"


def demo_key(srv):
    """What `make run` does before serving: `sfvopi demo`; returns the key it printed."""
    demo = srv.cli("demo", "--listen", f"127.0.0.1:{srv.port}")
    assert demo.returncode == 0, demo.stderr
    keys = [w.strip("'") for w in demo.stdout.split() if KEY_RE.match(w.strip("'"))]
    assert keys, f"sfvopi demo printed no key:\n{demo.stdout}"
    return keys[0]


def _free_tcp_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@contextlib.contextmanager
def call_server(tmp):
    """A server with the call engine on a fresh database, all on loopback: SIP on a free UDP
    port (.sip_port), the trunk a UDP port nobody listens on, media on a free port range."""
    sip_port, trunk_port = free_udp_port(), free_udp_port()
    low, high = free_rtp_range(40)
    with fresh_db(tmp, "calls") as url:
        argv = [BIN, "--db", url, "serve", "--listen", "127.0.0.1:0", "--threads", "2",
                "--sip-listen", f"127.0.0.1:{sip_port}",
                "--sip-trunk", f"sip:127.0.0.1:{trunk_port}", "--rtp-ports", f"{low}-{high}"]
        srv = Server(url, tmp, argv=argv).start()
        srv.sip_port = sip_port
        try:
            if not wait_until(lambda: "sip listening on" in srv.log, timeout=5, interval=0.05):
                pytest.fail(f"no 'sip listening on' from the server; log:\n{srv.log}")
            yield srv
        finally:
            rc = srv.stop()
        assert rc == 0, f"server exit code {rc}; log tail:\n{srv.log[-4000:]}"


# ---------------------------------------------------------------------------------------------
# The `sfvopi serve` command.

def test_readme_calls_serve_command_runs(tmp_path):
    text = README.read_text(encoding="utf-8")
    command = calls_serve_command(text)

    # Every option in it is one `serve --help` lists.
    help_cp = subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True,
                             timeout=10, stdin=subprocess.DEVNULL)
    assert help_cp.returncode == 0, help_cp.stderr
    listed = set(re.findall(r"^\s+(--[a-z][a-z-]*)", help_cp.stdout, flags=re.M))
    used = re.findall(r"(?<!\S)(--[a-z][a-z-]*)", command)
    assert {"--sip-listen", "--sip-trunk", "--rtp-ports"} <= set(used), command
    assert not set(used) - listed, f"options not in `serve --help`: {set(used) - listed}"

    # Only the addresses change: the API on 127.0.0.1:0, SIP and the trunk on loopback.
    sip_port, trunk_port = free_udp_port(), free_udp_port()
    run, _ = set_option(command, "--listen", "127.0.0.1:0")
    run, sip_addr = set_option(run, "--sip-listen", f"127.0.0.1:{sip_port}")
    run, trunk = set_option(run, "--sip-trunk", f"sip:127.0.0.1:{trunk_port}")
    assert re.fullmatch(r"sip:[A-Za-z0-9.-]+:\d+", trunk), trunk
    # The "Inbound." item sends the carrier to the address the command listens on.
    inbound = doc_item(doc_section(text, CALLS_HEADING), "Inbound.")
    assert f"`{sip_addr}`" in inbound, f"'Inbound.' does not name --sip-listen {sip_addr}"
    assert "0.0.0.0" not in run and sip_addr not in run, run

    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "sfvopi").symlink_to(BIN)
    log_path = tmp_path / "serve.log"
    with fresh_db(tmp_path, "serve") as url:
        env = base_env(SFVOPI_DB=url, PATH=f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(["bash", "--noprofile", "--norc", "-c", "exec " + run],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=log, env=env, cwd=tmp_path)
        rc = None
        try:
            wait_until(lambda: "sip listening on" in log_path.read_text(errors="replace")
                       or proc.poll() is not None, timeout=10, interval=0.05)
            out = log_path.read_text(errors="replace")
            assert f"sip listening on 127.0.0.1:{sip_port}" in out, \
                f"rc={proc.poll()} for {run!r}; log:\n{out}"
            m = re.search(r"^listening on 127\.0\.0\.1:(\d+)$", out, flags=re.M)
            assert m, out
            assert port_taken(sip_port), "the SIP port is not bound"
            r = requests.get(f"http://127.0.0.1:{m.group(1)}/healthz", timeout=5)
            assert r.status_code == 200, r.text
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert rc == 0, f"exit code {rc} after SIGTERM; log:\n{log_path.read_text(errors='replace')}"


# ---------------------------------------------------------------------------------------------
# The outbound call.

def test_readme_outbound_call_curl(tmp_path):
    text = README.read_text(encoding="utf-8")
    item = doc_item(doc_section(text, CALLS_HEADING), "Outbound.")
    body, _ = one_block(item, "sh", "'- **Outbound.**'")
    steps = logical_lines(body)
    if len(steps) != 1 or not steps[0].startswith("curl "):
        pytest.fail(f"README.md, 'Outbound.': the sh block is not one curl command: {steps!r}")
    curl = steps[0]
    assert DOC_URL in curl and '"$H"' in curl, curl
    comments = [ln.strip()[1:].strip() for ln in body.splitlines()
                if ln.lstrip().startswith("#")]
    if len(comments) != 1:
        pytest.fail(f"README.md, 'Outbound.': expected one comment line with the output, "
                    f"found {comments!r}")
    try:
        shape = json.loads(comments[0])
    except ValueError:
        pytest.fail(f"README.md, 'Outbound.': the output comment is not JSON: {comments[0]!r}")
    sent = re.search(r"-d '([^']*)'", curl)
    assert sent, curl
    sent = json.loads(sent.group(1))

    with call_server(tmp_path) as srv:
        key = demo_key(srv)
        api = Client(srv, key)
        app = api.create_app(name="Outbound", answer_url="https://example.com/webhook/answer")
        api.link(app["app_id"], sent["from"])  # a demo number, linked to an active app

        script = f"set -u\nH='X-API-Key: {key}'\n{curl.replace(DOC_URL, srv.url)}\n"
        t0 = time.monotonic()
        cp = subprocess.run(["bash", "--noprofile", "--norc", "-c", script],
                            capture_output=True, text=True, timeout=30, cwd=tmp_path,
                            stdin=subprocess.DEVNULL)
        took = time.monotonic() - t0
        assert cp.returncode == 0, f"curl exited {cp.returncode}: {cp.stdout}{cp.stderr}"
        try:
            got = json.loads(cp.stdout)
        except ValueError:
            pytest.fail(f"the curl printed no JSON: {cp.stdout!r} {cp.stderr!r}")
        matches_shape(shape, got)
        # Printed as the comment shows it: compact.
        assert cp.stdout == json.dumps(got, separators=(",", ":"), ensure_ascii=False)
        assert took < 5, f"POST /sfvopi/calls took {took:.1f} s; the README says it answers at once"

        # The call it placed is on record, under either id.
        data = got["data"]
        for ident in (data["call_uuid"], data["request_uuid"]):
            assert wait_until(lambda: api.get(f"/calls/{ident}").status_code == 200,
                              timeout=5, interval=0.05), api.get(f"/calls/{ident}").text
            rec = ok(api.get(f"/calls/{ident}"))
            assert (rec["call_uuid"], rec["request_uuid"]) == \
                (data["call_uuid"], data["request_uuid"]), rec
            assert (rec["from"], rec["to"], rec["direction"], rec["app_id"]) == \
                (sent["from"], sent["to"], "OUTBOUND", app["app_id"]), rec


# ---------------------------------------------------------------------------------------------
# The echo agent.

ECHO_FRAMES = 50


def echoed_in_order(frames, packets):
    """How many of `frames`, from the first, the party heard back byte for byte, in order (in
    the audio it was sent, whatever the packet boundaries)."""
    heard = b"".join(p.payload for p in packets if p.pt == 8)
    pos = n = 0
    for f in frames:
        i = heard.find(f, pos)
        if i < 0:
            break
        n, pos = n + 1, i + len(f)
    return n


def readme_agent(label):
    """The README's agent under the Calls item `label`: its code, its one
    websockets.serve(handler, "HOST", PORT) call, and the answer webhook reply written after it,
    whose stream URL must name the agent's port."""
    text = README.read_text(encoding="utf-8")
    item = doc_item(doc_section(text, CALLS_HEADING), label)
    code, end = one_block(item, "python", f"'- **{label}**'")
    serve = list(re.finditer(r'websockets\.serve\((\w+), "([^"]+)", (\d+)\)', code))
    if len(serve) != 1:
        pytest.fail(f"README.md, '{label}': expected one websockets.serve(handler, \"HOST\", PORT)"
                    " in the agent")
    replies = re.findall(r'`(\{"stream":.*?\})`', item[end:])
    if len(replies) != 1:
        pytest.fail(f"README.md, '{label}': expected one answer webhook reply "
                    "`{\"stream\":...}` after the agent")
    reply = json.loads(replies[0])
    m = re.fullmatch(r"ws://[^/:]+:(\d+)(/\S*)", reply["stream"]["url"])
    assert m and int(m.group(1)) == int(serve[0].group(3)), \
        f"the webhook's URL {reply['stream']['url']} is not the agent's port {serve[0].group(3)}"
    return code, serve[0], reply, m.group(2)


def need_call_tools():
    """SIPp and python3-websockets; the audio stream does not depend on the database backend,
    so SQLite runs only."""
    if SIPP is None:
        skip_unless_strict("sipp (package sip-tester) is not installed")
    if os.environ.get("SFVOPI_TEST_PG_URL"):
        pytest.skip("the audio stream is independent of the database backend: SQLite run only")
    try:
        import stream_helper  # noqa: F401,PLC0415
    except ImportError as e:
        skip_unless_strict(f"python3-websockets is not installed ({e})")


@contextlib.contextmanager
def agent_running(tmp_path, name, code, serve, reply, path):
    """The agent's code run as written but on a free port (the reply's stream URL follows it),
    listening; yields its log file. Stopped however the test ends; a Python traceback in its log
    fails the test."""
    port = _free_tcp_port()
    agent_py = tmp_path / f"{name}.py"
    agent_py.write_text(code[:serve.start(2) - 1] + '"127.0.0.1", ' + str(port)
                        + code[serve.end(3):])
    reply["stream"]["url"] = f"ws://127.0.0.1:{port}{path}"
    agent_log = tmp_path / f"{name}.log"
    with open(agent_log, "wb") as log:
        agent = subprocess.Popen(["/usr/bin/python3", str(agent_py)], stdin=subprocess.DEVNULL,
                                 stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
                                 env=base_env())
    try:
        assert wait_until(lambda: port_taken(port, udp=False) or agent.poll() is not None,
                          timeout=10, interval=0.05) and agent.poll() is None, \
            f"the agent did not start (rc={agent.poll()}):\n{agent_log.read_text()}"
        yield agent_log
        assert agent.poll() is None, f"the agent exited:\n{agent_log.read_text()}"
    finally:
        if agent.poll() is None:
            agent.terminate()
        try:
            agent.wait(timeout=5)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()
    out = agent_log.read_text(errors="replace")
    assert "Traceback" not in out, out


def linked_number(srv, fc, name):
    """A number of a new org, linked to an app whose webhooks go to fc."""
    org = srv.make_org()
    number = org.add_numbers(1)[0]
    app = org.client().create_app(name=name, answer_url=fc.url("/answer"),
                                  hangup_url=fc.url("/hangup"))
    org.client().link(app["app_id"], number)
    return number


def test_readme_echo_agent_answers_a_call(tmp_path):
    code, serve, reply, path = readme_agent("The audio stream.")
    need_call_tools()
    from stream_helper import FRAME, Party, pattern

    frames = [pattern(FRAME * ECHO_FRAMES, seed=5)[i * FRAME:(i + 1) * FRAME]
              for i in range(ECHO_FRAMES)]
    assert len(set(frames)) == ECHO_FRAMES
    with agent_running(tmp_path, "agent", code, serve, reply, path) as agent_log:
        with call_server(tmp_path) as srv, FakeCustomer() as fc, Party() as party:
            fc.on("/answer", reply_json(reply))
            carrier = Sipp("in_stream", tmp_path, remote=f"127.0.0.1:{srv.sip_port}",
                           service=linked_number(srv, fc, "echo"),
                           keys={"caller": "+14155550100", "party_port": party.port},
                           duration_ms=4000)
            with carrier:
                fc.wait_for(1, path="/answer", timeout=8)
                party.wait_peer(5)  # sfvopi's RTP begins once the stream is open
                party.send_frames(frames)
                wait_until(lambda: echoed_in_order(frames, party.packets()) == ECHO_FRAMES,
                           timeout=3, interval=0.05)
                rc = carrier.wait(20)
            assert rc == 0, f"sipp exit code {rc}\n{carrier.report()}\n{srv.log[-4000:]}"
            heard = echoed_in_order(frames, party.packets())
            assert heard == ECHO_FRAMES, \
                f"the party heard {heard} of {ECHO_FRAMES} frames back; agent log:\n" \
                f"{agent_log.read_text(errors='replace')}"
            hangup, = fc.wait_for(1, path="/hangup", timeout=10)
            assert hangup.payload["call_status"] == "COMPLETED", hangup.payload


def _frame_hz(payload, alaw):
    """The frequency of one 20 ms A-law frame, from its zero crossings."""
    x = [alaw[b] for b in payload]
    crossings = sum(1 for a, b in zip(x, x[1:]) if (a < 0) != (b < 0))
    return crossings / 2 / (len(x) / 8000)


def test_readme_voice_agent_barge_in_goodbye_and_hangup(tmp_path):
    """The README's voice agent, run as written (host and port aside) on a real call: the party
    hears the 440 Hz greeting until it speaks, then exactly the 500 ms goodbye at 660 Hz, then a
    BYE; the agent's clearedAudio playedMs is what the party heard of the greeting (one frame);
    the call ends COMPLETED "16"."""
    code, serve, reply, path = readme_agent("Voice agents.")
    need_call_tools()
    from stream_helper import ALAW, FRAME, Party, alaw_encode

    loud = bytes([alaw_encode(12000 if i % 20 < 10 else -12000) for i in range(FRAME)])

    def greeting_heard(party):
        return sum(not p.silent for p in party.packets())

    with agent_running(tmp_path, "voice_agent", code, serve, reply, path) as agent_log:
        with call_server(tmp_path) as srv, FakeCustomer() as fc, Party() as party:
            fc.on("/answer", reply_json(reply))
            carrier = Sipp("in_stream_wait_bye", tmp_path, remote=f"127.0.0.1:{srv.sip_port}",
                           service=linked_number(srv, fc, "voice agent"),
                           keys={"caller": "+14155550100", "party_port": party.port})
            with carrier:
                fc.wait_for(1, path="/answer", timeout=8)
                party.wait_peer(5)
                assert wait_until(lambda: greeting_heard(party) >= 25, timeout=5, interval=0.02)
                party.send_frames([loud] * 10)  # the caller speaks over the greeting
                rc = carrier.wait(20)  # the scenario ends with sfvopi's BYE
            assert rc == 0, f"sipp exit code {rc}\n{carrier.report()}\n{srv.log[-4000:]}"
            hangup, = fc.wait_for(1, path="/hangup", timeout=10)
            assert (hangup.payload["call_status"], hangup.payload["hangup_cause"]) == \
                ("COMPLETED", "16"), hangup.payload
            heard = [p for p in party.packets() if not p.silent]
    out = agent_log.read_text(errors="replace")
    said = re.findall(r"the caller heard (\d+) ms of the greeting", out)
    assert len(said) == 1, out
    hz = [_frame_hz(p.payload, ALAW) for p in heard]
    greeting = [f for f in hz if abs(f - 440) < 60]
    goodbye = [f for f in hz if abs(f - 660) < 60]
    assert len(greeting) + len(goodbye) == len(hz), f"frames of neither tone: {hz}"
    assert hz[:len(greeting)] == greeting, "the goodbye began before the greeting stopped"
    assert 25 <= len(greeting) < 100, f"{len(greeting)} greeting frames: not cut by the barge-in"
    assert len(goodbye) == 25, f"{len(goodbye)} goodbye frames: want all 500 ms before the BYE"
    print(f"\nclearedAudio playedMs {said[0]}, the party heard {20 * len(greeting)} ms")
    assert abs(int(said[0]) - 20 * len(greeting)) <= 20, (said, len(greeting))


# ---------------------------------------------------------------------------------------------
# "Connecting a carrier": the serve commands and the firewall rule.

CARRIER_HEADING = "## Connecting a carrier"


def test_readme_carrier_commands_use_real_options():
    """Each `sfvopi serve` command of the section uses only options `serve --help` lists."""
    section = doc_section(README.read_text(encoding="utf-8"), CARRIER_HEADING)
    help_cp = subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True,
                             timeout=10, stdin=subprocess.DEVNULL)
    listed = set(re.findall(r"^\s+(--[a-z][a-z-]*)", help_cp.stdout, flags=re.M))
    commands = [s for lang, body, _ in fenced(section) if lang == "sh"
                for s in logical_lines(body) if s.startswith("sfvopi serve ")]
    assert len(commands) == 4, commands
    for command in commands:
        used = set(re.findall(r"(?<!\S)(--[a-z][a-z-]*)", command))
        assert used and not used - listed, f"not in `serve --help`: {used - listed}"
    assert "SFVOPI_SIP_PASSWORD" in section and "--sip-password" not in " ".join(commands)


_NFT_PROBE = r"""
import json, socket, sys
port = int(sys.argv[1])
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.bind(("0.0.0.0", port))
rx.settimeout(1.0)
got = []
for src in sys.argv[2:]:
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind((src, 0))
    tx.sendto(src.encode(), ("192.0.2.10", port))
    tx.close()
while True:
    try:
        got.append(rx.recv(100).decode())
    except socket.timeout:
        break
print(json.dumps(got))
"""


def test_readme_nftables_rule_drops_other_sources(tmp_path):
    """The rule, loaded as written into a network namespace of the test's own: on port 5060
    datagrams from the listed address and block arrive, others do not; other ports are
    untouched."""
    section = doc_section(README.read_text(encoding="utf-8"), CARRIER_HEADING)
    rules = [body for lang, body, _ in fenced(section) if lang == "" and "table inet" in body]
    assert len(rules) == 1, "expected one nftables block in 'Connecting a carrier'"
    for tool in ("ip", "nft"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            skip_unless_strict(f"{tool} is not installed (iproute2, nftables)")
    if os.geteuid() != 0:
        skip_unless_strict("network namespaces need root")
    rule = tmp_path / "sfvopi.nft"
    rule.write_text(rules[0])
    probe = tmp_path / "probe.py"
    probe.write_text(_NFT_PROBE)
    ns = f"sfvopi-nft-{os.getpid()}"
    sources = ["192.0.2.10", "198.51.100.77", "203.0.113.5"]

    def run(*argv):
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        assert cp.returncode == 0, f"{argv}: {cp.stderr}"
        return cp.stdout

    run("ip", "netns", "add", ns)
    try:
        run("ip", "-n", ns, "link", "set", "lo", "up")
        for a in sources:
            run("ip", "-n", ns, "addr", "add", f"{a}/32", "dev", "lo")
        run("ip", "netns", "exec", ns, "nft", "-f", str(rule))
        got = json.loads(run("ip", "netns", "exec", ns, "/usr/bin/python3", str(probe), "5060",
                             *sources))
        assert sorted(got) == ["192.0.2.10", "198.51.100.77"], got
        other = json.loads(run("ip", "netns", "exec", ns, "/usr/bin/python3", str(probe), "5080",
                               *sources))
        assert sorted(other) == sorted(sources), other
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
