#!/usr/bin/env python3
"""Files back, at the sink (label files; issue #20): the real sink binary
against pyzmq peers, one playing the ventilator (BEGIN, CLOSE, pings; it
gets the ACKs) and one playing a worker (PUT chunks, RESULTS with FILES;
it gets the PUTACKs). docs/wire-format.md, "Files back" and "Commit at
the sink", is the contract:
  - round trips byte for byte (empty, 1 byte, a chunk and +-1, several
    chunks, NULs, names with spaces, quotes, newlines, non-UTF-8 bytes,
    subdirectories), .bp-tmp gone at the batch's end;
  - a name there with other contents: file-error, nothing overwritten;
    with the same contents: ok;
  - a lost chunk: received says where to go on;
  - hostile names, a symlink planted in the output directory, too big,
    too many, foreign ids, a torn result; nothing written outside;
  - kill -9 of the sink between upload and result, and at random points
    of a batch, then --resume: every file whole, none half written."""
import os
import random
import resource
import struct
import sys
import threading
import time

from bptest import Env, args, expect, ports, read_json

try:
    import zmq
except Exception as e:  # noqa: BLE001 - a broken pyzmq is a skip with its reason too
    print("SKIP: python3-zmq (pyzmq) is not installed; the peers are pyzmq sockets "
          f"[{type(e).__name__}: {e}; python {sys.executable}]", flush=True)
    sys.exit(77)

env = Env(args())
ctx = zmq.Context.instance()

RESULTS, BEGIN, CLOSE, ACK, COMPLETE, HEARTBEAT, PUT, PUTACK = 8, 9, 10, 11, 12, 4, 17, 18
CHUNK = 64 * 1024
FINAL, FILES = 0x01, 0x04
FE_NAME, FE_SIZE, FE_COUNT, FE_BUSY, FE_WRITE = 1, 2, 3, 4, 5
BATCH = 0x0123456789abcdef
WAIT = 30 * env.slow  # seconds for one answer


def msg(typ, batch=BATCH, n=0, body=b""):
    return struct.pack(">2sBBIQ", b"bp", 3, typ, n, batch) + body


def put(tid, idx, offset, size, name, data, attempt=1):
    body = struct.pack(">QHBBQQH", tid, attempt, idx, 0, offset, size, len(name)) + name + data
    return msg(PUT, body=body)


def result(tid, nfiles, status=0, attempt=1, text=b"done"):
    flags = FINAL | (FILES if nfiles else 0)
    payload = (bytes([nfiles]) if nfiles else b"") + text
    rec = struct.pack(">QHBBiII", tid, attempt, status, flags, 0, 0, len(payload)) + payload
    return msg(RESULTS, n=1, body=b"\x02py" + rec)


def putacks(m):
    """[(id, attempt, idx, status, code, received)] of a PUTACK."""
    typ, n = m[3], struct.unpack(">I", m[4:8])[0]
    expect(typ == PUTACK, f"not a PUTACK: type {typ}")
    return [struct.unpack(">QHBBIQ", m[16 + 24 * i:40 + 24 * i]) for i in range(n)]


class Peers:
    """A ventilator V and a worker W connected to the sink on port pr."""

    def __init__(self, pr, total):
        self.pr, self.total = pr, total
        self.v = ctx.socket(zmq.DEALER)
        self.w = ctx.socket(zmq.DEALER)
        for s in (self.v, self.w):
            s.setsockopt(zmq.LINGER, 0)
            s.connect(f"tcp://127.0.0.1:{pr}")
        self.acks = {}       # id -> ack kind
        self.complete = None
        self.wait = WAIT     # seconds for a PUTACK
        self.begin()

    def begin(self):
        """BEGIN, CLOSE(total) and a ping until the sink answers on the batch."""
        end = time.monotonic() + WAIT * 4
        while self.w.poll(0):
            self.w.recv()  # (answers of a sink that is gone)
        while time.monotonic() < end:
            self.v.send(msg(BEGIN))
            self.v.send(msg(CLOSE, body=struct.pack(">Q", self.total)))
            self.v.send(msg(HEARTBEAT, body=struct.pack(">QQ", 7, 0)))
            t = time.monotonic() + 2 * env.slow
            while time.monotonic() < t:
                if not self.v.poll(100):
                    continue
                m = self.v.recv()
                self.on_vent(m)
                if m[3] == HEARTBEAT and struct.unpack(">Q", m[8:16])[0] == BATCH:
                    return
        raise AssertionError("the sink never confirmed the batch")

    def on_vent(self, m):
        if m[3] == ACK:
            n = struct.unpack(">I", m[4:8])[0]
            for i in range(n):
                tid, _att, kind, _ = struct.unpack(">QHBB", m[16 + 12 * i:28 + 12 * i])
                self.acks[tid] = kind
        elif m[3] == COMPLETE:
            self.complete = struct.unpack(">QQ", m[16:32])

    def pump(self, ms=50):
        while self.v.poll(ms):
            self.on_vent(self.v.recv())
            ms = 0

    def ask(self, m, want=True):
        """Sends PUT m from W; returns the records of the PUTACK that
        answers it (None when none came and want is False)."""
        self.w.send(m)
        key = struct.unpack(">QHB", m[16:27])
        end = time.monotonic() + (self.wait if want else 0.5 * env.slow)
        while self.w.poll(max(0, int((end - time.monotonic()) * 1000))):
            recs = [a for a in putacks(self.w.recv()) if a[:3] == key]
            if recs:
                return recs
        expect(not want, "no PUTACK from the sink")
        return None

    def upload(self, tid, idx, name, data, attempt=1, skip=()):
        """Sends the file in chunks, going on from what each answer says."""
        off, sent = 0, 0
        while True:
            n = min(CHUNK, len(data) - off)
            if off in skip:
                skip = tuple(x for x in skip if x != off)
                off += n  # (lost on the way)
                continue
            (a,) = self.ask(put(tid, idx, off, len(data), name, data[off:off + n], attempt))
            expect(a[3] == 0, f"upload {name!r} refused: code {a[4]}")
            off = a[5]
            sent += 1
            if off == len(data) and (sent or not data):
                return
            expect(sent < 10 * (len(data) // CHUNK + 2), f"upload {name!r} does not progress")

    def wait_ack(self, tid, timeout=None):
        end = time.monotonic() + (timeout or WAIT)
        while tid not in self.acks and time.monotonic() < end:
            self.pump(50)
        return self.acks.get(tid)

    def close(self):
        self.v.close(0)
        self.w.close(0)


def sink(pr, outdir, *extra, name="sink"):
    return env.start("sink", "-v", "--once", "--timeout", "300s", "--bind",
                     f"tcp://127.0.0.1:{pr}", "--output-dir", outdir, *extra, name=name)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def tree(d):
    """{relative path: bytes} of the regular files under d (symlinks named)."""
    out = {}
    for root, dirs, files in os.walk(d):
        for f in files + [x for x in dirs if os.path.islink(os.path.join(root, x))]:
            p = os.path.join(root, f)
            rel = os.path.relpath(p, d).encode("utf-8", "surrogateescape")
            out[rel] = b"->" if os.path.islink(p) else read(p)
    return out


def output_dir_not_a_directory():
    path = env.path("plain-file")
    with open(path, "w") as f:
        f.write("x")
    pr, = ports(1)
    r = env.run("sink", "--once", "--bind", f"tcp://127.0.0.1:{pr}", "--output-dir", path)
    err = r.stderr.decode(errors="replace")
    expect(r.returncode == 2 and err.count("\n") == 1 and "not a directory" in err,
           f"exit {r.returncode}: {err}")


def round_trips_byte_for_byte():
    rnd = random.Random(20)
    files = [
        (b"empty", b""),
        (b"one", b"x"),
        (b"chunk", bytes(rnd.getrandbits(8) for _ in range(CHUNK))),
        (b"chunk-1", os.urandom(CHUNK - 1)),
        (b"chunk+1", os.urandom(CHUNK + 1)),
        (b"several", os.urandom(3 * CHUNK + 12345)),
        (b"nuls", b"\0a\0\0b\0"),
        (b"with space 'single' \"double\"\nnewline", b"name test\n"),
        (b"latin1-\xe9\xff", b"not utf-8"),
        (b"sub/dir/deep.bin", os.urandom(777)),
    ]
    pr, = ports(1)
    out = env.path("rt-out")  # not there: the sink makes it
    summary = env.path("rt.json")
    s = sink(pr, out, "--summary-json", summary, "--output", env.path("rt.txt"))
    p = Peers(pr, len(files) + 1)
    try:
        for tid, (name, data) in enumerate(files):
            p.upload(tid, 0, name, data)
            p.w.send(result(tid, 1))
        # one task, three files
        tid = len(files)
        three = [(b"three/a", b"A" * 5), (b"three/b", b""), (b"three/c", os.urandom(CHUNK * 2))]
        for i, (name, data) in enumerate(three):
            p.upload(tid, i, name, data)
        p.w.send(result(tid, 3))
        for t in range(len(files) + 1):
            expect(p.wait_ack(t) == 0, f"task {t} not acknowledged ok: {p.acks}")
        env.wait(s)
    finally:
        p.close()
    got = tree(out)
    want = dict(files + three)
    expect(got == want, f"output tree differs: {sorted(got)} vs {sorted(want)}")
    js = read_json(summary)
    expect(js["ok"] == len(files) + 1 and js["files"]["returned"] == len(want), js)
    expect(js["files"]["bytes"] == sum(len(d) for d in want.values()), js)
    expect(not os.path.exists(os.path.join(out, ".bp-tmp")), ".bp-tmp left after the batch")


def conflict_fails_same_contents_keeps():
    pr, = ports(1)
    out = env.path("cf-out")
    os.makedirs(os.path.join(out, "d"))
    with open(os.path.join(out, "taken"), "wb") as f:
        f.write(b"old bytes")
    with open(os.path.join(out, "same"), "wb") as f:
        f.write(b"same bytes")
    os.mkdir(os.path.join(out, "adir"))
    summary = env.path("cf.json")
    s = sink(pr, out, "--summary-json", summary, "--output", env.path("cf.txt"))
    p = Peers(pr, 4)
    try:
        p.upload(0, 0, b"taken", b"new bytes")
        p.w.send(result(0, 1))
        p.upload(1, 0, b"same", b"same bytes")
        p.w.send(result(1, 1))
        p.upload(2, 0, b"adir", b"a directory is in the way")
        p.w.send(result(2, 1))
        # two tasks of one turn returning one name: the second is a conflict
        p.upload(3, 0, b"d/twice", b"first")
        p.w.send(result(3, 1))
        expect(p.wait_ack(0) == 1 and p.wait_ack(1) == 0 and p.wait_ack(2) == 1, p.acks)
        expect(p.wait_ack(3) == 0, p.acks)
        env.wait(s, rc=3)
    finally:
        p.close()
    expect(read(os.path.join(out, "taken")) == b"old bytes", "a file was overwritten")
    expect(read(os.path.join(out, "same")) == b"same bytes", "same file changed")
    expect(os.path.isdir(os.path.join(out, "adir")), "the directory is gone")
    js = read_json(summary)
    expect(js["failed"] == 2 and js["files"]["conflicts"] == 2, js)
    err = env.errors(s)
    expect("exists with other contents: taken" in err, err[-2000:])
    expect(os.listdir(out) and not os.path.exists(os.path.join(out, ".bp-tmp")), os.listdir(out))


def lost_chunk_says_where():
    pr, = ports(1)
    out = env.path("lc-out")
    s = sink(pr, out)
    p = Peers(pr, 1)
    data = os.urandom(3 * CHUNK)
    try:
        (a,) = p.ask(put(0, 0, 0, len(data), b"f", data[:CHUNK]))
        expect(a[5] == CHUNK, a)
        (a,) = p.ask(put(0, 0, 2 * CHUNK, len(data), b"f", data[2 * CHUNK:]))  # 1 lost
        expect(a[3] == 0 and a[5] == CHUNK, f"received after a lost chunk: {a}")
        (a,) = p.ask(put(0, 0, 0, len(data), b"f", data[:CHUNK]))  # a repeat
        expect(a[5] == CHUNK, a)
        p.upload(0, 0, b"f", data)
        p.w.send(result(0, 1))
        expect(p.wait_ack(0) == 0, p.acks)
        env.wait(s)
    finally:
        p.close()
    expect(read(os.path.join(out, "f")) == data, "resumed upload differs")


def hostile_uploads_refused():
    pr, = ports(1)
    out = env.path("h-out")
    elsewhere = env.path("elsewhere")
    os.makedirs(out)
    os.makedirs(elsewhere)
    os.symlink(elsewhere, os.path.join(out, "out"))
    summary = env.path("h.json")
    s = sink(pr, out, "--summary-json", summary, "--max-return-size", "1000",
             "--output", env.path("h.txt"))
    p = Peers(pr, 4)
    try:
        for bad in (b"../x", b"/etc/x", b"a/../../x", b".bp-tmp/x"):
            expect(p.ask(put(0, 0, 0, 1, bad, b"x"), want=False) is None,
                   f"{bad!r} was answered")
        (a,) = p.ask(put(0, 0, 0, 1001, b"big", b"x"))
        expect(a[3] == 1 and a[4] == FE_SIZE, a)
        (a,) = p.ask(put(0, 255, 0, 1, b"many", b"x"))
        expect(a[3] == 1 and a[4] == FE_COUNT, a)
        expect(p.ask(put(1 << 40, 0, 0, 1, b"foreign", b"x"), want=False) is None,
               "a foreign id was answered")
        # the planted symlink: the upload goes to .bp-tmp, the result fails
        p.upload(0, 0, b"out/x", b"escape")
        p.w.send(result(0, 1))
        expect(p.wait_ack(0) == 1, f"result through a symlink: {p.acks}")
        # a result with FILES and no uploads; one with one of two
        p.w.send(result(1, 1))
        p.upload(2, 0, b"two/a", b"a")
        p.w.send(result(2, 2))
        # (short waits: silent uploads are given up after the liveness
        # time, 3 s; the summary's count below is the real check)
        expect(p.wait_ack(1, timeout=0.3) is None, "a torn result was acknowledged")
        expect(p.wait_ack(2, timeout=0.2) is None, "a torn result was acknowledged")
        p.upload(2, 1, b"two/b", b"b")
        p.w.send(result(2, 2))
        expect(p.wait_ack(2) == 0, f"{p.acks} " + env.errors(s)[-3000:])
        p.upload(1, 0, b"one", b"1")
        p.w.send(result(1, 1))
        p.w.send(result(3, 0))  # no files at all
        expect(p.wait_ack(1) == 0 and p.wait_ack(3) == 0, p.acks)
        env.wait(s, rc=3)
    finally:
        p.close()
    expect(os.listdir(elsewhere) == [], f"written through the symlink: {os.listdir(elsewhere)}")
    got = tree(out)
    expect(got == {b"out": b"->", b"two/a": b"a", b"two/b": b"b", b"one": b"1"}, sorted(got))
    js = read_json(summary)
    f = js["files"]
    expect(f["torn"] == 2 and f["refused"] >= 3 and f["conflicts"] == 1, js)
    expect(js["malformed"] >= 4, f"bad names not counted as malformed: {js}")


def write_error_refuses_the_upload():
    # A file size limit (ulimit -f, as a full disk would) makes the write
    # fail: the upload is refused with write-error, one line says why, and
    # the sink goes on.
    pr, = ports(1)
    out = env.path("we-out")
    summary = env.path("we.json")
    limit = 3 * CHUNK

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    s = env.start("sink", "--once", "--timeout", "300s", "--bind", f"tcp://127.0.0.1:{pr}",
                  "--output-dir", out, "--summary-json", summary, preexec=small_files)
    p = Peers(pr, 1)
    data = os.urandom(4 * CHUNK)
    try:
        acks = [p.ask(put(0, 0, off, len(data), b"big", data[off:off + CHUNK]))[0]
                for off in range(0, 4 * CHUNK, CHUNK)]
        expect(acks[3][3] == 1 and acks[3][4] == FE_WRITE, f"past the limit: {acks}")
        p.w.send(result(0, 0))  # (a worker would fail the attempt: file-error)
        expect(p.wait_ack(0) == 0, p.acks)
        env.wait(s)
    finally:
        p.close()
    err = env.errors(s)
    expect("cannot write returned file big of task 0" in err, err[-2000:])
    js = read_json(summary)
    expect(js["files"]["write_errors"] == 1 and js["files"]["refused"] == 1, js)
    expect(not os.path.exists(os.path.join(out, "big")), "a refused upload was placed")


def duplicate_uploads_removed():
    pr, = ports(1)
    out = env.path("dup-out")
    s = sink(pr, out, "--resume", "--output", env.path("dup.txt"))
    p = Peers(pr, 2)
    try:
        p.upload(0, 0, b"f", b"first", attempt=1)
        p.upload(0, 0, b"f", b"second try", attempt=2)  # a redelivery's upload
        p.w.send(result(0, 1, attempt=1))
        expect(p.wait_ack(0) == 0, p.acks)
        tmp = os.path.join(out, ".bp-tmp")
        expect(os.listdir(tmp) == [], f"uploads of the losing attempt left: {os.listdir(tmp)}")
        # a late upload for the final task: each chunk answered as if
        # written (never beyond what was sent), nothing written
        big = os.urandom(2 * CHUNK)
        (a,) = p.ask(put(0, 0, 0, len(big), b"f", big[:CHUNK], attempt=3))
        expect(a[3] == 0 and a[5] == CHUNK and os.listdir(tmp) == [], (a, os.listdir(tmp)))
        p.upload(0, 0, b"f", big, attempt=3)
        p.w.send(result(0, 1, attempt=3))
        p.w.send(result(1, 0))
        expect(p.wait_ack(1) == 0, p.acks)
        env.wait(s)
    finally:
        p.close()
    expect(read(os.path.join(out, "f")) == b"first", "the winner's bytes are not there")
    expect(not os.path.exists(os.path.join(out, ".bp-tmp")), ".bp-tmp left")


def kill_between_upload_and_result_then_resume():
    pr, = ports(1)
    out = env.path("k-out")
    txt = env.path("k.txt")
    data = os.urandom(2 * CHUNK + 5)
    s = sink(pr, out, "--resume", "--output", txt, "--sync", "always")
    p = Peers(pr, 2)
    try:
        p.upload(0, 0, b"f0", b"zero")
        p.w.send(result(0, 1))
        expect(p.wait_ack(0) == 0, p.acks)
        p.upload(1, 0, b"f1", data)
        env.kill(s)
        expect(read(os.path.join(out, "f0")) == b"zero", "f0 not in place before the kill")
        expect(not os.path.exists(os.path.join(out, "f1")), "f1 under its name before its result")
        s = sink(pr, out, "--resume", "--output", txt, "--sync", "always", name="sink2")
        p.begin()
        # a restarted sink knows no upload: offset > 0 is answered 0
        (a,) = p.ask(put(1, 0, CHUNK, len(data), b"f1", data[CHUNK:2 * CHUNK]))
        expect(a[3] == 0 and a[5] == 0, f"unknown upload mid-file: {a}")
        p.upload(1, 0, b"f1", data)
        p.w.send(result(1, 1))
        expect(p.wait_ack(1) == 0, p.acks)
        env.wait(s)
    finally:
        p.close()
    expect(tree(out) == {b"f0": b"zero", b"f1": data}, sorted(tree(out)))


def kill_at_random_points_then_resume():
    # A batch of n tasks, each returning two files, while another thread
    # kills the sink (-9) at random moments and starts it again with
    # --resume. The worker goes on from whatever the sink answers and says
    # its result again until it is acknowledged. At the end every file is
    # whole under its name, nothing kept aside, .bp-tmp gone.
    rnd = random.Random(int(os.environ.get("BP_SEED", "2020")))
    n = env.n(40, 12)
    pr, = ports(1)
    out = env.path("r-out")
    txt = env.path("r.txt")
    want = {}
    for t in range(n):
        want[b"t%d/a" % t] = os.urandom(rnd.choice((0, 1, 100, CHUNK, CHUNK + 7, 3 * CHUNK)))
        want[b"t%d/b" % t] = b"b%d" % t
    runs = [sink(pr, out, "--resume", "--output", txt, name="rsink0")]
    stop = threading.Event()

    def killer():
        while not stop.wait(rnd.uniform(0.05, 0.5) * env.slow) and len(runs) < 16:
            env.kill(runs[-1])
            if runs[-1].returncode == 0:
                return  # (it had completed the batch)
            runs.append(sink(pr, out, "--resume", "--output", txt, name=f"rsink{len(runs)}"))

    th = threading.Thread(target=killer)
    p = Peers(pr, n)
    p.wait = 2 * env.slow
    th.start()
    try:
        t = 0
        while t < n:
            try:
                for idx, name in enumerate((b"t%d/a" % t, b"t%d/b" % t)):
                    p.upload(t, idx, name, want[name])
                p.w.send(result(t, 2))
                if p.wait_ack(t, timeout=2 * env.slow) is not None:
                    t += 1
                    continue
            except AssertionError:
                pass
            p.begin()  # (the sink was killed: say the batch again)
    finally:
        stop.set()
        th.join()
        p.close()
    env.wait(runs[-1])
    got = tree(out)
    expect(got == want, f"{len(runs) - 1} kills: files differ: "
           f"{sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))[:5]}")
    for r in runs:
        expect("are kept in" not in env.errors(r), env.errors(r)[-2000:])
    rolled = sum("accepted before the crash put in place" in env.errors(r) for r in runs)
    print(f"  {len(runs) - 1} kills, {rolled} resumes rolled files forward", flush=True)


if __name__ == "__main__":
    for name, fn in list(globals().items()):
        if callable(fn) and fn.__module__ == "__main__" and not name.startswith("_") \
                and name not in ("msg", "put", "result", "putacks", "sink", "read", "tree") \
                and not isinstance(fn, type) and fn.__code__.co_argcount == 0:
            env.check(name, fn)
    env.finish()
