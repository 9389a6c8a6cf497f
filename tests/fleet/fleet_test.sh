#!/usr/bin/env bash
# Simulated fleet, end to end: three "boards" (network namespaces on a bridge,
# each with its own sshd), ARM workers deployed by board/bpfleet and run
# through qemu-user via binfmt_misc with the profile's CPU, a host ventilator
# and sink on the bridge address pushing 1000 --exec tasks through them, all
# with CURVE: each board's key pair is made on the board, its public key
# collected into the host's allowlist; one board is revoked at the end.
#
#   tests/fleet/fleet_test.sh [REPO_ROOT]
#
# Needs root. Exits 77 (skip) with the reason when namespaces, sshd, qemu or
# binfmt_misc are not usable or the musl binaries are not built ("cannot run
# here"); exits 1 when a check failed ("ran and failed"), also when a skip
# or an error comes after the failed check. Everything it creates is named
# bpf<pid>... and removed on exit, failure or not.
#   BP_FLEET_BUILD_ROOT=DIR   binaries from DIR/<preset>/bin (default: build/)
#   BP_FLEET_KEEP=1           keep the temp dir (logs, inventory) for a look
#   BP_FLEET_TASKS=N          size of the first batch (default 1000)
set -uo pipefail

# shellcheck source-path=SCRIPTDIR source=fleet_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/fleet_lib.sh"
fleet_init fleet "bpf$$" 540 "${1:-}"
NTASKS=${BP_FLEET_TASKS:-1000}

# ------------------------------------------------------------- preconditions
fleet_need_root "network namespaces, binfmt_misc, sshd"
fleet_need_cmds ip ssh scp ssh-keygen timeout python3 sha256sum xargs pgrep stat
fleet_need_sshd
fleet_need_qemu
fleet_need_built "aarch64-musl, armv7-musl, armv6-musl, x86_64-musl" \
    aarch64-musl/bin/worker armv7-musl/bin/worker armv6-musl/bin/worker \
    x86_64-musl/bin/ventilator x86_64-musl/bin/sink x86_64-musl/bin/worker
for f in aarch64-musl:"$QEMU_AARCH64" armv7-musl:"$QEMU_ARM" armv6-musl:"$QEMU_ARM" x86_64-musl:; do
    if ! ${f#*:} "$BUILD/${f%%:*}/bin/worker" --help 2>&1 | grep -q -- '--curve-server'; then
        skip "$BUILD/${f%%:*}/bin/worker has no --curve-server (built before CURVE: rebuild it)"
    fi
done
[ -x "$BPFLEET" ] || fatal "no $BPFLEET"
fleet_reap_stale
fleet_start

# ------------------------------------------------------------- network
BOARDS=(pi64 pi2 pizero)
PROFILES=(pi4-64 pi2 pi0)
CPUS=(cortex-a53 cortex-a7 arm1176)
QEMUS=("$QEMU_AARCH64" "$QEMU_ARM" "$QEMU_ARM")
# The boards on a bridge, in a free /24 of 198.18.0.0/16.
fleet_network 198.18 3
noroute=1
for ns in "${NS[@]}"; do
    [ -z "$(ip -n "$ns" route show default)" ] || noroute=0
    [ "$(ip -n "$ns" -4 route show | grep -vc "^$NET.0/24 ")" = 0 ] || noroute=0
done
check "boards have no route out of $NET.0/24" [ $noroute = 1 ]
log "bridge $BRIDGE $HOST_IP/24, boards ${IPS[*]} in ${NS[*]}"

# ------------------------------------------------------------- binfmt_misc
fleet_binfmt
for i in 0 1 2; do
    prof=${PROFILES[$i]}
    preset=$("$BPFLEET" --profiles "$ROOT/board/profiles.conf" profiles | awk -v p="$prof" '$1 == p { print $2 }')
    v=$(ip netns exec "${NS[$i]}" env QEMU_CPU="${CPUS[$i]}" "$BUILD/$preset/bin/worker" --version 2>&1 | head -n 1)
    check "$prof ($preset) worker runs in ${BOARDS[$i]}'s namespace with QEMU_CPU=${CPUS[$i]}: $v" \
        grep -q '^worker (boardpipe)' <<<"$v"
done

# ------------------------------------------------------------- sshd per board
fleet_ssh_client root
# Issue #11: pizero gets a busybox userland (Debian's busybox-static, its
# applets alone on the PATH of its ssh sessions), where the host has it.
BB_BOARD=
if [ -x /bin/busybox ]; then
    mkdir -p "$TMP/bb/bin"
    for a in $(/bin/busybox --list); do ln -s /bin/busybox "$TMP/bb/bin/$a"; done
    BB_BOARD=2
    log "pizero: busybox userland ($TMP/bb/bin only on its PATH)"
else
    log "no /bin/busybox (apt-get install busybox-static): pizero keeps the host's userland"
fi
for i in 0 1 2; do
    mkdir -p "$TMP/sysroot/${BOARDS[$i]}/etc/cron.d"
    # The board's / for bpfleet's boot hook (boards share the host's files).
    fleet_sshd "$i" "$TMP/authorized_keys" \
        "BPFLEET_SYSROOT=$TMP/sysroot/${BOARDS[$i]}$([ "$i" = "$BB_BOARD" ] && echo " PATH=$TMP/bb/bin")"
done
for i in 0 1 2; do
    check "sshd of ${BOARDS[$i]} answers on ${IPS[$i]}:22" wait_ssh root "$i" ||
        fatal "no ssh to ${BOARDS[$i]}: $(tail -n 5 "$TMP/sshd$i/sshd.log")"
done

# ------------------------------------------------------------- ports, inventory
fleet_endpoints

# ------------------------------------------------------------- CURVE keys
# The host's key pair, made on the host; the boards' pairs are made on the
# boards by bpfleet deploy, which collects their public keys in $ALLOW.
KEYS=$TMP/hostkeys
ALLOW=$TMP/allow
mkdir -p "$KEYS" "$ALLOW" "$TMP/bpwork"
"$BUILD/x86_64-musl/bin/worker" --keygen "$KEYS/host" >/dev/null || fatal "worker --keygen $KEYS/host"
pub_of() { sed -n 's/^ *public-key = "\(.*\)"$/\1/p' "$1" 2>/dev/null; }
# shellcheck disable=SC2317  # called through check
sec_of() { sed -n 's/^ *secret-key = "\(.*\)"$/\1/p' "$1" 2>/dev/null; }
curve_dir() { echo "$TMP/boards/$1/opt/boardpipe/etc/curve"; }
declare -A FP=()

INV=$TMP/inventory
{
    echo "# simulated fleet $ID (generated by tests/fleet/fleet_test.sh)"
    echo "# name  ssh-dest  profile  prefix  [service=...] [worker flags]"
    for i in 0 1 2; do
        mkdir -p "$TMP/boards/${BOARDS[$i]}"
        # Boards share the host's filesystem: each gets its own root. No
        # systemd in a namespace: the supervisor is asked for explicitly.
        # Tasks run as nobody (bp-supervise refuses root unless told);
        # pi2's log is rotated at 300 bytes.
        printf "%s  root@%s:22  %s  %s  service=supervise user=nobody%s --exec 'tr a-z A-Z'%s\n" \
            "${BOARDS[$i]}" "${IPS[$i]}" "${PROFILES[$i]}" \
            "$TMP/boards/${BOARDS[$i]}/opt/boardpipe" "$([ $i = 1 ] && echo ' log-max=300 log-keep=2')" \
            "$([ $i = 0 ] && echo ' --jobs 2')"
    done
} >"$INV"
# bpfleet keeps its work dirs in $TMP/bpwork: checked for leaked secrets.
fleet() {
    TMPDIR=$TMP/bpwork BPFLEET_KEEP_WORK=1 timeout 120 "$BPFLEET" -i "$INV" -F "$TMP/ssh_config" \
        --build-root "$BUILD" --tasks "$TASKS_EP" --results "$RESULTS_EP" --control "$CONTROL_EP" \
        --curve-host-key "$KEYS/host.key" --curve-allow "$ALLOW" \
        --timeout 60 --connect-timeout 5 "$@"
}
board_line() { grep -E "^$1 " <<<"$OUT" | head -n 1; }
# Issue #11: one ssh connection per board per command. sshd (LogLevel
# VERBOSE) logs every accepted login: count them around a command.
accepted() { grep -c 'Accepted publickey for root' "$TMP/sshd$1/sshd.log"; }
declare -a HS=()
handshakes_mark() {
    local i
    for i in 0 1 2; do HS[i]=$(accepted "$i"); done
}
# handshakes_one WHAT [BOARD-INDEXES]: exactly one login per board since
# handshakes_mark, and no ssh master of bpfleet left running.
handshakes_one() {
    local what=$1 i d s='' fail=0
    for i in ${2:-0 1 2}; do
        d=$(($(accepted "$i") - HS[i]))
        s+=" ${BOARDS[$i]}=$d"
        [ "$d" = 1 ] || fail=1
    done
    check "$what: one ssh handshake per board ($s )" [ $fail = 0 ]
    check "$what: no ssh master left running after bpfleet" \
        [ -z "$(pgrep -f "ControlMaster=yes .*-- root@$NET\.")" ]
}

# ------------------------------------------------------------- deploy
handshakes_mark
fleet_ok deploy deploy
check "deploy: exit 0" [ "$FLEET_RC" = 0 ]
# (probe, prepare, four copies, install: one connection)
handshakes_one "first deploy"
for i in 0 1 2; do
    b=${BOARDS[$i]}
    check "deploy: $b deployed with its SHA-256 verified" grep -q "OK *deployed.*verified" <<<"$(board_line "$b")"
    check "deploy: $b got a boot hook (@reboot in its /etc/cron.d)" \
        grep -qx "@reboot root sh $TMP/boards/$b/opt/boardpipe/bin/bp-supervise boot $TMP/boards/$b/opt/boardpipe" \
        "$TMP/sysroot/$b/etc/cron.d/boardpipe-worker$(tr -c 'A-Za-z0-9_-' '_' <<<"$TMP/boards/$b/opt/boardpipe" | sed 's/_$//')"
    root=$TMP/boards/$b/opt/boardpipe
    check "deploy: $b has bin/worker, bin/bp-supervise, etc/worker.env" \
        test -x "$root/bin/worker" -a -x "$root/bin/bp-supervise" -a -f "$root/etc/worker.env"
    check "deploy: $b's env file points at the host and sets QEMU_CPU=${CPUS[$i]}" \
        grep -q "^QEMU_CPU='${CPUS[$i]}'" "$root/etc/worker.env"
    grep -q "^BP_TASKS='$TASKS_EP'" "$root/etc/worker.env" || bad "BP_TASKS in $b env file"
done
preset_of() { "$BPFLEET" profiles | awk -v p="$1" '$1 == p { print $2 }'; }
for i in 0 1 2; do
    b=${BOARDS[$i]}
    want=$(sha256sum "$BUILD/$(preset_of "${PROFILES[$i]}")/bin/worker" | cut -d' ' -f1)
    got=$(sha256sum "$TMP/boards/$b/opt/boardpipe/bin/worker" | cut -d' ' -f1)
    check "deploy: $b got the ${PROFILES[$i]} binary" [ "$want" = "$got" ]
done

# key_on_board BOARD: the board's key pair was made there (secret mode 600,
# public key = the allowlist's BOARD.key), deploy printed its fingerprint,
# and the worker is pointed at its secret and the host's public key.
# shellcheck disable=SC2317  # called through check
key_on_board() {
    local b=$1 c bpub apub mode env
    c=$(curve_dir "$b")
    bpub=$(pub_of "$c/$b.key")
    apub=$(pub_of "$ALLOW/$b.key")
    mode=$(stat -c %a "$c/$b.key_secret" 2>/dev/null)
    env=$TMP/boards/$b/opt/boardpipe/etc/worker.env
    [ -n "$bpub" ] && [ "$bpub" = "$apub" ] && [ "$mode" = 600 ] &&
        [ -n "$(sec_of "$c/$b.key_secret")" ] && ! grep -q secret-key "$ALLOW/$b.key" &&
        grep -qF "CURVE on, key ${bpub:0:12}" <<<"$(board_line "$b")" &&
        cmp -s "$KEYS/host.key" "$c/host.key" &&
        grep -qx "BP_CURVE_SECRET='$c/$b.key_secret'" "$env" &&
        grep -qx "BP_CURVE_SERVER='$c/host.key'" "$env"
}
# secrets_stayed: no board's secret key is anywhere on the host side (the
# allowlist, bpfleet's kept work dirs, the test's files), and no secret-key
# text but the host's own.
# shellcheck disable=SC2317  # called through check
secrets_stayed() {
    local b s found
    for b in "${BOARDS[@]}"; do
        s=$(sec_of "$(curve_dir "$b")/$b.key_secret")
        [ -n "$s" ] || { echo "    no secret key on $b"; return 1; }
        # The search finds the secret where it is (not a search that cannot fail).
        grep -rqF -- "$s" "$TMP/boards/$b" || { echo "    grep cannot find $b's secret"; return 1; }
        found=$(grep -rlF -D skip --exclude-dir=boards -- "$s" "$TMP")
        [ -z "$found" ] || { echo "    $b's secret key found in: $found"; return 1; }
    done
    found=$(grep -rlI -D skip --exclude-dir=boards 'secret-key' "$TMP" | grep -vx "$KEYS/host.key_secret")
    [ -z "$found" ] || { echo "    secret-key text in: $found"; return 1; }
    [ -n "$(find "$TMP/bpwork" -mindepth 1 -maxdepth 1)" ] || { echo "    no bpfleet work dirs kept"; return 1; }
}
for b in "${BOARDS[@]}"; do
    check "deploy: $b made its key pair on the board (mode 600), its public key is in the allowlist" key_on_board "$b"
    FP[$b]=$(pub_of "$(curve_dir "$b")/$b.key" | cut -c1-12)
done
check "deploy: the allowlist holds the three boards' public keys and nothing else" \
    [ "$(find "$ALLOW" -mindepth 1 -printf '%f\n' | sort | tr '\n' ' ')" = "pi2.key pi64.key pizero.key " ]
check "deploy: no board's secret key left its board" secrets_stayed
check "deploy: says to SIGHUP the host roles for the new keys" \
    grep -q '^new keys in .*: kill -HUP the ventilator and the sink to load new keys$' <<<"$OUT"

before=$(find "$TMP/boards" "$ALLOW" -type f -exec sha256sum {} + | sort; find "$TMP/boards" "$ALLOW" -printf '%p %T@\n' | sort)
fleet_ok deploy2 deploy
after=$(find "$TMP/boards" "$ALLOW" -type f -exec sha256sum {} + | sort; find "$TMP/boards" "$ALLOW" -printf '%p %T@\n' | sort)
check "deploy twice: exit 0" [ "$FLEET_RC" = 0 ]
check "deploy twice: every board says unchanged" [ "$(grep -c 'OK *unchanged' <<<"$OUT")" = 3 ]
check "deploy twice: no file on the boards (keys included) or in the allowlist touched" [ "$before" = "$after" ]
same_fp=0
for b in "${BOARDS[@]}"; do
    grep -qF "CURVE on, key ${FP[$b]})" <<<"$(board_line "$b")" && same_fp=$((same_fp + 1))
done
check "deploy twice: same key fingerprints (${FP[*]}), no reminder to SIGHUP" \
    [ "$same_fp" = 3 -a "$(grep -c 'kill -HUP' <<<"$OUT")" = 0 ]

# ------------------------------------------------------------- start, batch 1
# The host roles with CURVE (the host's secret key, the allowlist).
BATCH_ROLE_ARGS=(--curve-secret "$KEYS/host.key_secret" --curve-allow "$ALLOW")
# start_batch NAME NWORKERS INPUT SINK_TIMEOUT: the host's sink and
# ventilator in the background (pids of their timeout wrappers: SINK_T, VENT_T).
start_batch() { fleet_batch_start "$1" "$2" "$3" "$4" 120; }
# end_batch NAME N BOARDS [ABSENT]: waits for both; every board in BOARDS
# (comma-separated) did work, ABSENT none.
end_batch() {
    local name=$1
    fleet_batch_wait
    log "$name: ventilator exit $VRC, sink exit $SRC, $(python3 -c "import time,sys; print(round(time.time()-float(sys.argv[1]),1))" "$BATCH_T1") s"
    check "$name: ventilator exit 0" [ "$VRC" = 0 ]
    check "$name: sink exit 0" [ "$SRC" = 0 ]
    sed 's/^/    sink: /' "$TMP/$name.sink.log" | tail -n 5
    fleet_batch_results "$@"
}
# run_batch NAME N BOARDS: sink + ventilator on the host, N tasks.
run_batch() {
    local name=$1 n=$2 boards=$3 nboards
    nboards=$(tr ',' '\n' <<<"$boards" | wc -l)
    seq -f "task-%04g-of-$name" 1 "$n" >"$TMP/$name.tasks"
    start_batch "$name" "$nboards" "$TMP/$name.tasks" 30
    end_batch "$name" "$n" "$boards"
    check "$name: the host roles refused no board" \
        [ "$(grep -c refused "$TMP/$name.vent.log" "$TMP/$name.sink.log" | awk -F: '{ s += $2 } END { print s }')" = 0 ]
}

fleet_ok start start
check "start: exit 0" [ "$FLEET_RC" = 0 ]
handshakes_mark
fleet_ok status status
check "status: exit 0 with all three running" [ "$FLEET_RC" = 0 ]
handshakes_one status
for i in 0 1 2; do
    b=${BOARDS[$i]}
    line=$(board_line "$b")
    check "status: $b reachable, version 0.1.0+REV, running" \
        grep -Eq 'reachable=yes version=[0-9.]+\+[0-9a-z-]+ running=yes' <<<"$line"
    pid=$(sed -n 's/.* pid=\([0-9]*\).*/\1/p' <<<"$line")
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null)
    cpu=$(tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | sed -n 's/^QEMU_CPU=//p')
    check "$b's worker (pid $pid) runs under $(basename "${QEMUS[$i]}") with QEMU_CPU=$cpu" \
        [ "$exe" = "${QEMUS[$i]}" -a "$cpu" = "${CPUS[$i]}" ]
    nsid=$(ip netns identify "$pid" 2>/dev/null)
    check "$b's worker runs inside its board namespace ($nsid)" [ "$nsid" = "${NS[$i]}" ]
    uid=$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
    check "$b's worker runs as nobody (uid $uid), not root" [ "$uid" = "$(id -u nobody)" ]
    if [ "$i" = "$BB_BOARD" ]; then
        sp=$(cat "$TMP/boards/$b/opt/boardpipe/run/supervise.pid" 2>/dev/null)
        check "$b's supervisor (pid $sp) is busybox sh ($(readlink "/proc/$sp/exe" 2>/dev/null))" \
            [ "$(readlink "/proc/$sp/exe" 2>/dev/null)" = "$(readlink -f /bin/busybox)" ]
    fi
done

log "batch 1: $NTASKS tasks"
run_batch batch1 "$NTASKS" "$(IFS=,; echo "${BOARDS[*]}")"

# The workers' status files count what they did.
sum=0
msum=0
for _ in $(seq 1 10); do
    fleet_ok status status
    sum=$(grep -o ' done=[0-9]*' <<<"$OUT" | cut -d= -f2 | awk '{ s += $1 } END { print s + 0 }')
    # Issue #11: the same from the workers' metrics files (BP_METRICS_FILE).
    msum=$(grep -o ' tasks_done=[0-9]*' <<<"$OUT" | cut -d= -f2 | awk '{ s += $1 } END { print s + 0 }')
    [ "$sum" = "$NTASKS" ] && [ "$msum" = "$NTASKS" ] && break
    sleep 1
done
check "status: tasks done over the boards add up to $NTASKS ($sum)" [ "$sum" = "$NTASKS" ]
check "status: tasks_done from the boards' metrics files adds up to $NTASKS ($msum)" [ "$msum" = "$NTASKS" ]
check "status: each board shows tasks_failed=0 and its last task's time from its metrics file" \
    [ "$(grep -cE ' tasks_failed=0 last_task=20[0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9:]+Z' <<<"$OUT")" = 3 ]
mf=0
for b in "${BOARDS[@]}"; do
    grep -qx "BP_METRICS_FILE='$TMP/boards/$b/opt/boardpipe/run/metrics.prom'" "$TMP/boards/$b/opt/boardpipe/etc/worker.env" &&
        [ -s "$TMP/boards/$b/opt/boardpipe/run/metrics.prom" ] && mf=$((mf + 1))
done
check "deploy: every board's worker writes PREFIX/run/metrics.prom (BP_METRICS_FILE)" [ "$mf" = 3 ]

# ------------------------------------------------------------- unreachable board
victim=1
log "stop sshd of ${BOARDS[$victim]}"
kill -TERM "$(cat "${SSHD_PIDFILES[$victim]}")"
for _ in $(seq 1 25); do
    timeout 5 ssh -F "$TMP/ssh_config" -o ConnectTimeout=2 "root@${IPS[$victim]}" true </dev/null 2>/dev/null || break
    sleep 0.2
done
t1=$(date +%s)
fleet_ok status status
check "status with ${BOARDS[$victim]} down: exit non-zero" [ "$FLEET_RC" != 0 ]
check "status: ${BOARDS[$victim]} reported unreachable" grep -q "reachable=no" <<<"$(board_line "${BOARDS[$victim]}")"
for i in 0 2; do
    check "status: ${BOARDS[$i]} still reachable and running" \
        grep -q "reachable=yes .*running=yes" <<<"$(board_line "${BOARDS[$i]}")"
done
check "status with a board down took < 20 s ($(($(date +%s) - t1)) s)" [ $(($(date +%s) - t1)) -lt 20 ]
fleet_ok deploy3 deploy
check "deploy with ${BOARDS[$victim]} down: exit non-zero" [ "$FLEET_RC" != 0 ]
n_unch=$(grep -c 'OK *unchanged' <<<"$OUT")
v_unr=$(grep -c "FAIL *unreachable" <<<"$(board_line "${BOARDS[$victim]}")")
check "deploy: ${BOARDS[$victim]} FAIL unreachable, the others unchanged" [ "$n_unch" = 2 -a "$v_unr" = 1 ]

log "batch 2 with ${BOARDS[$victim]}'s sshd down (its worker keeps working)"
run_batch batch2 300 "$(IFS=,; echo "${BOARDS[*]}")"

log "restart sshd of ${BOARDS[$victim]}"
ip netns exec "${NS[$victim]}" /usr/sbin/sshd -f "$TMP/sshd$victim/sshd_config" -E "$TMP/sshd$victim/sshd.log" ||
    fatal "sshd restart"

# ------------------------------------------------------------- labels, --require
# Each board's worker says what it is in its HELLO (issue #22); bpfleet
# status shows it from the worker's status file, and a batch that requires
# aarch64 runs on pi64 only.
fleet_ok status status
for i in 0 1 2; do
    line=$(board_line "${BOARDS[$i]}")
    check "status: ${BOARDS[$i]} shows its labels (arch, cores, mem, hostname)" \
        grep -Eq 'labels="([^"]*,)?arch=[a-z0-9_]+,([^"]*,)?cores=[0-9]+,mem=[0-9]+,([^"]*,)?hostname=' <<<"$line"
done
check "status: pi64's arch label is aarch64" grep -q 'labels="\([^"]*,\)\?arch=aarch64,' <<<"$(board_line pi64)"
log "batch 3: --require arch=aarch64 (pi64 only)"
BATCH_VENT_ARGS=(--require arch=aarch64)
seq -f "task-%04g-of-req" 1 60 >"$TMP/req.tasks"
start_batch req 1 "$TMP/req.tasks" 30
end_batch req 60 pi64 "pi2,pizero"
BATCH_VENT_ARGS=()

# ------------------------------------------------------------- files, no NFS
# README's real job (issue #20): a directory of files checksummed and
# gzipped on the three boards, which see none of it: the ventilator ships
# each file (--files), the boards' workers (started by hand in each board's
# namespace, under its qemu CPU, plain mode on their own ports) return the
# .gz (--return), the sink writes them under --output-dir.
files_job() {
    local d="$TMP/files" i n=24 vrc src wrc saved_t=$TASKS_EP saved_r=$RESULTS_EP saved_c=$CONTROL_EP
    local wp=()
    mkdir -p "$d/in/sub" "$d/gz"
    for i in $(seq 1 "$n"); do
        head -c $((i * 7919)) /dev/urandom >"$d/in/$([ $((i % 3)) = 0 ] && echo sub/)log $i.txt"
    done
    (cd "$d/in" && find . -type f | sort) >"$d/files.txt"
    fleet_endpoints
    timeout 300 "$SINK" --bind "$RESULTS_EP" --once --output "$d/sums.txt" --output-dir "$d/gz" \
        --summary-json "$d/summary.json" --timeout 120s >"$d/sink.log" 2>&1 &
    local st=$!
    HOST_PIDS+=("$st")
    for i in 0 1 2; do
        mkdir -p "$d/scratch$i"
        ip netns exec "${NS[$i]}" env QEMU_CPU="${CPUS[$i]}" timeout 280 \
            "$BUILD/$(preset_of "${PROFILES[$i]}")/bin/worker" --tasks "$TASKS_EP" \
            --results "$RESULTS_EP" --once --id "files-${BOARDS[$i]}" --scratch "$d/scratch$i" \
            --exec 'sha256sum {} && gzip -k {}' --return '{}.gz' >"$d/w$i.log" 2>&1 &
        wp+=("$!")
        HOST_PIDS+=("$!")
    done
    (cd "$d/in" && timeout 270 "$VENT" --bind "$TASKS_EP" --sink "$RESULTS_EP" --files \
        --wait-workers 3 --wait-timeout 60 --speculate off "$d/files.txt") >"$d/vent.log" 2>&1
    vrc=$?
    wait "$st"
    src=$?
    TASKS_EP=$saved_t RESULTS_EP=$saved_r CONTROL_EP=$saved_c
    check "files: ventilator and sink exit 0 ($vrc, $src)" [ "$vrc" = 0 -a "$src" = 0 ]
    sed 's/^/    sink: /' "$d/sink.log" | tail -n 3
    check "files: the checksums the boards printed are the files' ($(wc -l <"$d/sums.txt") lines)" \
        [ "$(sort "$d/sums.txt")" = "$(cd "$d/in" && find . -type f | sed 's|^\./||' | sort | xargs -d '\n' sha256sum | sort)" ]
    local good=0
    while IFS= read -r f; do
        f=${f#./}
        [ -f "$d/gz/$f.gz" ] && gzip -dc "$d/gz/$f.gz" | cmp -s - "$d/in/$f" && good=$((good + 1))
    done <"$d/files.txt"
    check "files: all $n .gz came back under --output-dir and unpack to their file ($good)" [ "$good" = "$n" ]
    check "files: nothing else under --output-dir ($(find "$d/gz" -type f | wc -l) files)" \
        [ "$(find "$d/gz" -type f | wc -l)" = "$n" -a ! -e "$d/gz/.bp-tmp" ]
    check "files: every board did some of it" \
        python3 -c "import json,sys; w=json.load(open(sys.argv[1]))['workers']; sys.exit(0 if len([k for k in w if k.startswith('files-') and w[k]['ok']]) == 3 else 1)" "$d/summary.json"
    for i in 0 1 2; do
        wrc=0
        wait "${wp[$i]}" || wrc=$?
        check "files: ${BOARDS[$i]}'s worker exited 0 ($wrc) and left no task directory" \
            [ "$wrc" = 0 -a -z "$(ls "$d/scratch$i")" ]
    done
}
log "files: README's real job without NFS, on the three boards"
files_job

# ------------------------------------------------------------- upgrade, logs
fleet_ok status status
pids_before=$(grep -o ' pid=[0-9]*' <<<"$OUT" | tr '\n' ' ')
log "bpfleet upgrade --force (rolling restart, one board at a time)"
handshakes_mark
fleet_ok upgrade upgrade --force
check "upgrade: exit 0" [ "$FLEET_RC" = 0 ]
handshakes_one "upgrade --force (probe, status, restart)"
check "upgrade: every board restarted and back" [ "$(grep -c 'restarted, worker back' <<<"$OUT")" = 3 ]
fleet_ok status status
pids_after=$(grep -o ' pid=[0-9]*' <<<"$OUT" | tr '\n' ' ')
check "upgrade: all running again with new pids ($pids_before-> $pids_after)" \
    [ "$FLEET_RC" = 0 -a "$pids_before" != "$pids_after" ]

fleet_ok logs logs -n 5
check "logs: exit 0 with each board's log" [ "$FLEET_RC" = 0 -a "$(grep -c '^  | ' <<<"$OUT")" -ge 3 ]

# ------------------------------------------------------------- revoke a board
# The host roles start with all three keys and every board connected; then
# one board is revoked, the host roles SIGHUPed and that board's worker
# restarted: its new connection is refused, and the batch (tasks only sent
# now, through a fifo) runs on the other two.
RB=${BOARDS[2]}
KEEP="${BOARDS[0]},${BOARDS[1]}"
# wait_log FILE TEXT SECONDS: until FILE has a line containing TEXT.
# shellcheck disable=SC2317  # called through check
wait_log() {
    local t_end=$(($(date +%s) + $3))
    while [ "$(date +%s)" -lt "$t_end" ]; do
        grep -qF -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.2
    done
    grep -qF -- "$2" "$1" 2>/dev/null
}
seq -f "task-%04g-of-batch3" 1 300 >"$TMP/batch3.tasks"
mkfifo "$TMP/batch3.fifo"
# The only writer of the fifo: sends the tasks once batch3.go exists.
(
    for _ in $(seq 1 900); do
        [ -e "$TMP/batch3.go" ] && break
        sleep 0.1
    done
    cat "$TMP/batch3.tasks"
) >"$TMP/batch3.fifo" &
HOST_PIDS+=("$!")
log "batch 3: host roles up with three keys, then revoke $RB"
start_batch batch3 3 "$TMP/batch3.fifo" 60
check "batch3: all three boards connected with CURVE" wait_log "$TMP/batch3.vent.log" "3 workers connected" 30
fleet_ok revoke revoke "$RB"
check "revoke $RB: exit 0, OK, its key ${FP[$RB]} gone from the allowlist" \
    [ "$FLEET_RC" = 0 -a ! -e "$ALLOW/$RB.key" -a "$(grep -cF "OK    revoked key ${FP[$RB]}" <<<"$OUT")" = 1 ]
check "revoke: says to SIGHUP the host roles" grep -q 'kill -HUP the ventilator and the sink' <<<"$OUT"
# SIGHUP the roles themselves, not their timeout wrappers.
kill -HUP "$(pgrep -P "$VENT_T" | head -n 1)" "$(pgrep -P "$SINK_T" | head -n 1)"
check "SIGHUP: the ventilator reloaded the allowlist (2 keys)" \
    wait_log "$TMP/batch3.vent.log" "reloaded: 2 keys" 10
check "SIGHUP: the sink reloaded the allowlist (2 keys)" \
    wait_log "$TMP/batch3.sink.log" "reloaded: 2 keys" 10
fleet_ok restart restart "$RB"
check "restart $RB: exit 0 (its worker runs)" [ "$FLEET_RC" = 0 ]
refused=0
for _ in $(seq 1 20); do
    # (not fleet | grep -q: pipefail and an early grep exit would SIGPIPE fleet)
    lout=$(fleet logs -n 20 "$RB" 2>&1)
    if grep -q "refused this board's key" <<<"$lout"; then
        refused=1
        break
    fi
    sleep 1
done
fleet_ok logs-revoked logs -n 3 "$RB"
check "$RB's worker logs that the host refused this board's key" [ "$refused" = 1 ]
check "the ventilator logs refusing $RB's key ${FP[$RB]}" \
    grep -qF "refused unknown key ${FP[$RB]} from ${IPS[2]}" "$TMP/batch3.vent.log"
touch "$TMP/batch3.go"
end_batch batch3 300 "$KEEP" "$RB"
rm -f "$TMP/batch3.fifo"

fleet_ok deploy-revoked deploy "$RB"
check "deploy $RB while it holds its revoked key: FAIL, says so, key not put back" \
    [ "$FLEET_RC" = 1 -a "$(grep -c "^$RB .*FAIL .*was revoked" <<<"$OUT")" = 1 -a ! -e "$ALLOW/$RB.key" ]
fleet_ok rekey deploy --rekey "$RB"
newfp=$(pub_of "$(curve_dir "$RB")/$RB.key" | cut -c1-12)
check "deploy --rekey $RB: exit 0, a new key pair ($newfp, was ${FP[$RB]}) made on the board and allowed" \
    [ "$FLEET_RC" = 0 -a -n "$newfp" -a "$newfp" != "${FP[$RB]}" ]
check "deploy --rekey: $RB's new key is on the board (mode 600) and in the allowlist" key_on_board "$RB"
# A board whose key is also another name's (an SD card image copied from
# a deployed board) is refused: one could not be revoked without the other.
cp "$ALLOW/${BOARDS[0]}.key" "$ALLOW/clone.key"
fleet_ok deploy-clone deploy "${BOARDS[0]}"
check "deploy ${BOARDS[0]} with its key also in clone.key: FAIL, says so" \
    [ "$FLEET_RC" = 1 -a "$(grep -c "^${BOARDS[0]} .*FAIL .*also in $ALLOW/clone.key" <<<"$OUT")" = 1 ]
rm -f "$ALLOW/clone.key"
check "no board's secret key left its board (after every deploy)" secrets_stayed

# ------------------------------------------------------------- upgrade, rollback
# Issue #11: the board keeps the files an upgrade replaced; a new worker that
# does not come up is rolled back by the board itself and the rollout stops;
# bpfleet rollback BOARD puts the previous files back on demand.
RBB=${BOARDS[0]}
RBROOT=$TMP/boards/$RBB/opt/boardpipe
orig_sha=$(sha_f "$RBROOT/bin/worker")
others_before=$(sha_f "$TMP/boards/${BOARDS[1]}/opt/boardpipe/bin/worker")$(sha_f "$TMP/boards/${BOARDS[2]}/opt/boardpipe/bin/worker")
# A new worker that works (the same binary behind a wrapper: another
# SHA-256), and a broken one (answers --version, then exits 1).
mkdir -p "$TMP/good/aarch64-musl/bin"
printf '#!/bin/sh\nexec %s "$@"\n' "$BUILD/aarch64-musl/bin/worker" >"$TMP/good/aarch64-musl/bin/worker"
chmod 755 "$TMP/good/aarch64-musl/bin/worker"
fleet_broken_workers "$TMP/broken" aarch64-musl armv7-musl armv6-musl
fleet_ok up-good upgrade --build-root "$TMP/good" "$RBB"
check "upgrade $RBB to a new working worker: exit 0, restarted and back" \
    [ "$FLEET_RC" = 0 -a "$(grep -c 'restarted, worker back' <<<"$OUT")" = 1 ]
check "upgrade: $RBB runs the new binary, the previous one kept in .bpfleet-prev" \
    [ "$(sha_f "$RBROOT/bin/worker")" = "$(sha_f "$TMP/good/aarch64-musl/bin/worker")" -a "$(sha_f "$RBROOT/.bpfleet-prev/worker")" = "$orig_sha" ]
fleet_ok rollback rollback "$RBB"
check "rollback $RBB: exit 0, rolled back and running" \
    [ "$FLEET_RC" = 0 -a "$(grep -c "^$RBB .*OK .*rolled back to version [0-9.]*+.*, running (pid [0-9]*)" <<<"$OUT")" = 1 ]
check "rollback: $RBB has its previous binary again" [ "$(sha_f "$RBROOT/bin/worker")" = "$orig_sha" ]
fleet_ok rollback2 rollback "$RBB"
check "rollback twice: FAIL, nothing to roll back to" \
    [ "$FLEET_RC" = 1 -a "$(grep -c "^$RBB .*FAIL .*no previous version kept" <<<"$OUT")" = 1 ]
t1=$(date +%s)
fleet_ok up-broken upgrade --build-root "$TMP/broken" --health-timeout 8
check "upgrade to a broken worker: exit 1, $RBB FAIL ROLLED BACK to the previous version" \
    [ "$FLEET_RC" = 1 -a "$(grep -c "^$RBB .*FAIL *ROLLED BACK: new worker not healthy within 8s.*rolled back to the previous version [0-9.]*+" <<<"$OUT")" = 1 ]
check "upgrade to a broken worker: the rollout stopped at $RBB, the other boards skipped and untouched" \
    [ "$(grep -c 'skipped (rollout stopped at' <<<"$OUT")" = 2 -a "$(grep -c "^bpfleet upgrade: rollout stopped at $RBB" <<<"$OUT")" = 1 \
    -a "$others_before" = "$(sha_f "$TMP/boards/${BOARDS[1]}/opt/boardpipe/bin/worker")$(sha_f "$TMP/boards/${BOARDS[2]}/opt/boardpipe/bin/worker")" ]
check "upgrade to a broken worker: $RBB has its previous binary back ($(($(date +%s) - t1)) s)" \
    [ "$(sha_f "$RBROOT/bin/worker")" = "$orig_sha" ]
fleet_ok status-rb status "$RBB"
check "after the rollback $RBB runs the old version again (not 9.9.9)" \
    grep -Eq "reachable=yes version=[0-9.]+\+[0-9a-z-]+ running=yes" <<<"$(board_line "$RBB")"

# ------------------------------------------------------------- reboot, log rotation
# Issue #11: a supervise board comes back after a reboot through its boot
# hook. "Reboot" pi2: everything but its sshd killed, then the @reboot line
# of its cron.d run as cron would.
RI=1
RBD=${BOARDS[$RI]}
fleet_ok status-prereboot status "$RBD"
pid_before=$(sed -n 's/.* pid=\([0-9]*\).*/\1/p' <<<"$(board_line "$RBD")")
for sig in TERM KILL; do
    for p in $(ip netns pids "${NS[$RI]}"); do
        [ "$p" = "$(cat "${SSHD_PIDFILES[$RI]}")" ] || kill -"$sig" "$p" 2>/dev/null
    done
    sleep 1
done
fleet_ok status-down status "$RBD"
check "reboot $RBD: its worker is gone" grep -q 'running=no' <<<"$(board_line "$RBD")"
hookcmd=$(sed -n 's/^@reboot root //p' "$TMP/sysroot/$RBD/etc/cron.d/"boardpipe-worker*)
check "reboot $RBD: its cron.d holds the @reboot command" [ -n "$hookcmd" ]
ip netns exec "${NS[$RI]}" sh -c "$hookcmd" </dev/null >/dev/null 2>&1
fleet_ok status-rebooted status "$RBD"
pid_after=$(sed -n 's/.* pid=\([0-9]*\).*/\1/p' <<<"$(board_line "$RBD")")
check "reboot $RBD: the boot hook brought the worker back (pid $pid_before -> $pid_after)" \
    [ "$FLEET_RC" = 0 -a -n "$pid_after" -a "$pid_after" != "$pid_before" ]
# Its log (log-max=300 log-keep=2) was rotated by size along the way.
L=$TMP/boards/$RBD/opt/boardpipe/log/worker.log
lsz=$(wc -c <"$L" 2>/dev/null || echo 0)
check "log rotation: $RBD has worker.log.1 and .2, no .3, worker.log at $lsz bytes (limit 300 + one line)" \
    [ -s "$L.1" -a -s "$L.2" -a ! -e "$L.3" -a "$lsz" -le 800 ]

# ------------------------------------------------------------- stop, undeploy
fleet_ok stop stop
check "stop: exit 0" [ "$FLEET_RC" = 0 ]
left=0
for i in 0 1 2; do
    for p in $(ip netns pids "${NS[$i]}"); do
        [ "$p" = "$(cat "${SSHD_PIDFILES[$i]}")" ] || { left=1; ps -o pid=,args= -p "$p"; }
    done
done
check "stop: nothing but sshd left running on the boards" [ $left = 0 ]

fleet_ok undeploy undeploy
check "undeploy: exit 0" [ "$FLEET_RC" = 0 ]
check "undeploy: says each board's key pair is gone and how to revoke its public key" \
    [ "$(grep -c 'bpfleet revoke' <<<"$OUT")" = 3 ]
check "undeploy: the boot hooks are gone" [ -z "$(find "$TMP/sysroot" -type f)" ]
for b in "${BOARDS[@]}"; do
    rest=$(find "$TMP/boards/$b" -mindepth 1 | head -n 5)
    check "undeploy: nothing left on $b${rest:+ ($rest)}" [ -z "$rest" ]
done
fleet_ok undeploy2 undeploy
check "undeploy twice: exit 0, not deployed" [ "$FLEET_RC" = 0 -a "$(grep -c 'not deployed' <<<"$OUT")" = 3 ]

# One board by name, files sent over plain ssh (boards without scp/sftp).
fleet_ok deploy-ssh --copy ssh deploy "${BOARDS[2]}"
check "deploy --copy ssh ${BOARDS[2]} alone: exit 0, verified" \
    [ "$FLEET_RC" = 0 -a "$(grep -c 'OK *deployed.*verified' <<<"$OUT")" = 1 ]
want=$(sha256sum "$BUILD/armv6-musl/bin/worker" | cut -d' ' -f1)
got=$(sha256sum "$TMP/boards/${BOARDS[2]}/opt/boardpipe/bin/worker" 2>/dev/null | cut -d' ' -f1)
check "deploy --copy ssh: ${BOARDS[2]} got the armv6 binary, the others nothing" \
    [ "$want" = "$got" -a -z "$(find "$TMP/boards/${BOARDS[0]}" "$TMP/boards/${BOARDS[1]}" -mindepth 1)" ]
fleet_ok undeploy3 undeploy "${BOARDS[2]}"
check "undeploy ${BOARDS[2]}: nothing left" [ "$FLEET_RC" = 0 -a -z "$(find "$TMP/boards/${BOARDS[2]}" -mindepth 1)" ]

# Issue #11: a first deploy that fails half-way (the board's disk is full:
# a 64 KiB tmpfs under its PREFIX, the 1 MB worker does not fit) leaves
# the record of what it made, so undeploy cleans up after it. The tmpfs is
# mounted in the mount namespace of the board's sshd (ip netns exec gave it
# its own), so it goes away with it.
FB=${BOARDS[2]}
FULL=$TMP/boards/$FB/opt
in_board() { nsenter -t "$(cat "${SSHD_PIDFILES[2]}")" -m -- "$@"; }
mkdir -p "$FULL"
if command -v nsenter >/dev/null && in_board mount -t tmpfs -o size=64k "$ID-full" "$FULL" 2>/dev/null; then
    fleet_ok deploy-full deploy "$FB"
    check "first deploy of $FB onto a full disk: FAIL while copying the worker" \
        [ "$FLEET_RC" = 1 -a "$(grep -c "^$FB .*FAIL  copying worker: " <<<"$OUT")" = 1 ]
    check "the failed first deploy left its manifest (the directories it made)" \
        in_board grep -qx "dir $FULL/boardpipe" "$FULL/boardpipe/.bpfleet-manifest"
    fleet_ok undeploy-full undeploy "$FB"
    check "undeploy after the failed first deploy: exit 0, nothing left" \
        [ "$FLEET_RC" = 0 -a -z "$(in_board find "$FULL" -mindepth 1)" ]
    in_board umount "$FULL"
else
    log "cannot mount a tmpfs in $FB's sshd mount namespace: the failed-first-deploy case is not run"
fi
rmdir "$FULL"

exit 0
