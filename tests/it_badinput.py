#!/usr/bin/env python3
"""Bad flags, endpoints and files: a clear one-line error and the right exit
status, never a crash or a hang."""
import signal
import time

from bptest import Env, args, expect, port_open, ports

env = Env(args())


def one_line_error(r, code, *needles):
    err = r.stderr.decode()
    expect(r.returncode == code, f"exit {r.returncode}, want {code}: {err!r}")
    # The error is one line holding every needle (info lines may precede it).
    lines = [ln for ln in err.splitlines() if all(n in ln for n in needles)]
    expect(lines, f"no stderr line holds {needles!r}: {err!r}")
    expect(r.stdout == b"", f"nothing on stdout: {r.stdout!r}")


def unknown_flag():
    for tool in ("ventilator", "worker", "sink"):
        one_line_error(env.run(tool, "--no-such-flag"), 2, "unknown option", "--no-such-flag")
        one_line_error(env.run(tool, "-Z"), 2, "unknown option '-Z'")


def missing_value():
    one_line_error(env.run("worker", "--jobs"), 2, "needs a value")


def bad_values():
    one_line_error(env.run("worker", "--jobs", "lots"), 2, "--jobs")
    one_line_error(env.run("worker", "--task-timeout", "soon"), 2, "--task-timeout")
    one_line_error(env.run("worker", "--transform", "shout"), 2, "unknown transform")
    one_line_error(env.run("sink", "--max-msg-size", "1X"), 2, "--max-msg-size")
    one_line_error(env.run("worker", "--jobs", "3", env={"BP_JOBS": "x"}), 2, "BP_JOBS")


def bad_endpoint():
    one_line_error(env.run("worker", "--tasks", "localhost:5557"), 2, "invalid endpoint")
    one_line_error(env.run("sink", "--bind", "tcp://no-such-host.invalid:1"), 1, "cannot bind")
    one_line_error(env.run("sink", "--bind", "bogus://x:1"), 1, "cannot bind")
    one_line_error(env.run("ventilator", "--bind", "bogus://x:1", "--sink", "none"), 1,
                   "cannot bind")


def port_in_use():
    pr, = ports(1)
    first = env.start("sink", "--bind", f"tcp://127.0.0.1:{pr}")
    env.wait_for(lambda: port_open(pr), "the first sink listening", procs=(first,))
    for tool, more in (("sink", ()), ("ventilator", ("--sink", "none"))):
        r = env.run(tool, "--bind", f"tcp://127.0.0.1:{pr}", *more)
        one_line_error(r, 1, "cannot bind", "in use")
    expect(first.poll() is None, "the first sink keeps running")
    first.send_signal(signal.SIGINT)
    env.wait(first, 60)


def control_options_still_parsed():
    # Accepted and ignored in v2, but still options that take a value.
    one_line_error(env.run("worker", "--control"), 2, "needs a value")
    one_line_error(env.run("sink", "--control-bind"), 2, "needs a value")


def raw_once_worker_is_a_usage_error():
    r = env.run("worker", "--once", "--raw")
    err = r.stderr.decode()
    expect(r.returncode == 2, f"exit {r.returncode}, want 2: {err!r}")
    expect(len(err.strip().splitlines()) >= 1 and "--raw" in err and "--once" in err, err)
    expect(r.stdout == b"", r.stdout)


def bad_v2_values():
    for tool in ("ventilator", "worker"):
        one_line_error(env.run(tool, "--heartbeat", "often"), 2, "--heartbeat")
        one_line_error(env.run(tool, "--liveness", "x"), 2, "--liveness")
    one_line_error(env.run("ventilator", "--max-attempts", "many"), 2, "--max-attempts")
    one_line_error(env.run("ventilator", "--retries", "-x"), 2, "--retries")
    one_line_error(env.run("ventilator", "--task-deadline", "later"), 2, "--task-deadline")
    one_line_error(env.run("ventilator", "--ack-timeout", "later"), 2, "--ack-timeout")
    one_line_error(env.run("worker", "--prefetch", "lots"), 2, "--prefetch")
    one_line_error(env.run("worker", "--host-timeout", "whenever"), 2, "--host-timeout")


def unreadable_input():
    pt, = ports(1)
    r = env.run("ventilator", "--bind", f"tcp://127.0.0.1:{pt}", "--sink", "none",
                env.path("does-not-exist.txt"))
    one_line_error(r, 1, "cannot read", "does-not-exist.txt")


def unexpected_argument():
    one_line_error(env.run("worker", "extra"), 2, "unexpected argument 'extra'")


def oversized_record_is_rejected_and_counted():
    pt, pr = ports(2)
    sink = env.start("sink", "--once", "--timeout", "120s", "--bind", f"tcp://127.0.0.1:{pr}")
    w = env.start("worker", "--once", "--tasks", f"tcp://127.0.0.1:{pt}", "--results",
                  f"tcp://127.0.0.1:{pr}")
    data = b"small\n" + b"x" * 100 + b"\nlast\n"
    r = env.run("ventilator", "--max-msg-size", "64", "--bind", f"tcp://127.0.0.1:{pt}",
                "--sink", f"tcp://127.0.0.1:{pr}", "--wait-workers", "1", "--wait-timeout",
                "120s", "-", input=data)
    err = r.stderr.decode()
    expect(r.returncode == 3, f"ventilator exit {r.returncode}: {err}")
    expect("record 2 is longer than 64 bytes: skipped" in err, err)
    expect("1 input records rejected" in err, err)
    env.wait(sink)  # the rejected record was never a task: the batch is complete
    expect(sorted(env.output(sink).split()) == [b"LAST", b"SMALL"], env.output(sink))
    env.wait(w)


def no_workers_times_out():
    pt, = ports(1)
    r = env.run("ventilator", "--bind", f"tcp://127.0.0.1:{pt}", "--sink", "none",
                "--wait-workers", "2", "--wait-timeout", "1s")
    one_line_error(r, 1, "only 0 of 2 workers connected after 1.0 s")


def once_worker_without_host_times_out():
    pt, pr = ports(2)
    r = env.run("worker", "--once", "--host-timeout", "1s", "--tasks", f"tcp://127.0.0.1:{pt}",
                "--results", f"tcp://127.0.0.1:{pr}")
    one_line_error(r, 1, "no ventilator at", "giving up")


def unreachable_sink_times_out():
    pt, pr = ports(2)
    t0 = time.monotonic()
    r = env.run("ventilator", "--bind", f"tcp://127.0.0.1:{pt}", "--sink",
                f"tcp://127.0.0.1:{pr}", "--wait-timeout", "1s")
    took = time.monotonic() - t0
    one_line_error(r, 1, "sink at", "not reachable after 1.0 s")
    # --linger is "1s at most" for the ventilator: after giving up it must
    # not sit on its unsent messages for long (a generous bound: 1 s wait,
    # 1 s linger, slack).
    expect(took < 2 + 4 * env.slow, f"exit 1 only after {took:.1f} s (--wait-timeout 1s, "
           f"--linger 1s at most)")


def help_and_version():
    for tool in ("ventilator", "worker", "sink"):
        r = env.run(tool, "--help")
        expect(r.returncode == 0 and r.stdout.startswith(b"Usage: " + tool.encode()), r)
        r = env.run(tool, "-V")
        expect(r.returncode == 0 and b"(boardpipe)" in r.stdout, r)


for name, fn in list(globals().items()):
    if callable(fn) and fn.__module__ == "__main__" and not name.startswith("_") \
            and name not in ("one_line_error",) and fn.__code__.co_argcount == 0:
        env.check(name, fn)
env.finish()
