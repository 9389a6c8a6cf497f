"""Small harness for boardpipe's integration tests.

Runs the real binaries (under the target's emulator), on loopback ports
chosen free by the kernel, and kills every process it started when the test
ends, passes or fails."""
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


def args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--emulator", default="")
    return ap.parse_args()


class Env:
    def __init__(self, a):
        self.bin = a.bin
        self.emu = shlex.split(a.emulator)
        self.procs = []
        self.tmp = tempfile.TemporaryDirectory(prefix="bp-it-")
        self.failures = 0
        self.passed = 0
        atexit.register(self.cleanup)

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def cmd(self, tool, *argv):
        return self.emu + [os.path.join(self.bin, tool)] + [str(x) for x in argv]

    def start(self, tool, *argv, stdin=subprocess.DEVNULL, stdout=None, env=None, name=None):
        name = name or tool
        out = open(self.path(f"{name}-{len(self.procs)}.out"), "wb") if stdout is None else stdout
        err = open(self.path(f"{name}-{len(self.procs)}.err"), "wb+")
        e = dict(os.environ)
        e.update(env or {})
        p = subprocess.Popen(self.cmd(tool, *argv), stdin=stdin, stdout=out, stderr=err,
                             env=e, start_new_session=True)
        p.bp_out, p.bp_err, p.bp_name = out, err, name
        self.procs.append(p)
        return p

    def run(self, tool, *argv, input=None, timeout=TIMEOUT, env=None):
        e = dict(os.environ)
        e.update(env or {})
        return subprocess.run(self.cmd(tool, *argv), input=input, capture_output=True,
                              timeout=timeout, env=e)

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

    def wait(self, p, timeout=TIMEOUT):
        try:
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(p)
            raise AssertionError(f"{p.bp_name} did not exit within {timeout} s:\n"
                                 + self.errors(p))

    @staticmethod
    def kill(p):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()

    def cleanup(self):
        for p in self.procs:
            self.kill(p)
        self.procs = []
        self.tmp.cleanup()

    def check(self, name, fn):
        """Runs one case; failures are counted, not fatal, so all cases run."""
        t0 = time.time()
        try:
            fn()
            self.passed += 1
            print(f"PASS {name} ({time.time() - t0:.1f} s)", flush=True)
        except Exception as e:  # noqa: BLE001 - any failure of a case is reported
            self.failures += 1
            print(f"FAIL {name}: {e}", flush=True)
        finally:
            for p in self.procs:
                self.kill(p)
            self.procs = []

    def finish(self):
        print(f"{self.passed} passed, {self.failures} failed")
        sys.exit(1 if self.failures else 0)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ports(n):
    got = set()
    while len(got) < n:
        got.add(free_port())
    return list(got)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)
