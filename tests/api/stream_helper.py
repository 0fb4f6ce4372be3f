"""The two far ends of a call's audio for the stream tests (CALLS.md section 7):

- `Agent`: the customer's WebSocket server (sfvopi is the client). It runs an asyncio loop of
  websockets 10.x in a background thread, records every message with its arrival time
  (time.monotonic()), can send playAudio/checkpoint/clearAudio and close the socket, and
  records how each connection ended (close code, who closed first).
- `Party`: the caller's/callee's RTP endpoint, a UDP socket on 127.0.0.1 whose port the SIPp
  scenario names in its SDP (-key party_port). It records every RTP packet sfvopi sends with its
  kernel receive time (SO_TIMESTAMPNS, converted to the monotonic clock) and sends RTP audio
  and RFC 4733 telephone-events to the address sfvopi sends from (its media port: sfvopi takes
  RTP from any source port there).

Also G.711 A-law decoding and a few audio helpers. Nothing here knows the server's internals.
"""

import asyncio
import base64
import json
import math
import random
import socket
import struct
import threading
import time

import websockets

PCMA_SILENCE = 0xD5
FRAME = 160  # 20 ms of G.711 at 8000 Hz


# ---------------------------------------------------------------------------------------------
# The customer's WebSocket server.

class Conn:
    """One WebSocket connection sfvopi opened to the agent."""

    def __init__(self, ws, path):
        self.ws = ws
        self.path = path
        self.opened = time.monotonic()
        self.closed = None  # monotonic time the connection ended
        self.close_code = None  # the code of the close frame sfvopi sent (or echoed)
        self.we_closed = False  # the agent started the closing handshake
        self.stream_id = None  # from its start message


class Agent:
    """A websockets server in its own thread. on_message(agent, msg_dict), if given, runs in the
    loop's thread for every message (e.g. the benchmark's echo); keep it quick."""

    def __init__(self, on_message=None):
        self.on_message = on_message
        self.msgs = []  # [(monotonic arrival, dict)]
        self.conns = []
        self._cv = threading.Condition()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(5):
            raise RuntimeError("the agent's WebSocket server did not start")

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)

        async def start():
            return await websockets.serve(self._handler, "127.0.0.1", 0, max_size=None,
                                          ping_interval=None)

        self.server = self.loop.run_until_complete(start())
        self.port = self.server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _handler(self, ws, path):
        conn = Conn(ws, path)
        with self._cv:
            self.conns.append(conn)
            self._cv.notify_all()
        try:
            async for raw in ws:
                t = time.monotonic()
                try:
                    msg = json.loads(raw)
                except (TypeError, ValueError):
                    msg = {"_raw": raw}
                with self._cv:
                    if msg.get("event") == "start" and conn.stream_id is None:
                        conn.stream_id = msg.get("streamId")
                    self.msgs.append((t, msg))
                    self._cv.notify_all()
                if self.on_message:
                    self.on_message(self, conn, msg)
        except websockets.ConnectionClosed:
            pass
        finally:
            await ws.wait_closed()
            with self._cv:
                conn.closed = time.monotonic()
                conn.close_code = ws.close_code
                self._cv.notify_all()

    def url(self, path="/ws"):
        return f"ws://127.0.0.1:{self.port}{path}"

    # -- waiting ------------------------------------------------------------------------------
    def wait(self, pred, timeout, what="condition"):
        """Wait until pred() is true (checked under the lock at every message); return its
        value. AssertionError with a summary of what arrived after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                v = pred()
                if v:
                    return v
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"agent: no {what} within {timeout} s; "
                                         f"{self.summary()}")
                self._cv.wait(min(left, 0.05))

    def events(self, name=None, track=None):
        """[(time, msg)] of one event (and one media track)."""
        with self._cv:
            return [(t, m) for t, m in self.msgs
                    if (name is None or m.get("event") == name)
                    and (track is None or m.get("media", {}).get("track") == track)]

    def wait_event(self, name, n=1, timeout=5, track=None):
        return self.wait(lambda: len(self.events(name, track)) >= n and self.events(name, track),
                         timeout, f"{n} {name} event(s)")

    def wait_start(self, timeout=8):
        return self.wait_event("start", 1, timeout)[0]

    def wait_closed(self, timeout=8):
        def done():
            return self.conns and self.conns[0].closed is not None and self.conns[0]
        return self.wait(done, timeout, "closed connection")

    def summary(self):
        kinds = {}
        for _, m in self.msgs:
            k = m.get("event", "?")
            if k == "media":
                k += "/" + str(m.get("media", {}).get("track"))
            kinds[k] = kinds.get(k, 0) + 1
        conns = [(c.path, c.close_code, c.we_closed, c.closed is not None) for c in self.conns]
        return f"messages by kind {kinds}; connections {conns}"

    # -- acting -------------------------------------------------------------------------------
    def conn_of(self, stream_id):
        with self._cv:
            return next(c for c in self.conns if c.stream_id == stream_id)

    def _conn(self):
        assert self.conns, "no connection from sfvopi"
        return self.conns[-1]

    def send(self, obj, conn=None):
        """Send one message on `conn` (default: the last connection); return the monotonic time
        at which it had been written out."""
        raw = obj if isinstance(obj, (str, bytes)) else json.dumps(obj)
        ws = (conn or self._conn()).ws
        asyncio.run_coroutine_threadsafe(ws.send(raw), self.loop).result(5)
        return time.monotonic()

    def play(self, audio, content_type="audio/PCMA", sample_rate=8000, stream_id=None,
             conn=None):
        msg = {"event": "playAudio", "media": {"contentType": content_type,
                                               "sampleRate": sample_rate,
                                               "payload": base64.b64encode(audio).decode()}}
        if stream_id:
            msg["streamId"] = stream_id
        return self.send(msg, conn)

    def checkpoint(self, name, stream_id=""):
        return self.send({"event": "checkpoint", "streamId": stream_id, "name": name})

    def clear(self, stream_id=""):
        return self.send({"event": "clearAudio", "streamId": stream_id})

    def close(self, code=1000):
        conn = self._conn()
        conn.we_closed = True
        asyncio.run_coroutine_threadsafe(conn.ws.close(code), self.loop).result(5)
        return time.monotonic()

    def abort(self):
        """Drop the TCP connection without a closing handshake (sfvopi sees 1006)."""
        conn = self._conn()
        conn.we_closed = True
        self.loop.call_soon_threadsafe(conn.ws.transport.abort)
        return time.monotonic()

    def stop(self):
        async def down():
            self.server.close()
            await self.server.wait_closed()

        try:
            asyncio.run_coroutine_threadsafe(down(), self.loop).result(5)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def echo_agent():
    """An agent that plays every inbound frame straight back (playAudio)."""
    def on_message(agent, conn, msg):
        if msg.get("event") == "media" and msg["media"]["track"] == "inbound":
            md = msg["media"]
            agent.loop.create_task(conn.ws.send(json.dumps({"event": "playAudio", "media": {
                "contentType": md["contentType"], "sampleRate": md["sampleRate"],
                "payload": md["payload"]}})))
    return Agent(on_message=on_message)


# ---------------------------------------------------------------------------------------------
# The party's RTP endpoint.

class Packet:
    __slots__ = ("time", "src", "pt", "marker", "seq", "ts", "ssrc", "payload")

    def __init__(self, t, src, data):
        self.time, self.src = t, src
        b0, b1, self.seq, self.ts, self.ssrc = struct.unpack("!BBHII", data[:12])
        cc, ext = b0 & 0x0F, b0 & 0x10
        off = 12 + 4 * cc
        if ext and len(data) >= off + 4:
            off += 4 + 4 * struct.unpack("!H", data[off + 2:off + 4])[0]
        self.marker, self.pt = bool(b1 & 0x80), b1 & 0x7F
        self.payload = data[off:]

    @property
    def silent(self):
        return all(x == PCMA_SILENCE for x in self.payload)


_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


class Party:
    """A UDP socket on `host` (a loopback address; port `port`), receiving in a background
    thread."""

    def __init__(self, host="127.0.0.1"):
        self.host = host
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            self._kernel_ts = True
        except OSError:
            self._kernel_ts = False
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.pkts = []
        self.peer = None
        self._cv = threading.Condition()
        self._stop = False
        self.seq = random.randrange(1 << 16)
        self.ts = random.randrange(1 << 32)
        self.ssrc = random.randrange(1 << 32)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            try:
                data, anc, _flags, src = self.sock.recvmsg(4096, 64)
            except socket.timeout:
                continue
            except OSError:
                return
            now_mono, now_wall = time.monotonic(), time.time()
            t = now_mono
            for level, kind, val in anc:
                if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(val) >= 16:
                    sec, nsec = struct.unpack("qq", val[:16])
                    # kernel receive time, moved onto the monotonic clock
                    t = now_mono - (now_wall - (sec + nsec / 1e9))
            if len(data) < 12 or data[0] >> 6 != 2:
                continue
            p = Packet(t, src, data)
            with self._cv:
                if self.peer is None:
                    self.peer = src
                self.pkts.append(p)
                self._cv.notify_all()

    def packets(self, since=None, until=None):
        with self._cv:
            return [p for p in self.pkts if (since is None or p.time >= since)
                    and (until is None or p.time <= until)]

    def wait_packets(self, n, timeout=5, since=None):
        deadline = time.monotonic() + timeout
        with self._cv:
            while len(self.packets(since)) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"party: {len(self.packets(since))} RTP packet(s), "
                                         f"wanted {n} within {timeout} s")
                self._cv.wait(min(left, 0.05))
        return self.packets(since)

    def wait_peer(self, timeout=5):
        self.wait_packets(1, timeout)
        return self.peer

    def send_rtp(self, pt, payload, *, ts=None, marker=False, advance=True):
        """One RTP packet to sfvopi's media address (the source of its packets)."""
        assert self.peer, "sfvopi's media address is not known yet"
        hdr = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, self.seq,
                          self.ts if ts is None else ts, self.ssrc)
        self.sock.sendto(hdr + payload, self.peer)
        self.seq = (self.seq + 1) & 0xFFFF
        if advance:
            self.ts = (self.ts + len(payload)) & 0xFFFFFFFF

    def send_frames(self, frames, pt=8, interval=0.02):
        """Frames of audio paced on absolute times, `interval` apart."""
        t0 = time.monotonic()
        for i, f in enumerate(frames):
            delay = t0 + i * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.send_rtp(pt, f)

    def send_dtmf(self, event, pt=101, interval=0.02):
        """One key press (RFC 4733): three start/continuation packets (the first with the marker
        bit), then the end packet three times, all with the same RTP timestamp."""
        ts = self.ts
        dur = 0
        for i in range(3):
            dur += 160
            self.send_rtp(pt, struct.pack("!BBH", event, 10, dur), ts=ts, marker=i == 0,
                          advance=False)
            time.sleep(interval)
        dur += 160
        for _ in range(3):
            self.send_rtp(pt, struct.pack("!BBH", event, 0x80 | 10, dur), ts=ts, advance=False)
            time.sleep(interval)
        self.ts = (self.ts + dur) & 0xFFFFFFFF

    def close(self):
        self._stop = True
        self._thread.join(2)
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------------------------------
# Audio.

def alaw_decode(a):
    """One G.711 A-law byte to a linear 16-bit sample (ITU-T G.711 / Sun's alaw2linear)."""
    a ^= 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if a & 0x80 else -t


ALAW = [alaw_decode(i) for i in range(256)]


def pattern(n, seed=0):
    """n bytes of a known, non-repeating-per-frame pattern with no PCMA silence byte (0xD5),
    so that every byte of it tells itself apart from silence."""
    out = bytearray((i * 7 + seed * 31 + (i // 160) * 13) & 0xFF for i in range(n))
    return bytes(0xD4 if x == PCMA_SILENCE else x for x in out)


def sine_l16(freq, seconds, rate, amplitude=8000):
    n = int(seconds * rate)
    return b"".join(struct.pack("<h", int(amplitude * math.sin(2 * math.pi * freq * i / rate)))
                    for i in range(n))


def b64(msg):
    return base64.b64decode(msg["media"]["payload"])


def ulaw_decode(u):
    """One G.711 mu-law byte to a linear 16-bit sample (Sun's ulaw2linear)."""
    u = ~u & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return 0x84 - t if u & 0x80 else t - 0x84


ULAW = [ulaw_decode(i) for i in range(256)]


def _encoder(table):
    order = sorted(range(256), key=lambda i: table[i])

    def encode(x):
        # the code whose decoded value is nearest (ties: the first)
        lo, hi = 0, 255
        while lo < hi:
            mid = (lo + hi) // 2
            if table[order[mid]] < x:
                lo = mid + 1
            else:
                hi = mid
        best = order[lo]
        if lo > 0 and abs(table[order[lo - 1]] - x) <= abs(table[best] - x):
            best = order[lo - 1]
        return best
    return encode


alaw_encode = _encoder(ALAW)
ulaw_encode = _encoder(ULAW)


def sine_samples(freq, n, rate=8000, amplitude=8000, phase=0):
    return [int(amplitude * math.sin(2 * math.pi * freq * (i + phase) / rate)) for i in range(n)]
