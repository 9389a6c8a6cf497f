# shellcheck shell=bash disable=SC2034  # (SC2034: set here, used by the scripts)
# The harness of the simulated-fleet tests (fleet_test.sh,
# fleet_sudo_ansible_test.sh), sourced by them: results and skips, the
# cleanup trap, preconditions, the boards' network namespaces on a bridge,
# binfmt_misc for qemu-user, per-board sshd, host endpoints and the host
# roles' batches. The scripts keep their own test logic.
#
# Call order: fleet_init, the fleet_need_* preconditions, fleet_reap_stale,
# fleet_start (cleanup trap, $TMP, may the test make namespaces), then
# fleet_network, fleet_binfmt, fleet_ssh_client, fleet_sshd... The
# cleanup undoes all of it (namespaces, links, processes, binfmt entries,
# $TMP) on any exit; a script adds its own through the hooks
# fleet_cleanup_kill (before the boards' processes and a systemd board
# booted by fleet_nspawn_boot are killed),
# fleet_cleanup_remove (after the namespaces are gone) and
# fleet_cleanup_verify (prints "not ok - ..." and returns 1 when something
# of its own is left), defined by the script when needed.

# fleet_init NAME ID BUDGET [REPO_ROOT]: the run's state. NAME heads the
# summary line, ID (a prefix and $$) names all it creates, BUDGET is the
# default of BP_FLEET_BUDGET (seconds for every step, see deadline).
fleet_init() {
    FLEET_NAME=$1
    ID=$2
    BUDGET=${BP_FLEET_BUDGET:-$3}
    ROOT=${4:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
    BUILD=${BP_FLEET_BUILD_ROOT:-$ROOT/build}
    BPFLEET=$ROOT/board/bpfleet
    T0=$(date +%s)
    TMP=
    NS=()
    IPS=()
    BRIDGE=
    HOST_PIDS=()
    SSHD_PIDFILES=()
    BINFMT_REGISTERED=()
    BINFMT_MOUNTED=0
    BATCH_ROLE_ARGS=()
    BATCH_VENT_ARGS=() # the ventilator's only (e.g. --require)
    NSPAWN_PID=
    NSPAWN_MACHINE=
    PASSED=0
    FAILED=0
}

# ------------------------------------------------------------- results
# log TEXT: a line with the seconds since the start.
log() { printf '[%3ds] %s\n' "$(($(date +%s) - T0))" "$*"; }
# skip REASON: exit 77 ("cannot run here"), but only when nothing has
# failed yet: a failed check stays a failure (exit 1).
skip() {
    if [ "$FAILED" -gt 0 ]; then
        printf 'not ok - cannot go on (%s) after %d failed check(s)\n' "$*" "$FAILED"
        exit 1
    fi
    printf 'SKIP: %s\n' "$*"
    exit 77
}
# ok TEXT / bad TEXT: count and print a passed / failed check.
ok() { PASSED=$((PASSED + 1)); printf 'ok - %s\n' "$*"; }
bad() { FAILED=$((FAILED + 1)); printf 'not ok - %s\n' "$*"; }
# check DESCRIPTION COMMAND...: ok or bad by COMMAND's status; returns it.
check() {
    local d=$1
    shift
    if "$@"; then ok "$d"; else bad "$d"; return 1; fi
}
# fatal TEXT: a failed check that ends the run (exit 1).
fatal() {
    bad "$*"
    exit 1
}
# deadline WHAT: fatal when the run is over its BUDGET before WHAT. Every
# step is bounded by timeouts; this keeps their sum within the budget
# (CTest's TIMEOUT kills without a chance to clean up).
deadline() {
    [ $(($(date +%s) - T0)) -lt "$BUDGET" ] || fatal "over the ${BUDGET}s budget before: $*"
}
# sha_f FILE: its SHA-256, empty when it cannot be read.
sha_f() { sha256sum "$1" 2>/dev/null | cut -d' ' -f1; }

# ------------------------------------------------------------- cleanup
# fleet_cleanup: the EXIT trap (set by fleet_start). Kills the host roles
# and everything in the boards' namespaces (TERM, then KILL), removes the
# links, namespaces, bridge, binfmt_misc entries (and the mount it made)
# and $TMP (kept with BP_FLEET_KEEP=1); exits 1 when anything named $ID*
# is left or a check failed, whatever the status was; prints the summary.
# shellcheck disable=SC2317  # invoked by the EXIT trap
fleet_cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    local p ns e i
    for p in "${HOST_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    ! declare -F fleet_cleanup_kill >/dev/null || fleet_cleanup_kill
    # The systemd board: SIGTERM makes nspawn halt its systemd.
    if [ -n "$NSPAWN_PID" ]; then
        kill -TERM "$NSPAWN_PID" 2>/dev/null
        for _ in $(seq 1 50); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$NSPAWN_PID" 2>/dev/null
    fi
    # Everything still running inside the boards (sshd, sessions, workers,
    # supervisors): TERM, then KILL.
    for ns in "${NS[@]}"; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$p" 2>/dev/null; done
    done
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        local left=0
        for ns in "${NS[@]}"; do
            [ -n "$(ip netns pids "$ns" 2>/dev/null)" ] && left=1
        done
        [ "$left" = 0 ] && break
        sleep 0.3
    done
    for ns in "${NS[@]}"; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    done
    for p in "${HOST_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
    for i in "${!NS[@]}"; do ip link del "${ID}h$i" 2>/dev/null; done
    for ns in "${NS[@]}"; do ip netns del "$ns" 2>/dev/null; done
    [ -n "$BRIDGE" ] && ip link del "$BRIDGE" 2>/dev/null
    # veth ends in deleted namespaces go away asynchronously.
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        ip -o link show 2>/dev/null | grep -q ": $ID" || break
        sleep 0.3
    done
    ! declare -F fleet_cleanup_remove >/dev/null || fleet_cleanup_remove
    # nspawn cannot remove its propagation directory here ("we can't
    # allow that"): an empty directory per machine.
    [ -z "$NSPAWN_MACHINE" ] || rmdir "/run/systemd/nspawn/propagate/$NSPAWN_MACHINE" 2>/dev/null
    for e in "${BINFMT_REGISTERED[@]}"; do
        [ -e "/proc/sys/fs/binfmt_misc/$e" ] && echo -1 >"/proc/sys/fs/binfmt_misc/$e"
    done
    if [ "$BINFMT_MOUNTED" = 1 ]; then
        local others=0
        for e in /proc/sys/fs/binfmt_misc/*; do
            case ${e##*/} in register | status) ;; *) others=1 ;; esac
        done
        [ "$others" = 0 ] && umount /proc/sys/fs/binfmt_misc
    fi
    # /run/sshd (sshd's privilege separation directory, on tmpfs) stays:
    # another run's or the system's sshd may need it by now.
    if [ -n "$TMP" ]; then
        if [ "${BP_FLEET_KEEP:-0}" = 1 ]; then
            echo "kept $TMP"
        else
            rm -rf "$TMP"
        fi
    fi
    # Anything of ours left behind is a failure of the test itself.
    if ip -o link show 2>/dev/null | grep -q ": $ID"; then
        echo "not ok - cleanup: links named $ID* remain"
        rc=1
    fi
    if ip netns list 2>/dev/null | grep -q "^$ID"; then
        echo "not ok - cleanup: namespaces named $ID* remain"
        rc=1
    fi
    if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
        echo "not ok - cleanup: systemd-nspawn $NSPAWN_PID still runs"
        rc=1
    fi
    if declare -F fleet_cleanup_verify >/dev/null && ! fleet_cleanup_verify; then
        rc=1
    fi
    # A failed check fails the run whatever came after it: a later skip
    # (77) or a clean end (0) must not hide it.
    if [ "$FAILED" -gt 0 ] && { [ "$rc" = 0 ] || [ "$rc" = 77 ]; }; then
        rc=1
    fi
    printf '%s: %d passed, %d failed (%ss), exit %d%s\n' "$FLEET_NAME" "$PASSED" "$FAILED" \
        "$(($(date +%s) - T0))" "$rc" "$([ "$rc" = 77 ] && echo ' (skipped: cannot run here)')"
    exit "$rc"
}

# ------------------------------------------------------------- preconditions
# fleet_need_root WHY: skip unless root.
fleet_need_root() {
    [ "$(id -u)" = 0 ] || skip "needs root ($1)"
}
# fleet_need_cmds CMD...: skip unless each is on the PATH.
fleet_need_cmds() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null || skip "no '$c' on this machine"
    done
}
# fleet_need_sshd: skip without sshd and its sftp server (SFTP, for scp).
fleet_need_sshd() {
    [ -x /usr/sbin/sshd ] || skip "no /usr/sbin/sshd: apt-get install openssh-server"
    SFTP=/usr/lib/openssh/sftp-server
    [ -x "$SFTP" ] || skip "no $SFTP (openssh-sftp-server) for scp"
}
# fleet_need_qemu: skip without qemu-user-static; sets QEMU_AARCH64, QEMU_ARM.
fleet_need_qemu() {
    QEMU_AARCH64=$(command -v qemu-aarch64-static) || skip "no qemu-aarch64-static: apt-get install qemu-user-static"
    QEMU_ARM=$(command -v qemu-arm-static) || skip "no qemu-arm-static: apt-get install qemu-user-static"
}
# fleet_need_built PRESETS FILE...: skip unless each FILE (PRESET/bin/NAME)
# is built under $BUILD; PRESETS (for the message) are the presets to
# build. Sets VENT and SINK (the host roles, x86_64-musl).
fleet_need_built() {
    local presets=$1 f
    shift
    for f in "$@"; do
        [ -x "$BUILD/$f" ] || skip "$BUILD/$f is not built (cmake --preset P && cmake --build --preset P for $presets)"
    done
    VENT=$BUILD/x86_64-musl/bin/ventilator
    SINK=$BUILD/x86_64-musl/bin/sink
}

# fleet_reap_stale: removes the leftovers of runs that were killed (SIGKILL
# leaves no chance to clean up): namespaces, links and binfmt_misc entries
# named bpf<pid>... or bpa<pid>... of a pid that is gone.
fleet_reap_stale() {
    local n pid p
    for n in $(ip netns list 2>/dev/null | awk '{ print $1 }' | grep -E '^bp[fa][0-9]+b[0-9]+$'); do
        pid=${n#bp?}
        pid=${pid%b*}
        [ -d "/proc/$pid" ] && continue
        echo "removing stale namespace $n"
        for p in $(ip netns pids "$n" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
        ip netns del "$n" 2>/dev/null
    done
    for n in $(ip -o link show 2>/dev/null | awk -F': ' '{ print $2 }' | sed 's/@.*//' | grep -E '^bp[fa][0-9]+(br|h[0-9]+)$'); do
        pid=${n#bp?}
        pid=${pid%%[bh]*}
        [ -d "/proc/$pid" ] && continue
        echo "removing stale link $n"
        ip link del "$n" 2>/dev/null
    done
    for n in /proc/sys/fs/binfmt_misc/bp[fa][0-9]*-*; do
        [ -e "$n" ] || continue
        pid=${n##*/bp?}
        pid=${pid%%-*}
        [ -d "/proc/$pid" ] && continue
        echo "removing stale binfmt_misc entry ${n##*/}"
        echo -1 >"$n"
    done
}

# fleet_start: sets the cleanup trap, makes $TMP (mode 755: the boards'
# users read it), skips when no network namespace can be made here.
fleet_start() {
    local err
    trap fleet_cleanup EXIT
    trap 'exit 130' INT TERM
    TMP=$(mktemp -d "/tmp/$ID.XXXXXX")
    chmod 755 "$TMP"
    log "work dir $TMP"
    if ! err=$(ip netns add "${ID}probe" 2>&1); then
        skip "cannot create a network namespace here: $err"
    fi
    ip netns del "${ID}probe"
}

# ------------------------------------------------------------- network
# fleet_network NET16 N: a /24 of NET16.0.0/16 (e.g. 198.18) that nothing
# on this host uses yet, the host on a bridge at .1 (NET, HOST_IP,
# BRIDGE), and N boards: namespaces ${ID}b0.. (NS) with eth0 at .11.. (IPS).
fleet_network() {
    local net16=$1 nb=$2 start i n ns
    NET=
    start=$(($$ % 200 + 1))
    for i in $(seq 0 253); do
        n=$(((start + i) % 254 + 1))
        if ! ip -4 -o addr show | grep -q " ${net16//./\\.}\.$n\." &&
            [ -z "$(ip -4 route show "$net16.$n.0/24" 2>/dev/null)" ]; then
            NET=$net16.$n
            break
        fi
    done
    [ -n "$NET" ] || skip "no free /24 in $net16.0.0/16 on this host"
    HOST_IP=$NET.1
    BRIDGE=${ID}br
    ip link add "$BRIDGE" type bridge || fatal "ip link add bridge"
    ip addr add "$HOST_IP/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    for ((i = 0; i < nb; i++)); do
        ns=${ID}b$i
        ip netns add "$ns" || fatal "ip netns add $ns"
        NS+=("$ns")
        ip link add "${ID}h$i" type veth peer name "${ID}p$i" || fatal "veth"
        ip link set "${ID}p$i" netns "$ns"
        ip link set "${ID}h$i" master "$BRIDGE" up
        ip -n "$ns" link set lo up
        ip -n "$ns" link set "${ID}p$i" name eth0
        ip -n "$ns" addr add "$NET.$((11 + i))/24" dev eth0
        ip -n "$ns" link set eth0 up
        IPS+=("$NET.$((11 + i))")
    done
}

# ------------------------------------------------------------- binfmt_misc
# fleet_binfmt: aarch64 and 32-bit ARM executables run through qemu-user
# (QEMU_AARCH64, QEMU_ARM). Reuses an enabled registration for the same ELF
# magic that is not another test run's (e.g. Debian's qemu-user-static +
# binfmt-support) and never touches it; else registers ${ID}-ARCH with F
# (the interpreter opened now: works inside namespaces and containers).
# Another run's bp* entry may vanish under us: it is never reused.
fleet_binfmt() {
    # ELF headers of aarch64 and 32-bit little-endian ARM executables (as
    # in qemu's and Debian's registrations).
    local magic_aarch64='\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
    local magic_arm='\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x28\x00'
    local mask='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
    local arch magic interp hex reuse e entry
    if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null ||
            skip "cannot mount binfmt_misc"
        BINFMT_MOUNTED=1
    fi
    for arch in aarch64 arm; do
        magic=$magic_aarch64 interp=$QEMU_AARCH64
        [ $arch = arm ] && magic=$magic_arm interp=$QEMU_ARM
        hex=$(printf '%s' "$magic" | sed 's/\\x//g')
        reuse=
        for e in /proc/sys/fs/binfmt_misc/*; do
            case ${e##*/} in register | status | bpf[0-9]* | bpa[0-9]*) continue ;; esac
            if grep -qx enabled "$e" 2>/dev/null && grep -qx "magic $hex" "$e" 2>/dev/null; then
                reuse=${e##*/}
                break
            fi
        done
        if [ -n "$reuse" ]; then
            log "binfmt_misc: reusing the existing '$reuse' registration for $arch"
            continue
        fi
        entry=$ID-$arch
        printf ':%s:M::%s:%s:%s:F' "$entry" "$magic" "$mask" "$interp" \
            >/proc/sys/fs/binfmt_misc/register 2>/dev/null ||
            skip "cannot register $arch in binfmt_misc"
        BINFMT_REGISTERED+=("$entry")
        log "binfmt_misc: registered $entry -> $interp (F)"
    done
}

# ------------------------------------------------------------- ssh
# fleet_ssh_client [USER]: the client's key ($TMP/client_key, its public
# key also in $TMP/authorized_keys), an empty $TMP/known_hosts (fleet_sshd
# adds the boards) and $TMP/ssh_config (USER: the default login), strict
# host key checking, batch mode.
fleet_ssh_client() {
    ssh-keygen -q -t ed25519 -N '' -C "$ID-client" -f "$TMP/client_key" || fatal "ssh-keygen"
    cp "$TMP/client_key.pub" "$TMP/authorized_keys"
    : >"$TMP/known_hosts"
    {
        echo "Host *"
        [ -z "${1:-}" ] || echo "    User $1"
        cat <<EOF
    IdentityFile $TMP/client_key
    IdentitiesOnly yes
    UserKnownHostsFile $TMP/known_hosts
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    UpdateHostKeys no
    BatchMode yes
    LogLevel ERROR
EOF
    } >"$TMP/ssh_config"
}
# sshd_config BOARD-INDEX HOSTKEY AUTHKEYS PIDFILE [SETENV]: prints the
# config of a board's sshd (key logins only, root too, listening on the
# board's address, LogLevel VERBOSE: it logs each accepted login).
sshd_config() {
    cat <<EOF
# sshd of simulated board ${BOARDS[$1]:-$1} ($ID), in namespace ${NS[$1]}
ListenAddress ${IPS[$1]}:22
HostKey $2
PidFile $4
AuthorizedKeysFile $3
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
UseDNS no
PrintMotd no
X11Forwarding no
AllowTcpForwarding no
MaxStartups 64:30:128
Subsystem sftp $SFTP
LogLevel VERBOSE
${5:+SetEnv $5}
EOF
}
# fleet_known_host INDEX HOSTKEY.pub: the board's host key in known_hosts.
fleet_known_host() {
    printf '%s %s\n' "${IPS[$1]}" "$(cut -d' ' -f1,2 "$2")" >>"$TMP/known_hosts"
}
# fleet_sshd INDEX AUTHKEYS [SETENV]: an sshd for board INDEX in its
# namespace, from $TMP/sshd<INDEX>/ (host key, sshd_config, sshd.log,
# sshd.pid, also SSHD_PIDFILES[INDEX]); fatal when it does not start.
fleet_sshd() {
    local i=$1 d=$TMP/sshd$1
    mkdir -p "$d"
    ssh-keygen -q -t ed25519 -N '' -C "$ID-host$i" -f "$d/host_key" || fatal "ssh-keygen"
    sshd_config "$i" "$d/host_key" "$2" "$d/sshd.pid" "${3:-}" >"$d/sshd_config"
    [ -d /run/sshd ] || { mkdir -p /run/sshd && chmod 755 /run/sshd; }
    fleet_known_host "$i" "$d/host_key.pub"
    ip netns exec "${NS[$i]}" /usr/sbin/sshd -f "$d/sshd_config" -E "$d/sshd.log" ||
        fatal "sshd for ${BOARDS[$i]:-board $i} did not start: $(tail -n 3 "$d/sshd.log")"
    SSHD_PIDFILES[i]=$d/sshd.pid
}
# wait_ssh USER INDEX: until the board's sshd lets USER in (20 s).
wait_ssh() {
    local t_end=$(($(date +%s) + 20))
    while [ "$(date +%s)" -lt "$t_end" ]; do
        timeout 5 ssh -F "$TMP/ssh_config" -o ConnectTimeout=2 "$1@${IPS[$2]}" true </dev/null 2>/dev/null && return 0
        sleep 0.2
    done
    return 1
}

# ------------------------------------------------------------- systemd board
# fleet_nspawn_boot ROOT MACHINE NETNS [NSPAWN-ARGS...]: boots ROOT with
# systemd-nspawn -b as MACHINE, in network namespace NETNS (empty: the
# host's network), and waits until its systemd is running or degraded (30
# s). Sets NSPAWN_PID (stopped by the cleanup), C (the board's init: run
# commands there with nsenter -t "$C" -a) and NSPAWN_STATE (systemd's
# version and state); returns 1 with the reason in NSPAWN_WHY when it did
# not boot. Its log: $TMP/nspawn.log. (nsenter --net, not ip netns exec,
# which would remount /sys: nspawn would find no cgroup hierarchy.)
fleet_nspawn_boot() {
    local root=$1 st pre=()
    NSPAWN_MACHINE=$2
    [ -z "$3" ] || pre=(nsenter --net="/run/netns/$3")
    shift 3
    "${pre[@]}" systemd-nspawn -q -b -D "$root" --register=no --keep-unit -M "$NSPAWN_MACHINE" "$@" \
        >"$TMP/nspawn.log" 2>&1 </dev/null &
    NSPAWN_PID=$!
    for _ in $(seq 1 150); do
        C=$(pgrep -P "$NSPAWN_PID" | head -n 1)
        if [ -n "$C" ] && st=$(nsenter -t "$C" -a systemctl is-system-running 2>/dev/null) &&
            { [ "$st" = running ] || [ "$st" = degraded ]; }; then
            NSPAWN_STATE="$(nsenter -t "$C" -a systemctl --version | head -n 1), $st"
            return 0
        fi
        kill -0 "$NSPAWN_PID" 2>/dev/null || break
        sleep 0.2
    done
    NSPAWN_WHY="systemd-nspawn -b did not boot here: $(grep -v '^$' "$TMP/nspawn.log" | tail -n 2 | tr '\n' ' ')"
    return 1
}

# ------------------------------------------------------------- host roles
# fleet_endpoints: free TCP ports on the host's bridge address for the
# tasks, results and control endpoints (TASKS_EP, RESULTS_EP, CONTROL_EP).
fleet_endpoints() {
    local used p e
    used=$(ss -Htan 2>/dev/null | awk '{ n = split($4, a, ":"); print a[n] }' | sort -u)
    for e in TASKS_EP RESULTS_EP CONTROL_EP; do
        while :; do
            p=$((20000 + RANDOM % 40000))
            grep -qx "$p" <<<"$used" || break
        done
        used+=$'\n'$p
        printf -v "$e" '%s' "tcp://$HOST_IP:$p"
    done
    log "host endpoints: tasks $TASKS_EP results $RESULTS_EP control $CONTROL_EP"
}

# fleet_ok WHAT BPFLEET-ARGS...: runs `fleet` (the script's bpfleet with its
# inventory and options) within the budget; its output in OUT (shown,
# indented, without "work dir kept" lines), its status in FLEET_RC.
# FLEET_AS: the board user, for the log line.
fleet_ok() {
    local what=$1 rc=0
    shift
    deadline "bpfleet $*"
    log "bpfleet $* ($what${FLEET_AS:+, as $FLEET_AS})"
    OUT=$(fleet "$@" 2>&1) || rc=$?
    OUT=$(grep -v '^bpfleet: work dir kept: ' <<<"$OUT")
    printf '%s\n' "$OUT" | sed 's/^/    /'
    FLEET_RC=$rc
}

# fleet_broken_workers DIR PRESET...: DIR/PRESET/bin/worker, a worker that
# answers --version, then exits 1 (for upgrades that must roll back).
fleet_broken_workers() {
    local dir=$1 p
    shift
    for p in "$@"; do
        mkdir -p "$dir/$p/bin"
        # shellcheck disable=SC2016  # the script's own ${1:-}
        printf '#!/bin/sh\n[ "${1:-}" = --version ] && { echo "worker (boardpipe) 9.9.9"; exit 0; }\necho "deliberately broken worker" >&2\nexit 1\n' \
            >"$dir/$p/bin/worker"
        chmod 755 "$dir/$p/bin/worker"
    done
}

# The sink's --summary-json against what a batch should give: ARGS FILE N
# BOARDS [ABSENT] (comma-separated board names); prints the per-board
# counts, and what is wrong with exit 1.
SUMMARY_CHECK=$(
    cat <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
n = int(sys.argv[2]); boards = sys.argv[3].split(",")
absent = [b for b in (sys.argv[4] if len(sys.argv) > 4 else "").split(",") if b]
errs = []
for k, want in (("total", n), ("ok", n), ("failed", 0), ("missing", 0), ("duplicates", 0)):
    if s.get(k) != want:
        errs.append(f"{k}={s.get(k)} (want {want})")
w = s.get("workers", {})
for b in boards:
    if w.get(b, {}).get("ok", 0) <= 0:
        errs.append(f"board {b} did no work")
for b in absent:
    if b in w:
        errs.append(f"board {b} sent results: {w[b]}")
if sum(v.get("ok", 0) for v in w.values()) != n:
    errs.append("per-worker ok counts do not add up")
print(" ".join(f"{b}={w.get(b, {}).get('ok', 0)}" for b in boards), f"elapsed_s={s.get('elapsed_s')}")
if errs:
    print("; ".join(errs)); sys.exit(1)
PY
)
# fleet_batch_start NAME NWORKERS INPUT SINK_TIMEOUT LIMIT: the host's sink
# and ventilator (TASKS_EP, RESULTS_EP, CONTROL_EP; BATCH_ROLE_ARGS added
# to both, e.g. CURVE, BATCH_VENT_ARGS to the ventilator) in the background, killed after LIMIT (the sink) and
# LIMIT-10 seconds (the ventilator); their logs and results are
# $TMP/NAME.{sink.log,vent.log,out,json}; SINK_T and VENT_T are the pids
# of their timeout wrappers, BATCH_T1 when the ventilator started.
fleet_batch_start() {
    local name=$1 nw=$2 input=$3 stmo=$4 limit=$5
    deadline "$name"
    timeout "$limit" "$SINK" --bind "$RESULTS_EP" --control-bind "$CONTROL_EP" --once \
        --output "$TMP/$name.out" --timeout "$stmo" --summary-json "$TMP/$name.json" \
        "${BATCH_ROLE_ARGS[@]}" >"$TMP/$name.sink.log" 2>&1 &
    SINK_T=$!
    HOST_PIDS+=("$SINK_T")
    sleep 0.5
    BATCH_T1=$(date +%s.%N)
    # (no second copies of slow tasks unless asked for: "0 duplicates" is checked)
    BP_SPECULATE=${BP_SPECULATE:-off} \
    timeout $((limit - 10)) "$VENT" --bind "$TASKS_EP" --sink "$RESULTS_EP" --input "$input" \
        --wait-workers "$nw" --wait-timeout 30 \
        "${BATCH_ROLE_ARGS[@]}" "${BATCH_VENT_ARGS[@]}" >"$TMP/$name.vent.log" 2>&1 &
    VENT_T=$!
    HOST_PIDS+=("$VENT_T")
}
# fleet_batch_wait: waits for the batch's ventilator and sink; their exit
# statuses in VRC and SRC.
fleet_batch_wait() {
    VRC=0 SRC=0
    wait "$VENT_T" || VRC=$?
    wait "$SINK_T" || SRC=$?
}
# fleet_batch_results NAME N BOARDS [ABSENT]: checks that all N results came
# exactly once, every board in BOARDS did work and none in ABSENT, and that
# the output holds each of $TMP/NAME.tasks upper-cased (by the boards'
# --exec 'tr a-z A-Z') exactly once.
fleet_batch_results() {
    local name=$1 n=$2 boards=$3 absent=${4:-} res want got
    res=$(python3 -c "$SUMMARY_CHECK" "$TMP/$name.json" "$n" "$boards" "$absent" 2>&1)
    check "$name: all $n results exactly once, every board did work${absent:+, none from $absent} ($res)" \
        python3 -c "$SUMMARY_CHECK" "$TMP/$name.json" "$n" "$boards" "$absent"
    want=$(tr '[:lower:]' '[:upper:]' <"$TMP/$name.tasks" | sort | sha256sum)
    got=$(grep -o "TASK-[0-9]*-OF-${name^^}" "$TMP/$name.out" 2>/dev/null | sort | sha256sum)
    check "$name: output holds each upper-cased task exactly once" [ "$want" = "$got" ]
}
