#!/usr/bin/env python3
"""Hostile peers on the LAN against the host's ports (label hostile).

An attacker with no keys (pyzmq, and a hand-made ZMTP peer for the
send-only raw port) tries to bloat, crash or fool each host role, in plain
mode and with CURVE on: memory stays bounded, forged control messages
neither end nor complete a batch, every drop is counted in the summary, a
real batch still completes with exactly its results, and peer-chosen
strings never reach a log raw."""
import os
import resource
import socket
import struct
import subprocess
import sys
import time

from bptest import Env, args, expect, ports, read_json
from bpwire import (ACK, BEGIN, BYE, CLOSE, COMPLETE, CREDIT, END, HEARTBEAT, HELLO,  # noqa: F401
                    RESULTS, RESYNC, TASKS, msg, results)

try:
    import zmq
except Exception as e:  # noqa: BLE001 - a broken pyzmq is a skip with its reason too
    print("SKIP: python3-zmq (pyzmq) is not installed; the hostile peers are pyzmq sockets "
          f"[{type(e).__name__}: {e}; python {sys.executable}]", flush=True)
    sys.exit(77)

env = Env(args())
ctx = zmq.Context.instance()
# ASan keeps freed blocks in a quarantine (256 MB by default), which would
# read as growth; a small one keeps RSS honest and still catches misuse.
ASAN = {"ASAN_OPTIONS": "quarantine_size_mb=8:" + os.environ.get("ASAN_OPTIONS", "")}
CEILING = 64 << 20  # allowed RSS growth under attack


def rss(p):
    """Resident set size of p (the emulator's, under qemu) in bytes."""
    with open(f"/proc/{p.pid}/status") as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {p.bp_name}")


def settle(p, seconds=1.0):
    """RSS of p once it stopped moving (or after a few seconds)."""
    last, t_end = rss(p), time.time() + seconds * env.slow
    while time.time() < t_end:
        time.sleep(0.2)
        now = rss(p)
        if abs(now - last) < (256 << 10):
            return now
        last = now
    return last


def tasks_file(name, n, text="task"):
    path = env.path(name)
    with open(path, "w") as f:
        f.write("".join(f"{text} {i}\n" for i in range(n)))
    return path


def learn_batch(pt):
    """The batch id, as any peer learns it in plain mode: say HELLO (with
    no credit) to the ventilator and read the header of its answer."""
    d = ctx.socket(zmq.DEALER)
    d.connect(f"tcp://127.0.0.1:{pt}")
    try:
        d.send(msg(HELLO, 0, 0, struct.pack(">HHIB", 1, 0, 0, 3) + b"spy"))
        d.send(msg(HEARTBEAT, 0, 0, struct.pack(">QQ", 12345, 0)))
        end = time.time() + 60 * env.slow
        while time.time() < end:
            if d.poll(1000):
                f = d.recv()
                if len(f) >= 16 and f[:3] == b"bp\x03":
                    b = struct.unpack(">Q", f[8:16])[0]
                    if b:
                        return b
        raise AssertionError("the ventilator never answered the spy")
    finally:
        d.close(0)


def zmtp_peer(port, socket_type=b"PULL"):
    """A raw TCP peer that completes a ZMTP 3.0 NULL handshake as
    socket_type: it can then push frames into a socket that never reads."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30 * env.slow)
    s.sendall(b"\xff" + b"\0" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\0") + b"\0" +
              b"\0" * 31)
    greeting = b""
    while len(greeting) < 64:
        chunk = s.recv(64 - len(greeting))
        expect(chunk, "the host closed during the greeting")
        greeting += chunk
    prop = b"\x0bSocket-Type" + struct.pack(">I", len(socket_type)) + socket_type
    body = b"\x05READY" + prop
    s.sendall(b"\x04" + bytes([len(body)]) + body)
    return s


def flood_raw_task_port():
    # The raw ventilator's PUSH port never reads: a peer that pushes 300
    # frames of 1 MiB into it must not make it queue them.
    pt, = ports(1)
    # Input from a pipe left open: it stays up, with nothing to send.
    vent = env.start("ventilator", "--raw", "--bind", f"tcp://127.0.0.1:{pt}", "--sink", "none",
                     "--input", "-", stdin=subprocess.PIPE, env=ASAN)
    env.wait_for(lambda: _listening(pt), "the raw task port", procs=(vent,))
    base = settle(vent)
    s = zmtp_peer(pt)
    sent, frame = 0, b"\x02" + struct.pack(">Q", 1 << 20) + b"x" * (1 << 20)
    try:
        for _ in range(300):
            s.sendall(frame)
            sent += 1
    except OSError:
        pass  # cut off: what we want
    finally:
        s.close()
    grown = settle(vent) - base
    expect(grown < CEILING, f"the raw ventilator grew {grown >> 20} MiB after {sent} frames")
    expect(vent.poll() is None, f"ventilator exit {vent.poll()}: {env.errors(vent)}")
    vent.stdin.close()  # end of input: it sends nothing and leaves
    env.wait(vent, 120)


def _listening(port):
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _real_batch(pt, pr, sink, vent, n):
    """A real worker runs the batch of n 'task i' lines: both host roles
    exit 0 and the sink wrote exactly one result for each."""
    w = env.start("worker", "--once", "--tasks", f"tcp://127.0.0.1:{pt}", "--results",
                  f"tcp://127.0.0.1:{pr}", "--id", "real")
    env.wait(vent, rc=0)
    env.wait(sink, rc=0)
    env.wait(w)
    out = sorted(env.output(sink).decode().splitlines())
    expect(out == sorted(f"TASK {i}" for i in range(n)), out[:5])


def flood_routers_then_real_batch():
    # Big garbage and far-off task ids at both ROUTERs: memory stays
    # bounded, then a real batch completes exactly.
    pt, pr = ports(2)
    summary = env.path("flood.json")
    n = env.n(200, 40)
    inp = tasks_file("flood.txt", n)
    sink = env.start("sink", "--once", "--timeout", "300s", "--bind", f"tcp://127.0.0.1:{pr}",
                     "--summary-json", summary, env=ASAN)
    env.wait_for(lambda: _listening(pr), "the sink's port", procs=(sink,))
    base = settle(sink)
    a = ctx.socket(zmq.DEALER)
    a.setsockopt(zmq.SNDHWM, 0)
    a.connect(f"tcp://127.0.0.1:{pr}")
    big = b"\x00" * (1 << 20)
    rounds = env.n(300, 60)
    for i in range(rounds):  # garbage near the size limit, and ids far out
        a.send(big)
        a.send(results(0xB0B, [(1 << 40 + (i % 20), 0, True, b"far"),
                               ((i * 2654435761) % (1 << 32), 0, True, b"wide")]))
    # Everything sent is in (or cut): the sink's answer to a ping comes
    # after every message before it on this connection.
    a.send(msg(HEARTBEAT, 0xB0B, 0, struct.pack(">QQ", 777, 0)))
    expect(a.poll(300000), "the sink never answered after the flood")
    grown = settle(sink) - base
    expect(grown < CEILING, f"the sink grew {grown >> 20} MiB under {rounds} rounds")
    a.close(0)
    vent = env.start("ventilator", "--bind", f"tcp://127.0.0.1:{pt}", "--sink",
                     f"tcp://127.0.0.1:{pr}", "--wait-workers", "1", "--wait-timeout", "300s",
                     "--input", inp, env=ASAN)
    env.wait_for(lambda: _listening(pt), "the task port", procs=(vent,))
    vbase = settle(vent)
    v = ctx.socket(zmq.DEALER)
    v.setsockopt(zmq.SNDHWM, 0)
    v.connect(f"tcp://127.0.0.1:{pt}")
    for _ in range(rounds):
        v.send(b"\x00" * (60 << 10))  # just under the ventilator's limit
    v.send(msg(HEARTBEAT, 0, 0, struct.pack(">QQ", 778, 0)))
    expect(v.poll(300000), "the ventilator never answered after the flood")
    vgrown = settle(vent) - vbase
    expect(vgrown < CEILING, f"the ventilator grew {vgrown >> 20} MiB under {rounds} rounds")
    v.close(0)
    _real_batch(pt, pr, sink, vent, n)
    js = read_json(summary)
    expect(js["ok"] == n and js["missing"] == 0 and js["duplicates"] == 0, js)


def gated_batch(pt, pr, summary, gate, vent_input, stdin=subprocess.DEVNULL):
    """A sink (-v: it says when it knows the ventilator), a ventilator and
    one real worker whose tasks wait for the gate file, so the batch cannot
    end before an attack is in. Returns (sink, vent, worker, batch id) once
    the sink knows the real ventilator: plain mode cannot tell peers apart
    before that (a peer quicker than its BEGIN can start a batch of its
    own: README, Security), so attacks start then."""
    sink = env.start("sink", "-v", "--once", "--timeout", "300s", "--bind",
                     f"tcp://127.0.0.1:{pr}", "--summary-json", summary)
    vent = env.start("ventilator", "--bind", f"tcp://127.0.0.1:{pt}", "--sink",
                     f"tcp://127.0.0.1:{pr}", "--wait-workers", "1", "--wait-timeout", "300s",
                     *vent_input, stdin=stdin)
    w = env.start("worker", "--once", "--tasks", f"tcp://127.0.0.1:{pt}", "--results",
                  f"tcp://127.0.0.1:{pr}", "--id", "real", "--exec",
                  f"while [ ! -e {gate} ]; do sleep 0.05; done; tr a-z A-Z")
    batch = learn_batch(pt)
    env.wait_for(lambda: "ventilator is peer" in env.errors(sink), "the sink to know the "
                 "ventilator", procs=(sink, vent))
    return sink, vent, w, batch


def forged_control_does_not_end_or_complete():
    # A peer that learned the batch id (plain mode: anyone can) sends the
    # sink BEGIN, CLOSE with a smaller size, 'lost' results and pings while
    # the real ventilator runs: none of it ends, completes or shrinks the
    # batch, all of it is counted.
    pt, pr = ports(2)
    summary = env.path("forged.json")
    n = env.n(40, 12)
    inp = tasks_file("forged.txt", n)
    gate = env.path("gate")
    sink, vent, w, batch = gated_batch(pt, pr, summary, gate, ("--input", inp))
    a = ctx.socket(zmq.DEALER)
    a.connect(f"tcp://127.0.0.1:{pr}")
    try:
        a.send(msg(HEARTBEAT, batch, 0, struct.pack(">QQ", 1, 0)))  # try to be adopted
        a.send(msg(CLOSE, batch, 0, struct.pack(">Q", 1)))          # a batch of one
        a.send(msg(BEGIN, batch ^ 1))                                # a new batch
        a.send(msg(CLOSE, batch ^ 1, 0, struct.pack(">Q", 0)))
        a.send(results(batch, [(0, 7, True, b"lost 3 times (forged)")]))
        a.send(msg(HEARTBEAT, batch, 0, struct.pack(">QQ", 2, 0)))
        expect(a.poll(120000 * env.slow), "no answer from the sink")
        time.sleep(0.2)
        # 3 forged: both CLOSEs and the BEGIN (the CLOSE of another batch is
        # stale or forged), plus the 'lost' result.
        env.wait_for(lambda: "so far" in env.errors(sink), "the sink to count forgeries",
                     procs=(sink,))
    finally:
        a.close(0)
    expect(sink.poll() is None and vent.poll() is None, "a host role left early: "
           + env.errors(sink)[-1000:] + env.errors(vent)[-1000:])
    open(gate, "w").close()
    env.wait(vent, rc=0)
    env.wait(sink, rc=0)
    env.wait(w)
    out = sorted(env.output(sink).decode().splitlines())
    expect(out == sorted(f"TASK {i}" for i in range(n)), out[:5])
    js = read_json(summary)
    expect(js["ok"] == n and js["failed"] == 0 and js["total"] == n, js)
    expect(js["forged"] >= 3, f"forgeries counted: {js}")


def far_ids_are_never_written_nor_counted():
    # Issue #18: a peer that joined as a worker (so it knows the batch id)
    # sends results for ids beyond the batch before the ventilator's CLOSE.
    # Before the fix the sink wrote those inside its id window, counted
    # them, and on CLOSE called the batch complete with real tasks missing
    # (and the ventilator made its held tasks final on that word). Now a
    # result is written only for an id the ventilator announced; the batch
    # completes only when every real id is in.
    pt, pr = ports(2)
    summary = env.path("far.json")
    n = env.n(200, 40)
    gate = env.path("far-gate")
    # Input from a pipe kept open: the ventilator reads every task (and
    # tells the sink so) but cannot send CLOSE until the attack is in.
    sink, vent, w, batch = gated_batch(pt, pr, summary, gate, ("--input", "-"),
                                       stdin=subprocess.PIPE)
    vent.stdin.write("".join(f"task {i}\n" for i in range(n)).encode())
    vent.stdin.flush()
    a = ctx.socket(zmq.DEALER)
    a.connect(f"tcp://127.0.0.1:{pr}")
    near = list(range(n, n + 64))                      # just past the batch
    far = [n + 1000, 1 << 19, (1 << 20) - 1, 1 << 31]  # the old id window and beyond
    try:
        for i in range(0, len(near), 16):
            a.send(results(batch, [(t, 0, True, b"FOREIGN %d" % t) for t in near[i:i + 16]],
                           wid=b"foreign"))
        a.send(results(batch, [(t, 0, True, b"FOREIGN %d" % t) for t in far], wid=b"foreign"))
        # a ping on the batch: answered once everything before it is handled
        a.send(msg(HEARTBEAT, batch, 0, struct.pack(">QQ", 3, 0)))
        expect(a.poll(120000 * env.slow), "no answer from the sink")
    finally:
        a.close(0)
    open(gate, "w").close()
    vent.stdin.close()  # end of input: CLOSE(n)
    env.wait(vent, rc=0)
    env.wait(sink, rc=0)
    env.wait(w)
    out = env.output(sink).decode().splitlines()
    expect(sorted(out) == sorted(f"TASK {i}" for i in range(n)),
           f"output is not exactly the batch: {[x for x in out if 'FOREIGN' in x][:5]} "
           f"{len(out)} lines")
    js = read_json(summary)
    expect(js["ok"] == n and js["failed"] == 0 and js["total"] == n and js["missing"] == 0, js)
    expect(js["foreign"] == len(near) + len(far), f"foreign results counted: {js}")
    expect(set(js["workers"]) == {"real"}, f"results credited to: {js['workers']}")


def escapes_never_reach_the_log():
    # A worker id and a result made of terminal escapes: logs get them
    # made printable.
    pt, pr = ports(2)
    sink = env.start("sink", "--once", "--timeout", "300s", "--bind", f"tcp://127.0.0.1:{pr}")
    vent = env.start("ventilator", "-v", "--bind", f"tcp://127.0.0.1:{pt}", "--sink",
                     f"tcp://127.0.0.1:{pr}", "--wait-workers", "1", "--wait-timeout", "300s")
    d = ctx.socket(zmq.DEALER)
    r = ctx.socket(zmq.DEALER)
    evil = b"\x1b]0;owned\x07\x1b[2J"
    try:
        d.connect(f"tcp://127.0.0.1:{pt}")
        r.connect(f"tcp://127.0.0.1:{pr}")
        d.send(msg(HELLO, 0, 0, struct.pack(">HHIB", 1, 0, 16, len(evil)) + evil))
        end, done = time.time() + 120 * env.slow, 0
        while done < 7:
            expect(time.time() < end, f"only {done} tasks done")
            if not d.poll(1000):
                continue
            f = d.recv()
            if f[3] != TASKS:
                continue
            batch, cnt = struct.unpack(">Q", f[8:16])[0], struct.unpack(">I", f[4:8])[0]
            off, ids, recs = 16, [], []
            for _ in range(cnt):
                tid, att, fl, _z, ln = struct.unpack(">QHBBI", f[off:off + 16])
                ids.append(tid)
                recs.append((tid, 1, True, evil + b"exit"))  # failed, with escapes
                off += 16 + ln
            r.send(results(batch, recs, wid=evil))
            d.send(msg(CREDIT, batch, len(ids), struct.pack(">I", len(ids)) +
                       b"".join(struct.pack(">Q", i) for i in ids)))
            done += cnt
        env.wait(vent, rc=3)
        env.wait(sink, rc=3)
    finally:
        d.close(0)
        r.close(0)
    for p in (vent, sink):
        err = env.errors(p)
        expect("\x1b" not in err and "\x07" not in err, f"{p.bp_name} logged raw escapes: {err!r}")
        # ...but shown, escaped, where the id is logged.
        expect("]0;owned" in err, f"{p.bp_name} does not show the id at all: {err[-800:]!r}")


def _nofile(soft, hard):
    """A preexec function: the child starts with these descriptor limits."""
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _cpu_s(p):
    """User + system CPU seconds of p so far (the emulator's, under qemu)."""
    with open(f"/proc/{p.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _idle_peers(port, n):
    """n raw TCP peers that send a ZMTP 3.0 greeting and READY as DEALER,
    then stay silent. Returns the sockets (some may have been refused)."""
    prop = b"\x0bSocket-Type" + struct.pack(">I", 6) + b"DEALER"
    body = b"\x05READY" + prop
    hello = (b"\xff" + b"\0" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\0") + b"\0" +
             b"\0" * 31 + b"\x04" + bytes([len(body)]) + body)
    peers = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=30 * env.slow)
        try:
            s.sendall(hello)
        except OSError:
            pass  # refused at once: what a host out of descriptors does
        peers.append(s)
    return peers


def _descriptors(soft, hard, n_idle):
    """Host roles started with RLIMIT_NOFILE soft/hard; n_idle idle ZMTP
    peers on each host port while the ventilator waits for a worker; then
    they leave and a real worker runs the batch. Returns (sink, vent, CPU
    share of each while the peers held on)."""
    cur, top = resource.getrlimit(resource.RLIMIT_NOFILE)  # this side holds the peers
    want = 65536 if top == resource.RLIM_INFINITY else min(top, 65536)
    if cur != resource.RLIM_INFINITY and cur < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, top))
    pt, pr = ports(2)
    n = env.n(30, 10)
    inp = tasks_file("fd.txt", n)
    lim = _nofile(soft, hard)
    sink = env.start("sink", "-v", "--once", "--timeout", "300s", "--bind",
                     f"tcp://127.0.0.1:{pr}", env=ASAN, preexec=lim)
    vent = env.start("ventilator", "-v", "--bind", f"tcp://127.0.0.1:{pt}", "--sink",
                     f"tcp://127.0.0.1:{pr}", "--wait-workers", "1", "--wait-timeout", "600s",
                     "--input", inp, env=ASAN, preexec=lim)
    env.wait_for(lambda: "ventilator is peer" in env.errors(sink), "the sink to know the "
                 "ventilator", procs=(sink, vent))
    env.wait_for(lambda: _listening(pt), "the task port", procs=(vent,))
    peers = _idle_peers(pr, n_idle) + _idle_peers(pt, n_idle)
    try:
        time.sleep(1.0 * env.slow)  # every peer accepted or refused by now
        c0 = [_cpu_s(p) for p in (sink, vent)]
        t0 = time.monotonic()
        time.sleep(3.0 * env.slow)
        dt = time.monotonic() - t0
        share = [(_cpu_s(p) - c) / dt for p, c in zip((sink, vent), c0)]
        expect(sink.poll() is None and vent.poll() is None, "a host role left: "
               + env.errors(sink)[-1000:] + env.errors(vent)[-1000:])
    finally:
        for s in peers:
            s.close()
    _real_batch(pt, pr, sink, vent, n)
    print(f"  nofile {soft}:{hard}, {n_idle} idle peers a port: CPU sink {share[0]:.0%}, "
          f"ventilator {share[1]:.0%} of a core", flush=True)
    return sink, vent, share


def descriptors_run_out_without_spinning():
    # The hard limit is the soft one (nothing to raise): more idle peers
    # than descriptors. Each host role says so once, does not spin a core
    # refusing the rest, and takes a real worker once the peers leave.
    # (libzmq 4.3.4 alone retries accept() at once: ~90 % of a core.)
    soft = 64
    sink, vent, share = _descriptors(soft, soft, 2 * soft)
    for p, cpu in zip((sink, vent), share):
        err = env.errors(p)
        said = err.count("out of file descriptors")
        expect(said == 1, f"{p.bp_name} said it ran out {said} times: {err[-2000:]}")
        expect(f"(limit {soft})" in err, f"{p.bp_name} did not name its limit: {err[-2000:]}")
        expect("free again" in err, f"{p.bp_name} never said it accepts again: {err[-2000:]}")
        expect(cpu < 0.1, f"{p.bp_name} used {cpu:.0%} of a core while peers held on")


def descriptor_limit_raised_to_hard():
    # Soft 64 with a higher hard limit, as a shell or systemd gives (1024 of
    # 524288): each role raises its soft limit and serves twice as many idle
    # peers as the soft one allowed, with room to spare.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    hard = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    expect(hard >= 512, f"this machine's hard descriptor limit is {hard}")
    sink, vent, share = _descriptors(64, hard, 128)
    for p, cpu in zip((sink, vent), share):
        err = env.errors(p)
        expect(f"descriptor limit {hard} (hard {hard})" in err,
               f"{p.bp_name} (-v) did not say its raised limit: {err[:2000]}")
        expect("out of file descriptors" not in err, f"{p.bp_name} ran out: {err[-2000:]}")
        expect(cpu < 0.1, f"{p.bp_name} used {cpu:.0%} of a core while peers held on")


if __name__ == "__main__":
    for name, fn in list(globals().items()):
        if callable(fn) and fn.__module__ == "__main__" and not name.startswith("_") \
                and name not in ("msg", "results", "rss", "settle", "tasks_file", "learn_batch",
                                 "zmtp_peer", "gated_batch") \
                and fn.__code__.co_argcount == 0:
            env.check(name, fn)
    env.finish()
