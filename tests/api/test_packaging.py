"""Packaging: the systemd unit (contrib/sfvopi.service) and `make install`.

systemd-analyze (Debian package `systemd`) checks the unit as systemd would load it. It also
checks that ExecStart's program exists, so the unit is verified as a copy whose only change is
ExecStart's path: the built binary instead of /usr/local/bin/sfvopi.
"""

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, REPO, require_binary, skip_unless_strict

UNIT = REPO / "contrib" / "sfvopi.service"
INSTALLED_BIN = "/usr/local/bin/sfvopi"


def unit_entries(text):
    """[(section, key, value)] of a unit file, in order (comments and blanks dropped)."""
    out, section = [], None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        m = re.fullmatch(r"\[(\w+)\]", line)
        if m:
            section = m.group(1)
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        out.append((section, key.strip(), value.strip()))
    return out


def unit_copy(tmp_path, binary):
    """The unit, with ExecStart's program replaced by `binary`, as tmp_path/sfvopi.service."""
    text = UNIT.read_text()
    assert text.count(f"ExecStart={INSTALLED_BIN} ") == 1, "ExecStart must run " + INSTALLED_BIN
    path = tmp_path / "sfvopi.service"
    path.write_text(text.replace(f"ExecStart={INSTALLED_BIN} ", f"ExecStart={binary} "))
    return path


def systemd_analyze():
    exe = shutil.which("systemd-analyze")
    if not exe:
        skip_unless_strict("systemd-analyze is not installed (Debian: apt-get install systemd)")
    return exe


# What the unit must say (a key may appear more than once: each listed value must be there).
REQUIRED = [
    ("Service", "ExecStart", f"{INSTALLED_BIN} serve"),
    ("Service", "Environment", "SFVOPI_DB=sqlite:/var/lib/sfvopi/sfvopi.db"),
    ("Service", "Environment", "SFVOPI_LISTEN=127.0.0.1:8080"),
    ("Service", "DynamicUser", "yes"),
    ("Service", "StateDirectory", "sfvopi"),
    ("Service", "NoNewPrivileges", "yes"),
    ("Service", "ProtectSystem", "strict"),
    ("Service", "ProtectHome", "yes"),
    ("Service", "PrivateTmp", "yes"),
    ("Service", "PrivateDevices", "yes"),
    ("Service", "ProtectKernelTunables", "yes"),
    ("Service", "ProtectKernelModules", "yes"),
    ("Service", "ProtectKernelLogs", "yes"),
    ("Service", "RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
    ("Service", "LockPersonality", "yes"),
    ("Service", "MemoryDenyWriteExecute", "yes"),
    ("Service", "SystemCallFilter", "@system-service"),
    ("Service", "Restart", "on-failure"),
    ("Service", "KillSignal", "SIGTERM"),
    ("Service", "ExecReload", "/bin/kill -HUP $MAINPID"),
    ("Service", "TimeoutStopSec", "60"),
    ("Service", "CapabilityBoundingSet", ""),
    ("Install", "WantedBy", "multi-user.target"),
]


@pytest.mark.parametrize("section,key,value", REQUIRED, ids=[f"{k}={v}" for _, k, v in REQUIRED])
def test_unit_has(section, key, value):
    assert (section, key, value) in unit_entries(UNIT.read_text())


def test_unit_stop_timeout_covers_the_drain():
    """After SIGTERM sfvopi drains calls for at most --drain-timeout (the default of serve
    --help), then finishes requests in flight (at most 10 s) and the last BYEs and webhooks (at
    most 10 s): systemd must wait longer than all of that before it kills."""
    entries = {(s, k): v for s, k, v in unit_entries(UNIT.read_text())}
    cp = subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True, timeout=10,
                        stdin=subprocess.DEVNULL)
    m = re.search(r"--drain-timeout S .*?\(default (\d+)\)", cp.stdout, re.S)
    assert m, cp.stdout
    assert int(entries[("Service", "TimeoutStopSec")]) > int(m.group(1)) + 10 + 10
    # The database path is inside the state directory, the only writable place.
    assert entries[("Service", "WorkingDirectory")] == "/var/lib/sfvopi"


def test_systemd_analyze_verify(tmp_path):
    exe = systemd_analyze()
    require_binary()
    unit = unit_copy(tmp_path, os.path.abspath(BIN))
    cp = subprocess.run([exe, "verify", "--man=no", str(unit)], capture_output=True, text=True,
                        timeout=120, stdin=subprocess.DEVNULL)
    # verify exits 0 on unknown keys and unparsable values; it only prints them. Any line
    # about our unit counts as a failure (lines about the host's own units do not).
    ours = [ln for ln in (cp.stdout + cp.stderr).splitlines() if "sfvopi" in ln]
    assert cp.returncode == 0 and not ours, f"rc={cp.returncode}\n{cp.stdout}{cp.stderr}"


def test_systemd_analyze_verify_catches_mistakes(tmp_path):
    """The check above can fail: a misspelt key and a bad value are both reported."""
    exe = systemd_analyze()
    require_binary()
    unit = unit_copy(tmp_path, os.path.abspath(BIN))
    unit.write_text(unit.read_text().replace("LockPersonality=yes", "LockPersonalty=yes")
                    .replace("ProtectSystem=strict", "ProtectSystem=stricter"))
    cp = subprocess.run([exe, "verify", "--man=no", str(unit)], capture_output=True, text=True,
                        timeout=120, stdin=subprocess.DEVNULL)
    out = cp.stdout + cp.stderr
    assert "LockPersonalty" in out and "stricter" in out, out


def test_systemd_analyze_security(tmp_path):
    """The sandbox stays tight: systemd's own exposure score at most 2.0 of 10 ("OK")."""
    exe = systemd_analyze()
    require_binary()
    unit = unit_copy(tmp_path, os.path.abspath(BIN))
    cp = subprocess.run([exe, "security", "--offline=yes", "--threshold=20", "--no-pager",
                         str(unit)], capture_output=True, text=True, timeout=120,
                        stdin=subprocess.DEVNULL)
    m = re.search(r"Overall exposure level for sfvopi\.service: ([0-9.]+)", cp.stdout)
    assert m, cp.stdout[-2000:] + cp.stderr
    assert float(m.group(1)) <= 2.0, cp.stdout[-3000:]
    assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr


# ---------------------------------------------------------------------------------------------
# make install

def make_install(tmp_path, *args):
    if not shutil.which("make"):
        pytest.fail("make is not installed")
    # A clean make: not the settings (SAN=1, jobserver) of a make that may be running us.
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    cp = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "install", *args],
                        capture_output=True, text=True, timeout=900, env=env,
                        stdin=subprocess.DEVNULL)
    assert cp.returncode == 0, f"make install {' '.join(args)} failed:\n{cp.stdout}\n{cp.stderr}"
    return cp


def check_installed(root, prefix):
    """root + prefix hold bin/sfvopi (runs) and lib/systemd/system/sfvopi.service."""
    base = root / prefix.lstrip("/") if root else Path(prefix)
    binary = base / "bin" / "sfvopi"
    assert binary.is_file(), f"{binary} missing"
    mode = binary.stat().st_mode
    assert mode & stat.S_IXUSR and mode & stat.S_IXOTH and not mode & stat.S_IWOTH, oct(mode)
    cp = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30,
                        stdin=subprocess.DEVNULL)
    assert cp.returncode == 0 and re.fullmatch(r"sfvopi \S+\n", cp.stdout), (cp.stdout, cp.stderr)
    unit = base / "lib" / "systemd" / "system" / "sfvopi.service"
    assert unit.is_file(), f"{unit} missing"
    assert not unit.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH | stat.S_IXUSR)
    return binary, unit


def test_make_install_with_destdir(tmp_path):
    """make install PREFIX=... DESTDIR=...: everything lands under DESTDIR + PREFIX."""
    dest = tmp_path / "dest"
    prefix = "/opt/sfvopi-test"
    make_install(tmp_path, f"PREFIX={prefix}", f"DESTDIR={dest}")
    binary, unit = check_installed(dest, prefix)
    found = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert found == ["opt/sfvopi-test/bin/sfvopi",
                     "opt/sfvopi-test/lib/systemd/system/sfvopi.service"], found


def test_make_install_default_prefix_installs_the_unit_as_is(tmp_path):
    """With the default PREFIX (/usr/local), the unit is contrib/sfvopi.service verbatim."""
    dest = tmp_path / "dest"
    make_install(tmp_path, f"DESTDIR={dest}")
    _, unit = check_installed(dest, "/usr/local")
    assert unit.read_text() == UNIT.read_text()


def test_make_install_unit_runs_the_installed_binary(tmp_path):
    """Under another PREFIX, the installed unit's ExecStart names the binary installed next to
    it ($(PREFIX)/bin/sfvopi), not /usr/local/bin/sfvopi."""
    prefix = tmp_path / "prefix"
    make_install(tmp_path, f"PREFIX={prefix}")
    binary, unit = check_installed(None, str(prefix))
    execs = [v for s, k, v in unit_entries(unit.read_text()) if k == "ExecStart"]
    assert execs == [f"{binary} serve"], execs
    exe = shutil.which("systemd-analyze")
    if exe:
        cp = subprocess.run([exe, "verify", "--man=no", str(unit)], capture_output=True,
                            text=True, timeout=120, stdin=subprocess.DEVNULL)
        ours = [ln for ln in (cp.stdout + cp.stderr).splitlines() if "sfvopi" in ln]
        assert cp.returncode == 0 and not ours, cp.stdout + cp.stderr
