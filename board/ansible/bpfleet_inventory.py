#!/usr/bin/env python3
"""Ansible dynamic inventory from bpfleet's inventory file.

    BPFLEET_INVENTORY=~/boards.txt ansible-playbook -i board/ansible/bpfleet_inventory.py ...

The inventory is read and checked by board/bpfleet itself (`bpfleet facts`),
so the role and bpfleet see the same boards, profiles, prefixes and flags.
Environment: BPFLEET_INVENTORY (the file; bpfleet's default otherwise),
BPFLEET_PROFILES, BPFLEET_SSH_CONFIG (passed to ssh as -F FILE), BPFLEET
(path of bpfleet; default: ../bpfleet beside this script).

Every board is in the group `boardpipe`, and in `boardpipe_PROFILE`
(`-` in a profile name becomes `_`). Host variables: ansible_host,
ansible_user, ansible_port; bp_name, bp_profile, bp_preset, bp_qemu_cpu,
bp_jobs, bp_prefix, bp_service (auto|systemd|supervise), bp_env (the
inventory's worker flags as KEY='value' lines), bp_sup (BPS_* lines of
bp-supervise: user=, log-max=, log-keep=), bp_unit (the systemd unit
`bpfleet unit NAME` prints, limits included).
"""
import json
import os
import subprocess
import sys


def facts():
    here = os.path.dirname(os.path.abspath(__file__))
    bpfleet = os.environ.get("BPFLEET") or os.path.join(here, "..", "bpfleet")
    cmd = [bpfleet]
    if os.environ.get("BPFLEET_INVENTORY"):
        cmd += ["-i", os.environ["BPFLEET_INVENTORY"]]
    cmd.append("facts")
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
    if p.returncode != 0:
        sys.stderr.write(p.stderr or f"{bpfleet} facts failed (status {p.returncode})\n")
        sys.exit(1)
    boards = {}
    for line in p.stdout.splitlines():
        name, key, value = line.split("\t", 2)
        b = boards.setdefault(name, {"bp_name": name, "bp_env": [], "bp_sup": [], "unit": []})
        if key in ("env", "sup"):
            b["bp_" + key].append(value)
        elif key == "unit":
            b["unit"].append(value)
        else:
            b[key] = value
    return boards


def hostvars(b):
    v = {
        "ansible_host": b["host"].strip("[]"),
        "bp_name": b["bp_name"],
        "bp_profile": b["profile"],
        "bp_preset": b["preset"],
        "bp_qemu_cpu": b["cpu"],
        "bp_jobs": b["jobs"],
        "bp_prefix": b["prefix"],
        "bp_service": b["service"],
        "bp_env": b["bp_env"],
        "bp_sup": b["bp_sup"],
        "bp_unit": "\n".join(b["unit"]) + "\n",
    }
    if b.get("user"):
        v["ansible_user"] = b["user"]
    if b.get("port"):
        v["ansible_port"] = int(b["port"])
    cfg = os.environ.get("BPFLEET_SSH_CONFIG")
    if cfg:
        v["ansible_ssh_common_args"] = "-F " + cfg
    return v


def main():
    boards = facts()
    if len(sys.argv) > 2 and sys.argv[1] == "--host":
        b = boards.get(sys.argv[2])
        print(json.dumps(hostvars(b) if b else {}))
        return
    # In the inventory's order: upgrade (serial: 1) goes board by board in it.
    groups = {"boardpipe": {"hosts": list(boards)}}
    for name, b in boards.items():
        g = "boardpipe_" + b["profile"].replace("-", "_")
        groups.setdefault(g, {"hosts": []})["hosts"].append(name)
    out = dict(groups)
    out["all"] = {"children": ["ungrouped"] + sorted(groups)}
    out["_meta"] = {"hostvars": {n: hostvars(b) for n, b in boards.items()}}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
