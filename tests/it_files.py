#!/usr/bin/env python3
"""Files out and files back, end to end (issue #20): the real ventilator
(--files, --basefile), workers (--exec with GNU parallel's replacement
strings, --return) and sink (--output-dir), on loopback, every preset."""
import hashlib
import os
import subprocess

from bptest import Env, args, expect, ports, read_json

env = Env(args())
CHUNK = 64 * 1024


def ep(port):
    return f"tcp://127.0.0.1:{port}"


def put(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def batch(inputs, worker_args, nworkers=1, vent_args=(), sink_args=(), vent_rc=0, sink_rc=0,
          null=False, outdir=None, tag="b"):
    """A --once sink with --output-dir, a ventilator with --files over the
    paths `inputs` (bytes), nworkers --once workers. Returns (outdir, sink
    stdout, summary, ventilator stderr, sink stderr, [worker stderr])."""
    pt, pr = ports(2)
    outdir = outdir or env.path(f"out-{tag}-{pt}")
    lst = env.path(f"list-{tag}-{pt}")
    with open(lst, "wb") as f:
        f.write(b"".join(p + (b"\0" if null else b"\n") for p in inputs))
    summary = env.path(f"summary-{tag}-{pt}.json")
    sink = env.start("sink", "--once", "--timeout", "120s", "--bind", ep(pr), "--output-dir",
                     outdir, "--summary-json", summary, *(("-0",) if null else ()), *sink_args)
    vent = env.start("ventilator", "--bind", ep(pt), "--sink", ep(pr), "--wait-workers",
                     nworkers, "--wait-timeout", "120s", "--files", *(("-0",) if null else ()),
                     *vent_args, lst)
    for i in range(nworkers):
        os.makedirs(env.path(f"scratch-{tag}-{pt}-{i}"), exist_ok=True)
    ws = [env.start("worker", "--once", "--tasks", ep(pt), "--results", ep(pr), "--id",
                    f"w{i}", "--scratch", env.path(f"scratch-{tag}-{pt}-{i}"), *worker_args)
          for i in range(nworkers)]
    env.wait(vent, rc=vent_rc)
    env.wait(sink, rc=sink_rc)
    for w in ws:
        env.wait(w)
    for i in range(nworkers):
        left = os.listdir(env.path(f"scratch-{tag}-{pt}-{i}"))
        expect(not [x for x in left if x.startswith("bp-")],
               f"worker {i} left task directories: {left}")
    return (outdir, env.output(sink), read_json(summary), env.errors(vent), env.errors(sink),
            [env.errors(w) for w in ws])


def awkward_files(d):
    """{relative name (bytes): contents}: the sizes around a chunk, a file
    larger than every buffer, binary data, odd names."""
    sizes = {b"empty": 0, b"one": 1, b"chunk": CHUNK, b"chunk-1": CHUNK - 1,
             b"chunk+1": CHUNK + 1, b"big": (3 << 20) + 17}
    files = {}
    for name, size in sizes.items():
        files[b"s/" + name] = bytes((i * 31 + len(name)) & 0xFF for i in range(size))
    files[b"binary"] = b"\0\x01\xff\nno final newline\0"
    files[b"with space 'and' \"quotes\""] = b"quoted\n"
    files[b"caf\xe9-latin1"] = b"not utf-8 name\n"
    for rel, data in files.items():
        put(os.path.join(d.encode(), rel), data)
    return files


def round_trip_byte_for_byte():
    d = env.path("in-rt")
    files = awkward_files(d)
    os.chdir(d)
    out, sout, js, verr, serr, _ = batch(
        list(files), ["--jobs", 2, "--exec", "cat {} > {}.copy && wc -c < {}",
                      "--return", "{}.copy"], nworkers=2, tag="rt")
    for rel, data in files.items():
        got = read(os.path.join(out.encode(), rel + b".copy"))
        expect(got == data, f"{rel!r}: {len(got)} bytes back for {len(data)}")
    sizes = sorted(int(x) for x in sout.split())
    expect(sizes == sorted(len(x) for x in files.values()), f"stdout results: {sout!r}")
    expect(js["ok"] == len(files) and js["failed"] == 0, js)
    expect(not os.path.exists(os.path.join(out, ".bp-tmp")), "the sink left .bp-tmp")


def names_with_newlines_need_null():
    # A newline in a path: NUL-separated input (-0), as with find -print0.
    d = env.path("in-nl")
    put(os.path.join(d, "a\nb.txt"), b"nl\n")
    put(os.path.join(d, "plain.txt"), b"p\n")
    os.chdir(d)
    out, sout, js, *_ = batch([b"a\nb.txt", b"plain.txt"],
                              ["--exec", "tr a-z A-Z < {} > {.}.up; printf %s {/}",
                               "--return", "{.}.up"], null=True, tag="nl")
    expect(read(os.path.join(out, "a\nb.up")) == b"NL\n", os.listdir(out))
    expect(read(os.path.join(out, "plain.up")) == b"P\n", os.listdir(out))
    expect(sorted(sout.split(b"\0")[:-1]) == [b"a\nb.txt", b"plain.txt"], sout)


def replacement_strings():
    d = env.path("in-repl")
    put(os.path.join(d, "dir/photo.one.jpg"), b"x")
    os.chdir(d)
    _, sout, js, *_ = batch([b"dir/photo.one.jpg"],
                            ["--exec", "printf '%s|%s|%s|%s|%s' {} {/} {.} {/.} {#}"], tag="repl")
    expect(sout.strip() == b"dir/photo.one.jpg|photo.one.jpg|dir/photo.one|photo.one|1", sout)


def stdin_without_replacement_strings():
    d = env.path("in-stdin")
    put(os.path.join(d, "a.txt"), b"hello file\n")
    os.chdir(d)
    _, sout, js, *_ = batch([b"a.txt"], ["--exec", "tr a-z A-Z; pwd >&2"], tag="stdin")
    expect(sout.strip() == b"HELLO FILE", sout)


def unreadable_paths_fail_and_the_batch_goes_on():
    d = env.path("in-unread")
    put(os.path.join(d, "ok.txt"), b"fine\n")
    os.makedirs(os.path.join(d, "adir"))
    os.chdir(d)
    _, sout, js, verr, serr, _ = batch([b"ok.txt", b"missing.txt", b"adir"],
                                       ["--exec", "cat"], vent_rc=3, sink_rc=3, tag="unread")
    expect(sout.strip() == b"fine", sout)
    expect(js["ok"] == 1 and js["failed"] == 2, js)
    lines = [ln for ln in verr.splitlines() if "cannot read" in ln]
    expect(len(lines) == 2 and "missing.txt" in lines[0] + lines[1], verr)
    expect("file-error" in serr and "missing.txt" in serr, serr)


def return_problems_are_file_errors():
    d = env.path("in-ret")
    put(os.path.join(d, "a.txt"), b"a\n")
    put(os.path.join(d, "b.txt"), b"b\n")
    os.chdir(d)
    # a.txt makes its .out, b.txt does not; a symlink out of the scratch
    # directory is never followed.
    cmd = ("case {} in a.txt) echo made > {}.out;; "
           "*) ln -s /etc/passwd {}.link;; esac; true")
    out, sout, js, verr, serr, _ = batch([b"a.txt", b"b.txt"],
                                         ["--exec", cmd, "--return", "{}.out"],
                                         vent_rc=3, sink_rc=3, tag="ret")
    expect(read(os.path.join(out, "a.txt.out")) == b"made\n", os.listdir(out))
    expect(js["ok"] == 1 and js["failed"] == 1, js)
    expect("file-error" in serr and "b.txt.out" in serr, serr)
    out, sout, js, verr, serr, _ = batch([b"b.txt"],
                                         ["--exec", cmd, "--return", "{}.link"],
                                         vent_rc=3, sink_rc=3, tag="ret2")
    expect(js["failed"] == 1 and not os.path.exists(os.path.join(out, "b.txt.link")),
           (js, os.listdir(out) if os.path.isdir(out) else None))


def never_overwrites_other_contents():
    d = env.path("in-ow")
    put(os.path.join(d, "a.txt"), b"new\n")
    put(os.path.join(d, "same.txt"), b"same\n")
    os.chdir(d)
    out = env.path("out-ow")
    put(os.path.join(out, "a.txt"), b"old\n")        # other contents: kept, task fails
    put(os.path.join(out, "same.txt"), b"same\n")    # the same contents: fine
    _, sout, js, verr, serr, _ = batch([b"a.txt", b"same.txt"],
                                       ["--exec", "true", "--return", "{}"], outdir=out,
                                       vent_rc=3, sink_rc=3, tag="ow")
    expect(read(os.path.join(out, "a.txt")) == b"old\n", "a file was overwritten")
    expect(js["ok"] == 1 and js["failed"] == 1, js)
    expect("other contents" in serr, serr)


def basefiles_once_per_board_and_cached():
    d = env.path("in-base")
    put(os.path.join(d, "model.dat"), b"weights v1\n")
    for i in range(4):
        put(os.path.join(d, f"t{i}.txt"), b"x\n")
    os.chdir(d)
    cache = env.path("cache-base")
    wargs = ["--cache-dir", cache, "--exec", "cat model.dat", "--jobs", 2]
    tasks = [f"t{i}.txt".encode() for i in range(4)]
    _, sout, js, verr, *_ = batch(tasks, wargs, vent_args=["-v", "--basefile", "model.dat"],
                                  tag="base1")
    expect(sout.splitlines() == [b"weights v1"] * 4, sout)
    expect("1 base files sent" in verr, verr[-2000:])
    # The next batch: the board has it cached, nothing is sent again.
    _, sout, js, verr, *_ = batch(tasks, wargs, vent_args=["-v", "--basefile", "model.dat"],
                                  tag="base2")
    expect(sout.splitlines() == [b"weights v1"] * 4, sout)
    expect("0 base files sent" in verr, verr[-2000:])
    # Another version of it is another file in the cache.
    put(os.path.join(d, "model.dat"), b"weights v2\n")
    _, sout, js, verr, *_ = batch(tasks[:1], wargs, vent_args=["-v", "--basefile", "model.dat"],
                                  tag="base3")
    expect(sout.strip() == b"weights v2" and "1 base files sent" in verr, (sout, verr[-2000:]))
    want = {hashlib.sha256(x).hexdigest() for x in (b"weights v1\n", b"weights v2\n")}
    have = set()
    for _root, _dirs, fs in os.walk(cache):
        have |= {f for f in fs if len(f) == 64}
    expect(want <= have, f"cache holds {have}")


def full_disk_on_the_board_is_a_file_error():
    # The board cannot write the shipped file (a file size limit stands in
    # for a full disk: the write fails with EFBIG instead of ENOSPC): that
    # task fails with file-error and the reason, the others go on.
    import resource

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (100000, 100000))

    d = env.path("in-full")
    put(os.path.join(d, "big.bin"), b"x" * 300000)
    put(os.path.join(d, "small.txt"), b"fits\n")
    os.chdir(d)
    pt, pr = ports(2)
    lst = env.path("list-full")
    with open(lst, "wb") as f:
        f.write(b"big.bin\nsmall.txt\n")
    summary = env.path("summary-full.json")
    os.makedirs(env.path("scratch-full"), exist_ok=True)
    sink = env.start("sink", "--once", "--timeout", "120s", "--bind", ep(pr), "--summary-json",
                     summary)
    vent = env.start("ventilator", "--bind", ep(pt), "--sink", ep(pr), "--wait-workers", 1,
                     "--files", lst)
    w = env.start("worker", "--once", "--tasks", ep(pt), "--results", ep(pr), "--scratch",
                  env.path("scratch-full"), "--exec", "cat", preexec=small_files)
    env.wait(vent, rc=3)
    env.wait(sink, rc=3)
    env.wait(w)
    js, serr = read_json(summary), env.errors(sink)
    expect(env.output(sink).strip() == b"fits" and js["ok"] == 1 and js["failed"] == 1, js)
    expect("file-error" in serr and "big.bin" in serr and "too large" in serr, serr)


def bad_basefile_is_a_clear_error():
    (pt,) = ports(1)
    r = env.run("ventilator", "--files", "--basefile", env.path("no-such-model"), "--sink",
                "none", "--bind", ep(pt), "--wait-timeout", "1s", input=b"")
    err = r.stderr.decode(errors="replace")
    expect(r.returncode == 2 and "no-such-model" in err and len(err.strip().splitlines()) <= 3,
           (r.returncode, err))


for name, fn in list(globals().items()):
    if callable(fn) and fn.__module__ == "__main__" and not name.startswith("_") \
            and name not in ("ep", "put", "read", "batch", "awkward_files") \
            and fn.__code__.co_argcount == 0:
        env.check(name, fn)
env.finish()
