#!/usr/bin/env python3
"""ventilator -> workers -> sink, the real binaries on loopback."""
import os
import signal
import time

from bptest import Env, args, expect, ports, read_json

env = Env(args())
TUTORIAL = ["hola", "aloha", "hello", "buenas noches", "buenas tardes", "buenos dias",
            "bienvenido"]


def pipeline(workers, worker_args=(), tasks=None, sink_args=(), vent_args=(), wid="w",
             vent_rc=0):
    pt, pr, pc = ports(3)
    summary = env.path(f"summary-{pt}.json")
    sink = env.start("sink", "--once", "--timeout", "120s", "--bind", f"tcp://127.0.0.1:{pr}",
                     "--control-bind", f"tcp://127.0.0.1:{pc}", "--summary-json", summary,
                     *sink_args)
    ws = [env.start("worker", "--once", "--tasks", f"tcp://127.0.0.1:{pt}", "--results",
                    f"tcp://127.0.0.1:{pr}", "--control", f"tcp://127.0.0.1:{pc}",
                    "--id", f"{wid}{i}", *worker_args, name=f"worker{i}")
          for i in range(workers)]
    vargs = ["--bind", f"tcp://127.0.0.1:{pt}", "--sink", f"tcp://127.0.0.1:{pr}",
             "--wait-workers", workers, "--wait-timeout", "120s", *vent_args]
    if tasks is not None:
        inp = env.path(f"tasks-{pt}.txt")
        with open(inp, "w") as f:
            f.write("".join(t + "\n" for t in tasks))
        vargs += ["--input", inp]
    v = env.run("ventilator", *vargs)
    if v.returncode != vent_rc:
        # Say what the workers were doing: exited (and how) or running.
        state = "; ".join(f"{w.bp_name}: exit {w.poll()} {env.errors(w)!r}" for w in ws)
        raise AssertionError(f"ventilator exit {v.returncode}: {v.stderr.decode()} [{state}]")
    rc = env.wait(sink)
    for w in ws:
        wrc = env.wait(w)
        expect(wrc == 0, f"{w.bp_name} exit {wrc}: {env.errors(w)}")
    return rc, env.output(sink).decode(), env.errors(sink), read_json(summary)


def tutorial():
    rc, out, err, js = pipeline(2)
    expect(rc == 0, f"sink exit {rc}: {err}")
    lines = out.splitlines()
    expect(sorted(lines) == sorted(t.upper() for t in TUTORIAL), f"got {lines}")
    expect(js["ok"] == 7 and js["duplicates"] == 0 and js["missing"] == 0, js)
    expect(len(js["workers"]) == 2 and all(w["ok"] > 0 for w in js["workers"].values()),
           f"both workers should do some: {js['workers']}")
    expect("complete: 7/7 tasks" in err, err)


def exec_10000():
    n = 10000
    tasks = [f"t{i}" for i in range(n)]
    rc, out, err, js = pipeline(4, ("--exec", 'read x; echo "$x-done"', "--jobs", "2"), tasks)
    expect(rc == 0, f"sink exit {rc}: {err}")
    got = out.splitlines()
    expect(len(got) == n, f"{len(got)} results, want {n}")
    expect(sorted(got) == sorted(t + "-done" for t in tasks), "results differ from input")
    expect(js["ok"] == n and js["duplicates"] == 0, js)
    expect(len(js["workers"]) == 4, js["workers"])


def ordered_output():
    tasks = [f"line {i}" for i in range(500)]
    rc, out, err, js = pipeline(3, ("--exec", "tr a-z A-Z", "--jobs", "3"), tasks,
                                sink_args=("--ordered",))
    expect(rc == 0, f"sink exit {rc}: {err}")
    expect(out.splitlines() == [t.upper() for t in tasks], "not in input order")


def failing_command():
    tasks = ["1", "2", "3", "4", "5"]
    cmd = 'read x; if [ "$x" = 3 ]; then echo "no good: $x" >&2; exit 3; fi; echo "ok $x"'
    # v2: the ventilator also says some failed (exit 3).
    rc, out, err, js = pipeline(2, ("--exec", cmd), tasks, vent_rc=3)
    expect(rc == 3, f"sink should exit 3 (some failed), got {rc}: {err}")
    expect(js["ok"] == 4 and js["failed"] == 1, js)
    expect("task 2 failed (code 3)" in err and "no good: 3" in err, err)
    expect(sorted(out.splitlines()) == ["ok 1", "ok 2", "ok 4", "ok 5"], out)


def task_timeout():
    rc, out, err, js = pipeline(1, ("--exec", "sleep 30", "--task-timeout", "500ms"), ["x"],
                                vent_rc=3)
    expect(rc == 3 and js["failed"] == 1, f"rc {rc} {js}")
    expect("timeout" in err, err)


def seed_sleep_option():
    # One worker, three tasks of --sleep 300ms: at least 0.9 s, or the
    # option did nothing (a lower bound only: never a speed test).
    t0 = time.monotonic()
    rc, out, err, js = pipeline(1, ("--sleep", "300ms"), ["a", "b", "c"])
    took = time.monotonic() - t0
    expect(rc == 0 and sorted(out.split()) == ["A", "B", "C"], f"{rc} {out} {err}")
    expect(took >= 0.9, f"3 tasks with --sleep 300ms took {took:.2f} s: no sleep happened")


def nul_separated():
    pt, pr, pc = ports(3)
    sink = env.start("sink", "--once", "--null", "--timeout", "60s", "--bind",
                     f"tcp://127.0.0.1:{pr}", "--control-bind", f"tcp://127.0.0.1:{pc}")
    w = env.start("worker", "--once", "--tasks", f"tcp://127.0.0.1:{pt}", "--results",
                  f"tcp://127.0.0.1:{pr}", "--control", f"tcp://127.0.0.1:{pc}",
                  "--transform", "reverse")
    data = b"ab\ncd\x00\x01\x02\x00x y"
    v = env.run("ventilator", "-0", "--bind", f"tcp://127.0.0.1:{pt}", "--sink",
                f"tcp://127.0.0.1:{pr}", "--wait-workers", "1", "-", input=data)
    expect(v.returncode == 0, v.stderr)
    expect(env.wait(sink) == 0, env.errors(sink))
    expect(env.wait(w) == 0, env.errors(w))
    got = sorted(env.output(sink).split(b"\x00")[:-1])
    expect(got == sorted([b"dc\nba", b"\x02\x01", b"y x"]), got)


def wait_for(path, timeout=120):
    end = time.monotonic() + timeout
    while not os.path.exists(path):
        expect(time.monotonic() < end, f"{path} never appeared")
        time.sleep(0.02)


def sigterm_worker_finishes_inflight():
    pt, pr = ports(2)
    summary = env.path("sig.json")
    started = env.path("started")
    inp = env.path("slow.txt")
    with open(inp, "w") as f:
        f.write("slow\n")
    sink = env.start("sink", "--once", "--timeout", "60s", "--bind", f"tcp://127.0.0.1:{pr}",
                     "--summary-json", summary)
    w = env.start("worker", "--tasks", f"tcp://127.0.0.1:{pt}", "--results",
                  f"tcp://127.0.0.1:{pr}", "--exec", f"touch {started}; sleep 1; cat",
                  "--grace", "20s")
    v = env.start("ventilator", "--bind", f"tcp://127.0.0.1:{pt}", "--sink",
                  f"tcp://127.0.0.1:{pr}", "--wait-workers", "1", "--input", inp)
    wait_for(started)  # the task is running on the worker now
    w.send_signal(signal.SIGTERM)
    expect(env.wait(w, 60) == 0, "worker should exit 0 after SIGTERM: " + env.errors(w))
    expect(env.wait(v) == 0, env.errors(v))
    expect(env.wait(sink) == 0, env.errors(sink))
    expect(env.output(sink) == b"slow\n", env.output(sink))
    js = read_json(summary)
    # Finished where it ran: not lost, not run again elsewhere.
    expect(js["redelivered"] == 0 and js["ok"] == 1, js)


def sigint_idle_sink_exits_zero():
    pr, pc = ports(2)
    sink = env.start("sink", "--bind", f"tcp://127.0.0.1:{pr}", "--control-bind",
                     f"tcp://127.0.0.1:{pc}")
    time.sleep(0.5)
    sink.send_signal(signal.SIGINT)
    expect(env.wait(sink, 60) == 0, env.errors(sink))


def stopped_ventilator_leaves_batch_incomplete():
    # SIGINT of the ventilator mid-batch: exit 4 (not every task final); the
    # sink learns the batch size, gives up after --timeout, lists what is
    # missing and exits 4.
    pt, pr = ports(2)
    started = env.path("started2")
    inp = env.path("two.txt")
    with open(inp, "w") as f:
        f.write("a\nb\n")
    sink = env.start("sink", "--once", "--timeout", "2s", "--bind", f"tcp://127.0.0.1:{pr}")
    w = env.start("worker", "--tasks", f"tcp://127.0.0.1:{pt}", "--results",
                  f"tcp://127.0.0.1:{pr}", "--exec", f"touch {started}; sleep 30")
    v = env.start("ventilator", "--bind", f"tcp://127.0.0.1:{pt}", "--sink",
                  f"tcp://127.0.0.1:{pr}", "--wait-workers", "1", "--input", inp)
    wait_for(started)
    v.send_signal(signal.SIGINT)
    vrc = env.wait(v, 60)
    expect(vrc == 4, f"ventilator exit {vrc}: {env.errors(v)}")
    rc = env.wait(sink, 120)
    err = env.errors(sink)
    expect(rc == 4, f"sink exit {rc}: {err}")
    expect("missing task ids: 0 1" in err and "INCOMPLETE" in err, err)
    env.kill(w)


def once_worker_gives_up_without_host():
    pt, pr = ports(2)
    w = env.start("worker", "--once", "--host-timeout", "2s", "--tasks",
                  f"tcp://127.0.0.1:{pt}", "--results", f"tcp://127.0.0.1:{pr}")
    rc = env.wait(w, 60)
    expect(rc == 1 and "no ventilator" in env.errors(w), f"exit {rc}: {env.errors(w)}")


for name, fn in list(globals().items()):
    if callable(fn) and fn.__module__ == "__main__" and name not in ("pipeline", "wait_for") \
            and not name.startswith("_") and fn.__code__.co_argcount == 0:
        env.check(name, fn)
env.finish()
