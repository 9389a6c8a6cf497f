#!/usr/bin/env python3
"""Runs each binary's --version and --help (under the target's emulator)."""
import argparse, os, shlex, subprocess, sys

ap = argparse.ArgumentParser()
ap.add_argument("--bin", required=True)
ap.add_argument("--emulator", default="")
ap.add_argument("--target", default="")
a = ap.parse_args()
emu = shlex.split(a.emulator)
fail = 0
for tool in ("ventilator", "worker", "sink"):
    exe = os.path.join(a.bin, tool)
    r = subprocess.run(emu + [exe, "--version"], capture_output=True, text=True, timeout=120)
    out = r.stdout
    ok = (r.returncode == 0 and out.startswith(tool + " (boardpipe) ") and " (git " in out
          and "\nlibzmq 4." in out and ("target " + a.target) in out)
    print(f"{tool} --version rc={r.returncode}: {out.strip()!r}")
    if not ok:
        print(f"FAIL: {tool} --version", r.stderr)
        fail += 1
    r = subprocess.run(emu + [exe, "--help"], capture_output=True, text=True, timeout=120)
    if r.returncode != 0 or "Usage:" not in r.stdout:
        print(f"FAIL: {tool} --help rc={r.returncode}: {r.stdout!r} {r.stderr!r}")
        fail += 1
sys.exit(1 if fail else 0)
