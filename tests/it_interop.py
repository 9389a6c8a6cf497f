#!/usr/bin/env python3
"""Raw mode interop with plain ZeroMQ peers (pyzmq), both ways, and the
sink's handling of malformed, other-version and oversized frames."""
import struct
import sys
import time

from bptest import Env, args, expect, ports, read_json

try:
    import zmq
except ImportError:
    print("SKIP: python3-zmq (pyzmq) is not installed; interop needs a plain ZeroMQ peer")
    sys.exit(77)

env = Env(args())
ctx = zmq.Context.instance()
TUTORIAL = ["hola", "aloha", "hello", "buenas noches", "buenas tardes", "buenos dias",
            "bienvenido"]


def python_ventilator_feeds_boardpipe_workers():
    pt, pr = ports(2)
    push = ctx.socket(zmq.PUSH)
    push.bind(f"tcp://127.0.0.1:{pt}")
    pull = ctx.socket(zmq.PULL)
    pull.bind(f"tcp://127.0.0.1:{pr}")
    try:
        for i in range(2):
            env.start("worker", "--raw", "--tasks", f"tcp://127.0.0.1:{pt}", "--results",
                      f"tcp://127.0.0.1:{pr}", name=f"w{i}")
        time.sleep(1.0)  # the tutorial's "press Enter": let both workers connect
        for t in TUTORIAL:
            push.send_string(t)
        got = []
        pull.setsockopt(zmq.RCVTIMEO, 120000)
        for _ in TUTORIAL:
            got.append(pull.recv_string())
        expect(sorted(got) == sorted(t.upper() for t in TUTORIAL), got)
    finally:
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
        expect(env.wait(vent) == 0, env.errors(vent))
        expect(env.wait(sink) == 0, env.errors(sink))
        out = env.output(sink).decode().splitlines()
        expect(sorted(out) == sorted(t.upper() for t in TUTORIAL), out)
        expect(all(per), f"both python workers did some: {per}")
    finally:
        for pull, push in workers:
            pull.close(0)
            push.close(0)


# Protocol v2 messages, built by hand (docs/wire-format.md): one frame,
# a 16-byte header, then the body.
HELLO, CREDIT, TASKS, HEARTBEAT, RESYNC, END, BYE, RESULTS, BEGIN, CLOSE, ACK, COMPLETE = \
    range(1, 13)


def msg(typ, batch=0, n=0, body=b"", version=2):
    return struct.pack(">2sBBIQ", b"bp", version, typ, n, batch) + body


def results(batch, recs, wid=b"py"):
    """recs: (id, status, final, payload)."""
    body = bytes([len(wid)]) + wid
    for tid, status, final, data in recs:
        body += struct.pack(">QHBBiII", tid, 1, status, 1 if final else 0, 0, 0, len(data)) + data
    return msg(RESULTS, batch, len(recs), body)


def acks(frame):
    """[(id, kind)] of an ACK message."""
    typ, n = frame[3], struct.unpack(">I", frame[4:8])[0]
    expect(frame[:3] == b"bp\x02" and typ == ACK, frame[:16])
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
        rc = env.wait(sink, 120)
        err = env.errors(sink)
        expect(rc == 3, f"sink exit {rc} (want 3: one task failed): {err}")
        js = read_json(summary)
        expect(js["ok"] == 1 and js["failed"] == 1 and js["duplicates"] == 1, js)
        expect(js["malformed"] == 6, js)
        expect("other-version" in err and "plain strings need --raw" in err, err)
        expect(env.output(sink) == b"r0\n", env.output(sink))
    finally:
        d.close(0)


def sink_survives_oversized_frame():
    pr, = ports(1)
    sink = env.start("sink", "--once", "--timeout", "60s", "--max-msg-size", "1K", "--bind",
                     f"tcp://127.0.0.1:{pr}")
    big = ctx.socket(zmq.DEALER)
    mon = big.get_monitor_socket(zmq.EVENT_DISCONNECTED)
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
        rc = env.wait(sink, 120)
        expect(rc == 0, f"sink exit {rc}: {env.errors(sink)}")
        expect(env.output(sink) == b"fine\n", env.output(sink))
    finally:
        mon.close(0)
        big.close(0)
        good.close(0)


def worker_speaks_v2_and_drops_foreign_frames():
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
        vent.send_multipart([rid, msg(TASKS, 5, version=3)])
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
        env.kill(w)
        expect("other-version" in env.errors(w), env.errors(w))
    finally:
        vent.close(0)
        sink.close(0)


for name, fn in list(globals().items()):
    if callable(fn) and fn.__module__ == "__main__" and not name.startswith("_") \
            and name not in ("msg", "results", "acks", "recv_type") \
            and fn.__code__.co_argcount == 0:
        env.check(name, fn)
env.finish()
