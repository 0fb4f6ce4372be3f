"""A fake customer web server for call tests: receives sfvopi's webhooks (CALLS.md section 5).

    with FakeCustomer() as fc:
        fc.on("/answer", reply_json(STREAM_OK))
        fc.on("/fallback", reply_status(500))
        app = api.create_app(answer_url=fc.url("/answer"), ...)
        ...
        answer, = fc.wait_for(1, path="/answer", timeout=10)

Every request is recorded, in arrival order, as a `Hit` (time received, method, path, query,
headers, raw body, JSON body if any). What a path answers is configurable with `on(path, reply)`;
paths without a rule answer 200 `{}`. Slow replies wait on an event that `close()` sets, so
shutting the server down never waits for them.
"""

import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# A valid Stream JSON (CALLS.md section 6). The audio stream is not there: ws://127.0.0.1:9 is a
# closed port; with keep_call_alive the call stays up, silent, until a hangup or its time limit.
STREAM_OK = {"stream": {"url": "ws://127.0.0.1:9/ws", "keep_call_alive": True}}


class Hit:
    """One request the fake customer received."""

    def __init__(self, method, path, query, headers, body):
        self.time = time.time()  # wall clock, comparable with the payload timestamps
        self.mono = time.monotonic()
        self.method = method
        self.path = path
        self.query = query  # {name: value} (the last value when a name repeats)
        self.headers = headers  # {lower-case name: value}
        self.body = body
        self.json = None
        if body:
            try:
                self.json = json.loads(body)
            except ValueError:
                pass

    @property
    def payload(self):
        """The webhook's fields: the JSON body for POST, the query for GET."""
        return self.json if self.method == "POST" else self.query

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def __repr__(self):
        return f"<Hit {self.method} {self.path} {self.payload!r}>"


class Reply:
    """What a path answers: status, body bytes, content type, and an optional delay first."""

    def __init__(self, status=200, body=b"{}", content_type="application/json", delay=0.0):
        self.status = status
        self.body = body if isinstance(body, bytes) else body.encode()
        self.content_type = content_type
        self.delay = delay


def reply_json(obj, status=200, delay=0.0):
    return Reply(status, json.dumps(obj).encode(), delay=delay)


def reply_stream(delay=0.0, **stream):
    """200 with a valid Stream JSON (STREAM_OK, with `stream` fields overridden)."""
    return reply_json({"stream": {**STREAM_OK["stream"], **stream}}, delay=delay)


def reply_status(status, body=b'{"error":"boom"}'):
    return Reply(status, body)


def reply_bad_json():
    return Reply(200, b'{"stream": {"url": "ws://127.0.0.1:9/ws"', "application/json")


def reply_invalid_stream():
    """200 with JSON whose `stream` is invalid (a non-ws URL and an unknown codec)."""
    return reply_json({"stream": {"url": "http://127.0.0.1:9/ws", "codec": "OPUS"}})


def reply_slow(seconds, then=None):
    """Wait `seconds` (cut short by close()), then answer `then` (default: a valid stream)."""
    r = then or reply_stream()
    return Reply(r.status, r.body, r.content_type, delay=seconds)


class FakeCustomer:
    def __init__(self, default=None):
        self._lock = threading.Condition()
        self._hits = []
        self._rules = {}
        self._default = default or Reply()
        self._closing = threading.Event()
        fc = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _handle(self):
                parts = urllib.parse.urlsplit(self.path)
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n > 0 else b""
                query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
                headers = {k.lower(): v for k, v in self.headers.items()}
                hit = Hit(self.command, parts.path, query, headers, body)
                hit.target = self.path  # the request target as sent: path and raw ?query
                hit.raw_query = parts.query  # the query string as sent, without '?'
                with fc._lock:
                    fc._hits.append(hit)
                    rule = fc._rules.get(parts.path, fc._default)
                    fc._lock.notify_all()
                if rule.delay and fc._closing.wait(rule.delay):
                    return  # shutting down: drop the connection without answering
                try:
                    self.send_response(rule.status)
                    self.send_header("Content-Type", rule.content_type)
                    self.send_header("Content-Length", str(len(rule.body)))
                    self.end_headers()
                    self.wfile.write(rule.body)
                except OSError:
                    pass  # the client gave up (timeout): nothing to do

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    # -- configuration ------------------------------------------------------------------------
    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"

    def on(self, path, reply):
        with self._lock:
            self._rules[path] = reply
        return self

    # -- what was received --------------------------------------------------------------------
    @property
    def hits(self):
        with self._lock:
            return list(self._hits)

    def requests(self, path=None):
        return [h for h in self.hits if path is None or h.path == path]

    def wait_for(self, n, path=None, timeout=10.0):
        """Wait until at least `n` requests (to `path`, if given) have arrived; return them all.
        Raises AssertionError, listing what did arrive, after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                got = [h for h in self._hits if path is None or h.path == path]
                if len(got) >= n:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {n} request(s) to {path or 'any path'} within {timeout} s, "
                        f"got {len(got)}; all requests: {self._hits!r}")
                self._lock.wait(left)

    # -- life ---------------------------------------------------------------------------------
    def close(self):
        self._closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
