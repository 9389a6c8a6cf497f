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


def header(version=1, typ=2, status=0, batch=1, task=0, wid=b"py"):
    return struct.pack(">2sBBBBBBQQiI", b"bp", version, typ, status, 0, len(wid), 0, batch,
                       task, 0, 0) + wid


def sink_drops_bad_frames_and_keeps_working():
    pr, pc = ports(2)
    summary = env.path("bad.json")
    sink = env.start("sink", "--once", "--timeout", "60s", "--bind", f"tcp://127.0.0.1:{pr}",
                     "--control-bind", f"tcp://127.0.0.1:{pc}", "--summary-json", summary)
    push = ctx.socket(zmq.PUSH)
    push.connect(f"tcp://127.0.0.1:{pr}")
    try:
        push.send(b"plain tutorial string")                      # not boardpipe framing
        push.send_multipart([header(version=2), b"future"])      # another protocol version
        push.send_multipart([header()[:20], b"short"])           # truncated header
        push.send_multipart([header(), b"x", b"extra frame"])    # too many frames
        push.send_multipart([header(typ=99), b"x"])              # unknown type
        push.send_multipart([header(typ=3, batch=7), b""])       # BEGIN batch 7
        push.send_multipart([header(batch=7, task=0), b"r0"])
        push.send_multipart([header(batch=7, task=0), b"r0 again"])  # duplicate
        push.send_multipart([header(batch=7, task=1, status=1), b"it broke"])
        push.send_multipart([header(typ=4, batch=7, task=2), b""])   # END: 2 tasks
        rc = env.wait(sink, 120)
        err = env.errors(sink)
        expect(rc == 3, f"sink exit {rc} (want 3: one task failed): {err}")
        js = read_json(summary)
        expect(js["ok"] == 1 and js["failed"] == 1 and js["duplicates"] == 1, js)
        expect(js["malformed"] == 5, js)
        expect("other-version" in err and "plain strings need --raw" in err, err)
        expect(env.output(sink) == b"r0\n", env.output(sink))
    finally:
        push.close(0)


def sink_survives_oversized_frame():
    pr, pc = ports(2)
    sink = env.start("sink", "--once", "--timeout", "60s", "--max-msg-size", "1K", "--bind",
                     f"tcp://127.0.0.1:{pr}", "--control-bind", f"tcp://127.0.0.1:{pc}")
    big = ctx.socket(zmq.PUSH)
    big.connect(f"tcp://127.0.0.1:{pr}")
    good = ctx.socket(zmq.PUSH)
    good.connect(f"tcp://127.0.0.1:{pr}")
    try:
        # libzmq drops a connection whose frame exceeds ZMQ_MAXMSGSIZE.
        big.send_multipart([header(batch=9, task=0), b"x" * 100000])
        time.sleep(0.5)
        good.send_multipart([header(typ=3, batch=9), b""])
        good.send_multipart([header(batch=9, task=0), b"fine"])
        good.send_multipart([header(typ=4, batch=9, task=1), b""])
        rc = env.wait(sink, 120)
        expect(rc == 0, f"sink exit {rc}: {env.errors(sink)}")
        expect(env.output(sink) == b"fine\n", env.output(sink))
    finally:
        big.close(0)
        good.close(0)


def worker_drops_foreign_frames():
    pt, pr = ports(2)
    push = ctx.socket(zmq.PUSH)
    push.bind(f"tcp://127.0.0.1:{pt}")
    pull = ctx.socket(zmq.PULL)
    pull.bind(f"tcp://127.0.0.1:{pr}")
    pull.setsockopt(zmq.RCVTIMEO, 120000)
    try:
        w = env.start("worker", "--tasks", f"tcp://127.0.0.1:{pt}", "--results",
                      f"tcp://127.0.0.1:{pr}", "--control", "none")
        time.sleep(1.0)
        push.send(b"raw string")
        push.send_multipart([header(version=3, typ=1), b"v3"])
        push.send_multipart([header(typ=1, batch=5, task=42, wid=b""), b"good"])
        hdr, payload = pull.recv_multipart()
        expect(payload == b"GOOD", payload)
        expect(hdr[:3] == b"bp\x01" and hdr[3] == 2, hdr)
        expect(struct.unpack(">Q", hdr[16:24])[0] == 42, hdr)
        env.kill(w)
        expect("other-version" in env.errors(w), env.errors(w))
    finally:
        push.close(0)
        pull.close(0)


for name, fn in list(globals().items()):
    if callable(fn) and fn.__module__ == "__main__" and not name.startswith("_") \
            and name != "header" and fn.__code__.co_argcount == 0:
        env.check(name, fn)
env.finish()
