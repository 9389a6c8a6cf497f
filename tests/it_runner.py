#!/usr/bin/env python3
"""The test runner's own test: scripts/ctest-summary must not let a skip,
a missing suite or a failure pass for a success.

  it_runner.py --summary scripts/ctest-summary --cmake CMAKE --ctest CTEST
               [-- INTEROP-COMMAND...]

1. canned CTest results (JUnit + --show-only=json-v1 listings): every rule
   (a skip fails in CI unless allowlisted with a reason, fails nothing
   outside CI and says why; failures, never-run tests, a missing report,
   an empty run, a missing label, a bad ctest exit always fail);
2. a real ctest run of a throw-away project (the JUnit the installed CTest
   writes is read the way the canned cases assume);
3. with INTEROP-COMMAND (tests/it_interop.py as CTest runs it) and a zmq
   module on PYTHONPATH whose import raises: CI=true fails, naming
   it_interop.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

FAILS = []


def check(ok, what, detail=""):
    print(f"{'ok' if ok else 'not ok'} - {what}")
    if not ok:
        FAILS.append(what)
        if detail:
            print(textwrap.indent(detail.rstrip(), "    | "))


# ---------------------------------------------------------------- canned runs
def junit_case(name, status, out="", message=None):
    body = ""
    if status == "fail":
        body = '<failure message=""/>'
    elif status == "notrun":
        body = f'<skipped message="{message}"/>'
    return (f'<testcase name="{name}" classname="{name}" time="0.1" status="{status}">'
            f'{body}<system-out>{out}</system-out></testcase>')


def write_run(d, idx, name, cases, labels, rc=0, expect=(), junit=True, listing=None):
    """cases: [(test, status, out, message)]; labels: test -> [labels]."""
    base = os.path.join(d, f"{idx:02d}-{name}")
    if junit:
        with open(base + ".xml", "w") as f:
            f.write('<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name="x">'
                    + "".join(junit_case(*c) for c in cases) + "</testsuite>\n")
    names = listing if listing is not None else [c[0] for c in cases]
    tests = [{"name": n, "properties": [{"name": "LABELS", "value": labels.get(n, [])}]}
             for n in names]
    with open(base + ".json", "w") as f:
        json.dump({"kind": "ctestInfo", "version": {"major": 1}, "tests": tests}, f)
    with open(base + ".meta.json", "w") as f:
        json.dump({"name": name, "rc": rc, "expect_labels": list(expect)}, f)


SKIP_OUT = "SKIP: python3-zmq (pyzmq) is not installed; interop needs a plain ZeroMQ peer"
LABELS = {"test_frame": ["unit"], "it_interop": ["interop"], "it_pipeline": ["integration"],
          "fleet_e2e": ["fleet"]}


def summarize(a, d, *flags, allowlist=None, env=None, cmd=("report",)):
    e = dict(os.environ)
    e.pop("CI", None)
    e.update(env or {})
    args = [sys.executable, a.summary]
    args += ["--allowlist", allowlist or os.path.join(d, "no-allowlist.txt")]
    args += list(flags) + list(cmd) + [d]
    p = subprocess.run(args, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    return p.returncode, p.stdout


def canned(a, tmp):
    n = [0]

    def fresh(*runs):
        n[0] += 1
        d = os.path.join(tmp, f"canned{n[0]}")
        os.makedirs(d)
        for i, r in enumerate(runs):
            write_run(d, i, *r[:3], **(r[3] if len(r) > 3 else {}))
        return d

    passed = [("test_frame", "run", "[  PASSED  ] 5 test(s).", None),
              ("it_pipeline", "run", "ok", None)]
    skip = [("it_interop", "notrun", SKIP_OUT, "SKIP_RETURN_CODE=77")]
    allow = os.path.join(tmp, "allow.txt")

    d = fresh(("host", passed, LABELS, {"expect": ["unit", "integration"]}))
    rc, out = summarize(a, d, "--ci")
    check(rc == 0, "all passed, CI: exit 0", out)
    rows = [ln.split() for ln in out.splitlines()]
    check(["host", "unit", "1", "0", "0"] in rows and ["host", "integration", "1", "0", "0"] in rows
          and "result: ok" in out, "the table has a row per label", out)

    d = fresh(("host", passed + skip, LABELS))
    rc, out = summarize(a, d, "--ci")
    check(rc == 1, "a skip in CI that is not allowlisted: exit 1", out)
    check("UNEXPECTED SKIP" in out and "it_interop" in out and SKIP_OUT in out,
          "... names the test and its reason", out)
    rc, out = summarize(a, d, env={"CI": "true"})
    check(rc == 1, "CI=true in the environment means CI", out)
    rc, out = summarize(a, d, "--no-ci")
    check(rc == 0, "the same skip outside CI: exit 0", out)
    check(SKIP_OUT in out and "1 skipped" in out, "... and the reason is printed", out)
    rc, out = summarize(a, d)
    check(rc == 0, "CI unset in the environment means not CI", out)
    rows = [ln.split() for ln in out.splitlines()]
    check(["host", "interop", "0", "0", "1"] in rows, "passed/failed/skipped per label", out)

    with open(allow, "w") as f:
        f.write("# comment\nhost  it_inter*  # no pyzmq wheel for this test machine\n")
    rc, out = summarize(a, d, "--ci", allowlist=allow)
    check(rc == 0 and "allowed by" in out, "an allowlisted skip (with reason) passes in CI", out)
    with open(allow, "w") as f:
        f.write("armv6-musl  it_interop  # only there\n")
    rc, out = summarize(a, d, "--ci", allowlist=allow)
    check(rc == 1, "an allowlist entry for another preset does not cover host", out)
    with open(allow, "w") as f:
        f.write("host  it_interop\n")
    rc, out = summarize(a, d, "--ci", allowlist=allow)
    check(rc == 2 and "reason" in out, "an allowlist entry without a reason is an error", out)

    d = fresh(("host", passed, LABELS), ("host-level", skip, LABELS))
    rc, out = summarize(a, d, "--ci")
    check(rc == 1, "a skip in a later run is not hidden by an earlier clean one", out)

    d = fresh(("host", passed + [("t_bad", "fail", "boom", None)], LABELS, {"rc": 8}))
    rc, out = summarize(a, d, "--no-ci")
    check(rc == 1 and "t_bad" in out, "a failed test fails, CI or not", out)

    d = fresh(("host", passed, LABELS, {"rc": 8}))
    rc, out = summarize(a, d, "--no-ci")
    check(rc == 1, "a non-zero ctest exit fails even when every test passed", out)

    d = fresh(("host", passed + [("gone", "notrun", "", "Unable to find executable")], LABELS))
    rc, out = summarize(a, d, "--no-ci")
    check(rc == 1, "a test whose executable is missing is a failure, not a skip", out)

    d = fresh(("host", passed + [("off", "disabled", "Disabled", None)], LABELS))
    rc, out = summarize(a, d, "--ci")
    check(rc == 1, "a DISABLED test is a skip: unexpected in CI", out)

    d = fresh(("host", passed, LABELS,
               {"listing": ["test_frame", "it_pipeline", "it_interop"]}))
    rc, out = summarize(a, d, "--no-ci")
    check(rc == 1 and "never ran" in out, "a listed test missing from the report fails", out)

    d = fresh(("host", passed, LABELS, {"junit": False}))
    rc, out = summarize(a, d, "--no-ci")
    check(rc == 1, "a missing JUnit report fails", out)

    d = fresh(("host", [], LABELS))
    rc, out = summarize(a, d, "--no-ci")
    check(rc == 1 and "no tests ran" in out, "a run without tests fails", out)

    d = fresh(("host", passed, LABELS, {"expect": ["unit", "chaos"]}))
    rc, out = summarize(a, d, "--no-ci")
    check(rc == 1 and "'chaos' has no tests" in out,
          "an expected label without tests (suite not registered) fails", out)

    d = os.path.join(tmp, "empty")
    os.makedirs(d)
    rc, out = summarize(a, d, "--no-ci")
    check(rc == 1, "no runs at all fails", out)


# ---------------------------------------------------------------- real ctest
def project(a, tmp, name, body):
    src = os.path.join(tmp, name, "src")
    bld = os.path.join(tmp, name, "build")
    os.makedirs(src)
    with open(os.path.join(src, "CMakeLists.txt"), "w") as f:
        f.write("cmake_minimum_required(VERSION 3.21)\nproject(p NONE)\nenable_testing()\n"
                + body)
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run([a.cmake, "-S", src, "-B", bld, *gen], check=True,
                   stdout=subprocess.DEVNULL)
    return bld


def quoted(args):
    return " ".join("[==[" + x + "]==]" for x in args)


def real_ctest(a, tmp):
    good = quoted([sys.executable, "-c", "print('fine')"])
    cannot = quoted([sys.executable, "-c",
                     "import sys; print('SKIP: no frobnicator here'); sys.exit(77)"])
    body = textwrap.dedent(f"""\
        add_test(NAME good COMMAND {good})
        set_tests_properties(good PROPERTIES LABELS unit)
        add_test(NAME cannot COMMAND {cannot})
        set_tests_properties(cannot PROPERTIES LABELS interop SKIP_RETURN_CODE 77)
        """)
    bld = project(a, tmp, "real", body)
    env = {"BP_CTEST": a.ctest}
    res = os.path.join(tmp, "real-res")
    rc, out = summarize(a, res, env=env, cmd=("run", "host"))
    check(rc == 2, "run without '-- CTEST-ARGS' is a usage error", out)
    for flag, want in (("--no-ci", 0), ("--ci", 1)):
        shutil.rmtree(res, ignore_errors=True)
        e = dict(os.environ, **env)
        e.pop("CI", None)
        p = subprocess.run([sys.executable, a.summary, "--allowlist", os.devnull, flag, "run",
                            "host", res, "--expect-labels", "unit,interop", "--",
                            "--test-dir", bld], env=e, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        check(p.returncode == want, f"real ctest, one pass and one skip, {flag}: exit {want}",
              p.stdout)
        check("SKIP: no frobnicator here" in p.stdout, f"... {flag}: the skip's reason shown",
              p.stdout)
        rows = [ln.split() for ln in p.stdout.splitlines()]
        check(["host", "interop", "0", "0", "1"] in rows and
              ["host", "unit", "1", "0", "0"] in rows, f"... {flag}: counted per label",
              p.stdout)
        rc, out = summarize(a, res, flag, allowlist=os.devnull)
        check(rc == want, f"... {flag}: report over the kept results agrees", out)


def broken_pyzmq(a, tmp, cmd):
    bad = os.path.join(tmp, "badzmq")
    os.makedirs(bad)
    with open(os.path.join(bad, "zmq.py"), "w") as f:
        f.write('raise ImportError("deliberately broken pyzmq (tests/it_runner.py)")\n')
    body = textwrap.dedent(f"""\
        add_test(NAME it_interop COMMAND {quoted(cmd)})
        set_tests_properties(it_interop PROPERTIES LABELS interop TIMEOUT 120
                             SKIP_RETURN_CODE 77)
        """)
    bld = project(a, tmp, "interop", body)
    e = dict(os.environ, BP_CTEST=a.ctest, CI="true", PYTHONPATH=bad)
    res = os.path.join(tmp, "interop-res")
    p = subprocess.run([sys.executable, a.summary, "run", "host", res, "--",
                        "--test-dir", bld, "--output-on-failure"], env=e,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    check(p.returncode == 1, "it_interop with a broken pyzmq import, CI=true: exit 1", p.stdout)
    check("it_interop" in p.stdout and ("UNEXPECTED SKIP" in p.stdout or "FAILED" in p.stdout),
          "... reported as an unexpected skip or a failure", p.stdout)
    print(textwrap.indent("\n".join(p.stdout.splitlines()[-8:]), "    # "))


def main():
    argv = sys.argv[1:]
    cmd = []
    if "--" in argv:
        i = argv.index("--")
        argv, cmd = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser()
    ap.add_argument("--summary", required=True)
    ap.add_argument("--cmake", default="cmake")
    ap.add_argument("--ctest", default="ctest")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bp-runner.") as tmp:
        canned(a, tmp)
        real_ctest(a, tmp)
        if cmd:
            broken_pyzmq(a, tmp, cmd)
        else:
            print("# no interop command given: the broken-pyzmq case not run")
    print(f"runner: {len(FAILS)} failed")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
