#!/usr/bin/env python3
"""Interop with plain ZeroMQ peers (pyzmq): raw mode both ways; protocol v2
built by hand (a Python worker against the real ventilator and sink, Python
ROUTERs against the real worker); hostile frames (garbage, v1 two-frame
messages, another version, oversized) against the ventilator's and the
sink's ROUTER, after which a real batch still completes."""
import struct
import sys
import time

from bptest import Env, args, expect, ports, read_json
from bpwire import (ACK, BEGIN, BYE, CLOSE, COMPLETE, CREDIT, END, HEARTBEAT, HELLO,  # noqa: F401
                    EXTENT, RESULTS, RESYNC, TASKS, msg, results)

try:
    import zmq
except Exception as e:  # noqa: BLE001 - a broken pyzmq is a skip with its reason too
    # Exit 77 is CTest's skip (SKIP_RETURN_CODE); in CI scripts/ctest-summary
    # fails a skip unless tests/skip-allowlist.txt names it.
    print("SKIP: python3-zmq (pyzmq) is not installed; interop needs a plain ZeroMQ peer "
          f"[{type(e).__name__}: {e}; python {sys.executable}]", flush=True)
    sys.exit(77)

env = Env(args())
ctx = zmq.Context.instance()
TUTORIAL = ["hola", "aloha", "hello", "buenas noches", "buenas tardes", "buenos dias",
            "bienvenido"]


_monitors = [0]


def monitor(sock, events):
    """sock's event monitor on an inproc address of its own. pyzmq's default
    name is built from the socket's fd: a socket closed a moment ago may
    still hold it in libzmq's reaper while a new one gets the same fd
    (EADDRINUSE, seen once in CI)."""
    _monitors[0] += 1
    return sock.get_monitor_socket(events, addr=f"inproc://bp-it-monitor-{_monitors[0]}")


def python_ventilator_feeds_boardpipe_workers():
    pt, pr = ports(2)
    push = ctx.socket(zmq.PUSH)
    push.bind(f"tcp://127.0.0.1:{pt}")
    pull = ctx.socket(zmq.PULL)
    pull.bind(f"tcp://127.0.0.1:{pr}")
    mon = monitor(push, zmq.EVENT_HANDSHAKE_SUCCEEDED)
    try:
        ws = [env.start("worker", "--raw", "--tasks", f"tcp://127.0.0.1:{pt}", "--results",
                        f"tcp://127.0.0.1:{pr}", name=f"w{i}") for i in range(2)]
        # The tutorial's "press Enter": both workers connected (handshakes
        # seen on the PUSH socket), so the tasks are spread over both.
        for i in range(2):
            expect(mon.poll(120000), f"only {i} of 2 raw workers connected")
            mon.recv_multipart()
        for t in TUTORIAL:
            push.send_string(t)
        got = []
        pull.setsockopt(zmq.RCVTIMEO, 120000)
        for _ in TUTORIAL:
            got.append(pull.recv_string())
        expect(sorted(got) == sorted(t.upper() for t in TUTORIAL), got)
        for w in ws:  # a raw worker runs until stopped: SIGTERM, exit 0
            w.terminate()
            env.wait(w, 60)
    finally:
        mon.close(0)
        push.close(0)
        pull.close(0)


def boardpipe_ventilator_feeds_python_workers():
    pt, pr = ports(2)
    sink = env.start("sink", "--raw", "--once", "--count", "7", "--bind",
                     f"tcp://127.0.0.1:{pr}")
    workers = []
    for _ in range(2):  # the tutorial's worker, in Python
        pull = ctx.socket(zmq.PULL)
        pull.connect(f"tcp://127.0.0.1:{pt}")
        push = ctx.socket(zmq.PUSH)
        push.connect(f"tcp://127.0.0.1:{pr}")
        workers.append((pull, push))
    try:
        vent = env.start("ventilator", "--raw", "--bind", f"tcp://127.0.0.1:{pt}",
                         "--wait-workers", "2", "--wait-timeout", "120s")
        # (--raw ventilator: no --sink; the Python workers feed the raw sink)
        poller = zmq.Poller()
        for pull, _ in workers:
            poller.register(pull, zmq.POLLIN)
        done, deadline = 0, time.time() + 120
        per = [0, 0]
        while done < 7 and time.time() < deadline:
            for sock, _ in poller.poll(1000):
                i = [w[0] for w in workers].index(sock)
                msg = sock.recv_string()
                workers[i][1].send_string(msg.upper())
                per[i] += 1
                done += 1
        expect(done == 7, f"python workers got {done} tasks")
        env.wait(vent)
        env.wait(sink)
        out = env.output(sink).decode().splitlines()
        expect(sorted(out) == sorted(t.upper() for t in TUTORIAL), out)
        expect(all(per), f"both python workers did some: {per}")
    finally:
        for pull, push in workers:
            pull.close(0)
            push.close(0)


def acks(frame):
    """[(id, kind)] of an ACK message."""
    typ, n = frame[3], struct.unpack(">I", frame[4:8])[0]
    expect(frame[:3] == b"bp\x03" and typ == ACK, frame[:16])
    return [struct.unpack(">QHBB", frame[16 + 12 * i:28 + 12 * i])[0::2] for i in range(n)]


def recv_type(sock, typ, timeout_s=120):
    """Next message of type typ on sock (others, e.g. heartbeats, skipped)."""
    end = time.time() + timeout_s
    while time.time() < end:
        if sock.poll(1000):
            f = sock.recv_multipart()[-1]
            if len(f) >= 16 and f[3] == typ:
                return f
    raise AssertionError(f"no message of type {typ} within {timeout_s} s")


def sink_drops_bad_frames_and_keeps_working():
    pr, = ports(1)
    summary = env.path("bad.json")
    sink = env.start("sink", "--once", "--timeout", "60s", "--bind", f"tcp://127.0.0.1:{pr}",
                     "--summary-json", summary)
    d = ctx.socket(zmq.DEALER)  # plays the ventilator and a worker
    d.connect(f"tcp://127.0.0.1:{pr}")
    try:
        d.send(b"plain tutorial string")                        # not boardpipe framing
        d.send(msg(RESULTS, 7, version=1) + b"\0")               # another protocol version
        d.send_multipart([msg(BEGIN, 7), b"extra frame"])       # two frames
        d.send(msg(99, 7))                                      # unknown type
        d.send(msg(CLOSE, 7, body=b"\0" * 3))                   # wrong body size
        d.send(msg(BEGIN, 7))
        d.send(msg(EXTENT, 7, body=struct.pack(">Q", 2)))       # ids 0 and 1 belong
        d.send(results(7, [(0, 0, True, b"r0")]))
        d.send(results(7, [(0, 0, True, b"r0 again")]))         # duplicate: first wins
        d.send(results(7, [(1, 1, True, b"it broke")]))
        d.send(results(7, [(1 << 40, 0, True, b"far")]))        # id far out of any window
        d.send(msg(CLOSE, 7, body=struct.pack(">Q", 2)))
        got = []
        while len(got) < 3:
            got += acks(recv_type(d, ACK))
        # The duplicate is acknowledged again, with the first result's outcome.
        expect(sorted(got) == [(0, 0), (0, 0), (1, 1)], got)
        done = recv_type(d, COMPLETE)
        expect(struct.unpack(">QQ", done[16:32]) == (1, 1), done)
        env.wait(sink, 120, rc=3)  # one task failed
        err = env.errors(sink)
        js = read_json(summary)
        expect(js["ok"] == 1 and js["failed"] == 1 and js["duplicates"] == 1, js)
        # (the far id is not malformed: a result for an id the ventilator
        # never announced, counted as foreign)
        expect(js["malformed"] == 5 and js["foreign"] == 1, js)
        expect("other-version" in err and "plain strings need --raw" in err, err)
        expect(env.output(sink) == b"r0\n", env.output(sink))
    finally:
        d.close(0)


def sink_survives_oversized_frame():
    pr, = ports(1)
    sink = env.start("sink", "--once", "--timeout", "60s", "--max-msg-size", "1K", "--bind",
                     f"tcp://127.0.0.1:{pr}")
    big = ctx.socket(zmq.DEALER)
    mon = monitor(big, zmq.EVENT_DISCONNECTED)
    big.connect(f"tcp://127.0.0.1:{pr}")
    good = ctx.socket(zmq.DEALER)
    good.connect(f"tcp://127.0.0.1:{pr}")
    try:
        # libzmq drops a connection whose frame exceeds ZMQ_MAXMSGSIZE (1K plus
        # one pack): wait until the sink has cut it off, then run a batch.
        big.send(results(9, [(0, 0, True, b"x" * 200000)]))
        expect(mon.poll(120000), "the sink never dropped the oversized sender")
        good.send(msg(BEGIN, 9))
        good.send(results(9, [(0, 0, True, b"fine")]))
        good.send(msg(CLOSE, 9, body=struct.pack(">Q", 1)))
        env.wait(sink, 120)
        expect(env.output(sink) == b"fine\n", env.output(sink))
    finally:
        mon.close(0)
        big.close(0)
        good.close(0)


def worker_speaks_v3_and_drops_foreign_frames():
    # A Python ROUTER plays the ventilator and another the sink.
    pt, pr = ports(2)
    vent = ctx.socket(zmq.ROUTER)
    vent.bind(f"tcp://127.0.0.1:{pt}")
    sink = ctx.socket(zmq.ROUTER)
    sink.bind(f"tcp://127.0.0.1:{pr}")
    try:
        w = env.start("worker", "--tasks", f"tcp://127.0.0.1:{pt}", "--results",
                      f"tcp://127.0.0.1:{pr}", "--id", "pyw")
        rid, hello = None, None
        end = time.time() + 120
        while hello is None and time.time() < end:
            if vent.poll(1000):
                r, f = vent.recv_multipart()
                if f[3] == HELLO:
                    rid, hello = r, f
        expect(hello is not None, "no HELLO from the worker")
        jobs, _, credit, idl = struct.unpack(">HHIB", hello[16:25])
        expect(hello[25:25 + idl] == b"pyw" and credit >= 1, hello)
        vent.send_multipart([rid, b"raw string"])
        vent.send_multipart([rid, msg(TASKS, 5, version=2)])
        vent.send_multipart([rid, msg(TASKS, 5), b"extra frame"])
        task = struct.pack(">QHBBI", 42, 1, 1, 0, 4) + b"good"
        vent.send_multipart([rid, msg(TASKS, 5, 1, task)])
        f = recv_type(sink, RESULTS)
        wl = f[16]
        expect(f[17:17 + wl] == b"pyw", f)
        tid, att, status, flags, code, el, ln = struct.unpack(">QHBBiII", f[17 + wl:41 + wl])
        expect((tid, status, flags) == (42, 0, 1) and f[41 + wl:41 + wl + ln] == b"GOOD", f)
        # ...and it reports the task done in a CREDIT.
        c = recv_type(vent, CREDIT)
        n = struct.unpack(">I", c[4:8])[0]
        ids = [struct.unpack(">Q", c[20 + 8 * i:28 + 8 * i])[0] for i in range(n)]
        expect(42 in ids, ids)
        # SIGTERM: nothing queued or running, so it leaves at once, exit 0.
        w.terminate()
        env.wait(w, 60)
        err = env.errors(w)
        expect("other-version" in err, err)
        expect("(3 so far)" in err, f"3 foreign messages dropped and counted: {err}")
    finally:
        vent.close(0)
        sink.close(0)


def v1_header(typ=2, tid=0, wid=b""):
    """A version-1 header frame (32 bytes + worker id: the old two-frame
    format, docs/wire-format.md before v2)."""
    return struct.pack(">2sBBBBBBQQiI", b"bp", 1, typ, 0, 0, len(wid), 0, 7, tid, 0, 0) + wid


def log_has(p, text):
    return lambda: text in env.errors(p)


def assault(port, proc, what):
    """Garbage, a v1 two-frame message, a v2 frame, a "bp" + version 1 header and an
    oversized frame at the ROUTER on port, each from a Python DEALER.
    Returns proc's log line of the last drop ("(N so far)") once libzmq
    cut off the oversized sender."""
    bad = ctx.socket(zmq.DEALER)
    big = ctx.socket(zmq.DEALER)
    mon = monitor(big, zmq.EVENT_DISCONNECTED)
    try:
        bad.connect(f"tcp://127.0.0.1:{port}")
        bad.send(b"plain tutorial string")                       # not boardpipe framing
        bad.send_multipart([v1_header(wid=b"old"), b"payload"])  # v1: two frames
        bad.send(msg(RESULTS, 7, version=2) + b"\0" * 16)        # a v2 board (before files)
        bad.send(msg(RESULTS, 7, version=1) + b"\0" * 16)        # "bp" + version 1
        # One peer's messages are read in order: once the last one is
        # logged, the two before it were handled too.
        env.wait_for(log_has(proc, "dropped other-version message"),
                     f"{what}: the other-version message dropped", timeout=120, procs=(proc,))
        line = [ln for ln in env.errors(proc).splitlines() if "other-version message" in ln][0]
        big.connect(f"tcp://127.0.0.1:{port}")
        big.send(results(7, [(0, 0, True, b"x" * 3000000)]))   # over any --max-msg-size
        expect(mon.poll(120000), f"{what} never dropped the oversized sender")
        expect(proc.poll() is None, f"{what} exit {proc.poll()}: {env.errors(proc)}")
        return line
    finally:
        mon.close(0)
        big.close(0)
        bad.close(0)


def hostile_frames_then_real_batch():
    # Both ROUTERs (the ventilator's for workers, the sink's) take hostile
    # frames while waiting; then a real worker runs a batch through them.
    pt, pr = ports(2)
    summary = env.path("hostile.json")
    sink = env.start("sink", "--once", "--timeout", "120s", "--bind", f"tcp://127.0.0.1:{pr}",
                     "--summary-json", summary)
    vent = env.start("ventilator", "-v", "--bind", f"tcp://127.0.0.1:{pt}", "--sink",
                     f"tcp://127.0.0.1:{pr}", "--wait-workers", "1", "--wait-timeout", "120s")
    sline = assault(pr, sink, "the sink")
    vline = assault(pt, vent, "the ventilator")
    w = env.start("worker", "--once", "--tasks", f"tcp://127.0.0.1:{pt}", "--results",
                  f"tcp://127.0.0.1:{pr}", "--id", "real")
    env.wait(vent)
    env.wait(sink)
    env.wait(w)
    out = env.output(sink).decode().splitlines()
    expect(sorted(out) == sorted(t.upper() for t in TUTORIAL), out)
    js = read_json(summary)
    expect(js["ok"] == 7 and js["missing"] == 0 and js["duplicates"] == 0, js)
    expect(js["malformed"] == 4, f"the sink counts garbage, v1, v2 and other-version: {js}")
    # Each counts all three it saw (garbage, two frames, version 1).
    expect("(3 so far)" in sline, f"the sink: {sline!r}")
    expect("(3 so far)" in vline, f"the ventilator: {vline!r}")
    verr = env.errors(vent)
    expect("4 malformed" in verr, f"the ventilator's -v summary: {verr[-2000:]}")


def python_worker_speaks_v3_to_real_ventilator_and_sink():
    # A Python DEALER plays a worker: HELLO with credit, TASKS in, RESULTS
    # to the sink, CREDIT with the done ids, heartbeats both ways, until END.
    pt, pr = ports(2)
    summary = env.path("pyworker.json")
    tasks = [f"task {i}" for i in range(25)]
    inp = env.path("py.txt")
    with open(inp, "w") as f:
        f.write("".join(t + "\n" for t in tasks))
    sink = env.start("sink", "--once", "--timeout", "120s", "--bind", f"tcp://127.0.0.1:{pr}",
                     "--summary-json", summary)
    vent = env.start("ventilator", "--bind", f"tcp://127.0.0.1:{pt}", "--sink",
                     f"tcp://127.0.0.1:{pr}", "--wait-workers", "1", "--wait-timeout", "120s",
                     "--input", inp)
    d = ctx.socket(zmq.DEALER)
    r = ctx.socket(zmq.DEALER)
    try:
        d.connect(f"tcp://127.0.0.1:{pt}")
        r.connect(f"tcp://127.0.0.1:{pr}")
        wid = b"py-worker"
        d.send(msg(HELLO, 0, 0, struct.pack(">HHIB", 1, 0, 4, len(wid)) + wid))
        seen, batch, ended = {}, None, None
        next_hb, end = time.time(), time.time() + 120 * env.slow
        while ended is None:
            expect(time.time() < end, f"no END from the ventilator; {len(seen)} tasks seen")
            if time.time() >= next_hb and batch is not None:
                d.send(msg(HEARTBEAT, batch, 0, struct.pack(">QQ", 1, 0)))
                next_hb = time.time() + 0.3
            if not d.poll(100):
                continue
            f = d.recv()
            expect(len(f) >= 16 and f[:3] == b"bp\x03", f"not a v3 frame: {f[:32]!r}")
            typ, n, b = f[3], struct.unpack(">I", f[4:8])[0], struct.unpack(">Q", f[8:16])[0]
            if typ == HEARTBEAT:
                expect(len(f) == 32, f"HEARTBEAT body: {f!r}")
                ping, _ = struct.unpack(">QQ", f[16:32])
                d.send(msg(HEARTBEAT, b, 0, struct.pack(">QQ", 0, ping)))
            elif typ == TASKS:
                batch = b
                off, recs = 16, []
                for _ in range(n):
                    tid, att, flags, zero, ln = struct.unpack(">QHBBI", f[off:off + 16])
                    data = f[off + 16:off + 16 + ln]
                    off += 16 + ln
                    expect(zero == 0 and att >= 1, f"task record {tid}: {f[off - 16 - ln:off]!r}")
                    expect(tid not in seen, f"task {tid} sent twice")
                    seen[tid] = data
                    recs.append(struct.pack(">QHBBiII", tid, att, 0, 1, 0, 1, ln) + data.upper())
                expect(off == len(f), f"TASKS body of {len(f)} bytes, records end at {off}")
                body = bytes([len(wid)]) + wid + b"".join(recs)
                r.send(msg(RESULTS, b, n, body))
                ids = [struct.unpack(">Q", rec[:8])[0] for rec in recs]
                d.send(msg(CREDIT, b, n, struct.pack(">I", n) +
                           b"".join(struct.pack(">Q", i) for i in ids)))
            elif typ == END:
                ended = struct.unpack(">I", f[16:20])[0]
            else:  # RESYNC would mean our HELLO was lost or not understood
                raise AssertionError(f"unexpected message type {typ}: {f[:32]!r}")
        expect(ended == 0, f"END reason {ended}, want 0 (complete)")
        expect(sorted(seen.values()) == sorted(t.encode() for t in tasks), seen)
        expect(sorted(seen) == list(range(len(tasks))), f"task ids: {sorted(seen)}")
        env.wait(vent)
        env.wait(sink)
        out = env.output(sink).decode().splitlines()
        expect(sorted(out) == sorted(t.upper() for t in tasks), out)
        js = read_json(summary)
        expect(js["ok"] == len(tasks) and js["missing"] == 0 and js["malformed"] == 0, js)
        expect(list(js["workers"]) == ["py-worker"], js["workers"])
    finally:
        d.close(0)
        r.close(0)


for name, fn in list(globals().items()):
    if callable(fn) and fn.__module__ == "__main__" and not name.startswith("_") \
            and name not in ("msg", "results", "acks", "recv_type", "v1_header", "log_has",
                             "assault") \
            and fn.__code__.co_argcount == 0:
        env.check(name, fn)
env.finish()
