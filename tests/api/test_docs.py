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
"""

import json
import re
import subprocess

import pytest

from conftest import KEY_RE, REPO

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
