#!/usr/bin/env python3
"""CURVE end to end with the real binaries (label curve): keys from
--keygen, an allowed board runs a batch, an unknown key and a plain peer
are refused and counted, a revoked key (removed + SIGHUP) is refused at its
next connection while a connected board keeps working, a worker pinned to
another host key refuses that host, a board with an allowed key still
cannot speak for the ventilator, and the bytes on the wire carry a task in
plain mode but not with CURVE."""
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time

from bptest import Env, Skip, args, expect, ports, read_json

env = Env(args())
try:
    import zmq
except Exception as e:  # noqa: BLE001 - a broken pyzmq is a skip with its reason too
    zmq = None
    ZMQ_WHY = f"{type(e).__name__}: {e}"


# How long a refused worker tries before it gives up (exit 1). Its one-line
# reason comes from its first handshake, well within this even under qemu.
GIVE_UP = "8s" if env.emulated else "3s"


def tasks_file(name, lines):
    path = env.path(name)
    with open(path, "w") as f:
        f.write("".join(t + "\n" for t in lines))
    return path


def keygen(name):
    base = env.path(name)
    r = env.run("worker", "--keygen", base)
    expect(r.returncode == 0, f"--keygen {name}: exit {r.returncode}: {r.stderr!r}")
    return base + ".key", base + ".key_secret"


class Keys:
    """host + two boards; boards/ is the host's allowlist (board a only)."""

    def __init__(self):
        self.host, self.host_s = keygen("host")
        self.a, self.a_s = keygen("a")
        self.b, self.b_s = keygen("b")
        self.allow = env.path("boards")
        os.mkdir(self.allow)
        with open(self.a) as src, open(os.path.join(self.allow, "a.key"), "w") as dst:
            dst.write(src.read())


K = None


def keys():
    global K
    if K is None:
        K = Keys()
    return K


def host_args(k):
    return ["--curve-secret", k.host_s, "--curve-allow", k.allow]


def board_args(k, secret, server=None):
    return ["--curve-secret", secret, "--curve-server", server or k.host]


def ends(pt, pr):
    return ["--tasks", f"tcp://127.0.0.1:{pt}", "--results", f"tcp://127.0.0.1:{pr}"]


def keygen_files_and_refusals():
    k = keys()
    mode = stat.S_IMODE(os.stat(k.a_s).st_mode)
    expect(mode == 0o600, f"secret file mode {oct(mode)}")
    with open(k.a) as f:
        pub = f.read()
    expect("public-key" in pub and "secret-key" not in pub, pub)
    # Never overwritten.
    before = open(k.a_s).read()
    r = env.run("sink", "--keygen", env.path("a"))
    expect(r.returncode != 0 and b"exists" in r.stderr, r.stderr)
    expect(open(k.a_s).read() == before, "the secret changed")
    # A secret readable by others is refused at start, with the fix.
    loose = env.path("loose.key_secret")
    with open(k.host_s) as src, open(loose, "w") as dst:
        dst.write(src.read())
    os.chmod(loose, 0o644)
    r = env.run("sink", "--curve-secret", loose, "--curve-allow", k.allow, "--bind",
                f"tcp://127.0.0.1:{ports(1)[0]}", "--once")
    expect(r.returncode == 2 and b"chmod 600" in r.stderr, (r.returncode, r.stderr))
    # Half a set-up is a usage error.
    r = env.run("worker", "--curve-secret", k.a_s)
    expect(r.returncode == 2 and b"--curve-server" in r.stderr, r.stderr)
    # Plain mode bound beyond loopback says so at start; on loopback, or
    # with CURVE, it does not.
    for bind, curve, warned in (("*", False, True), ("127.0.0.1", False, False),
                                ("*", True, False)):
        p = env.start("sink", "-v", "--bind", f"tcp://{bind}:{ports(1)[0]}",
                      *(host_args(k) if curve else []), name="announce")
        env.wait_for(lambda p=p: "results on" in env.errors(p), "the sink to start",
                     procs=(p,))
        env.kill(p)
        said = "plain mode on" in env.errors(p)
        expect(said == warned, f"bind {bind}, CURVE {curve}: {env.errors(p)!r}")


def allowed_board_runs_a_batch():
    k = keys()
    pt, pr = ports(2)
    summary = env.path("ok.json")
    n = env.n(300, 60)
    inp = tasks_file("ok.txt", [f"task {i}" for i in range(n)])
    sink = env.start("sink", "--once", "--timeout", "300s", "--bind", f"tcp://127.0.0.1:{pr}",
                     "--summary-json", summary, *host_args(k))
    vent = env.start("ventilator", "--bind", f"tcp://127.0.0.1:{pt}", "--sink",
                     f"tcp://127.0.0.1:{pr}", "--wait-workers", "1", "--wait-timeout", "300s",
                     "--input", inp, *host_args(k))
    w = env.start("worker", "--once", *ends(pt, pr), "--id", "a", *board_args(k, k.a_s))
    env.wait(vent)
    env.wait(sink)
    env.wait(w)
    out = sorted(env.output(sink).decode().splitlines())
    expect(out == sorted(f"TASK {i}" for i in range(n)), out[:5])
    js = read_json(summary)
    expect(js["ok"] == n and js["refused"] == 0 and js["forged"] == 0, js)


def unknown_wrong_and_plain_are_refused():
    # Board b is not in the allowlist; board a pinned to the wrong host key;
    # a plain worker. None gets a task; the real batch runs on board a.
    k = keys()
    pt, pr = ports(2)
    summary = env.path("refuse.json")
    inp = tasks_file("refuse.txt", [f"r{i}" for i in range(20)])
    sink = env.start("sink", "--once", "--timeout", "300s", "--bind", f"tcp://127.0.0.1:{pr}",
                     "--summary-json", summary, *host_args(k))
    vent = env.start("ventilator", "--bind", f"tcp://127.0.0.1:{pt}", "--sink",
                     f"tcp://127.0.0.1:{pr}", "--wait-workers", "1", "--wait-timeout", "300s",
                     "--input", inp, *host_args(k))
    short = ["--once", "--host-timeout", GIVE_UP]
    wb = env.start("worker", *short, *ends(pt, pr), "--id", "b", *board_args(k, k.b_s),
                   name="unknown")
    ww = env.start("worker", *short, *ends(pt, pr), "--id", "w",
                   *board_args(k, k.a_s, server=k.b), name="wrongkey")
    wp = env.start("worker", *short, *ends(pt, pr), "--id", "p", name="plain")
    for p in (wb, ww, wp):
        env.wait(p, rc=1)  # gave up on the host
    expect("refused this board's key" in env.errors(wb), env.errors(wb))
    expect("handshake with the ventilator failed" in env.errors(ww), env.errors(ww))
    vlog = env.errors(vent)
    fp = open(k.b).read().split('"')[1][:12]
    expect(f"refused unknown key {fp}" in vlog, f"fingerprint {fp} not in: {vlog}")
    expect(vlog.count(f"key {fp}") == 1, f"logged once per key: {vlog}")
    # Now a real board: the batch completes with its results only.
    wa = env.start("worker", "--once", *ends(pt, pr), "--id", "a", *board_args(k, k.a_s))
    env.wait(vent)
    env.wait(sink)
    env.wait(wa)
    out = sorted(env.output(sink).decode().splitlines())
    expect(out == sorted(f"R{i}" for i in range(20)), out)
    js = read_json(summary)
    expect(js["refused"] >= 1, f"the sink counted board b: {js}")
    expect(list(js["workers"]) == ["a"], js["workers"])
    expect("connections refused" in env.errors(vent), env.errors(vent)[-1500:])


def revoked_key_refused_on_reconnect():
    # Board a works; its key is removed and the hosts get SIGHUP: the
    # connected worker goes on, a new connection with that key is refused.
    k = keys()
    allow = env.path("boards2")
    os.mkdir(allow)
    with open(k.a) as src, open(os.path.join(allow, "a.key"), "w") as dst:
        dst.write(src.read())
    hk = ["--curve-secret", k.host_s, "--curve-allow", allow]
    pt, pr = ports(2)
    summary = env.path("revoke.json")
    n = env.n(30, 10)
    inp = tasks_file("revoke.txt", [f"v{i}" for i in range(n)])
    gate = env.path("gate2")
    sink = env.start("sink", "--once", "--timeout", "300s", "--bind", f"tcp://127.0.0.1:{pr}",
                     "--summary-json", summary, *hk)
    vent = env.start("ventilator", "--bind", f"tcp://127.0.0.1:{pt}", "--sink",
                     f"tcp://127.0.0.1:{pr}", "--wait-workers", "1", "--wait-timeout", "300s",
                     "--input", inp, *hk)
    started = env.path("started")
    w1 = env.start("worker", "--once", *ends(pt, pr), "--id", "a1", *board_args(k, k.a_s),
                   "--exec", f"touch {started}; while [ ! -e {gate} ]; do sleep 0.05; done; "
                   "tr a-z A-Z", name="connected")
    env.wait_for(started, "the first task to start", procs=(w1, vent, sink))
    os.unlink(os.path.join(allow, "a.key"))
    for p in (vent, sink):
        os.killpg(p.pid, signal.SIGHUP)
    for p in (vent, sink):
        env.wait_for(lambda p=p: "reloaded: 0 keys" in env.errors(p), f"{p.bp_name} reloads",
                     procs=(p,))
    w2 = env.start("worker", "--once", "--host-timeout", GIVE_UP, *ends(pt, pr),
                   "--id", "a2", *board_args(k, k.a_s), name="reconnect")
    env.wait(w2, rc=1)
    expect("refused this board's key" in env.errors(w2), env.errors(w2))
    open(gate, "w").close()
    env.wait(vent)
    env.wait(sink)
    env.wait(w1)
    js = read_json(summary)
    expect(js["ok"] == n and list(js["workers"]) == ["a1"], js)


def allowed_board_cannot_speak_for_the_host():
    # With CURVE only the host's own key may BEGIN, CLOSE or give tasks
    # up: a board whose key is allowed is refused those.
    if zmq is None or not zmq.has("curve"):
        # The test's own tool lacks CURVE, not the build: a skip the CI
        # policy sees (the script exits 77), never a pass.
        raise Skip("pyzmq without CURVE ("
                   f"{ZMQ_WHY if zmq is None else 'zmq.has(curve) is false'}; scripts/bootstrap "
                   "installs python3-zmq)")
    k = keys()
    pt, pr = ports(2)
    summary = env.path("speak.json")
    n = 12
    inp = tasks_file("speak.txt", [f"s{i}" for i in range(n)])
    gate = env.path("gate3")
    sink = env.start("sink", "--once", "--timeout", "300s", "--bind", f"tcp://127.0.0.1:{pr}",
                     "--summary-json", summary, *host_args(k))
    vent = env.start("ventilator", "--bind", f"tcp://127.0.0.1:{pt}", "--sink",
                     f"tcp://127.0.0.1:{pr}", "--wait-workers", "1", "--wait-timeout", "300s",
                     "--input", inp, *host_args(k))
    w = env.start("worker", "--once", *ends(pt, pr), "--id", "a", *board_args(k, k.a_s),
                  "--exec", f"while [ ! -e {gate} ]; do sleep 0.05; done; tr a-z A-Z")

    def z85(path, field):
        for ln in open(path):
            if field in ln:
                return ln.split('"')[1].encode()
        raise AssertionError(f"no {field} in {path}")

    ctx = zmq.Context.instance()

    def board_socket():
        s = ctx.socket(zmq.DEALER)
        s.curve_serverkey = z85(k.host, "public-key")
        s.curve_publickey = z85(k.a_s, "public-key")
        s.curve_secretkey = z85(k.a_s, "secret-key")
        return s

    d = board_socket()
    d.connect(f"tcp://127.0.0.1:{pr}")
    try:
        def m(typ, batch, body=b"", n=0):
            return struct.pack(">2sBBIQ", b"bp", 3, typ, n, batch) + body
        # The batch id from the ventilator's echo (board a may ask it).
        v = board_socket()
        v.connect(f"tcp://127.0.0.1:{pt}")
        v.send(m(1, 0, struct.pack(">HHIB", 1, 0, 0, 3) + b"spy"))
        v.send(m(4, 0, struct.pack(">QQ", 5, 0)))
        batch = 0
        end = time.time() + 120 * env.slow
        while not batch and time.time() < end:
            if v.poll(1000):
                batch = struct.unpack(">Q", v.recv()[8:16])[0]
        v.close(0)
        expect(batch, "no batch id from the ventilator")
        d.send(m(10, batch, struct.pack(">Q", 1)))   # CLOSE: a batch of one
        d.send(m(9, batch ^ 1))                       # BEGIN another batch
        d.send(m(4, batch, struct.pack(">QQ", 9, 0)))
        expect(d.poll(120000 * env.slow), "the sink never answered board a")
        env.wait_for(lambda: "so far" in env.errors(sink), "the sink to drop them",
                     procs=(sink,))
    finally:
        d.close(0)
    open(gate, "w").close()
    env.wait(vent)
    env.wait(sink)
    env.wait(w)
    js = read_json(summary)
    expect(js["ok"] == n and js["total"] == n and js["forged"] >= 2, js)


class Tap:
    """A TCP relay between a worker and a host port that keeps a copy of
    every byte, both ways: what anyone on the path would see."""

    def __init__(self, target):
        self.target = target
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.port = self.lsock.getsockname()[1]
        self.seen = bytearray()
        self.lock = threading.Lock()
        self.stop = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.stop:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                c.close()
                continue
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self.pipe, args=(a, b), daemon=True).start()

    def pipe(self, a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                with self.lock:
                    self.seen += data
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.stop = True
        self.lsock.close()


def wire_shows_tasks_only_in_plain_mode():
    k = keys()
    secret = "ultra-secret-payload-7f3a"
    for curve in (False, True):
        pt, pr = ports(2)
        inp = tasks_file("wire.txt", [f"{secret} {i}" for i in range(5)])
        tap_t, tap_r = Tap(pt), Tap(pr)
        try:
            hk = host_args(k) if curve else []
            bk = board_args(k, k.a_s) if curve else []
            sink = env.start("sink", "--once", "--timeout", "300s", "--bind",
                             f"tcp://127.0.0.1:{pr}", *hk)
            vent = env.start("ventilator", "--bind", f"tcp://127.0.0.1:{pt}", "--sink",
                             f"tcp://127.0.0.1:{pr}", "--wait-workers", "1", "--wait-timeout",
                             "300s", "--input", inp, *hk)
            w = env.start("worker", "--once", *ends(tap_t.port, tap_r.port), "--id", "tap", *bk)
            env.wait(vent)
            env.wait(sink)
            env.wait(w)
            out = env.output(sink).decode()
            expect(out.count(secret.upper()) == 5, out)
        finally:
            tap_t.close()
            tap_r.close()
        with tap_t.lock, tap_r.lock:
            seen = bytes(tap_t.seen) + bytes(tap_r.seen)
        # (a sanity floor: greetings, HELLO, five tasks and results; plain
        # mode moves about 1 KB in all, so the real check is `found` below)
        expect(len(seen) > 400, f"the tap saw only {len(seen)} bytes")
        found = secret.encode() in seen or secret.upper().encode() in seen
        if curve:
            expect(not found, "a task or result in clear on the wire with CURVE on")
        else:
            expect(found, "the plain-mode tap did not see the tasks: is the tap on the path?")


if __name__ == "__main__":
    r = subprocess.run(env.cmd("worker", "--keygen", env.path("probe")), capture_output=True)
    if r.returncode != 0 and b"without CURVE" in r.stderr:
        # Every build of this project has CURVE (BP_EXPECT_CURVE, CMakeLists.txt):
        # a failure there, a skip only in a build that says it has none.
        why = "this build's libzmq has no CURVE: " + r.stderr.decode().strip()
        if os.environ.get("BP_EXPECT_CURVE", "1") not in ("0", ""):
            print(f"FAIL: {why} (and the build expects CURVE: BP_EXPECT_CURVE)", flush=True)
            sys.exit(1)
        print(f"SKIP: {why}", flush=True)
        sys.exit(77)
    for name, fn in list(globals().items()):
        if callable(fn) and not isinstance(fn, type) and fn.__module__ == "__main__" \
                and not name.startswith("_") and name not in ("tasks_file", "keygen", "keys", "host_args", "board_args",
                                 "ends") \
                and fn.__code__.co_argcount == 0:
            env.check(name, fn)
    env.finish()
