#!/usr/bin/env bash
# The amd64 .deb on a real systemd, end to end (issue #23): a board booted
# with systemd-nspawn -b (as the fleet suite's, tests/fleet/): the host's
# /usr under an overlay (so dpkg can write to it), a private /etc and a copy
# of the host's dpkg database; it shares the host's network, so the worker
# reaches the host's ventilator and sink on 127.0.0.1.
#  1. dpkg -i: nothing enabled or started, the man page found by man;
#  2. BP_TASKS/BP_RESULTS/BP_ID in /etc/default/boardpipe-worker;
#  3. systemctl enable --now boardpipe-worker: a dynamic user, LimitNOFILE;
#  4. a batch from the host (x86_64-musl ventilator and sink);
#     The host units: boardpipe-sink.service and boardpipe-ventilator@
#     tasks.txt.service run a batch from /var/lib/boardpipe; both killed
#     (SIGKILL) mid-batch, systemd restarts them, they resume from their
#     journals and every result is written once;
#  5. dpkg -i of a newer .deb (the same one repacked as VERSION+bptest1)
#     while the worker runs: postinst's try-restart gives a new worker,
#     which runs a batch;
#  6. apt-get remove: prerm stopped the worker, the conffiles stay; purge:
#     nothing of the package left in /etc, /usr or systemd's state.
#  7. The .deb's unit and bpfleet's on one board: bpfleet's unit (same name,
#     /etc/systemd/system) wins, one worker runs, a batch goes to it alone;
#     removing and purging the package leaves bpfleet's worker running and
#     enabled.
#
#   tests/package/deb_nspawn_test.sh [REPO_ROOT]
#
# Needs root, systemd-nspawn, overlayfs and build/x86_64-musl (cpack makes
# the .deb: scripts/package). Exits 77 (skip) with the reason where it
# cannot run, 1 when a check failed. Everything it makes is named bpd<pid>
# and removed on exit.
#   BP_FLEET_KEEP=1   keep the temp dir (logs, the board's root)
set -uo pipefail

# shellcheck source-path=SCRIPTDIR source=../fleet/fleet_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../fleet/fleet_lib.sh"
fleet_init deb-nspawn "bpd$$" 300 "${1:-}"
C=

fleet_need_root "systemd-nspawn, dpkg in a container"
fleet_need_cmds systemd-nspawn nsenter dpkg-deb python3 sha256sum timeout ss cpack
{ [ -x /usr/bin/systemctl ] && [ -x /usr/lib/systemd/systemd ]; } ||
    skip "no systemd in /usr (apt-get install systemd): the board boots the host's /usr"
[ -e /sys/fs/cgroup/cgroup.controllers ] || [ -e /sys/fs/cgroup/systemd ] ||
    skip "no systemd cgroup hierarchy under /sys/fs/cgroup for a container's systemd"
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null ||
    skip "no overlayfs: the board's /usr is the host's under an overlay"
fleet_need_built x86_64-musl x86_64-musl/bin/worker x86_64-musl/bin/ventilator x86_64-musl/bin/sink
[ -f "$BUILD/x86_64-musl/CPackConfig.cmake" ] || skip "build/x86_64-musl has no CPack config"
fleet_start

# ------------------------------------------------------------- packages
deadline "packages"
log "scripts/package x86_64-musl"
if ! "$ROOT/scripts/package" -o "$TMP/dist" x86_64-musl >"$TMP/package.log" 2>&1; then
    cat "$TMP/package.log"
    fatal "scripts/package x86_64-musl"
fi
DEB=$(ls "$TMP"/dist/boardpipe_*_amd64.deb)
V1=$(dpkg-deb -f "$DEB" Version)
V2=$V1+bptest1
# The newer package: the same files under a higher version.
{ dpkg-deb -R "$DEB" "$TMP/deb2" && sed -i "s/^Version: .*/Version: $V2/" "$TMP/deb2/DEBIAN/control" &&
    dpkg-deb --root-owner-group -b "$TMP/deb2" "$TMP/boardpipe_${V2}_amd64.deb" >/dev/null; } ||
    fatal "repacking the .deb as $V2"
check "packages: $V1 and $V2 ($(du -k "$DEB" | cut -f1) KiB)" dpkg --compare-versions "$V2" gt "$V1"

# ------------------------------------------------------------- the board
# Its root: the host's /etc without secrets, only targets at boot, the
# host's dpkg database (it describes the /usr the board sees), empty apt
# state. /usr is the host's, read-only, under an overlay whose upper
# directory takes what dpkg writes.
R=$TMP/root
U=$TMP/usr-upper
mkdir -p "$R"/{etc,usr,var/lib/apt/lists/partial,var/cache/apt/archives/partial,var/log/apt,var/tmp,root,tmp,run,dev,proc,sys,mnt} "$U"
for l in bin lib lib32 lib64 sbin; do [ -e "/$l" ] && ln -s "usr/$l" "$R/$l"; done
tar -C /etc --exclude=./shadow --exclude='./shadow-' --exclude=./gshadow --exclude='./gshadow-' \
    --exclude='./ssh/ssh_host_*' --exclude=./ssl/private -cf - . 2>/dev/null | tar -C "$R/etc" -xf - 2>/dev/null
rm -f "$R/etc/os-release" && cp /usr/lib/os-release "$R/etc/os-release"
find "$R/etc/systemd/system" -path '*.wants/*' ! -name '*.target' -exec rm -f {} + 2>/dev/null
rm -f "$R"/etc/systemd/system/boardpipe-* # the host's own, if any
cp -a /var/lib/dpkg "$R/var/lib/dpkg"
[ -f /var/lib/apt/extended_states ] && cp /var/lib/apt/extended_states "$R/var/lib/apt/"
cp "$DEB" "$TMP/boardpipe_${V2}_amd64.deb" "$R/root/"

log "boot the board (systemd-nspawn -b, the host's /usr under an overlay, the host's network)"
fleet_nspawn_boot "$R" "$ID" '' --overlay="/usr:$U:/usr" || skip "$NSPAWN_WHY"
ok "the board booted ($NSPAWN_STATE)"
in_c() { timeout 120 nsenter -t "$C" -a env DEBIAN_FRONTEND=noninteractive "$@"; }
unit_prop() { in_c systemctl show -p "$1" --value "${2:-boardpipe-worker.service}"; }
# The boardpipe worker processes on the board: "pid exe" lines (pids of
# the board's pid namespace).
workers() {
    # shellcheck disable=SC2016 # the board's shell expands it
    in_c sh -c 'for p in $(pgrep -f "boardpipe-worker|/bin/worker"); do
        e=$(readlink /proc/$p/exe) || continue
        case $e in */boardpipe-worker* | */bin/worker) echo "$p $e" ;; esac
    done'
}
# What a package could leave behind: /etc, the overlay's /usr (its files:
# the directories dpkg wrote into stay in the upper layer), systemd's state
# and the host roles' data.
snapshot() {
    (cd "$R" && find etc var/lib/systemd var/lib/boardpipe var/lib/private 2>/dev/null | sort)
    (cd "$U" && find . \( ! -type d -o -name '*boardpipe*' \) | sed 's|^\.|usr|' | sort)
}
# A Pi has no policy-rc.d; a Docker-built machine's (exit 101: "start no
# service") would keep the maintainer scripts from stopping or restarting
# anything. Gone from the board's /usr only (the overlay).
if in_c test -e /usr/sbin/policy-rc.d; then
    log "removing the host's /usr/sbin/policy-rc.d from the board (overlay)"
    in_c rm -f /usr/sbin/policy-rc.d
fi
snapshot >"$TMP/before"

# ------------------------------------------------------------- the endpoints
HOST_IP=127.0.0.1
fleet_endpoints
run_batch() {
    local name=$1 n=$2 boards=$3 absent=${4:-}
    seq -f "task-%04g-of-$name" 1 "$n" >"$TMP/$name.tasks"
    fleet_batch_start "$name" 1 "$TMP/$name.tasks" 30 90
    fleet_batch_wait
    check "$name: ventilator and sink exit 0 ($VRC, $SRC)" [ "$VRC" = 0 -a "$SRC" = 0 ]
    fleet_batch_results "$name" "$n" "$boards" "$absent"
}

# ------------------------------------------------------------- 1. install
deadline "dpkg -i"
out=$(in_c dpkg -i "/root/$(basename "$DEB")" 2>&1)
check "dpkg -i $V1: exit 0" [ $? = 0 ] || printf '%s\n' "$out"
check "installed: no unit enabled or running (off by default)" \
    [ "$(in_c systemctl is-enabled boardpipe-worker.service boardpipe-sink.service | tr '\n' ' ')" = "disabled disabled " -a \
    "$(unit_prop ActiveState)" = inactive -a -z "$(workers)" ]
check "installed: the worker unit is the package's (/lib/systemd/system)" \
    [ "$(unit_prop FragmentPath)" = /lib/systemd/system/boardpipe-worker.service ]
check "installed: man finds boardpipe-worker(1)" \
    [ "$(in_c man -w boardpipe-worker 2>/dev/null)" = /usr/share/man/man1/boardpipe-worker.1.gz ]
check "installed: the host units are there, off (sink inactive, ventilator@ a template)" \
    [ "$(unit_prop ActiveState boardpipe-sink.service)" = inactive -a \
    "$(in_c systemctl is-enabled boardpipe-ventilator@.service 2>/dev/null)" = disabled ]

# ------------------------------------------------------------- 2.-4.
printf 'BP_TASKS=%s\nBP_RESULTS=%s\nBP_ID=debboard\n' "$TASKS_EP" "$RESULTS_EP" >>"$R/etc/default/boardpipe-worker"
out=$(in_c systemctl enable --now boardpipe-worker 2>&1)
check "systemctl enable --now boardpipe-worker: exit 0" [ $? = 0 ] || printf '%s\n' "$out"
check "the worker runs (active, one process)" [ "$(unit_prop ActiveState)" = active -a "$(workers | wc -l)" = 1 ]
pid1=$(unit_prop MainPID)
# shellcheck disable=SC2016 # awk's $2
uid=$(in_c awk '/^Uid:/ { print $2 }' "/proc/$pid1/status" 2>/dev/null)
check "the worker (pid $pid1) runs as a dynamic user (uid $uid), LimitNOFILE $(unit_prop LimitNOFILE)" \
    [ -n "$uid" -a "$uid" != 0 -a "$(unit_prop LimitNOFILE)" = 65536 ]
run_batch batch1 200 debboard

# ------------------------------------------------------------- host units
# The package's host roles on the board, on the endpoints the worker
# already uses: the sink (--resume, --once from its /etc/default file) and
# a ventilator instance for /var/lib/boardpipe/tasks.txt. The worker gets
# 20 ms tasks, and once results are coming in both host roles are killed
# (SIGKILL, as by a host crash): systemd restarts them, they resume from
# their journals and the batch ends with every result written once.
deadline "host units"
printf 'BP_SLEEP=20ms\n' >>"$R/etc/default/boardpipe-worker"
in_c systemctl restart boardpipe-worker.service
printf 'BP_OUTPUT=/var/lib/boardpipe/out.txt\nBP_ONCE=1\nBP_BIND=%s\n' "$RESULTS_EP" >>"$R/etc/default/boardpipe-sink"
printf 'BP_BIND=%s\nBP_SINK=%s\nBP_WAIT_WORKERS=1\n' "$TASKS_EP" "$RESULTS_EP" >>"$R/etc/default/boardpipe-ventilator"
in_c systemctl start boardpipe-sink.service
seq -f "task-%04g-of-units" 1 300 >"$TMP/units.tasks"
OUTF=$R/var/lib/private/boardpipe/out.txt
cp "$TMP/units.tasks" "$R/var/lib/private/boardpipe/tasks.txt" 2>/dev/null
VU=boardpipe-ventilator@tasks.txt.service
in_c systemctl start "$VU"
for _ in $(seq 1 300); do
    [ "$(wc -l <"$OUTF" 2>/dev/null || echo 0)" -ge 50 ] && break
    sleep 0.1
done
got=$(wc -l <"$OUTF" 2>/dev/null || echo 0)
in_c systemctl kill -s KILL "$VU" boardpipe-sink.service
log "killed the ventilator and the sink (SIGKILL) with $got of 300 results written"
for _ in $(seq 1 300); do
    [ "$(unit_prop ActiveState boardpipe-sink.service)" = inactive ] &&
        [ "$(unit_prop ActiveState "$VU")" = inactive ] && break
    sleep 0.2
done
vs=$(unit_prop Result "$VU")/$(unit_prop ExecMainStatus "$VU")
ss=$(unit_prop Result boardpipe-sink.service)/$(unit_prop ExecMainStatus boardpipe-sink.service)
# Each says so when it resumes from its journal.
resumed=$(in_c journalctl -q --no-pager -u boardpipe-sink.service -u "$VU" | grep -c ': resuming batch ')
check "host units: killed mid-batch ($got/300), the sink and $VU were restarted, resumed from their journals ($resumed) and ran the batch to the end ($ss, $vs)" \
    [ "$ss" = success/0 -a "$vs" = success/0 -a "$resumed" = 2 -a "$got" -lt 300 ] ||
    in_c journalctl -q --no-pager -n 30 -u boardpipe-sink.service -u "$VU"
want=$(tr '[:lower:]' '[:upper:]' <"$TMP/units.tasks" | sort | sha256sum)
got=$(sort "$OUTF" 2>/dev/null | sha256sum)
check "host units: /var/lib/boardpipe/out.txt has each of the 300 results once, the journals are gone" \
    [ "$want" = "$got" -a -z "$(find "$R/var/lib/private/boardpipe" -name '*journal')" ]
in_c systemctl stop boardpipe-sink.service "$VU"
# The results are the admin's data (purge leaves them): taken away here.
rm -rf "$R/var/lib/private/boardpipe" "$R/var/lib/boardpipe"
sed -i '/^BP_SLEEP=/d' "$R/etc/default/boardpipe-worker"
in_c systemctl restart boardpipe-worker.service
pid1=$(unit_prop MainPID)

# ------------------------------------------------------------- 5. upgrade
deadline "upgrade"
out=$(in_c dpkg -i "/root/boardpipe_${V2}_amd64.deb" 2>&1)
check "dpkg -i $V2 while the worker runs: exit 0" [ $? = 0 ] || printf '%s\n' "$out"
pid2=$(unit_prop MainPID)
check "upgrade: postinst restarted the worker (pid $pid1 -> $pid2), one process" \
    [ "$(unit_prop ActiveState)" = active -a "$pid2" != "$pid1" -a "$pid2" != 0 -a "$(workers | wc -l)" = 1 ]
# shellcheck disable=SC2016 # dpkg-query's format
check "upgrade: dpkg has $V2" [ "$(in_c dpkg-query -W -f='${Version}' boardpipe)" = "$V2" ]
run_batch batch2 100 debboard

# ------------------------------------------------------------- 6. remove, purge
deadline "remove"
out=$(in_c apt-get remove -y -q boardpipe 2>&1)
check "apt-get remove: exit 0" [ $? = 0 ] || printf '%s\n' "$out"
check "remove: prerm stopped the worker (no worker process left)" [ -z "$(workers)" ]
check "remove: the binaries are gone, the conffiles stay" \
    [ ! -e "$U/bin/boardpipe-worker" -a -f "$R/etc/default/boardpipe-worker" ]
out=$(in_c apt-get purge -y -q boardpipe 2>&1)
check "apt-get purge: exit 0" [ $? = 0 ] || printf '%s\n' "$out"
# shellcheck disable=SC2016 # dpkg-query's format
check "purge: dpkg no longer knows boardpipe" [ -z "$(in_c dpkg-query -W -f='${Status}' boardpipe 2>/dev/null)" ]
snapshot >"$TMP/after"
left=$(diff "$TMP/before" "$TMP/after" | sed -n 's/^> //p' | grep -v -e '^var/lib/systemd/\(timers\|catalog\|random-seed\|journal\)' -e '^etc/ld.so.cache$' || true)
check "purge: nothing of the package left in /etc, /usr, /var/lib/systemd${left:+ (left: $(echo "$left" | tr '\n' ' '))}" [ -z "$left" ]
check "purge: systemd no longer knows the worker unit" [ "$(unit_prop LoadState)" = not-found ]

# ------------------------------------------------------------- 7. both units
# bpfleet's unit for this board, as 'bpfleet deploy' installs it (rendered
# by bpfleet itself), its worker and env file in PREFIX, and the package
# installed again, configured and enabled as above.
deadline "both units"
P=/opt/boardpipe
mkdir -p "$R$P/bin" "$R$P/etc"
cp "$BUILD/x86_64-musl/bin/worker" "$R$P/bin/worker"
printf 'BP_TASKS=%s\nBP_RESULTS=%s\nBP_ID=fleetboard\n' "$TASKS_EP" "$RESULTS_EP" >"$R$P/etc/worker.env"
printf 'fleetboard root@127.0.0.1 x86_64 %s service=systemd\n' "$P" >"$TMP/inventory"
"$BPFLEET" -i "$TMP/inventory" unit fleetboard >"$TMP/bpfleet.service" 2>"$TMP/bpfleet-unit.log" ||
    fatal "bpfleet unit: $(cat "$TMP/bpfleet-unit.log")"
out=$(in_c dpkg -i "/root/$(basename "$DEB")" 2>&1)
check "dpkg -i $V1 again: exit 0" [ $? = 0 ] || printf '%s\n' "$out"
printf 'BP_TASKS=%s\nBP_RESULTS=%s\nBP_ID=debboard\n' "$TASKS_EP" "$RESULTS_EP" >>"$R/etc/default/boardpipe-worker"
in_c systemctl enable --now boardpipe-worker >/dev/null 2>&1
check "the package's worker runs" [ "$(unit_prop ActiveState)" = active -a "$(workers | wc -l)" = 1 ]
# What bpfleet deploy + start do on a systemd board.
install -m 644 "$TMP/bpfleet.service" "$R/etc/systemd/system/boardpipe-worker.service"
in_c systemctl daemon-reload
in_c systemctl enable boardpipe-worker.service >/dev/null 2>&1
in_c systemctl restart boardpipe-worker.service
check "both: bpfleet's unit in /etc/systemd/system wins (FragmentPath)" \
    [ "$(unit_prop FragmentPath)" = /etc/systemd/system/boardpipe-worker.service ]
w=$(workers)
check "both: exactly one worker runs, bpfleet's ($(echo "$w" | tr '\n' ' '))" \
    [ "$(echo "$w" | grep -c .)" = 1 -a "$(echo "$w" | cut -d' ' -f2)" = "$P/bin/worker" ]
run_batch batch3 100 fleetboard debboard
pid3=$(unit_prop MainPID)
out=$(in_c dpkg -i "/root/boardpipe_${V2}_amd64.deb" 2>&1)
check "both: upgrading the package ($V2) leaves bpfleet's worker alone (pid $pid3)" \
    [ "$(unit_prop MainPID)" = "$pid3" ] || printf '%s\n' "$out"
in_c apt-get remove -y -q boardpipe >/dev/null 2>&1
check "both: removing the package leaves bpfleet's worker running (pid $pid3)" \
    [ "$(unit_prop ActiveState)" = active -a "$(unit_prop MainPID)" = "$pid3" ]
in_c apt-get purge -y -q boardpipe >/dev/null 2>&1
check "both: after purge bpfleet's unit is still there and enabled" \
    [ -f "$R/etc/systemd/system/boardpipe-worker.service" -a \
    "$(in_c systemctl is-enabled boardpipe-worker.service 2>/dev/null)" = enabled ]
exit 0
