"""HTTPS on the API and admin listeners (--tls-cert/--tls-key, --admin-tls-cert/--admin-tls-key),
the certificate reload on SIGHUP, X-Forwarded-For from trusted proxies (--trusted-proxy), and the
README's nginx block in front of sfvopi.

Certificates come from a throwaway CA made with the openssl CLI; curl and Python's ssl check them
against that CA only. These tests start their own servers and run once, in the plain build's
SQLite pass (TLS is the same code on every backend).
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

from conftest import (BIN, MSG_UNAUTH, PG_URL, REPO, Server, base_env, fresh_db,
                      skip_unless_strict)

# The SQLite passes only (plain and ASan+UBSan: the sanitizers watch the certificate code).
pytestmark = pytest.mark.skipif(bool(PG_URL), reason="HTTPS is independent of the database: "
                                "the SQLite passes only")

ADMIN_RE = re.compile(r"admin listening on (\S+):(\d+)")


# ---------------------------------------------------------------------------------------------
# A throwaway PKI.

def _openssl(*args, cwd):
    cp = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    assert cp.returncode == 0, (args, cp.stderr)


class Pki:
    """A CA and server certificates signed by it, each with its own P-256 key."""

    def __init__(self, d):
        self.dir = Path(d)
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "3", "-subj",
                 "/CN=sfvopi test CA", cwd=d)
        self.ca = str(self.dir / "ca.pem")

    def issue(self, name, serial, hosts=("DNS:localhost", "IP:127.0.0.1"), days=2):
        """cert, key paths of a certificate for hosts; days < 0 makes it already expired."""
        (self.dir / f"{name}.ext").write_text("subjectAltName=" + ",".join(hosts) + "\n")
        _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
                 cwd=self.dir)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-set_serial", hex(serial), "-days", str(days), "-extfile", f"{name}.ext",
                 "-out", f"{name}.pem", cwd=self.dir)
        return str(self.dir / f"{name}.pem"), str(self.dir / f"{name}.key")


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    for tool in ("openssl", "curl"):
        if not shutil.which(tool):
            skip_unless_strict(f"{tool} is not installed")
    p = Pki(tmp_path_factory.mktemp("pki"))
    p.good = p.issue("good", 0x1001)
    p.good2 = p.issue("good2", 0x1002)
    p.expired = p.issue("expired", 0x1003, days=-1)
    p.wronghost = p.issue("wronghost", 0x1004, hosts=("DNS:other.example",))
    return p


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("https")


def start(url, workdir, *args, threads="2"):
    """A server on 127.0.0.1:0 with the extra serve options args; .https is its HTTPS base."""
    srv = Server(url, workdir, argv=[BIN, "--db", url, "serve", "--listen", "127.0.0.1:0",
                                     "--threads", threads, *args]).start()
    srv.https = f"https://localhost:{srv.port}"
    return srv


def wait_log(srv, pattern, count=1, timeout=10):
    """The log's lines matching pattern once there are count of them (bounded polling)."""
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        lines = [l for l in srv.log.splitlines() if rx.search(l)]
        if len(lines) >= count:
            return lines
        assert time.monotonic() < deadline, f"no {count}x {pattern!r} in log:\n{srv.log[-3000:]}"
        time.sleep(0.02)


def curl(pki, *args, timeout=15):
    """curl against the test CA; returns (rc, status, body, stderr)."""
    cp = subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", pki.ca, "-w",
                         "\n%{http_code}", *args], capture_output=True, text=True, timeout=timeout)
    body, _, status = cp.stdout.rpartition("\n")
    return cp.returncode, int(status or 0), body, cp.stderr


def ctx_for(pki):
    ctx = ssl.create_default_context(cafile=pki.ca)
    return ctx


def peer_serial(port, pki):
    """The serial (hex, as Python's ssl prints it) of the certificate a new connection gets."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx_for(pki).wrap_socket(raw, server_hostname="localhost") as s:
            return s.getpeercert()["serialNumber"]


def replace_files(cert, key, dst_cert, dst_key):
    """Puts new cert and key files in place, each by an atomic rename."""
    for src, dst in ((cert, dst_cert), (key, dst_key)):
        tmpf = dst + ".new"
        shutil.copyfile(src, tmpf)
        os.replace(tmpf, dst)


# ---------------------------------------------------------------------------------------------
# (a) The API over HTTPS.

@pytest.fixture(scope="module")
def tls_server(pki, tmp):
    with fresh_db(tmp, "tls") as url:
        srv = start(url, tmp, "--tls-cert", pki.good[0], "--tls-key", pki.good[1])
        yield srv
        assert srv.stop() == 0


def test_api_over_https(pki, tls_server):
    srv = tls_server
    org = srv.make_org()
    number = org.add_numbers(1)[0]
    h = ["-H", f"X-API-Key: {org.key}"]
    rc, status, body, err = curl(pki, *h, "-H", "Content-Type: application/json", "-d",
                                 '{"name":"TLS App","answer_url":"https://example.com/a"}',
                                 srv.https + "/sfvopi/apps")
    assert (rc, status) == (0, 200), (rc, status, body, err)
    app = json.loads(body)["data"]
    assert app["name"] == "TLS App" and app["org_id"] == org.id, body
    rc, status, body, _ = curl(pki, *h, f"{srv.https}/sfvopi/apps/{app['app_id']}/numbers")
    assert (rc, status, body) == (0, 200, '{"data":[],"message":"success"}')
    rc, status, body, _ = curl(pki, *h, "-H", "Content-Type: application/json", "-d",
                               f'{{"voip_number":"{number}"}}',
                               f"{srv.https}/sfvopi/apps/{app['app_id']}/numbers")
    assert (rc, status) == (0, 200), body
    rc, status, body, _ = curl(pki, *h, f"{srv.https}/sfvopi/apps/{app['app_id']}/numbers")
    links = json.loads(body)["data"]
    assert (rc, status) == (0, 200) and [l["voip_number"] for l in links] == [number], body
    rc, status, body, _ = curl(pki, srv.https + "/sfvopi/apps")
    assert (rc, status, body) == (0, 401, '{"message":"%s"}' % MSG_UNAUTH)
    # The access log names the route and the client, as over plain HTTP.
    assert wait_log(srv, r"msg=access method=GET path=\"/sfvopi/apps\" .*status=401 .*"
                         r"client=127\.0\.0\.1 ")


def test_https_keeps_connections_alive(pki, tls_server):
    """Two requests in one curl run go over one TLS connection."""
    srv = tls_server
    cp = subprocess.run(["curl", "-sS", "-v", "--cacert", pki.ca, srv.https + "/healthz",
                         srv.https + "/readyz"], capture_output=True, text=True, timeout=15)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout == '{"status":"ok"}{"status":"ready"}', cp.stdout
    assert "Re-using existing connection" in cp.stderr, cp.stderr
    assert cp.stderr.count("SSL connection using") == 1, cp.stderr


def test_plain_http_to_the_tls_port_gets_no_answer(tls_server):
    cp = subprocess.run(["curl", "-sS", "--max-time", "10", f"http://127.0.0.1:{tls_server.port}"
                         "/healthz"], capture_output=True, text=True, timeout=15)
    assert cp.returncode != 0 and '"status"' not in cp.stdout, (cp.returncode, cp.stdout)


def test_readme_self_signed_example(tmp):
    """The README's self-signed certificate, server and curl lines, as written there."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("### HTTPS"):text.index("### The reverse-proxy alternative")]
    block = re.search(r"For a test, a self-signed certificate for `localhost`:\n\s*```sh\n(.*?)```",
                      section, re.S).group(1)
    lines = [l.strip() for l in block.replace("\\\n", " ").splitlines() if l.strip()]
    assert [l.split()[0] for l in lines] == ["openssl", "sfvopi", "curl"], lines
    d = tmp / "readme-selfsigned"
    d.mkdir()
    cp = subprocess.run(lines[0], shell=True, cwd=d, capture_output=True, text=True, timeout=30)
    assert cp.returncode == 0, cp.stderr
    serve = lines[1].split()
    assert serve[:4] == ["sfvopi", "serve", "--listen", "127.0.0.1:8443"], serve
    with fresh_db(tmp, "selfsigned") as url:
        args = [str(d / a) if a.endswith(".pem") else a for a in serve[4:]]
        srv = start(url, d, *args, threads="1")  # on a free port instead of 8443
        try:
            cmd = lines[2].replace("localhost:8443", f"localhost:{srv.port}").split()
            cp = subprocess.run(cmd, cwd=d, capture_output=True, text=True, timeout=15)
            assert (cp.returncode, cp.stdout) == (0, '{"status":"ok"}'), cp.stderr
        finally:
            assert srv.stop() == 0


# ---------------------------------------------------------------------------------------------
# (b) Certificates curl must refuse, and (c) protocol versions.

@pytest.mark.parametrize("which, why", [("expired", "expired"),
                                        ("wronghost", "subject name")])
def test_bad_certificates_are_refused(pki, tmp, which, why):
    cert, key = getattr(pki, which)
    with fresh_db(tmp, which) as url:
        srv = start(url, tmp, "--tls-cert", cert, "--tls-key", key, threads="1")
        try:
            rc, status, body, err = curl(pki, srv.https + "/healthz")
            assert rc == 60, (rc, err)  # CURLE_PEER_FAILED_VERIFICATION
            assert why in err, err
            assert (status, body) == (0, "")
        finally:
            assert srv.stop() == 0


def test_good_certificate_is_verified(pki, tls_server):
    rc, status, body, err = curl(pki, tls_server.https + "/healthz")
    assert (rc, status, body) == (0, 200, '{"status":"ok"}'), err
    # Without the test CA the same certificate is unknown: verification is really on.
    cp = subprocess.run(["curl", "-sS", "--max-time", "10", tls_server.https + "/healthz"],
                        capture_output=True, text=True, timeout=15)
    assert cp.returncode == 60, cp.stderr


def _tls11_control_server(pki):
    """A Python TLS 1.1-only server, to show that the curl line below can speak TLS 1.1."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with pytest.warns(DeprecationWarning):
        ctx.minimum_version = ssl.TLSVersion.TLSv1_1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.load_cert_chain(*pki.good)
    lsock = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = lsock.accept()
        try:
            with ctx.wrap_socket(conn, server_side=True) as s:
                s.recv(4096)
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        except (ssl.SSLError, OSError):
            pass
        finally:
            lsock.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return lsock.getsockname()[1], t


TLS11 = ["--tlsv1.1", "--tls-max", "1.1", "--ciphers", "DEFAULT:@SECLEVEL=0"]


def test_tls_versions(pki, tls_server):
    port, t = _tls11_control_server(pki)
    rc, status, body, err = curl(pki, *TLS11, f"https://localhost:{port}/")
    t.join(10)
    assert (rc, status, body) == (0, 200, "ok"), err  # the client side can do TLS 1.1
    rc, status, body, err = curl(pki, *TLS11, tls_server.https + "/healthz")
    assert rc == 35 and status == 0, (rc, err)  # CURLE_SSL_CONNECT_ERROR: sfvopi refuses 1.1
    for args, version in ((["--tlsv1.2", "--tls-max", "1.2"], "TLSv1.2"),
                          (["--tlsv1.3"], "TLSv1.3")):
        rc, status, body, err = curl(pki, "-v", *args, tls_server.https + "/healthz")
        assert (rc, status, body) == (0, 200, '{"status":"ok"}'), err
        assert f"SSL connection using {version}" in err, err


# ---------------------------------------------------------------------------------------------
# Start-up errors.

def test_start_errors(pki, tmp):
    garbage = tmp / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with fresh_db(tmp, "bad") as url:
        def serve(*args):
            return subprocess.run([BIN, "--db", url, "serve", "--listen", "127.0.0.1:0", *args],
                                  capture_output=True, text=True, timeout=15, env=base_env())

        cases = [
            (("--tls-cert", "/nonexistent/c.pem", "--tls-key", pki.good[1]),
             "sfvopi: cannot use --tls-cert/--tls-key: cannot read certificate "
             "/nonexistent/c.pem: No such file or directory"),
            (("--tls-cert", str(garbage), "--tls-key", pki.good[1]),
             f"sfvopi: cannot use --tls-cert/--tls-key: certificate {garbage} holds no PEM "
             "certificate"),
            (("--tls-cert", pki.good[0], "--tls-key", pki.good[0]),
             f"sfvopi: cannot use --tls-cert/--tls-key: key {pki.good[0]} holds no unencrypted "
             "PEM private key"),
            (("--tls-cert", pki.good[0], "--tls-key", pki.good2[1]),
             f"sfvopi: cannot use --tls-cert/--tls-key: key {pki.good2[1]} does not belong to "
             f"certificate {pki.good[0]}"),
            (("--admin-listen", "127.0.0.1:0", "--admin-tls-cert", pki.good[0],
              "--admin-tls-key", pki.good2[1]),
             f"sfvopi: cannot use --admin-tls-cert/--admin-tls-key: key {pki.good2[1]} does not "
             f"belong to certificate {pki.good[0]}"),
        ]
        key_body = "".join(l for l in Path(pki.good2[1]).read_text().splitlines()
                           if "-----" not in l)
        for args, msg in cases:
            cp = serve(*args)
            assert cp.returncode == 1, (args, cp.returncode, cp.stderr)
            assert cp.stderr.startswith(msg), (args, cp.stderr)
            assert cp.stderr.count("\n") == 1, cp.stderr  # one line, and nothing was served
            assert "PRIVATE KEY" not in cp.stderr and key_body[:20] not in cp.stderr
        # One of a pair alone is bad usage.
        for args, msg in ((("--tls-cert", pki.good[0]), "sfvopi: --tls-cert needs --tls-key"),
                          (("--tls-key", pki.good[1]), "sfvopi: --tls-key needs --tls-cert")):
            cp = serve(*args)
            assert cp.returncode == 2 and cp.stderr.startswith(msg + "\n"), cp.stderr


# ---------------------------------------------------------------------------------------------
# (d) SIGHUP reload.

def test_sighup_reload_keeps_connections(pki, tmp):
    cert, key = str(tmp / "live.pem"), str(tmp / "live.key")
    replace_files(*pki.good, cert, key)
    with fresh_db(tmp, "reload") as url:
        srv = start(url, tmp, "--tls-cert", cert, "--tls-key", key)
        try:
            conn = http.client.HTTPSConnection("localhost", srv.port, timeout=10,
                                               context=ctx_for(pki))
            conn.request("GET", "/healthz")
            r = conn.getresponse()
            assert (r.status, r.read()) == (200, b'{"status":"ok"}')
            sock = conn.sock
            local = sock.getsockname()
            assert sock.getpeercert()["serialNumber"] == "1001"

            # A new certificate (new key, new serial) replaces the files; SIGHUP loads it.
            replace_files(*pki.good2, cert, key)
            srv.proc.send_signal(signal.SIGHUP)
            line = wait_log(srv, r"msg=\"tls certificate reloaded\"")[0]
            assert "listener=api serial=1002 " in line, line
            not_after = subprocess.run(["openssl", "x509", "-in", pki.good2[0], "-noout",
                                        "-enddate"], capture_output=True, text=True).stdout
            when = time.strptime(not_after.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y %Z")
            assert time.strftime("not_after=%Y-%m-%dT%H:%M:%S.000Z", when) in line, line

            # The open connection goes on, on the same socket and TLS session.
            conn.request("GET", "/readyz")
            r = conn.getresponse()
            assert (r.status, r.read()) == (200, b'{"status":"ready"}')
            assert conn.sock is sock and sock.getsockname() == local
            assert sock.getpeercert()["serialNumber"] == "1001"
            # A new connection gets the new certificate.
            assert peer_serial(srv.port, pki) == "1002"

            # A reload that fails keeps the certificate in use and says why.
            Path(cert).write_text("garbage\n")
            srv.proc.send_signal(signal.SIGHUP)
            line = wait_log(srv, r"level=warn msg=\"tls reload failed")[0]
            assert f"reason=\"certificate {cert} holds no PEM certificate" in line, line
            assert peer_serial(srv.port, pki) == "1002"
            # So does one with a key that is not the certificate's.
            shutil.copyfile(pki.good[0], cert)  # key still good2's
            srv.proc.send_signal(signal.SIGHUP)
            line = wait_log(srv, r"level=warn msg=\"tls reload failed", count=2)[1]
            assert f"reason=\"key {key} does not belong to certificate {cert}\"" in line, line
            assert peer_serial(srv.port, pki) == "1002"
            conn.request("GET", "/healthz")
            r = conn.getresponse()
            assert (r.status, r.read()) == (200, b'{"status":"ok"}') and conn.sock is sock
            conn.close()
            # Put right, the next SIGHUP succeeds.
            replace_files(*pki.good, cert, key)
            srv.proc.send_signal(signal.SIGHUP)
            assert "serial=1001 " in wait_log(srv, r"tls certificate reloaded", count=2)[1]
            assert peer_serial(srv.port, pki) == "1001"
        finally:
            assert srv.stop() == 0
    assert "PRIVATE KEY" not in srv.log


def test_sighup_on_plain_http_is_harmless(tmp):
    with fresh_db(tmp, "plainhup") as url:
        srv = start(url, tmp, threads="1")
        try:
            srv.proc.send_signal(signal.SIGHUP)
            wait_log(srv, r"msg=\"SIGHUP: no TLS listener, nothing to reload\"")
            assert srv.proc.poll() is None
            r = requests.get(srv.url + "/healthz", timeout=5)
            assert (r.status_code, r.json()) == (200, {"status": "ok"})
        finally:
            assert srv.stop() == 0


# ---------------------------------------------------------------------------------------------
# (e) The admin listener over TLS.

def test_admin_listener_over_tls(pki, tmp):
    with fresh_db(tmp, "admin") as url:
        srv = start(url, tmp, "--admin-listen", "127.0.0.1:0", "--admin-tls-cert", pki.good[0],
                    "--admin-tls-key", pki.good[1], threads="1")
        try:
            m = ADMIN_RE.search(srv.log)
            assert m, srv.log
            admin = f"https://localhost:{m.group(2)}"
            rc, status, body, err = curl(pki, admin + "/metrics")
            assert (rc, status) == (0, 200), err
            assert "sfvopi_http_requests_total" in body or "sfvopi_" in body, body[:500]
            rc, status, body, _ = curl(pki, admin + "/readyz")
            assert (rc, status, body) == (0, 200, '{"status":"ready"}')
            # The API listener stays plain HTTP, and /metrics is not on it.
            r = requests.get(srv.url + "/metrics", timeout=5)
            assert r.status_code == 404
            assert requests.get(srv.url + "/healthz", timeout=5).status_code == 200
            srv.proc.send_signal(signal.SIGHUP)
            line = wait_log(srv, r"tls certificate reloaded")[0]
            assert "listener=admin serial=1001 " in line, line
        finally:
            assert srv.stop() == 0


# ---------------------------------------------------------------------------------------------
# (f) X-Forwarded-For.

def client_in_log(srv, rid):
    line = wait_log(srv, rf"msg=access .* req_id={rid}\b")[0]
    return re.search(r" client=(\S+) ", line).group(1)


def get_with_xff(srv, xff):
    rid = "xff-" + uuid.uuid4().hex[:12]
    h = {"X-Request-Id": rid}
    if xff is not None:
        h["X-Forwarded-For"] = xff
    r = requests.get(srv.url + "/healthz", headers=h, timeout=5)
    assert r.status_code == 200
    return client_in_log(srv, rid)


def test_x_forwarded_for_only_from_trusted_proxies(tmp):
    # Three servers, a database each (SQLite holds one server per file).
    with fresh_db(tmp, "xff") as url, fresh_db(tmp, "xff-plain") as url_plain, \
            fresh_db(tmp, "xff-other") as url_other:
        trusting = start(url, tmp, "--trusted-proxy", "127.0.0.1, 10.0.0.0/8", threads="1")
        plain = start(url_plain, tmp, threads="1")
        other = start(url_other, tmp, "--trusted-proxy", "10.0.0.0/8", threads="1")
        try:
            # The peer (127.0.0.1) is trusted: the right-most untrusted address is the client.
            assert get_with_xff(trusting, None) == "127.0.0.1"
            assert get_with_xff(trusting, "203.0.113.7") == "203.0.113.7"
            assert get_with_xff(trusting, "198.51.100.1, 203.0.113.7, 10.0.0.5") == "203.0.113.7"
            assert get_with_xff(trusting, "garbage") == "127.0.0.1"
            # Without the option, or when the peer is not in the list, it is ignored.
            assert get_with_xff(plain, "203.0.113.7") == "127.0.0.1"
            assert get_with_xff(other, "203.0.113.7") == "127.0.0.1"
        finally:
            for s in (trusting, plain, other):
                assert s.stop() == 0


# ---------------------------------------------------------------------------------------------
# The README's reverse-proxy alternative, as written there.

def readme_nginx_block():
    text = (REPO / "README.md").read_text()
    section = text[text.index("### The reverse-proxy alternative"):]
    m = re.search(r"```nginx\n(.*?)```", section, re.S)
    assert m, "no nginx block in the README's reverse-proxy section"
    return m.group(1), section


def test_readme_nginx_in_front(pki, tmp):
    if not shutil.which("nginx"):
        skip_unless_strict("nginx is not installed (nginx-light)")
    block, section = readme_nginx_block()
    assert "--trusted-proxy 127.0.0.1" in section
    with fresh_db(tmp, "nginx") as url:
        srv = start(url, tmp, "--trusted-proxy", "127.0.0.1", threads="1")
        d = tmp / f"nginx-{uuid.uuid4().hex[:6]}"
        d.mkdir()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        conf = (block.replace("127.0.0.1:8080", f"127.0.0.1:{srv.port}")
                .replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
                .replace("/etc/ssl/sfvopi/fullchain.pem", pki.good[0])
                .replace("/etc/ssl/sfvopi/privkey.pem", pki.good[1]))
        (d / "nginx.conf").write_text(
            f"daemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n"
            "events { worker_connections 64; }\n"
            f"http {{\naccess_log off;\nclient_body_temp_path {d};\nproxy_temp_path {d};\n"
            f"{conf}\n}}\n")
        proc = subprocess.Popen(["nginx", "-c", str(d / "nginx.conf"), "-p", str(d)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert proc.poll() is None, proc.stderr.read().decode()
                    assert time.monotonic() < deadline, "nginx did not start"
                    time.sleep(0.05)
            org = srv.make_org()
            rid = "nginx-" + uuid.uuid4().hex[:8]
            # The client is 127.0.0.2 (curl binds it) and claims to be 203.0.113.9: sfvopi logs
            # the address nginx saw, not the claim.
            rc, status, body, err = curl(pki, "--interface", "127.0.0.2", "-H",
                                         f"X-API-Key: {org.key}", "-H", f"X-Request-Id: {rid}",
                                         "-H", "X-Forwarded-For: 203.0.113.9",
                                         f"https://localhost:{port}/sfvopi/apps")
            assert (rc, status, body) == (0, 200, '{"data":[],"message":"success"}'), err
            assert client_in_log(srv, rid) == "127.0.0.2"
            rc, status, body, _ = curl(pki, f"https://localhost:{port}/sfvopi/apps")
            assert (rc, status, body) == (0, 401, '{"message":"%s"}' % MSG_UNAUTH)
        finally:
            proc.send_signal(signal.SIGQUIT)
            proc.wait(timeout=10)
            assert srv.stop() == 0
