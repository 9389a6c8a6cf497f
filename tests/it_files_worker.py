#!/usr/bin/env python3
"""The real worker's side of files (docs/wire-format.md, "Files"): Python
ROUTERs play the ventilator (TASKS with FILE descriptors, CHUNK answers
read from real files, BASE) and the sink (PUTACK, RESULTS). Covers a file
fetched in several chunks, replacement strings with hostile names, stdin
mode, --return uploads and RESULTS with FILES, a missing return file, a
symlink pointing out, CHANGED, REFUSED, BASE and its cache, and the
scratch directory's removal."""
import hashlib
import os
import struct
import sys
import time

from bptest import Env, args, expect, ports

try:
    import zmq
except Exception as e:  # noqa: BLE001
    print(f"SKIP: python3-zmq (pyzmq) is not installed [{type(e).__name__}: {e}]", flush=True)
    sys.exit(77)

HELLO, CREDIT, TASKS, HEARTBEAT, RESYNC, END, BYE, RESULTS = range(1, 9)
FETCH, CHUNK, BASE, PUT, PUTACK = range(14, 19)
CHUNK_BYTES = 64 * 1024
BATCH = 0x1234

env = Env(args())
ctx = zmq.Context.instance()


def msg(typ, n=0, body=b"", batch=BATCH):
    return struct.pack(">2sBBIQ", b"bp", 3, typ, n, batch) + body


def file_desc(path, name):
    st = os.stat(path)
    return struct.pack(">QQH", st.st_size, st.st_mtime_ns, len(name)) + name + os.fsencode(path)


class Rig:
    """A fake ventilator and sink around one real worker."""

    def __init__(self, *wargs, scratch=None, cache=None):
        pt, pr = ports(2)
        self.vent = ctx.socket(zmq.ROUTER)
        self.vent.bind(f"tcp://127.0.0.1:{pt}")
        self.sink = ctx.socket(zmq.ROUTER)
        self.sink.bind(f"tcp://127.0.0.1:{pr}")
        self.scratch = scratch or env.path(f"scratch-{pt}")
        os.makedirs(self.scratch, exist_ok=True)
        self.cache = cache or env.path(f"cache-{pt}")
        self.w = env.start("worker", "--tasks", f"tcp://127.0.0.1:{pt}", "--results",
                           f"tcp://127.0.0.1:{pr}", "--id", "fw", "--scratch", self.scratch,
                           "--cache-dir", self.cache, *wargs)
        self.rid = None
        self.paths = {}      # (kind, id) -> host path
        self.answer = {}     # (kind, id) -> forced CHUNK status
        self.fetches = []    # (kind, id, offset, len)
        self.puts = {}       # (id, idx) -> [name, size, bytearray]
        self.results = {}    # id -> (status, flags, code, payload)
        self.max_out = 0
        self.sent = self.got = 0

    def close(self):
        self.vent.close(0)
        self.sink.close(0)

    def hello(self, base=None):
        end = time.time() + 120 * env.slow
        while self.rid is None and time.time() < end:
            if self.vent.poll(1000):
                r, f = self.vent.recv_multipart()
                if f[3] == HELLO:
                    self.rid = r
        expect(self.rid is not None, "no HELLO from the worker")
        if base is not None:
            body = b""
            for i, path in enumerate(base):
                data = open(path, "rb").read()
                name = os.fsencode(os.path.basename(path))
                body += hashlib.sha256(data).digest() + struct.pack(">QH", len(data),
                                                                     len(name)) + name
                self.paths[(1, i)] = path
            self.vent.send_multipart([self.rid, msg(BASE, len(base), body)])

    def task(self, tid, path, name, attempt=1):
        self.paths[(0, tid)] = path
        d = file_desc(path, name)
        rec = struct.pack(">QHBBI", tid, attempt, 0x03, 0, len(d)) + d
        self.vent.send_multipart([self.rid, msg(TASKS, 1, rec)])

    def on_fetch(self, f):
        n = struct.unpack(">I", f[4:8])[0]
        self.got = struct.unpack(">I", f[16:20])[0]
        self.sent += n
        self.max_out = max(self.max_out, self.sent - self.got)
        for i in range(n):
            tid, att, kind, _, ln, off = struct.unpack(">QHBBIQ", f[20 + 24 * i:44 + 24 * i])
            self.fetches.append((kind, tid, off, ln))
            status = self.answer.get((kind, tid), 0)
            data = b""
            if status == 0:
                with open(self.paths[(kind, tid)], "rb") as fh:
                    fh.seek(off)
                    data = fh.read(ln)
            body = struct.pack(">QHBBIQ", tid, att, kind, status, 0, off) + data
            self.vent.send_multipart([self.rid, msg(CHUNK, 0, body)])

    def on_put(self, r, f):
        b = f[16:]
        tid, att, idx, _, off, size, nl = struct.unpack(">QHBBQQH", b[:30])
        name, data = b[30:30 + nl], b[30 + nl:]
        ent = self.puts.setdefault((tid, idx), [name, size, bytearray()])
        if off == len(ent[2]):
            ent[2] += data
        ack = struct.pack(">QHBBIQ", tid, att, idx, 0, 0, len(ent[2]))
        self.sink.send_multipart([r, msg(PUTACK, 1, ack)])

    def on_results(self, f):
        n = struct.unpack(">I", f[4:8])[0]
        off = 17 + f[16]
        for _ in range(n):
            tid, att, st, fl, code, el, ln = struct.unpack(">QHBBiII", f[off:off + 24])
            self.results[tid] = (st, fl, code, f[off + 24:off + 24 + ln])
            off += 24 + ln

    def pump(self, until, timeout=120):
        end = time.time() + timeout * env.slow
        poller = zmq.Poller()
        poller.register(self.vent, zmq.POLLIN)
        poller.register(self.sink, zmq.POLLIN)
        while not until() and time.time() < end:
            for sock, _ in poller.poll(200):
                r, f = sock.recv_multipart()
                if sock is self.vent and f[3] == FETCH:
                    self.on_fetch(f)
                elif sock is self.vent and f[3] == HELLO:
                    self.rid = r
                elif sock is self.sink and f[3] == PUT:
                    self.on_put(r, f)
                elif sock is self.sink and f[3] == RESULTS:
                    self.on_results(f)
            expect(self.w.poll() is None, f"worker exited: {env.errors(self.w)[-2000:]}")
        expect(until(), f"timed out; results {self.results}; log {env.errors(self.w)[-2000:]}")

    def stop(self):
        self.w.terminate()
        env.wait(self.w, 60 * env.slow)
        left = os.listdir(self.scratch)
        expect(not [d for d in left if d.startswith("bp-")], f"scratch left behind: {left}")


def payload(res):
    """The result's payload after the info block and the FILES byte."""
    st, fl, code, d = res
    if fl & 0x02:
        d = d[13 + d[12]:]
    if fl & 0x04:
        d = d[1:]
    return d


def make(name, data):
    p = env.path(name)
    with open(p, "wb") as f:
        f.write(data)
    return p


def fetched_in_chunks_and_returned():
    big = bytes(range(256)) * 1100  # 281 600 bytes: 5 chunks
    src = make("big.bin", big)
    rig = Rig("--exec", "sha256sum < {} > {/.}.sum; cat {} | wc -c", "--return", "{/.}.sum",
              "--return", "*.none")
    try:
        rig.hello()
        rig.task(0, src, b"in/big file.bin")
        rig.pump(lambda: 0 in rig.results)
        st, fl, code, _ = rig.results[0]
        expect(st == 0 and fl & 0x04, rig.results[0])
        expect(payload(rig.results[0]).strip() == str(len(big)).encode(), rig.results[0])
        expect(len([f for f in rig.fetches if f[1] == 0]) == 5, rig.fetches)
        expect(rig.max_out <= 16, rig.max_out)
        name, size, data = rig.puts[(0, 0)]
        expect(name == b"big file.sum", name)
        expect(data.split()[0] == hashlib.sha256(big).hexdigest().encode(), data)
    finally:
        rig.stop()
        rig.close()


HOSTILE = [b"sp ace.txt", b"quo'te\".txt", b"new\nline.txt", b"bad\xff\xfebytes.txt",
           b"$(touch pwned).txt", b"plain"]


def replacement_strings_with_hostile_names():
    rig = Rig("--exec", "printf '%s|' {} {/} {.} {/.} {#}; cat {}", "--jobs", "2")
    try:
        rig.hello()
        for i, n in enumerate(HOSTILE):
            rig.task(i, make(f"h{i}", b"body%d" % i), b"d/" + n)
        rig.pump(lambda: len(rig.results) == len(HOSTILE))
        for i, n in enumerate(HOSTILE):
            base = n
            stem = base.rsplit(b".", 1)[0] if b"." in base else base
            want = b"|".join([b"d/" + n, base, b"d/" + stem, stem, b"%d" % (i + 1)]) + b"|"
            expect(payload(rig.results[i]) == want + b"body%d" % i,
                   (n, payload(rig.results[i]), want))
        expect(not os.path.exists(os.path.join(rig.scratch, "pwned")), "a name ran as code")
    finally:
        rig.stop()
        rig.close()


def stdin_mode_and_failures():
    src = make("s.txt", b"hello stdin\n")
    rig = Rig("--exec", "tr a-z A-Z; ln -s /etc/passwd link; test -e keep || true",
              "--return", "link")
    try:
        rig.hello()
        rig.task(0, src, b"s.txt")
        rig.pump(lambda: 0 in rig.results)
        st, fl, code, _ = rig.results[0]
        expect(st == 9, f"a symlink return is refused: {rig.results[0]}")
        expect(b"symlink" in payload(rig.results[0]), rig.results[0])
    finally:
        rig.stop()
        rig.close()
    rig = Rig("--exec", "tr a-z A-Z", "--return", "missing.out")
    try:
        rig.hello()
        rig.task(0, src, b"s.txt")
        rig.pump(lambda: 0 in rig.results)
        expect(rig.results[0][0] == 9 and b"missing" in payload(rig.results[0]), rig.results[0])
    finally:
        rig.stop()
        rig.close()
    rig = Rig("--exec", "tr a-z A-Z")
    try:
        rig.hello()
        rig.task(0, src, b"s.txt")
        rig.task(1, src, b"c.txt")
        rig.task(2, src, b"r.txt")
        rig.answer[(0, 1)] = 1  # changed
        rig.answer[(0, 2)] = 3  # refused
        rig.pump(lambda: 0 in rig.results and 1 in rig.results)
        expect(payload(rig.results[0]) == b"HELLO STDIN", rig.results[0])
        expect(rig.results[1][0] == 9 and b"changed" in payload(rig.results[1]), rig.results[1])
        time.sleep(1)
        rig.pump(lambda: True)
        expect(2 not in rig.results, f"a refused task has no result: {rig.results}")
    finally:
        rig.stop()
        rig.close()


def base_files_cached():
    cache = env.path("bcache")
    model = make("model.txt", b"model weights\n" * 10000)
    src = make("b.txt", b"x")
    for session in range(2):
        rig = Rig("--exec", "wc -c < model.txt", cache=cache)
        try:
            rig.hello(base=[model])
            rig.task(0, src, b"b.txt")
            rig.pump(lambda: 0 in rig.results)
            expect(payload(rig.results[0]).strip() == b"140000", rig.results[0])
            base_fetches = [f for f in rig.fetches if f[0] == 1]
            expect(bool(base_fetches) == (session == 0), f"session {session}: {base_fetches}")
        finally:
            rig.stop()
            rig.close()


for fn in (fetched_in_chunks_and_returned, replacement_strings_with_hostile_names,
           stdin_mode_and_failures, base_files_cached):
    env.check(fn.__name__, fn)
env.finish()
