#!/usr/bin/env python3
"""ventilator -> workers -> sink, the real binaries on loopback."""
import os
import re
import shutil
import signal
import subprocess
import time

from bptest import Env, args, expect, port_open, ports, read_json

env = Env(args())
TUTORIAL = ["hola", "aloha", "hello", "buenas noches", "buenas tardes", "buenos dias",
            "bienvenido"]


def ep(port):
    return f"tcp://127.0.0.1:{port}"


def write_tasks(name, tasks):
    inp = env.path(name)
    with open(inp, "w") as f:
        f.write("".join(t + "\n" for t in tasks))
    return inp


def pipeline(workers, worker_args=(), tasks=None, sink_args=(), vent_args=(), wid="w",
             vent_rc=0, sink_rc=0, control=False):
    """A --once sink, `workers` --once workers and a ventilator; every exit
    status checked. Returns (sink stdout, sink stderr, summary, ventilator
    stderr)."""
    pt, pr, pc = ports(3)
    summary = env.path(f"summary-{pt}.json")
    # v2 has no control channel: --control-bind/--control are accepted
    # and ignored (control=True passes them, as an old script would).
    ctl_sink = ("--control-bind", ep(pc)) if control else ()
    ctl_worker = ("--control", ep(pc)) if control else ()
    sink = env.start("sink", "--once", "--timeout", "120s", "--bind", ep(pr),
                     "--summary-json", summary, *ctl_sink, *sink_args)
    ws = [env.start("worker", "--once", "--tasks", ep(pt), "--results", ep(pr),
                    "--id", f"{wid}{i}", *ctl_worker, *worker_args, name=f"worker{i}")
          for i in range(workers)]
    vargs = ["--bind", ep(pt), "--sink", ep(pr), "--wait-workers", workers,
             "--wait-timeout", "120s", *vent_args]
    if tasks is not None:
        vargs += ["--input", write_tasks(f"tasks-{pt}.txt", tasks)]
    v = env.run("ventilator", *vargs)
    if v.returncode != vent_rc:
        # Say what the workers were doing: exited (and how) or running.
        state = "; ".join(f"{w.bp_name}: exit {w.poll()} {env.errors(w)!r}" for w in ws)
        raise AssertionError(f"ventilator exit {v.returncode}, want {vent_rc}: "
                             f"{v.stderr.decode()} [{state}]")
    env.wait(sink, rc=sink_rc)
    for w in ws:
        env.wait(w, rc=0)
    return env.output(sink).decode(), env.errors(sink), read_json(summary), v.stderr.decode()


def tutorial():
    out, err, js, _ = pipeline(2)
    lines = out.splitlines()
    expect(sorted(lines) == sorted(t.upper() for t in TUTORIAL), f"got {lines}")
    expect(js["ok"] == 7 and js["duplicates"] == 0 and js["missing"] == 0, js)
    expect(len(js["workers"]) == 2 and all(w["ok"] > 0 for w in js["workers"].values()),
           f"both workers should do some: {js['workers']}")
    expect("complete: 7/7 tasks" in err, err)


def control_options_accepted_and_ignored():
    # Scripts written for v1 still pass --control-bind / --control.
    out, err, js, _ = pipeline(1, control=True)
    expect(sorted(out.splitlines()) == sorted(t.upper() for t in TUTORIAL), out)
    expect(js["ok"] == 7 and js["missing"] == 0, js)


def summary_json_fields():
    out, err, js, _ = pipeline(1, tasks=["a", "b"])
    want = {"batch", "total", "delivered", "ok", "failed", "missing", "duplicates",
            "redelivered", "retried", "recovered", "lost", "halted", "stale", "malformed",
            "elapsed_s",
            "workers"}
    expect(want <= set(js), f"summary lacks {sorted(want - set(js))}: {js}")
    expect(js["total"] == 2 and js["ok"] == 2 and js["failed"] == 0 and js["lost"] == 0, js)
    w = js["workers"].get("w0")
    expect(w is not None and w["ok"] == 2 and w["failed"] == 0 and "mean_ms" in w, js)


def exec_many():
    n = env.n(10000, 1000)
    tasks = [f"t{i}" for i in range(n)]
    out, err, js, _ = pipeline(4, ("--exec", 'read x; echo "$x-done"', "--jobs", "2"), tasks)
    got = out.splitlines()
    expect(len(got) == n, f"{len(got)} results, want {n}")
    expect(sorted(got) == sorted(t + "-done" for t in tasks), "results differ from input")
    expect(js["ok"] == n and js["duplicates"] == 0 and js["missing"] == 0, js)
    expect(len(js["workers"]) == 4, js["workers"])


def ordered_output():
    tasks = [f"line {i}" for i in range(env.n(500, 100))]
    out, err, js, _ = pipeline(3, ("--exec", "tr a-z A-Z", "--jobs", "3"), tasks,
                               sink_args=("--ordered",))
    expect(out.splitlines() == [t.upper() for t in tasks], "not in input order")


def failing_command():
    tasks = ["1", "2", "3", "4", "5"]
    cmd = 'read x; if [ "$x" = 3 ]; then echo "no good: $x" >&2; exit 3; fi; echo "ok $x"'
    # v2: the ventilator too says some failed (exit 3), and so does the sink.
    out, err, js, _ = pipeline(2, ("--exec", cmd), tasks, vent_rc=3, sink_rc=3)
    expect(js["ok"] == 4 and js["failed"] == 1, js)
    expect("task 2 failed (code 3)" in err and "no good: 3" in err, err)
    expect(sorted(out.splitlines()) == ["ok 1", "ok 2", "ok 4", "ok 5"], out)


def blank_lines_are_tasks():
    # An empty input line is an empty task, as in GNU parallel: each gives
    # one result line, so --ordered output lines up with the input, with
    # the built-in transform and with --exec. --skip-empty (parallel's -r)
    # drops them.
    tasks = ["a", "", "b", "", "", "c", "\r", "d"]
    out, _, js, _ = pipeline(1, (), tasks, sink_args=("--ordered",))
    expect(out.split("\n")[:-1] == ["A", "", "B", "", "", "C", "", "D"], repr(out))
    expect(js["total"] == len(tasks) and js["ok"] == len(tasks), js)
    out, _, _, _ = pipeline(1, ("--exec", 'read -r x; echo "<$x>"'), tasks,
                            sink_args=("--ordered",))
    expect(out.split("\n")[:-1] == [f"<{t.strip()}>" for t in tasks], repr(out))
    out, _, js, _ = pipeline(1, (), tasks, sink_args=("--ordered",), vent_args=("-r",))
    expect(out.split("\n")[:-1] == ["A", "B", "C", "D"], repr(out))
    expect(js["total"] == 4, js)
    out, _, _, _ = pipeline(1, ("--exec", "cat"), tasks, sink_args=("--ordered",),
                            vent_args=("--skip-empty",))
    expect(out.split("\n")[:-1] == ["a", "b", "c", "d"], repr(out))


def _parallel_resume(log, tasks, *how):
    """What GNU parallel (the real one) runs again from our joblog: the
    tasks of its `parallel --resume... --joblog log echo {} ::: tasks`,
    sorted."""
    exe = shutil.which("parallel")
    expect(exe, "GNU parallel is not installed (scripts/bootstrap installs package parallel)")
    # No -k: parallel 20221122 with --resume -k now and then drops the
    # output of a job it ran (1 run in 30 here, the joblog the same).
    r = subprocess.run([exe, "--will-cite", *how, "--joblog", log, "echo", "{}", ":::", *tasks],
                       capture_output=True, timeout=120)
    expect(r.returncode == 0, f"parallel exit {r.returncode}: {r.stderr.decode()}")
    return sorted(r.stdout.decode().splitlines())


def joblog_resumes_with_gnu_parallel():
    # GNU parallel's --resume reads Seq as its 1-based job number: from the
    # joblog of a complete batch it runs nothing again; with --resume-failed
    # exactly the failed tasks; from a joblog that lacks some tasks
    # (interrupted batch) exactly those.
    tasks = ["a", "b", "c", "d", "e"]
    log = env.path("resume.joblog")
    pipeline(1, ("--exec", 'read x; [ "$x" = c ] || [ "$x" = e ] && exit 3; echo "$x"'), tasks,
             sink_args=("--joblog", log), vent_rc=3, sink_rc=3)
    with open(log) as f:
        rows = f.read().splitlines()
    expect(len(rows) == 1 + len(tasks), rows)

    def copy(name, keep):
        path = env.path(name)  # parallel appends what it runs
        with open(path, "w") as f:
            f.write("".join(r + "\n" for r in rows if keep(r)))
        return path

    ran = _parallel_resume(copy("all", lambda r: True), tasks, "--resume")
    expect(ran == [], f"parallel ran {ran} again: {rows}")
    ran = _parallel_resume(copy("failed", lambda r: True), tasks, "--resume-failed")
    expect(ran == ["c", "e"], f"parallel --resume-failed ran {ran}, not c, e: {rows}")
    partial = copy("partial", lambda r: r.split("\t")[8] not in ("b", "d"))
    ran = _parallel_resume(partial, tasks, "--resume")
    expect(ran == ["b", "d"], f"parallel --resume ran {ran}, not the missing b, d: {rows}")


def joblog_columns():
    # GNU parallel's --joblog layout, one line per attempt, with a retried
    # failure (two attempts of one task) and a signal.
    # Seq is the task's line number (GNU parallel's 1-based {#}); a task
    # killed by --task-timeout has Exitval -1 and the signal sent (the
    # worker sends SIGKILL; parallel's --timeout sends TERM: "-1 15").
    tasks = ["alpha", "beta", "kill me", "fail once", "hang"]
    flag = env.path("failed-once")
    cmd = ('read x; case "$x" in "kill me") kill -9 $$;; "fail once") '
           f'[ -e {flag} ] || {{ touch {flag}; exit 4; }};; hang) sleep 600;; esac; echo "$x!"')
    log = env.path("joblog.tsv")
    out, err, js, _ = pipeline(1, ("--exec", cmd, "--task-timeout", "1s"), tasks,
                               sink_args=("--joblog", log),
                               vent_args=("--retries", "1"), vent_rc=3, sink_rc=3)
    with open(log) as f:
        rows = [ln.rstrip("\n").split("\t") for ln in f]
    expect(rows[0] == ["Seq", "Host", "Starttime", "JobRuntime", "Send", "Receive", "Exitval",
                       "Signal", "Command"], rows[0])
    expect(all(len(r) == 9 for r in rows), rows)
    by = {}
    for r in rows[1:]:
        by.setdefault(r[8], []).append(r)
    expect(sorted(by) == sorted(tasks), f"commands {sorted(by)}")
    now = time.time()
    for r in rows[1:]:
        expect(r[1] == "w0" and abs(float(r[2]) - now) < 600 and float(r[3]) >= 0, r)
        expect(int(r[4]) == len(r[8]), f"Send is the task's size: {r}")
    a = by["alpha"][0]
    expect(len(by["alpha"]) == 1 and a[5] == "6" and a[6] == "0" and a[7] == "0", a)
    k = by["kill me"]
    expect(len(k) == 2 and all(r[6] == "-1" and r[7] == "9" for r in k), k)  # retried once
    f = sorted(by["fail once"], key=lambda r: float(r[2]))
    expect(len(f) == 2 and f[0][6] == "4" and f[1][6] == "0" and f[1][5] == "10", f)
    h = by["hang"]
    expect(len(h) == 2 and all(r[6] == "-1" and r[7] == "9" for r in h), h)
    for r in rows[1:]:
        expect(r[0] == str(tasks.index(r[8]) + 1), f"Seq is the 1-based line number: {r}")
    expect(js["ok"] == 3 and js["failed"] == 2, js)
    # Appended to, never truncated: a second batch adds its lines.
    pipeline(1, ("--exec", "cat"), ["x"], sink_args=("--joblog", log))
    with open(log) as f:
        again = f.read().splitlines()
    expect(len(again) == len(rows) + 1 and again[-1].split("\t")[8] == "x", again[-3:])


def journals_at_full_speed():
    # Both journals with a built-in transform: thousands of results per
    # turn wait for the sink's sync in one ACK message, which must still
    # reach the ventilator (one bigger than its limit cut the connection
    # and the batch stalled).
    n = env.n(120000, 30000)
    tasks = [f"t{i:06d}" for i in range(n)]
    out_file = env.path("fast.out")
    out, _, js, _ = pipeline(1, (), tasks,
                             sink_args=("-o", out_file, "--journal", env.path("fast.sj")),
                             vent_args=("--journal", env.path("fast.vj")))
    with open(out_file) as f:
        got = f.read().split()
    expect(len(got) == n and sorted(got) == [t.upper() for t in tasks], f"{len(got)} results")
    expect(js["ok"] == n and js["duplicates"] == 0, js)


def metrics_files():
    # --metrics-file on a worker and the sink: Prometheus text (the
    # textfile collector's format) with the batch's counts at the end.
    wm, sm = env.path("worker.prom"), env.path("sink.prom")
    tasks = [f"m{i}" for i in range(30)] + ["boom"]
    cmd = 'read x; [ "$x" = boom ] && exit 3; echo "$x"'
    pipeline(1, ("--exec", cmd, "--metrics-file", wm), tasks,
             sink_args=("--metrics-file", sm), vent_rc=3, sink_rc=3)

    def parse(path):
        vals = {}
        with open(path) as f:
            for ln in f:
                if ln.startswith("#"):
                    expect(ln.startswith(("# HELP ", "# TYPE ")), ln)
                    continue
                name, value = ln.rsplit(" ", 1)
                vals[name] = float(value)
        return vals
    w = parse(wm)
    expect(w['boardpipe_worker_tasks_done_total{worker="w0"}'] == 30, w)
    expect(w['boardpipe_worker_tasks_failed_total{worker="w0"}'] == 1, w)
    expect(w['boardpipe_worker_busy_slots{worker="w0"}'] == 0, w)
    last = w['boardpipe_worker_last_task_timestamp_seconds{worker="w0"}']
    expect(abs(last - time.time()) < 600, f"last task time {last}")
    k = parse(sm)
    expect(k["boardpipe_sink_results_ok_total"] == 30, k)
    expect(k["boardpipe_sink_results_failed_total"] == 1, k)
    expect(k["boardpipe_sink_batch_tasks"] == 31 and k["boardpipe_sink_batch_results"] == 31, k)
    expect(k["boardpipe_sink_batch_active"] == 0 and k["boardpipe_sink_forged_total"] == 0, k)
    expect(not os.path.exists(wm + ".tmp") and not os.path.exists(sm + ".tmp"), "temp files left")


def halt_soon_after_failures():
    # GNU parallel's --halt soon,fail=2: after the second failure nothing
    # new starts; every task still has exactly one result (the ones not run
    # say "halted"), and both host roles exit 5.
    tasks = [f"t{i}" + ("x" if i in (2, 5) else "") for i in range(60)]
    cmd = 'read x; case "$x" in *x) echo "bad $x" >&2; exit 3;; esac; echo "$x-ok"'
    out, err, js, verr = pipeline(1, ("--exec", cmd), tasks, vent_args=("--halt", "soon,fail=2"),
                                  vent_rc=5, sink_rc=5)
    got = out.splitlines()
    ran = js["ok"] + js["failed"] - js["halted"]
    expect(js["total"] == 60 and js["ok"] + js["failed"] == 60 and js["missing"] == 0, js)
    expect(js["halted"] > 0 and len(got) == js["ok"], js)
    expect(ran < 60 and js["failed"] - js["halted"] == 2, f"ran {ran}: {js}")
    expect(set(got) <= {f"t{i}-ok" for i in range(60)}, got)
    expect("halted: 2 tasks failed (--halt soon,fail=2)" in verr, verr)
    expect("the ventilator halted the batch" in err, err)
    # A share of the tasks done, once 10 are: 2 failures never reach 50%;
    # the first failure (t2x) is 10% only when the 10th task is done.
    out, err, js, verr = pipeline(1, ("--exec", cmd), tasks, vent_args=("--halt", "now,fail=50%"),
                                  vent_rc=3, sink_rc=3)
    expect(js["ok"] == 58 and js["failed"] == 2 and js["halted"] == 0, js)
    out, err, js, verr = pipeline(1, ("--exec", cmd), tasks, vent_args=("--halt", "now,fail=10%"),
                                  vent_rc=5, sink_rc=5)
    ran = js["ok"] + js["failed"] - js["halted"]
    expect(ran >= 10 and js["halted"] > 0 and js["ok"] + js["failed"] == 60, js)


def halt_now_stops_running_commands():
    # Issue #24: GNU parallel's --halt now kills the jobs that run. The
    # host roles gave them up at once, but the worker ran them to the end.
    # Now END(halted) makes the worker SIGTERM their process groups (SIGKILL
    # after --grace), so none finishes and the worker is soon gone.
    marker = env.path("halt-now.log")
    token = "61.2345"  # a sleep nobody else runs: found again with pgrep
    cmd = (f'read x; case "$x" in f*) exit 1;; esac; echo "start $x" >> {marker}; '
           f'sleep {token}; echo "finished $x" >> {marker}; echo "$x"')
    t0 = time.monotonic()
    out, err, js, verr = pipeline(1, ("--jobs", "4", "--exec", cmd),
                                  ["s1", "s2", "s3", "fail"],
                                  vent_args=("--halt", "now,fail=1"), vent_rc=5, sink_rc=5)
    took = time.monotonic() - t0
    with open(marker) as f:
        log = f.read()
    expect("finished" not in log, f"a given-up command ran to its end: {log}")
    expect(took < 45, f"the worker ran its given-up commands ({took:.1f} s for 61 s sleeps)")
    left = subprocess.run(["pgrep", "-f", f"sleep {token}"], capture_output=True, text=True)
    expect(left.stdout.strip() == "", f"commands still running: {left.stdout}")
    expect(js["halted"] == 3 and js["failed"] == 4 and js["ok"] == 0, js)


def retries_move_to_another_worker():
    # Issue #24: "run a failed command again, on another worker if there is
    # one". A worker that fails everything (bad) and one that works (good),
    # both -j 1: a retry waits (up to 5 s) for good's credit instead of
    # going straight back to bad. And the two summaries count the same way.
    pt, pr = ports(2)
    n = 10
    summary, joblog = env.path("retry.json"), env.path("retry.joblog")
    sink = env.start("sink", "--once", "--timeout", "120s", "--bind", ep(pr),
                     "--summary-json", summary, "--joblog", joblog)
    bad = env.start("worker", "--once", "--tasks", ep(pt), "--results", ep(pr), "--id", "bad",
                    "--jobs", "1", "--exec", "cat >/dev/null; exit 1", name="bad")
    good = env.start("worker", "--once", "--tasks", ep(pt), "--results", ep(pr), "--id", "good",
                     "--jobs", "1", "--exec", "tr a-z A-Z", name="good")
    v = env.run("ventilator", "--bind", ep(pt), "--sink", ep(pr), "--wait-workers", "2",
                "--wait-timeout", "120s", "--retries", "1", "--input",
                write_tasks("retry.txt", [f"r{i}" for i in range(n)]))
    verr = v.stderr.decode()
    expect(v.returncode == 0, f"ventilator exit {v.returncode}: {verr}")
    env.wait(sink, rc=0)
    env.wait(bad)
    env.wait(good)
    expect(sorted(env.output(sink).decode().split()) == sorted(f"R{i}" for i in range(n)),
           env.output(sink))
    with open(joblog) as f:
        rows = [ln.split("\t") for ln in f.read().splitlines()[1:]]
    on_bad = {}
    for r in rows:
        if r[1] == "bad":
            on_bad[r[0]] = on_bad.get(r[0], 0) + 1
    twice = [seq for seq, c in on_bad.items() if c > 1]
    expect(not twice, f"tasks run twice on the worker that failed them: {twice}\n{rows}")
    js = read_json(summary)
    m = re.search(r"(\d+) redelivered, (\d+) retried", verr)
    expect(m, verr)
    expect((js["redelivered"], js["retried"]) == (int(m.group(1)), int(m.group(2))),
           f"sink {js['redelivered']} redelivered / {js['retried']} retried, ventilator "
           f"{m.group(0)}")
    expect(js["retried"] == len(on_bad) and js["redelivered"] == 0, js)


def straggler_run_again_and_cancelled():
    # Issue #22: a board that takes far longer than the others holds the
    # end of a batch. With --speculate its task runs again on an idle
    # worker; the first result wins and the slow copy is CANCELled: its
    # command's process group is killed and it reports nothing.
    pt, pr = ports(2)
    marker = env.path("straggler.log")
    token = "61.4321"  # a sleep nobody else runs: found again with pgrep
    n = 12
    summary = env.path("straggler.json")
    sink = env.start("sink", "--once", "--timeout", "120s", "--bind", ep(pr),
                     "--summary-json", summary)
    slow = env.start("worker", "--once", "--tasks", ep(pt), "--results", ep(pr), "--id", "slow",
                     "--exec", f'read x; echo "start $x" >> {marker}; sleep {token}; '
                               f'echo "finished $x" >> {marker}; echo "$x"', name="slow")
    # (each worker's credit is one task: the slow one gets one at the start)
    fast = [env.start("worker", "--once", "--tasks", ep(pt), "--results", ep(pr),
                      "--id", f"fast{i}", "--exec", 'read x; echo "$x"', name=f"fast{i}")
            for i in range(2)]
    v = env.run("ventilator", "--bind", ep(pt), "--sink", ep(pr), "--wait-workers", "3",
                "--wait-timeout", "120s", "--speculate", "0.5,1.5,300ms", "--input",
                write_tasks("straggler.txt", [f"s{i}" for i in range(n)]))
    verr = v.stderr.decode()
    expect(v.returncode == 0, f"ventilator exit {v.returncode}: {verr}")
    env.wait(sink, rc=0)
    for w in [slow] + fast:
        env.wait(w, rc=0)
    out = sorted(env.output(sink).decode().split())
    expect(out == sorted(f"s{i}" for i in range(n)), out)
    with open(marker) as f:
        log = f.read()
    expect("start" in log and "finished" not in log,
           f"the slow copy was not stopped: {log}; ventilator: {verr[-1500:]}")
    left = subprocess.run(["pgrep", "-f", f"sleep {token}"], capture_output=True, text=True)
    expect(left.stdout.strip() == "", f"commands still running: {left.stdout}")
    m = re.search(r"stragglers: (\d+) run again on an idle worker, (\d+) of them finished "
                  r"first; (\d+) attempts cancelled", verr)
    expect(m and m.groups() == ("1", "1", "1"), verr)
    js = read_json(summary)
    expect(js["ok"] == n and js["failed"] == 0, js)


def labels_and_require():
    # Issue #22: boards say what they are in their HELLO (detected labels
    # and --label), tasks go only to those matching --require, and with no
    # matching board the ventilator says so within --wait-timeout.
    pt, pr = ports(2)
    sink = env.start("sink", "--once", "--timeout", "120s", "--bind", ep(pr))
    cam = env.start("worker", "--once", "--tasks", ep(pt), "--results", ep(pr), "--id", "cam",
                    "--label", "camera", "--label", "site=lab 2", "--exec", 'read x; echo "cam:$x"',
                    name="cam")
    plain = env.start("worker", "--once", "--tasks", ep(pt), "--results", ep(pr), "--id", "plain",
                      "--exec", 'read x; echo "plain:$x"', name="plain")
    v = env.run("ventilator", "-v", "--bind", ep(pt), "--sink", ep(pr), "--wait-workers", "1",
                "--wait-timeout", "120s", "--require", "camera,site=lab 2,cores>=1,mem>1M",
                "--input", write_tasks("require.txt", [f"q{i}" for i in range(8)]))
    verr = v.stderr.decode()
    expect(v.returncode == 0, f"ventilator exit {v.returncode}: {verr}")
    env.wait(sink, rc=0)
    env.wait(cam)
    out = sorted(env.output(sink).decode().split())
    expect(out == sorted(f"cam:q{i}" for i in range(8)), out)
    m = re.search(r"worker cam: labels (.*)", verr)
    expect(m, verr)
    for want in ("camera", "site=lab 2", "arch=", "cores=", "mem=", "hostname="):
        expect(want in m.group(1), f"{want!r} not in {m.group(1)!r}")
    # the plain board never matches: with only it connected, a clear error
    pt2, pr2 = ports(2)
    sink2 = env.start("sink", "--bind", ep(pr2))
    plain2 = env.start("worker", "--tasks", ep(pt2), "--results", ep(pr2), "--id", "plain2",
                       name="plain2")
    v = env.run("ventilator", "--bind", ep(pt2), "--sink", ep(pr2), "--wait-workers", "1",
                "--wait-timeout", "3s", "--require", "gpu", "--input",
                write_tasks("require2.txt", ["x"]))
    verr = v.stderr.decode()
    expect(v.returncode == 1, f"ventilator exit {v.returncode}: {verr}")
    expect("0 of 1 workers matching --require connected" in verr, verr)
    expect(re.search(r"worker plain2: arch=\S+ cores=", verr), verr)
    for p in (plain, plain2, sink2):
        env.kill(p, signal.SIGTERM)


def too_hot_asks_for_no_work():
    # Issue #22: a board over --max-temp takes no work until it has cooled
    # 5 degrees below; the thermal file is the test's (millidegrees).
    pt, pr = ports(2)
    therm, status, prom = env.path("thermal"), env.path("hot.status"), env.path("hot.prom")

    def temp(mc):
        with open(therm + ".new", "w") as f:
            f.write(f"{mc}\n")
        os.replace(therm + ".new", therm)

    def state():
        try:
            with open(status) as f:
                return dict(ln.split("=", 1) for ln in f.read().split())
        except FileNotFoundError:
            return {}

    temp(80000)
    sink = env.start("sink", "--once", "--timeout", "120s", "--bind", ep(pr))
    w = env.start("worker", "--once", "--tasks", ep(pt), "--results", ep(pr), "--id", "hot",
                  "--max-temp", "70", "--thermal-file", therm, "--status-file", status,
                  "--metrics-file", prom, name="hot")
    v = env.start("ventilator", "--bind", ep(pt), "--sink", ep(pr), "--wait-workers", "1",
                  "--wait-timeout", "120s", "--input", write_tasks("hot.txt", ["a", "b", "c"]),
                  name="vent")
    env.wait_for(lambda: "too hot: 80.0 C" in env.errors(w), "the worker to say it is too hot",
                 procs=(w,))
    env.wait_for(lambda: state().get("state") == "hot", "state=hot in the status file",
                 procs=(w,))
    time.sleep(1.5)  # (while hot nothing may run, however long this is)
    st = state()
    expect(st.get("done") == "0" and st.get("running") == "0", f"ran while hot: {st}")
    with open(prom) as f:
        m = f.read()
    expect('boardpipe_worker_too_hot{worker="hot"} 1' in m, m)
    temp(66000)  # within the 5 degrees: still hot
    time.sleep(1.5)
    st = state()
    expect(st.get("state") == "hot" and st.get("done") == "0", f"ran at 66 C: {st}")
    temp(64000)
    env.wait(v, rc=0)
    env.wait(sink, rc=0)
    env.wait(w, rc=0)
    expect(sorted(env.output(sink).decode().split()) == ["A", "B", "C"], env.output(sink))
    expect("cooled to 64.0 C" in env.errors(w), env.errors(w))


def task_memory_limit():
    # Issue #22: --task-memory is each command's RLIMIT_DATA: a task that
    # allocates more fails (its own failure, with its stderr), a small one
    # runs. qemu-user does not apply RLIMIT_DATA (it would limit the
    # emulator), so under emulation only the small one is checked.
    emulated = env.emulated
    rc = 0 if emulated else 3
    out, err, js, _ = pipeline(1, ("--exec", "dd if=/dev/zero of=/dev/null bs=100M count=1 "
                                   "&& echo big", "--task-memory", "32M"), ["x"],
                               vent_rc=rc, sink_rc=rc)
    if not emulated:
        expect(js["failed"] == 1 and "memory" in err, f"{js} {err}")
    out, err, js, _ = pipeline(1, ("--exec", "read x; echo small-$x", "--task-memory", "32M"),
                               ["y"])
    expect(out.strip() == "small-y", out)


def task_timeout():
    out, err, js, _ = pipeline(1, ("--exec", "sleep 30", "--task-timeout", "500ms"), ["x"],
                               vent_rc=3, sink_rc=3)
    expect(js["failed"] == 1, js)
    expect("timeout" in err, err)


def seed_sleep_option():
    # One worker, N tasks of --sleep 200ms: at least N * 0.2 s, or the
    # option did nothing (a lower bound only: never a speed test).
    n = 5
    t0 = time.monotonic()
    out, err, js, _ = pipeline(1, ("--sleep", "200ms"), [f"s{i}" for i in range(n)])
    took = time.monotonic() - t0
    expect(sorted(out.split()) == [f"S{i}" for i in range(n)], f"{out} {err}")
    expect(took >= n * 0.2, f"{n} tasks with --sleep 200ms took {took:.2f} s: no sleep happened")
    mean = js["workers"]["w0"]["mean_ms"]
    expect(mean >= 190, f"--sleep 200ms but {mean} ms per task in the summary: {js}")


def nul_separated():
    pt, pr = ports(2)
    sink = env.start("sink", "--once", "--null", "--timeout", "60s", "--bind", ep(pr))
    w = env.start("worker", "--once", "--tasks", ep(pt), "--results", ep(pr),
                  "--transform", "reverse")
    data = b"ab\ncd\x00\x01\x02\x00x y"
    v = env.run("ventilator", "-0", "--bind", ep(pt), "--sink", ep(pr), "--wait-workers", "1",
                "-", input=data)
    expect(v.returncode == 0, v.stderr)
    env.wait(sink)
    env.wait(w)
    got = sorted(env.output(sink).split(b"\x00")[:-1])
    expect(got == sorted([b"dc\nba", b"\x02\x01", b"y x"]), got)


def sigterm_worker_finishes_inflight():
    # The task cannot end before the test says so (the go file): when the
    # worker takes SIGTERM, the task is provably still running on it.
    pt, pr = ports(2)
    summary = env.path("sig.json")
    started, go = env.path("started"), env.path("go")
    sink = env.start("sink", "--once", "--timeout", "120s", "--bind", ep(pr),
                     "--summary-json", summary)
    w = env.start("worker", "--tasks", ep(pt), "--results", ep(pr), "--exec",
                  f"touch {started}; while [ ! -e {go} ]; do sleep 0.05; done; cat",
                  "--grace", "120s")
    v = env.start("ventilator", "--bind", ep(pt), "--sink", ep(pr), "--wait-workers", "1",
                  "--wait-timeout", "120s", "--input", write_tasks("slow.txt", ["slow"]))
    env.wait_for(started, "the task starting on the worker", procs=(w, v, sink))
    w.send_signal(signal.SIGTERM)
    env.wait_for(lambda: "finishing 1 running task" in env.errors(w),
                 "the worker taking SIGTERM with the task running", procs=(w,))
    time.sleep(0.2 * env.slow)  # the worker must keep waiting for its task...
    expect(w.poll() is None, f"the worker left its running task: exit {w.poll()}: "
           + env.errors(w))
    with open(go, "w"):
        pass                    # ...which may end now
    env.wait(w, 120)
    env.wait(v)
    env.wait(sink)
    expect(env.output(sink) == b"slow\n", env.output(sink))
    js = read_json(summary)
    # Finished where it ran: not lost, not run again elsewhere.
    expect(js["ok"] == 1 and js["redelivered"] == 0 and js["lost"] == 0 and
           js["missing"] == 0, js)


def sigint_idle_sink_exits_zero():
    pr, = ports(1)
    sink = env.start("sink", "--bind", ep(pr))
    env.wait_for(lambda: port_open(pr), "the sink listening", procs=(sink,))
    sink.send_signal(signal.SIGINT)
    env.wait(sink, 60)


def killed_worker_tasks_redelivered():
    # A worker killed with -9 holding a task (and maybe more queued): the
    # ventilator finds it dead (heartbeats) and the other worker runs its
    # tasks; every task has exactly one result.
    pt, pr = ports(2)
    n = 20
    summary = env.path("kill9.json")
    marker = env.path("victim-started")
    sink = env.start("sink", "--once", "--timeout", "120s", "--bind", ep(pr),
                     "--summary-json", summary)
    victim = env.start("worker", "--once", "--tasks", ep(pt), "--results", ep(pr),
                       "--id", "victim", "--exec", f"touch {marker}; sleep 60",
                       name="victim")
    live = env.start("worker", "--once", "--tasks", ep(pt), "--results", ep(pr),
                     "--id", "live", "--sleep", "100ms", name="live")
    v = env.start("ventilator", "--bind", ep(pt), "--sink", ep(pr), "--wait-workers", "2",
                  "--wait-timeout", "120s", "--input",
                  write_tasks("kill9.txt", [f"k{i}" for i in range(n)]))
    env.wait_for(marker, "a task running on the victim", procs=(v, sink, live))
    env.kill(victim)  # SIGKILL: no BYE, no handing back
    env.wait(v, rc=0)
    env.wait(sink, rc=0)
    env.wait(live, rc=0)
    out = env.output(sink).decode().split()
    expect(sorted(out) == sorted(f"K{i}" for i in range(n)), f"results: {out}")
    js = read_json(summary)
    expect(js["ok"] == n and js["duplicates"] == 0 and js["missing"] == 0 and js["lost"] == 0,
           js)
    expect(js["redelivered"] > 0, f"the victim's task should have been redelivered: {js}")
    expect(list(js["workers"]) == ["live"], f"only the live worker delivered: {js['workers']}")


def no_worker_with_a_sink_fails():
    pt, pr = ports(2)
    sink = env.start("sink", "--bind", ep(pr))
    r = env.run("ventilator", "--bind", ep(pt), "--sink", ep(pr), "--wait-workers", "1",
                "--wait-timeout", "2s", timeout=120)
    err = r.stderr.decode()
    expect(r.returncode == 1, f"ventilator exit {r.returncode}, want 1: {err}")
    lines = [ln for ln in err.splitlines() if "only 0 of 1 workers connected after 2.0 s" in ln]
    expect(len(lines) == 1, f"one error line expected: {err!r}")
    expect(r.stdout == b"", r.stdout)
    # The sink is not hurt by a ventilator that gave up.
    expect(sink.poll() is None, f"sink exit {sink.poll()}: {env.errors(sink)}")
    sink.send_signal(signal.SIGINT)
    env.wait(sink, 60, rc=(0, 4))


def stopped_ventilator_leaves_batch_incomplete():
    # SIGINT of the ventilator mid-batch: exit 4 (not every task final); the
    # sink learns the batch size, gives up after --timeout, lists what is
    # missing and exits 4.
    pt, pr = ports(2)
    started = env.path("started2")
    sink = env.start("sink", "--once", "--timeout", "2s", "--bind", ep(pr))
    w = env.start("worker", "--tasks", ep(pt), "--results", ep(pr), "--grace", "1s",
                  "--exec", f"touch {started}; sleep 60")
    v = env.start("ventilator", "--bind", ep(pt), "--sink", ep(pr), "--wait-workers", "1",
                  "--wait-timeout", "120s", "--input", write_tasks("two.txt", ["a", "b"]))
    env.wait_for(started, "a task running", procs=(v, sink, w))
    v.send_signal(signal.SIGINT)
    env.wait(v, 60, rc=4)
    env.wait(sink, 120, rc=4)
    err = env.errors(sink)
    expect("missing task ids: 0 1" in err and "INCOMPLETE" in err, err)
    expect(env.output(sink) == b"", env.output(sink))
    # The worker (no --once) stays for the next batch; SIGTERM: its task
    # gets --grace 1s, is killed and handed back; exit 0.
    expect(w.poll() is None, f"worker exit {w.poll()}: {env.errors(w)}")
    w.send_signal(signal.SIGTERM)
    env.wait(w, 60)


def once_worker_gives_up_without_host():
    pt, pr = ports(2)
    t0 = time.monotonic()
    w = env.start("worker", "--once", "--host-timeout", "2s", "--tasks", ep(pt), "--results",
                  ep(pr))
    env.wait(w, 60, rc=1)
    took = time.monotonic() - t0
    err = env.errors(w)
    lines = [ln for ln in err.splitlines() if "no ventilator at" in ln and "giving up" in ln]
    expect(len(lines) == 1, f"one clear error line expected: {err!r}")
    expect(took >= 2.0, f"gave up after {took:.2f} s, before --host-timeout 2s")


for name, fn in list(globals().items()):
    if callable(fn) and fn.__module__ == "__main__" and not name.startswith("_") \
            and name not in ("pipeline", "ep", "write_tasks", "port_open") \
            and fn.__code__.co_argcount == 0:
        env.check(name, fn)
env.finish()
