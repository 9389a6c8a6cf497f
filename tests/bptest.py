"""Small harness for boardpipe's integration tests.

Runs the real binaries (under the target's emulator), on loopback ports
chosen free by the kernel, and kills every process it started when the test
ends, passes or fails.

A case must say how each process it started ended: env.wait(p, rc=...)
checks the exit status, env.kill(p) ends one on purpose. A process the case
left unchecked fails it, and so does a sanitizer report (ASan/UBSan/LSan:
the host preset is sanitised) in any process's stderr, whatever its exit
status."""
import argparse
import atexit
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time

TIMEOUT = float(os.environ.get("BP_TEST_TIMEOUT", "180"))
# What a sanitizer report starts with (ASan, LSan, UBSan's "runtime error").
SANITIZER = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
             "ERROR: UndefinedBehaviorSanitizer")


def sanitizer_report(text):
    """The first line of a sanitizer report in text, or None."""
    for ln in text.splitlines():
        if any(s in ln for s in SANITIZER):
            return ln.strip()
    return None


class Skip(Exception):
    """Raised by a case that cannot run here; its text is the reason."""


def args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--emulator", default="")
    return ap.parse_args()


def proc_env(env):
    """The environment of a started binary. Speculation (a straggler's task
    run twice, ventilator --speculate) is off unless a test asks for it (on
    its command line, or BP_SPECULATE): checks of '0 duplicates' assume no
    task runs twice, and a loaded machine or an emulator makes stragglers."""
    e = dict(os.environ)
    e.setdefault("BP_SPECULATE", "off")
    e.update(env or {})
    return e


class Env:
    def __init__(self, a):
        self.bin = a.bin
        self.emu = shlex.split(a.emulator)
        # A real emulator (qemu) is ~10x slower; the x86_64-musl preset names
        # /usr/bin/env as its "emulator", which is none.
        self.emulated = bool(self.emu) and os.path.basename(self.emu[0]) != "env"
        self.slow = 10 if self.emulated else 1
        self.procs = []
        self.tmp = tempfile.TemporaryDirectory(prefix="bp-it-")
        self.failures = 0
        self.passed = 0
        self.skipped = []  # "case: reason"
        atexit.register(self.cleanup)

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def cmd(self, tool, *argv):
        return self.emu + [os.path.join(self.bin, tool)] + [str(x) for x in argv]

    def start(self, tool, *argv, stdin=subprocess.DEVNULL, stdout=None, env=None, name=None,
              preexec=None):
        name = name or tool
        out = open(self.path(f"{name}-{len(self.procs)}.out"), "wb") if stdout is None else stdout
        err = open(self.path(f"{name}-{len(self.procs)}.err"), "wb+")
        e = proc_env(env)
        p = subprocess.Popen(self.cmd(tool, *argv), stdin=stdin, stdout=out, stderr=err,
                             env=e, start_new_session=True, preexec_fn=preexec)
        p.bp_out, p.bp_err, p.bp_name, p.bp_checked = out, err, name, False
        self.procs.append(p)
        return p

    def run(self, tool, *argv, input=None, timeout=TIMEOUT, env=None):
        e = proc_env(env)
        r = subprocess.run(self.cmd(tool, *argv), input=input, capture_output=True,
                           timeout=timeout, env=e)
        bad = sanitizer_report(r.stderr.decode(errors="replace"))
        expect(bad is None, f"{tool} (exit {r.returncode}): sanitizer report: {bad}\n"
               + r.stderr.decode(errors="replace")[-4000:])
        return r

    def n(self, host, emulated):
        """A count for the host, a smaller one under an emulator."""
        return emulated if self.emulated else host

    @staticmethod
    def output(p):
        p.bp_out.flush()
        with open(p.bp_out.name, "rb") as f:
            return f.read()

    @staticmethod
    def errors(p):
        p.bp_err.flush()
        with open(p.bp_err.name, "rb") as f:
            return f.read().decode(errors="replace")

    def wait(self, p, timeout=TIMEOUT, rc=0):
        """Waits for p, whose exit status must be rc (an int or a tuple of
        them; 0 unless told). rc=None: the caller checks the returned
        status itself."""
        try:
            got = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(p)
            raise AssertionError(f"{p.bp_name} did not exit within {timeout} s:\n"
                                 + self.errors(p)[-4000:])
        p.bp_checked = True
        bad = sanitizer_report(self.errors(p))
        expect(bad is None, f"{p.bp_name} (exit {got}): sanitizer report: {bad}\n"
               + self.errors(p)[-4000:])
        if rc is not None:
            want = rc if isinstance(rc, tuple) else (rc,)
            expect(got in want, f"{p.bp_name} exit {got}, want {rc}: " + self.errors(p)[-4000:])
        return got

    @staticmethod
    def kill(p, sig=signal.SIGKILL):
        """Ends p (and its process group) on purpose: its status is not
        looked at."""
        p.bp_checked = True
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            p.wait()

    def wait_for(self, cond, what, timeout=None, procs=()):
        """Polls cond() (or, for a str, that the path exists) until it holds;
        fails early when one of procs exits meanwhile."""
        timeout = TIMEOUT if timeout is None else timeout
        test = (lambda: os.path.exists(cond)) if isinstance(cond, str) else cond
        end = time.monotonic() + timeout
        while not test():
            for p in procs:
                expect(p.poll() is None, f"{p.bp_name} exited ({p.returncode}) while waiting "
                       f"for {what}: " + self.errors(p)[-4000:])
            expect(time.monotonic() < end, f"{what}: not within {timeout} s")
            time.sleep(0.02)

    def cleanup(self):
        for p in self.procs:
            self.kill(p)
        self.procs = []
        self.tmp.cleanup()

    def check(self, name, fn):
        """Runs one case; failures are counted, not fatal, so all cases run.
        BP_TEST_ONLY=name[,name...] runs only those (by hand, when
        debugging one case)."""
        only = os.environ.get("BP_TEST_ONLY")
        if only and name not in only.split(","):
            return
        t0 = time.time()
        try:
            fn()
            self.audit()
            self.passed += 1
            print(f"PASS {name} ({time.time() - t0:.1f} s)", flush=True)
        except Skip as e:
            self.skipped.append(f"{name}: {e}")
            print(f"SKIP {name}: {e}", flush=True)
        except Exception as e:  # noqa: BLE001 - any failure of a case is reported
            self.failures += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
        finally:
            for p in self.procs:
                self.kill(p)
            self.procs = []

    def audit(self):
        """After a case that passed: every process it started was waited
        for with its status checked or killed on purpose, and none wrote a
        sanitizer report (not even one that was killed)."""
        for p in self.procs:
            if not p.bp_checked:
                state = "still running" if p.poll() is None else f"exit {p.returncode}"
                raise AssertionError(f"the case never checked how {p.bp_name} ended "
                                     f"({state}): " + self.errors(p)[-2000:])
            bad = sanitizer_report(self.errors(p))
            expect(bad is None, f"{p.bp_name}: sanitizer report: {bad}\n"
                   + self.errors(p)[-4000:])

    def finish(self):
        """Exits 1 if a case failed, else 77 (a skip, for CTest's
        SKIP_RETURN_CODE and the CI skip policy: the test must register it)
        if a case was skipped, else 0."""
        print(f"{self.passed} passed, {self.failures} failed, {len(self.skipped)} skipped")
        if self.failures:
            sys.exit(1)
        if self.skipped:
            print("SKIP: " + "; ".join(self.skipped), flush=True)
            sys.exit(77)
        sys.exit(0)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ports(n):
    got = set()
    while len(got) < n:
        got.add(free_port())
    return list(got)


def port_open(port, host="127.0.0.1"):
    """Whether something listens on host:port (a bound ZeroMQ socket)."""
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def read_json(path):
    with open(path) as f:
        return json.load(f)


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)
