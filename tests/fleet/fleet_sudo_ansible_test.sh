#!/usr/bin/env bash
# Simulated fleet, part 2 (issue #11): two boards on a bridge, each in its
# own network namespace with its own sshd.
#   sysd    a systemd board: systemd-nspawn -b boots the host's own /usr
#           (read-only) with a private /etc copy, in the board's network
#           namespace; its sshd lets in root and "pi", a user with only the
#           sudo rules board/README.md documents (taken from the README).
#   sup     a plain namespace board (the host's files, bp-supervise), root.
# 1. bpfleet as pi@sysd (non-root, sudo): deploy, start, status, a batch,
#    logs, upgrade to a working and to a deliberately broken worker (the
#    real unit rolls back by itself), rollback, stop, undeploy; sudo denied
#    nothing, the unit's worker ran as a dynamic user.
# 2. The Ansible role (board/ansible/) on both boards, from the same
#    inventory (bpfleet_inventory.py): deploy (twice: nothing changes),
#    start, a batch, upgrade to a broken worker (rolled back, the rollout
#    stops), undeploy (which stops first); nothing left.
#
#   tests/fleet/fleet_sudo_ansible_test.sh [REPO_ROOT]
#
# Needs root. Exits 77 (skip) with the reason when namespaces, sshd, sudo,
# qemu, binfmt_misc, systemd-nspawn and ansible-playbook are all unusable
# or the binaries are missing; part 1 needs systemd-nspawn and sudo, part 2
# ansible-playbook: a part that cannot run says why and the other runs.
# Exits 1 when a check failed. Everything it makes is named bpa<pid>... and
# removed on exit, failure or not.
#   BP_FLEET_BUILD_ROOT=DIR   binaries from DIR/<preset>/bin (default: build/)
#   BP_FLEET_KEEP=1           keep the temp dir (logs, inventories)
set -uo pipefail

# shellcheck source-path=SCRIPTDIR source=fleet_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/fleet_lib.sh"
fleet_init fleet-sudo-ansible "bpa$$" 540 "${1:-}"
RAN=0

# The cleanup's addition (fleet_lib.sh): Ansible's ssh masters, before the
# container (which the cleanup stops) and the boards' namespaces.
# shellcheck disable=SC2317  # called by fleet_cleanup
fleet_cleanup_kill() {
    local p
    # Ansible's ssh masters (ControlPersist), by their socket directory.
    [ -z "$TMP" ] || for p in $(pgrep -f -- "$TMP/ansible-cp/" 2>/dev/null); do kill -TERM "$p" 2>/dev/null; done
}

# ------------------------------------------------------------- preconditions
fleet_need_root "network namespaces, binfmt_misc, sshd, systemd-nspawn"
fleet_need_cmds ip ssh ssh-keygen timeout python3 sha256sum nsenter pgrep
fleet_need_sshd
fleet_need_qemu
fleet_need_built "aarch64-musl, armv7-musl, x86_64-musl" \
    aarch64-musl/bin/worker armv7-musl/bin/worker x86_64-musl/bin/ventilator x86_64-musl/bin/sink
# What each part needs; a part that cannot run says why.
WHY1=
if ! command -v systemd-nspawn >/dev/null; then
    WHY1="no systemd-nspawn (apt-get install systemd-container)"
elif [ ! -x /usr/bin/sudo ]; then
    WHY1="no /usr/bin/sudo (apt-get install sudo): the board's sudo comes from the host's /usr"
elif [ ! -x /usr/bin/systemctl ] || [ ! -x /usr/lib/systemd/systemd ]; then
    WHY1="no systemd in /usr (apt-get install systemd): the container boots the host's /usr"
elif [ ! -e /sys/fs/cgroup/systemd ] && [ ! -e /sys/fs/cgroup/cgroup.controllers ]; then
    WHY1="no systemd cgroup hierarchy under /sys/fs/cgroup for a container's systemd"
fi
WHY2=
command -v ansible-playbook >/dev/null || WHY2="no ansible-playbook (apt-get install ansible-core)"
if [ -n "$WHY1" ] && [ -n "$WHY2" ]; then
    skip "part 1: $WHY1; part 2: $WHY2"
fi
fleet_reap_stale
fleet_start

# ------------------------------------------------------------- network
BOARDS=(sysd sup)
# The boards on a bridge, in a free /24 of 198.19.0.0/16.
fleet_network 198.19 2
log "bridge $BRIDGE $HOST_IP/24, boards ${BOARDS[*]} at ${IPS[*]}"
fleet_binfmt

# ------------------------------------------------------------- keys, ports
fleet_ssh_client ''  # no default user: each login names root or pi
fleet_endpoints

# ------------------------------------------------------------- board "sup"
mkdir -p "$TMP/sysroot/sup/etc/cron.d" "$TMP/boards/sup"
fleet_sshd 1 "$TMP/authorized_keys" "BPFLEET_SYSROOT=$TMP/sysroot/sup"
check "sshd of sup answers on ${IPS[1]}:22" wait_ssh root 1

# ------------------------------------------------------------- board "sysd"
# A root directory with the host's /usr (read-only, bound by nspawn) and
# a private copy of /etc without the host's secrets (no shadow, ssh host
# keys or TLS keys); the board's own sshd config, host key, users and the
# README's sudo rules for pi. systemd-nspawn runs in the board's network
# namespace (fleet_nspawn_boot).
SUDO_RULES=
if [ -z "$WHY1" ]; then
    R=$TMP/nsroot
    mkdir -p "$R"/{etc,usr,var/lib,var/log,var/tmp,opt,home/pi,root,tmp,run,dev,proc,sys,mnt}
    for l in bin lib lib32 lib64 sbin; do [ -e "/$l" ] && ln -s "usr/$l" "$R/$l"; done
    tar -C / --exclude=./shadow --exclude='./shadow-' --exclude=./gshadow --exclude='./gshadow-' \
        --exclude='./ssh/ssh_host_*' --exclude=./ssl/private --exclude='./sudoers.d/*' -cf - -C /etc . 2>/dev/null |
        tar -C "$R/etc" -xf - 2>/dev/null
    # nspawn checks os-release before it binds /usr in.
    rm -f "$R/etc/os-release" && cp /usr/lib/os-release "$R/etc/os-release"
    # Only sshd (and targets) start at boot, not the host's other services.
    find "$R/etc/systemd/system" -path '*.wants/*' ! -name 'ssh.service' ! -name '*.target' -exec rm -f {} + 2>/dev/null
    mkdir -p "$R/etc/systemd/system/multi-user.target.wants"
    ln -sf /usr/lib/systemd/system/ssh.service "$R/etc/systemd/system/multi-user.target.wants/ssh.service"
    grep -q '^pi:' "$R/etc/passwd" || echo "pi:x:4242:4242:board user:/home/pi:/bin/sh" >>"$R/etc/passwd"
    grep -q '^pi:' "$R/etc/group" || echo "pi:x:4242:" >>"$R/etc/group"
    awk -F: '{ print $1 ":*:19000:0:99999:7:::" }' "$R/etc/passwd" >"$R/etc/shadow"
    chmod 640 "$R/etc/shadow"
    chown 4242:4242 "$R/home/pi"
    # The board user owns PREFIX (README: "the user must own PREFIX").
    mkdir -p "$R/opt/boardpipe"
    chown 4242:4242 "$R/opt/boardpipe"
    ssh-keygen -q -t ed25519 -N '' -f "$R/etc/ssh/ssh_host_ed25519_key" || fatal "ssh-keygen"
    cp "$TMP/client_key.pub" "$R/etc/ssh/bp_authorized_keys"
    sshd_config 0 /etc/ssh/ssh_host_ed25519_key /etc/ssh/bp_authorized_keys /run/sshd.pid >"$R/etc/ssh/sshd_config"
    sed -i '/^LogLevel/a SyslogFacility AUTH' "$R/etc/ssh/sshd_config"
    fleet_known_host 0 "$R/etc/ssh/ssh_host_ed25519_key.pub"
    # The sudo rules exactly as board/README.md gives them (user pi,
    # PREFIX written out), checked by visudo, and sudo's own log.
    SUDO_RULES=$(awk '/^pi ALL=\(root\) NOPASSWD: /,/[^\\]$/' "$ROOT/board/README.md" | sed 's|PREFIX|/opt/boardpipe|g')
    if [ -z "$SUDO_RULES" ]; then
        bad "board/README.md has no 'pi ALL=(root) NOPASSWD: ...' sudo rules"
    else
        {
            printf '# board/README.md sudo rules for a non-root bpfleet user (%s)\n' "$ID"
            printf 'Defaults:pi logfile=/var/log/sudo-bp.log, !syslog\n'
            printf '%s\n' "$SUDO_RULES"
        } >"$R/etc/sudoers.d/boardpipe"
        chmod 440 "$R/etc/sudoers.d/boardpipe"
        check "the README's sudo rules pass visudo -c" visudo -c -q -f "$R/etc/sudoers.d/boardpipe"
    fi
    log "boot the systemd board (systemd-nspawn -b, host /usr read-only, private /etc)"
    if fleet_nspawn_boot "$R" "${ID}sysd" "${NS[0]}" --bind-ro=/usr; then
        ok "systemd-nspawn -b booted the systemd board ($NSPAWN_STATE)"
    else
        WHY1=$NSPAWN_WHY
        log "part 1 cannot run: $WHY1"
    fi
    if [ -z "$WHY1" ]; then
        in_sysd() { nsenter -t "$C" -a "$@"; }
        check "sshd of the systemd board lets pi in" wait_ssh pi 0
        check "sshd of the systemd board lets root in" wait_ssh root 0
    fi
fi

# ------------------------------------------------------------- batches
# run_batch NAME N BOARDS: the host's sink and ventilator, N tasks that the
# boards upper-case (--exec 'tr a-z A-Z'); every board in BOARDS did work.
run_batch() {
    local name=$1 n=$2 boards=$3
    seq -f "task-%04g-of-$name" 1 "$n" >"$TMP/$name.tasks"
    fleet_batch_start "$name" "$(tr ',' '\n' <<<"$boards" | wc -l)" "$TMP/$name.tasks" 30 90
    fleet_batch_wait
    check "$name: ventilator and sink exit 0 ($VRC, $SRC)" [ "$VRC" = 0 -a "$SRC" = 0 ]
    fleet_batch_results "$name" "$n" "$boards"
}

# A broken worker (answers --version, then exits 1) for the rollbacks.
fleet_broken_workers "$TMP/broken" aarch64-musl armv7-musl
# A working new worker: the same binary under another SHA-256 (a byte
# appended to the ELF file does not change what it runs).
mkdir -p "$TMP/good/aarch64-musl/bin"
cp "$BUILD/aarch64-musl/bin/worker" "$TMP/good/aarch64-musl/bin/worker"
printf '\n' >>"$TMP/good/aarch64-musl/bin/worker"

# ------------------------------------------------------------- part 1
if [ -n "$WHY1" ]; then
    log "part 1 (non-root bpfleet user with sudo on a systemd board) not run: $WHY1"
else
    RAN=1
    RP=$R/opt/boardpipe
    INV=$TMP/inventory-pi
    printf "sysd  pi@%s:22  pi4-64  /opt/boardpipe  service=systemd --exec 'tr a-z A-Z'\n" "${IPS[0]}" >"$INV"
    fleet() {
        timeout 120 "$BPFLEET" -i "$INV" -F "$TMP/ssh_config" --build-root "$BUILD" \
            --tasks "$TASKS_EP" --results "$RESULTS_EP" --control "$CONTROL_EP" \
            --timeout 60 --connect-timeout 5 "$@"
    }
    FLEET_AS=pi
    accepted() { grep -c 'Accepted publickey for pi' <<<"$(in_sysd journalctl -q -u ssh.service --no-pager 2>/dev/null)"; }
    hs=$(accepted)
    fleet_ok deploy deploy
    check "deploy as pi (sudo): exit 0, deployed, systemd, verified" \
        [ "$FLEET_RC" = 0 -a "$(grep -c '^sysd .*OK *deployed.*verified.*systemd' <<<"$OUT")" = 1 ]
    check "deploy: one ssh connection ($(($(accepted) - hs)))" [ "$(($(accepted) - hs))" = 1 ]
    check "deploy: the unit is in the board's /etc/systemd/system, root's, enabled" \
        [ "$(stat -c %U "$R/etc/systemd/system/boardpipe-worker.service" 2>/dev/null)" = root -a \
        "$(in_sysd systemctl is-enabled boardpipe-worker.service 2>/dev/null)" = enabled ]
    check "deploy: the worker and its env file are pi's" \
        [ "$(stat -c %u "$RP/bin/worker" 2>/dev/null) $(stat -c %u "$RP/etc/worker.env" 2>/dev/null)" = "4242 4242" ]
    fleet_ok start start
    check "start (sudo systemctl start): exit 0, running" [ "$FLEET_RC" = 0 -a "$(grep -c '^sysd .*OK *running (pid' <<<"$OUT")" = 1 ]
    fleet_ok status status
    check "status: reachable, running, service=systemd" grep -q '^sysd .*reachable=yes .*running=yes.*service=systemd' <<<"$OUT"
    pid=$(in_sysd systemctl show -p MainPID --value boardpipe-worker.service)
    uid=$(in_sysd cat "/proc/$pid/status" 2>/dev/null | awk '/^Uid:/ { print $2 }')
    user=$(in_sysd systemctl show -p User --value boardpipe-worker.service)
    check "the unit's worker (pid $pid) runs as its dynamic user $user (uid $uid), neither root nor pi" \
        [ -n "$uid" -a "$uid" != 0 -a "$uid" != 4242 ]
    check "the unit's limits are the pi4-64 profile's (MemoryMax 768M, TasksMax 256)" \
        [ "$(in_sysd systemctl show -p MemoryMax -p TasksMax --value boardpipe-worker.service | tr '\n' ' ')" = "805306368 256 " ]
    run_batch batch1 200 sysd
    fleet_ok logs logs -n 5
    check "logs (journalctl): exit 0" [ "$FLEET_RC" = 0 -a "$(grep -c '^  | ' <<<"$OUT")" -ge 1 ]

    orig=$(sha_f "$RP/bin/worker")
    fleet_ok up-good upgrade --build-root "$TMP/good"
    check "upgrade to a new working worker: exit 0, restarted and back" \
        [ "$FLEET_RC" = 0 -a "$(grep -c 'restarted, worker back' <<<"$OUT")" = 1 ]
    check "upgrade: the new binary runs, the previous one kept in .bpfleet-prev" \
        [ "$(sha_f "$RP/bin/worker")" = "$(sha_f "$TMP/good/aarch64-musl/bin/worker")" -a "$(sha_f "$RP/.bpfleet-prev/worker")" = "$orig" ]
    fleet_ok rollback rollback
    check "rollback (sudo cp/mv of the kept unit): exit 0, running the previous binary" \
        [ "$FLEET_RC" = 0 -a "$(grep -c '^sysd .*OK .*rolled back to version .*running (pid' <<<"$OUT")" = 1 -a "$(sha_f "$RP/bin/worker")" = "$orig" ]
    fleet_ok up-broken upgrade --build-root "$TMP/broken" --health-timeout 5
    check "upgrade to a broken worker: exit 1, the real unit ROLLED BACK by the board" \
        [ "$FLEET_RC" = 1 -a "$(grep -c '^sysd .*FAIL *ROLLED BACK: new worker not healthy within 5s.*rolled back to the previous version' <<<"$OUT")" = 1 ]
    check "after the rollback: the previous binary, the unit active" \
        [ "$(sha_f "$RP/bin/worker")" = "$orig" -a "$(in_sysd systemctl is-active boardpipe-worker.service)" = active ]
    fleet_ok stop stop
    check "stop (sudo systemctl stop): exit 0, the unit inactive" \
        [ "$FLEET_RC" = 0 -a "$(in_sysd systemctl is-active boardpipe-worker.service)" = inactive ]
    fleet_ok undeploy undeploy
    check "undeploy: exit 0, the unit gone (sudo rm), nothing left in PREFIX" \
        [ "$FLEET_RC" = 0 -a ! -e "$R/etc/systemd/system/boardpipe-worker.service" -a -z "$(find "$RP" -mindepth 1)" ]
    check "undeploy: systemd no longer knows the unit" \
        [ "$(in_sysd systemctl show -p LoadState --value boardpipe-worker.service)" = not-found ]
    n_sudo=$(grep -c 'COMMAND=' "$R/var/log/sudo-bp.log" 2>/dev/null)
    denied=$(grep -E 'command not allowed|NOT in sudoers|password is required' "$R/var/log/sudo-bp.log" 2>/dev/null | head -n 3)
    check "sudo ran $n_sudo commands for pi, all within the README's rules${denied:+ (denied: $denied)}" \
        [ "$n_sudo" -gt 5 -a -z "$denied" ]
fi

# ------------------------------------------------------------- part 2
if [ -n "$WHY2" ]; then
    log "part 2 (Ansible role) not run: $WHY2"
else
    RAN=1
    AINV=$TMP/inventory-ansible
    AB=()
    if [ -z "$WHY1" ]; then
        # root on the systemd board: the role's systemd path, the real unit.
        printf "sysd  root@%s:22  pi4-64  /opt/boardpipe  service=systemd --exec 'tr a-z A-Z'\n" "${IPS[0]}" >"$AINV"
        AB+=(sysd)
    fi
    printf "sup  root@%s:22  pi2  %s  service=supervise user=nobody --exec 'tr a-z A-Z'\n" \
        "${IPS[1]}" "$TMP/boards/sup/opt/boardpipe" >>"$AINV"
    AB+=(sup)
    SP=$TMP/boards/sup/opt/boardpipe
    export ANSIBLE_HOST_KEY_CHECKING=True ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=0 \
        ANSIBLE_LOCAL_TEMP=$TMP/ansible-local ANSIBLE_SSH_CONTROL_PATH_DIR=$TMP/ansible-cp \
        ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3 ANSIBLE_PIPELINING=1 ANSIBLE_FORKS=4 \
        ANSIBLE_REMOTE_TMP=$TMP/ansible-remote
    # The role's run: the board's playbook, the inventory through bpfleet.
    play() {
        local what=$1 rc=0
        shift
        deadline "ansible $what"
        log "ansible-playbook boardpipe.yml -e boardpipe_action=$what $*"
        OUT=$(BPFLEET_INVENTORY=$AINV BPFLEET_SSH_CONFIG=$TMP/ssh_config timeout 150 ansible-playbook \
            -i "$ROOT/board/ansible/bpfleet_inventory.py" "$ROOT/board/ansible/boardpipe.yml" \
            -e boardpipe_action="$what" -e boardpipe_tasks="$TASKS_EP" -e boardpipe_results="$RESULTS_EP" \
            -e boardpipe_build_root="$BUILD" "$@" 2>&1) || rc=$?
        printf '%s\n' "$OUT" | grep -E '^(PLAY RECAP|fatal|failed|ERROR|.*: ok=)|"msg"' | sed 's/^/    /'
        PLAY_RC=$rc
    }
    # play_ok: the playbook succeeded, every board failed=0 unreachable=0.
    # shellcheck disable=SC2317  # called through check
    play_ok() {
        local b
        [ "$PLAY_RC" = 0 ] || return 1
        for b in "${AB[@]}"; do
            grep -Eq "^$b +: ok=[0-9]+ +changed=[0-9]+ +unreachable=0 +failed=0" <<<"$OUT" || return 1
        done
    }
    # shellcheck disable=SC2317  # called through check
    sup_deployed() {
        [ "$(sha_f "$SP/bin/worker")" = "$(sha_f "$BUILD/armv7-musl/bin/worker")" ] && [ -x "$SP/bin/bp-supervise" ] &&
            grep -qx "BPS_USER='nobody'" "$SP/etc/worker.env" && grep -qx 'service supervise' "$SP/.bpfleet-manifest" &&
            grep -q '^@reboot root sh ' "$TMP/sysroot/sup/etc/cron.d/"boardpipe-worker*
    }
    # shellcheck disable=SC2317  # called through check
    sysd_deployed() {
        [ "$(in_sysd systemctl is-enabled boardpipe-worker.service 2>/dev/null)" = enabled ] &&
            cmp -s "$R/etc/systemd/system/boardpipe-worker.service" <("$BPFLEET" -i "$AINV" unit sysd)
    }
    # shellcheck disable=SC2317  # called through check
    unchanged() { play_ok && [ "$(grep -cE ': ok=[0-9]+ +changed=0 ' <<<"$OUT")" = "${#AB[@]}" ]; }
    check "bpfleet_inventory.py lists the boards from bpfleet's inventory" \
        [ "$(BPFLEET_INVENTORY=$AINV "$ROOT/board/ansible/bpfleet_inventory.py" --list |
            python3 -c 'import json,sys; d=json.load(sys.stdin); print(" ".join(sorted(d["boardpipe"]["hosts"])), d["_meta"]["hostvars"]["sup"]["bp_preset"])')" = \
        "$(printf '%s\n' "${AB[@]}" | sort | tr '\n' ' ')armv7-musl" ]
    play deploy
    check "role deploy: every board ok" play_ok
    check "role deploy: sup has its armv7 worker, env (BPS_USER nobody), bp-supervise, a bpfleet manifest, a boot hook" sup_deployed
    [ -n "$WHY1" ] || check "role deploy: sysd has the unit bpfleet renders, enabled" sysd_deployed
    play deploy
    check "role deploy twice: ok, nothing changed" unchanged
    play start
    check "role start: every board ok" play_ok
    # bpfleet reads what the role installed (same layout).
    OUT=$(timeout 60 "$BPFLEET" -i "$AINV" -F "$TMP/ssh_config" status 2>&1)
    printf '%s\n' "$OUT" | sed 's/^/    /'
    check "bpfleet status on the role's boards: all running" \
        [ "$(grep -c 'reachable=yes .*running=yes' <<<"$OUT")" = "${#AB[@]}" ]
    run_batch batch2 200 "$(IFS=,; echo "${AB[*]}")"
    sorig=$(sha_f "$SP/bin/worker")
    play upgrade -e boardpipe_build_root="$TMP/broken" -e boardpipe_health_timeout=5
    check "role upgrade to a broken worker: fails with ROLLED BACK, the rollout stops" \
        [ "$PLAY_RC" != 0 -a "$(grep -c 'ROLLED BACK' <<<"$OUT")" -ge 1 ]
    if [ -z "$WHY1" ]; then
        check "after the role's rollback: sysd runs its previous worker (real unit active)" \
            [ "$(sha_f "$R/opt/boardpipe/bin/worker")" = "$(sha_f "$BUILD/aarch64-musl/bin/worker")" -a "$(in_sysd systemctl is-active boardpipe-worker.service)" = active ]
        check "the rollout stopped at sysd: sup untouched" [ "$(sha_f "$SP/bin/worker")" = "$sorig" ]
    else
        check "after the role's rollback: sup runs its previous worker" [ "$(sha_f "$SP/bin/worker")" = "$sorig" ]
    fi
    play undeploy
    check "role undeploy (stops first): every board ok" play_ok
    # (sshd's own session processes for Ansible's still open connection stay)
    left=0
    for p in $(ip netns pids "${NS[1]}"); do
        [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = /usr/sbin/sshd ] || { left=1; ps -o pid=,args= -p "$p"; }
    done
    check "role undeploy: nothing but sshd left running on sup" [ $left = 0 ]
    check "role undeploy: nothing left on sup, its boot hook gone" \
        [ -z "$(find "$TMP/boards/sup" -mindepth 1)" -a -z "$(find "$TMP/sysroot/sup" -type f)" ]
    if [ -z "$WHY1" ]; then
        check "role undeploy: sysd has no unit and nothing in PREFIX" \
            [ ! -e "$R/etc/systemd/system/boardpipe-worker.service" -a -z "$(find "$R/opt/boardpipe" -mindepth 1)" ]
    fi
fi

[ "$RAN" = 1 ] || skip "part 1: $WHY1; part 2: $WHY2"
exit 0
