"""Fault injection for files out and files back (issue #20; chaos.py runs
these as scenarios files_kill, files_host and files_link).

Each batch ships a directory of files of awkward sizes (empty, 1 byte,
one chunk and one chunk +- 1, several MB) with ventilator --files; each
worker's command upper-cases its file into NAME.up and appends a line
with its own shell's pid, and --return sends NAME.up back to the sink's
--output-dir. The pid makes every execution's file different: if a file
were ever written twice (by two executions of one task), the second would
meet a file of that name with other contents and the task would fail, so
"written once" is checked by the batch succeeding, not only by the bytes.

After every run: each NAME.up under the output directory is the upper-
cased input followed by one pid line, nothing else is there (no temp
files, no .bp-tmp), the sink wrote one output line per task, and both
host roles exit 0.
"""
import os
import signal
import time

import chaoslib as cl

CHUNK = 64 * 1024
UPPER = bytes.maketrans(b"abcdefghijklmnopqrstuvwxyz", b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)


class FilesBatch:
    """A sink with --output-dir, a ventilator with --files and named
    workers, each with its own --scratch directory."""

    def __init__(self, h, rng, nbig, big_mb=(1, 4), vent_args=(), sink_args=(), bind_ip="127.0.0.1"):
        self.h = h
        self.bind_ip = bind_ip
        self.pt, self.pr = cl.free_ports(2, bind_ip)
        self.indir = h.path("in")
        self.outdir = h.path("out")
        os.mkdir(self.indir)
        sizes = [0, 1, 100, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK]
        sizes += [rng.randint(big_mb[0] << 20, big_mb[1] << 20) for _ in range(nbig)]
        self.files = {}
        for i, size in enumerate(sizes):
            name = f"f{i:03d} {'q' if i % 3 else 'x'}.bin"  # a space in every name
            data = rng.randbytes(size)
            with open(os.path.join(self.indir, name), "wb") as f:
                f.write(data)
            self.files[name] = data
        self.n = len(self.files)
        self.list = h.path("files.txt")
        with open(self.list, "w") as f:
            for name in sorted(self.files):
                f.write(os.path.join(self.indir, name) + "\n")
        self.out = h.path("out.txt")
        self.summary = h.path("summary.json")
        self.progress = cl.Progress(h.path("progress.txt"))
        self.workers = {}
        self.sink_argv = ["--bind", f"tcp://{bind_ip}:{self.pr}", "--once", "-o", self.out,
                          "--output-dir", self.outdir, "--summary-json", self.summary,
                          "--timeout", "120s"] + list(sink_args)
        self.vent_args = list(vent_args)
        self.sink = h.start("sink", "sink", self.sink_argv)
        self.sinks = [self.sink]
        self.vent = None

    def exec_cmd(self, name):
        # {} is the shipped file (quoted by the worker); $$ differs per
        # execution. The sleep keeps the batch going while files move, so
        # the kills land mid-transfer, not after the end.
        return (f"echo {name} {{/}} >> {self.progress.path}; sleep 0.3; "
                "tr a-z A-Z < {} > {}.up && echo \"# $$\" >> {}.up && echo {/}")

    def scratch(self, name):
        return self.h.path(f"scratch-{name}")

    def worker(self, name, host=None, netns=None, extra=()):
        host = host or self.bind_ip
        os.makedirs(self.scratch(name), exist_ok=True)
        p = self.h.start(name, "worker", [
            "--tasks", f"tcp://{host}:{self.pt}", "--results", f"tcp://{host}:{self.pr}",
            "--once", "--id", name, "-q", "--jobs", 2, "--scratch", self.scratch(name),
            "--exec", self.exec_cmd(name), "--return", "{}.up"] + list(extra), netns=netns)
        self.workers.setdefault(name, []).append(p)
        return p

    def start(self, nworkers):
        self.t0 = time.monotonic()
        self.vent_argv = ["--bind", f"tcp://{self.bind_ip}:{self.pt}", "--sink",
                          f"tcp://{self.bind_ip}:{self.pr}", "--wait-workers", nworkers,
                          "--wait-timeout", "120s", "--files"] + self.vent_args + [self.list]
        self.vent = self.h.start("ventilator", "ventilator", self.vent_argv)

    def restart(self, which):
        if which == "sink":
            self.sink = self.h.start("sink", "sink", self.sink_argv)
            self.sinks.append(self.sink)
        else:
            self.vent = self.h.start("ventilator", "ventilator", self.vent_argv)

    # -- moments worth a kill
    def partial_download(self):
        """A worker with a shipped file in its scratch directory not yet
        whole (mid-download), or None."""
        for name, ps in self.workers.items():
            if not ps[-1].alive():
                continue
            for root, _dirs, files in os.walk(self.scratch(name)):
                for f in files:
                    want = self.files.get(f)
                    try:
                        have = os.path.getsize(os.path.join(root, f))
                    except OSError:
                        continue
                    if want is not None and 0 < have < len(want):
                        return name
        return None

    def partial_upload(self):
        """Whether the sink holds an upload not yet whole (mid-upload)."""
        tmp = os.path.join(self.outdir, ".bp-tmp")
        try:
            names = os.listdir(tmp)
        except OSError:
            return False
        sizes = {len(d) for d in self.files.values() if len(d) > CHUNK}
        for f in names:
            try:
                have = os.path.getsize(os.path.join(tmp, f))
            except OSError:
                continue
            if 0 < have and all(have < s for s in sizes):
                return True
        return False

    def uploader(self):
        """A worker whose command finished (a .up file in its scratch): it
        is uploading, or about to."""
        for name, ps in self.workers.items():
            if not ps[-1].alive():
                continue
            for _root, _dirs, files in os.walk(self.scratch(name)):
                if any(f.endswith(".up") for f in files):
                    return name
        return None

    def wait_for(self, pred, what, timeout=120, early_ok=False):
        """pred()'s first true value; None when early_ok and the batch ended
        first (else that is a failure)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if early_ok and not self.vent.alive():
                return None
            check(self.vent.alive(), f"ventilator exited early:\n{self.vent.tail()}")
            v = pred()
            if v:
                return v
            time.sleep(0.003)
        raise Fail(f"never saw {what} in {timeout} s")

    def kill(self, p, what):
        p.killed_by_harness = True
        p.signal_group(signal.SIGKILL)
        check(p.wait(10) is not None, f"{what} survived kill -9")
        print(f"  kill -9 {what} after {self.progress.count()} executions", flush=True)

    # -- the promise
    def finish(self, timeout=600):
        end = time.monotonic() + timeout
        while self.vent.poll() is None:
            check(time.monotonic() < end, f"the ventilator did not finish:\n{self.vent.tail()}"
                  f"\nsink:\n{self.sink.tail()}")
            time.sleep(0.1)
        vrc = self.vent.poll()
        src = self.sink.wait(60)
        self.elapsed = time.monotonic() - self.t0
        check(vrc == 0, f"ventilator exit {vrc}:\n{self.vent.tail()}\nsink:\n{self.sink.tail()}")
        check(src == 0, f"sink exit {src}:\n{self.sink.tail()}")
        lines = cl.read_lines(self.out)
        check(sorted(lines) == sorted(self.files),
              f"output lines are not one per file: {cl.show(sorted(lines))}")
        got = sorted(os.listdir(self.outdir))
        want = sorted(f + ".up" for f in self.files)
        check(got == want, f"the output directory holds {cl.show(got)}, expected {cl.show(want)}")
        for name, data in self.files.items():
            with open(os.path.join(self.outdir, name + ".up"), "rb") as f:
                back = f.read()
            # (the pid line follows the input's last byte, newline or not)
            up = data.translate(UPPER)
            tail = back[len(up):]
            check(back.startswith(up) and tail.startswith(b"# ") and tail.endswith(b"\n")
                  and tail[2:-1].isdigit(),
                  f"{name}.up is not the upper-cased input and one pid line "
                  f"({len(back)} bytes for {len(data)} in)")
        js = cl.read_json(self.summary)
        check(js.get("ok") == self.n and js.get("failed") == 0 and js.get("missing") == 0,
              f"summary: {js}")
        return js

    def check_scratch_clean(self, names):
        for name in names:
            left = os.listdir(self.scratch(name))
            check(not left, f"worker {name} left {cl.show(left)} in its scratch directory")

    def wait_workers(self, names, timeout=60, ok_codes=(0,)):
        for name in names:
            for p in self.workers[name]:
                if getattr(p, "killed_by_harness", False):
                    continue
                rc = p.wait(timeout)
                check(rc is not None, f"worker {name} did not exit:\n{p.tail()}")
                check(rc in ok_codes, f"worker {name} exit {rc}:\n{p.tail()}")


def sc_files_kill(h, a, rng):
    """kill -9 of workers mid-download and mid-upload, each restarted."""
    # Four kills may hit one task: more attempts than --max-attempts' 3.
    b = FilesBatch(h, rng, nbig=a.tasks or 30, big_mb=(4, 12), vent_args=["--max-attempts", 10])
    names = ["w0", "w1", "w2"]
    for nm in names:
        b.worker(nm)
    b.start(3)
    print(f"chaos files_kill: {b.n} files", flush=True)
    done = []
    for k in range(a.kills or 4):
        # The first two kills (one each way) must happen; later ones only
        # if the batch is still going.
        if k % 2 == 0:
            victim = b.wait_for(b.partial_download, "a worker mid-download", early_ok=k >= 2)
            what = f"{victim} (mid-download)"
        else:
            victim = b.wait_for(lambda: b.partial_upload() and b.uploader(),
                                "a worker mid-upload", early_ok=k >= 2)
            what = f"{victim} (mid-upload)"
        if victim is None:
            print(f"  the batch ended after {len(done)} kills", flush=True)
            break
        b.kill(b.workers[victim][-1], what)
        done.append(what)
        b.worker(victim)
    js = b.finish()
    print(f"  done in {b.elapsed:.1f} s: {js.get('redelivered')} redelivered, "
          f"{js.get('duplicates')} duplicates, {b.progress.count() - b.n} extra executions",
          flush=True)
    b.wait_workers(names)
    b.check_scratch_clean(names)


def sc_files_host(h, a, rng):
    """kill -9 of the sink mid-file and of the ventilator mid-file, each
    restarted with --resume: no file half written, none written twice."""
    b = FilesBatch(h, rng, nbig=a.tasks or 16, big_mb=(4, 12),
                   vent_args=["--resume", "--max-attempts", 10], sink_args=["--resume"])
    names = ["w0", "w1"]
    for nm in names:
        b.worker(nm)
    b.start(2)
    print(f"chaos files_host: {b.n} files", flush=True)
    b.wait_for(b.partial_upload, "an upload in progress at the sink")
    b.kill(b.sink, "the sink (mid-upload)")
    time.sleep(rng.uniform(0, 1.5))
    b.restart("sink")
    b.wait_for(b.partial_download, "a worker mid-download")
    b.kill(b.vent, "the ventilator (mid-download)")
    time.sleep(rng.uniform(0, 1.5))
    b.restart("ventilator")
    js = b.finish()
    print(f"  done in {b.elapsed:.1f} s: {b.progress.count() - b.n} extra executions, "
          f"{js.get('duplicates')} duplicates", flush=True)
    check("resuming batch" in b.sink.stderr(), f"the sink did not resume:\n{b.sink.tail()}")
    check("resuming batch" in b.vent.stderr(), f"the ventilator did not resume:\n{b.vent.tail()}")
    for j in (b.list + ".vjournal", b.out + ".journal"):
        check(not os.path.exists(j), f"{j} is still there after a complete batch")
    b.wait_workers(names)


def sc_files_link(h, a, rng):
    """A worker in its own network namespace loses its link for 5 s while
    it downloads; the batch completes with every file whole."""
    ns = cl.NetNS(h)
    ns.setup()
    b = FilesBatch(h, rng, nbig=a.tasks or 10, big_mb=(4, 8), bind_ip="0.0.0.0")
    b.worker("local", host="127.0.0.1")
    b.worker("remote", host=ns.host_ip, netns=ns.name, extra=["--host-timeout", "20s"])
    b.start(2)
    b.wait_for(lambda: b.partial_download() == "remote", "the remote worker mid-download")
    ns.link(False)
    print(f"chaos files_link: link down mid-download after {b.progress.count()} executions",
          flush=True)
    time.sleep(5)
    ns.link(True)
    js = b.finish()
    print(f"  done in {b.elapsed:.1f} s: {js.get('redelivered')} redelivered", flush=True)
    b.wait_workers(["local"])
    b.wait_workers(["remote"], ok_codes=(0, 1))


SCENARIOS = {"files_kill": sc_files_kill, "files_host": sc_files_host,
             "files_link": sc_files_link}
