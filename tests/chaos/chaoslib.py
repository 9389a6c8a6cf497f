"""Plumbing for boardpipe's fault-injection suite (tests/chaos/chaos.py).

Starts the real binaries (under the target's emulator), injures them, and
makes sure nothing outlives the run: every child gets its own process group
(killed as a group) and PR_SET_PDEATHSIG, network namespaces and veths are
deleted in finally blocks, at exit and on SIGTERM/SIGINT/SIGHUP, and stale
ones left by a run that was SIGKILLed are swept at the next start. Ports are
ephemeral (bind port 0). Self-contained on purpose: tests/bptest.py is being
changed by others and is not needed here.
"""
import atexit
import collections
import ctypes
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SKIP_CODE = 77


class Skip(Exception):
    """The scenario cannot run on this machine (reason in the message)."""


class Timeout(Exception):
    """The scenario's own time budget ran out (before CTest's TIMEOUT)."""


# ---------------------------------------------------------------- processes

try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - no libc symbols (unusual)
    _libc = None
_PR_SET_PDEATHSIG = 1


def _child_setup():
    """Runs in the child between fork and exec (after setsid): if the harness
    dies, even by SIGKILL (a CTest timeout), the child is killed too."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() == 1:  # the harness died before prctl
            os._exit(1)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped) is gone too
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class Proc:
    """One started program: its own process group, stdout/stderr in files."""

    def __init__(self, name, argv, popen, out_path, err_path):
        self.name, self.argv, self.p = name, argv, popen
        self.out_path, self.err_path = out_path, err_path
        self.t_start = time.monotonic()
        self.t_end = None
        self.killed_by_harness = False

    @property
    def pid(self):
        return self.p.pid

    def poll(self):
        rc = self.p.poll()
        if rc is not None and self.t_end is None:
            self.t_end = time.monotonic()
        return rc

    def alive(self):
        return self.poll() is None

    def signal_group(self, sig):
        try:
            os.killpg(self.p.pid, sig)
        except ProcessLookupError:
            pass

    def signal(self, sig):
        try:
            self.p.send_signal(sig)
        except ProcessLookupError:
            pass

    def wait(self, timeout):
        """Exit code, or None if still running after timeout seconds."""
        end = time.monotonic() + timeout
        while True:
            rc = self.poll()
            if rc is not None:
                return rc
            if time.monotonic() >= end:
                return None
            time.sleep(0.05)

    def kill(self):
        if self.alive():
            self.signal_group(signal.SIGCONT)  # a stopped group dies only once continued
            self.signal_group(signal.SIGKILL)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self.poll()
        # Also any stragglers left in the group after the leader died.
        self.signal_group(signal.SIGKILL)

    def stderr(self):
        try:
            with open(self.err_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def tail(self, n=12):
        lines = self.stderr().splitlines()
        return "\n".join("    | " + x for x in lines[-n:]) or "    | (no stderr)"

    def describe(self):
        rc = self.poll()
        state = "running" if rc is None else f"exit {rc}"
        return f"{self.name} (pid {self.pid}, {state})"


def sweep_stale_tmp():
    """Removes temp dirs of earlier runs that were SIGKILLed (their pid is
    gone), unless they were made with --keep."""
    base = tempfile.gettempdir()
    for name in os.listdir(base):
        m = re.fullmatch(r"bp-chaos-(\d+)-\w+", name)
        path = os.path.join(base, name)
        if (m and not pid_alive(int(m.group(1))) and os.path.isdir(path)
                and not os.path.exists(os.path.join(path, ".keep"))):
            shutil.rmtree(path, ignore_errors=True)


def free_port(addr="127.0.0.1"):
    with socket.socket() as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


def free_ports(n, addr="127.0.0.1"):
    got = []
    while len(got) < n:
        p = free_port(addr)
        if p not in got:
            got.append(p)
    return got


# ------------------------------------------------------------------ harness

class Harness:
    """Owns the temp dir, the started processes and the cleanup actions of
    one run of chaos.py. cleanup() is idempotent and runs from finally
    blocks, atexit and the signal handlers."""

    def __init__(self, bindir, emulator, keep=False):
        self.bin = bindir
        self.emu = shlex.split(emulator)
        self.keep = keep
        sweep_stale_tmp()
        self.tmp = tempfile.mkdtemp(prefix=f"bp-chaos-{os.getpid()}-")
        if keep:
            open(os.path.join(self.tmp, ".keep"), "w").close()
        self.procs = []
        self._undo = []  # (label, callable), run LIFO
        self._cleaning = False
        self._help = {}
        atexit.register(self.cleanup)
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, self._on_signal)
        signal.signal(signal.SIGALRM, self._on_alarm)

    # -- signals
    def _on_signal(self, signum, frame):
        if self._cleaning:
            return
        print(f"chaos: got signal {signum}, cleaning up", flush=True)
        raise SystemExit(128 + signum)

    def _on_alarm(self, signum, frame):
        if self._cleaning:
            return
        raise Timeout("scenario budget exhausted (internal watchdog)")

    def set_budget(self, seconds):
        signal.alarm(max(1, int(seconds)))

    # -- files
    def path(self, name):
        return os.path.join(self.tmp, name)

    # -- binaries
    def exe(self, tool):
        return os.path.join(self.bin, tool)

    def help_text(self, tool):
        if tool not in self._help:
            try:
                r = subprocess.run(self.emu + [self.exe(tool), "--help"], capture_output=True,
                                   text=True, timeout=120)
                self._help[tool] = r.stdout + r.stderr
            except (OSError, subprocess.TimeoutExpired) as e:
                self._help[tool] = f"(cannot run: {e})"
        return self._help[tool]

    def supports(self, tool, opt):
        return re.search(r"(^|[\s,])" + re.escape(opt) + r"\b", self.help_text(tool)) is not None

    # -- processes
    def start(self, name, tool, args, netns=None, env=None):
        argv = (["ip", "netns", "exec", netns] if netns else []) + self.emu + \
            [self.exe(tool)] + [str(a) for a in args]
        n = sum(1 for p in self.procs if p.name == name)
        stem = f"{name}.{n}" if n else name
        out_path, err_path = self.path(stem + ".out"), self.path(stem + ".err")
        e = dict(os.environ)
        e.update(env or {})
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=e,
                                 start_new_session=True, preexec_fn=_child_setup)
        proc = Proc(name, argv, p, out_path, err_path)
        self.procs.append(proc)
        return proc

    def on_cleanup(self, label, fn):
        self._undo.append((label, fn))

    def kill_all(self):
        for p in self.procs:
            p.kill()

    def cleanup(self):
        if self._cleaning:
            return
        self._cleaning = True
        signal.alarm(0)
        try:
            self.kill_all()
            while self._undo:
                label, fn = self._undo.pop()
                try:
                    fn()
                except Exception as e:  # noqa: BLE001 - keep cleaning
                    print(f"chaos: cleanup {label}: {e}", flush=True)
            if self.keep:
                print(f"chaos: kept {self.tmp}", flush=True)
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)
        finally:
            self._cleaning = False

    def reset(self):
        """Between scenarios of one run: kill processes, undo, keep the dir."""
        signal.alarm(0)
        self.kill_all()
        while self._undo:
            label, fn = self._undo.pop()
            try:
                fn()
            except Exception as e:  # noqa: BLE001
                print(f"chaos: cleanup {label}: {e}", flush=True)
        self.procs = []


def sh(argv, check=False, timeout=30):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.strip()}")
    return r


# ----------------------------------------------------------------- progress

class Progress:
    """Counts task executions: the --exec command appends "WORKER TASK" to a
    file with O_APPEND (one small write, atomic), independent of how the
    sink buffers its output. Counts include redelivered re-runs."""

    def __init__(self, path):
        self.path = path
        self.pos = 0
        self.total = 0
        self.by_worker = collections.Counter()
        self._partial = b""
        open(path, "wb").close()

    def count(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except OSError:
            return self.total
        self.pos += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for ln in lines:
            self.total += 1
            self.by_worker[ln.split(b" ", 1)[0].decode(errors="replace")] += 1
        return self.total


# --------------------------------------------------------- network namespace

NS_PREFIX = "bpchaos"   # namespaces: bpchaos<pid>
IF_RE = re.compile(r"^bpc(\d+)[hn]$")  # veths: bpc<pid>h (host end), bpc<pid>n
# 198.19.0.0/16, the upper half of 198.18.0.0/15 (tests/fleet uses 198.18.N.0/24).
NET_BASE = ipaddress.IPv4Address("198.19.0.0")


def netns_sweep_stale():
    """Deletes namespaces and veths of earlier runs whose harness is gone."""
    r = sh(["ip", "netns", "list"])
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(NS_PREFIX + r"(\d+)", name)
        if m and not pid_alive(int(m.group(1))):
            for p in sh(["ip", "netns", "pids", name]).stdout.split():
                try:
                    os.kill(int(p), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            sh(["ip", "netns", "del", name])
            print(f"chaos: removed stale namespace {name}", flush=True)
    r = sh(["ip", "-o", "link", "show"])
    for line in r.stdout.splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@")[0]
        m = IF_RE.match(name)
        if m and not pid_alive(int(m.group(1))):
            sh(["ip", "link", "del", name])
            print(f"chaos: removed stale link {name}", flush=True)


class NetNS:
    """A namespace joined to the host by a veth pair in 198.19.0.0/16, with
    no default route: the worker inside can reach the host-side address
    (where the ventilator and sink listen) and nothing else."""

    def __init__(self, h):
        self.h = h
        pid = os.getpid()
        self.name = f"{NS_PREFIX}{pid}"
        self.host_if, self.ns_if = f"bpc{pid}h", f"bpc{pid}n"
        self.host_ip = self.ns_ip = None

    def _pick_net(self):
        used = sh(["ip", "-o", "-4", "addr", "show"]).stdout + sh(["ip", "-4", "route"]).stdout
        idx = os.getpid() % 16384
        for k in range(16384):
            net = ipaddress.IPv4Network((int(NET_BASE) + ((idx + k) % 16384) * 4, 30))
            hosts = list(net.hosts())
            if not any(str(a) in used for a in [net.network_address] + hosts):
                return str(hosts[0]), str(hosts[1])
        raise Skip("no free /30 in 198.19.0.0/16")

    def setup(self):
        if os.geteuid() != 0:
            raise Skip("needs root for network namespaces (ip netns)")
        if shutil.which("ip") is None:
            raise Skip("iproute2's ip not found")
        netns_sweep_stale()
        self.h.on_cleanup(f"netns {self.name}", self.teardown)
        r = sh(["ip", "netns", "add", self.name])
        if r.returncode != 0:
            raise Skip(f"cannot create a network namespace: {r.stderr.strip()}")
        r = sh(["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if])
        if r.returncode != 0:
            raise Skip(f"cannot create a veth pair: {r.stderr.strip()}")
        self.host_ip, self.ns_ip = self._pick_net()
        steps = [
            ["ip", "link", "set", self.ns_if, "netns", self.name],
            ["ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if],
            ["ip", "link", "set", self.host_if, "up"],
            ["ip", "-n", self.name, "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if],
            ["ip", "-n", self.name, "link", "set", self.ns_if, "up"],
            ["ip", "-n", self.name, "link", "set", "lo", "up"],
        ]
        for st in steps:
            r = sh(st)
            if r.returncode != 0:
                raise Skip(f"namespace setup failed: {' '.join(st)}: {r.stderr.strip()}")
        self._probe()

    def _probe(self):
        """A TCP connection from the namespace to the host-side address, so a
        firewall or rp_filter surprise is a skip, not a product failure."""
        with socket.socket() as ls:
            ls.bind((self.host_ip, 0))
            ls.listen(1)
            ls.settimeout(10)
            port = ls.getsockname()[1]
            code = (f"import socket; socket.create_connection(('{self.host_ip}', {port}), 5)"
                    ".close()")
            deadline = time.monotonic() + 10
            while True:  # the veth takes a moment to come up (DAD, carrier)
                r = sh(["ip", "netns", "exec", self.name, sys.executable, "-c", code])
                if r.returncode == 0:
                    break
                if time.monotonic() > deadline:
                    raise Skip("no TCP connectivity from the namespace to "
                               f"{self.host_ip}: {r.stderr.strip()[-200:]}")
                time.sleep(0.3)
            try:
                c, _ = ls.accept()
                c.close()
            except socket.timeout:
                raise Skip("namespace probe connection never arrived")

    def link(self, up):
        sh(["ip", "link", "set", self.host_if, "up" if up else "down"], check=True)

    def netem(self, spec):
        """Adds a netem qdisc to both ends (egress both ways); Skip if the
        kernel has no netem (sch_netem)."""
        if shutil.which("tc") is None:
            raise Skip("tc (iproute2) not found")
        r = sh(["tc", "qdisc", "add", "dev", self.host_if, "root", "netem"] + spec)
        if r.returncode != 0:
            raise Skip(f"tc netem unavailable (sch_netem module missing?): {r.stderr.strip()}")
        r = sh(["ip", "netns", "exec", self.name, "tc", "qdisc", "add", "dev", self.ns_if,
                "root", "netem"] + spec)
        if r.returncode != 0:
            raise Skip(f"tc netem in the namespace failed: {r.stderr.strip()}")

    def teardown(self):
        if sh(["ip", "netns", "list"]).stdout.find(self.name) >= 0:
            for p in sh(["ip", "netns", "pids", self.name]).stdout.split():
                try:
                    os.kill(int(p), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        sh(["ip", "link", "del", self.host_if])  # takes the peer with it
        sh(["ip", "netns", "del", self.name])


# ------------------------------------------------------------------- checks

FAIL_RE = re.compile(r"\btask (\d+) (\w+) \(code (-?\d+)\) on (\S*): ?(.*)$")


def parse_failures(stderr):
    """{task id: (status, code, worker, reason)} from the sink's stderr."""
    got = {}
    for line in stderr.splitlines():
        m = FAIL_RE.search(line)
        if m:
            got[int(m.group(1))] = (m.group(2), int(m.group(3)), m.group(4), m.group(5).strip())
    return got


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        return {"_error": f"{path}: {e}"}


def read_lines(path):
    try:
        with open(path, "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return []
    return data.split("\n")[:-1] if data else []


def show(items, n=20):
    items = sorted(items)
    s = ", ".join(str(x) for x in items[:n])
    return s + (f", ... ({len(items)} in all)" if len(items) > n else "")
