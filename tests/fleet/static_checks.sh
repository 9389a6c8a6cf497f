#!/usr/bin/env bash
# Checks of board/ that need no boards (CTest label fleet):
#   static_checks.sh shellcheck REPO   shellcheck the deploy tool and scripts
#   static_checks.sh systemd REPO      systemd-analyze verify the unit as
#                                      bpfleet renders it, with and without CURVE
#   static_checks.sh inventory REPO    bpfleet parses the sample inventory,
#                                      refuses bad CURVE options, revokes offline
# Exit 77 (skip) when the tool a check needs is missing, with the reason.
set -uo pipefail
what=${1:?shellcheck|systemd|inventory}
ROOT=${2:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
skip() { echo "SKIP: $*"; exit 77; }
TMP=$(mktemp -d "/tmp/bpfcheck$$.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

case $what in
shellcheck)
    command -v shellcheck >/dev/null || skip "no shellcheck (apt-get install shellcheck)"
    files=("$ROOT/board/bpfleet" "$ROOT/board/bp-supervise" "$ROOT/board/bpfleet-remote.sh"
        "$ROOT/tests/fleet/fleet_lib.sh" "$ROOT/tests/fleet/fleet_test.sh"
        "$ROOT/tests/fleet/fleet_sudo_ansible_test.sh" "$ROOT/tests/fleet/static_checks.sh")
    # The board-side scripts must be plain POSIX sh (busybox boards).
    shellcheck -s sh "$ROOT/board/bp-supervise" "$ROOT/board/bpfleet-remote.sh" \
        "$ROOT/board/ansible/roles/boardpipe_worker/files/bp_healthy.sh" || exit 1
    # -x: the fleet tests source fleet_lib.sh (checked with them).
    shellcheck -x "${files[@]}" || exit 1
    echo "shellcheck clean: ${files[*]##*/}"
    ;;
systemd)
    command -v systemd-analyze >/dev/null || skip "no systemd-analyze (apt-get install systemd)"
    mkdir -p "$TMP/bin" "$TMP/etc/curve" "$TMP/allow"
    printf '#!/bin/sh\nexit 0\n' >"$TMP/bin/worker"
    chmod 755 "$TMP/bin/worker"
    printf "BP_ID='check'\n" >"$TMP/etc/worker.env"
    printf 'check  root@localhost  x86_64  %s  service=systemd\n' "$TMP" >"$TMP/inventory"
    # A public certificate as --keygen writes it (the key is ZeroMQ's
    # example server key), and a stand-in secret for LoadCredential=.
    printf '#   ZeroMQ CURVE Public Certificate\nmetadata\ncurve\n    public-key = "%s"\n' \
        'rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7' >"$TMP/host.key"
    : >"$TMP/etc/curve/check.key_secret"
    chmod 600 "$TMP/etc/curve/check.key_secret"
    # Rendered by bpfleet itself, without and with CURVE.
    for variant in plain curve; do
        unit=$TMP/$variant/boardpipe-worker.service
        mkdir -p "$TMP/$variant"
        args=(-i "$TMP/inventory")
        [ $variant = curve ] && args+=(--curve-host-key "$TMP/host.key" --curve-allow "$TMP/allow")
        "$ROOT/board/bpfleet" "${args[@]}" unit check >"$unit" || { echo "FAIL: bpfleet unit ($variant)"; exit 1; }
        grep -q '@BP_' "$unit" && { echo "placeholders left ($variant)"; exit 1; }
        if [ $variant = curve ]; then
            if ! grep -qx "LoadCredential=curve.key_secret:$TMP/etc/curve/check.key_secret" "$unit" ||
                ! grep -qx "ExecStart=$TMP/bin/worker --curve-secret \${CREDENTIALS_DIRECTORY}/curve.key_secret" "$unit"; then
                echo "FAIL: the CURVE unit lacks LoadCredential= or --curve-secret"
                cat "$unit"
                exit 1
            fi
        fi
        out=$(cd "$TMP/$variant" && systemd-analyze verify ./boardpipe-worker.service 2>&1)
        rc=$?
        printf '%s\n' "$out"
        # verify exits 0 on unknown keys and bad values; it only warns.
        if [ $rc -ne 0 ] || grep -q 'boardpipe-worker.service' <<<"$out"; then
            echo "FAIL: systemd-analyze verify ($variant)"
            exit 1
        fi
        echo "systemd-analyze verify ($variant): clean"
    done
    systemd-analyze security --offline=yes "$TMP/curve/boardpipe-worker.service" 2>/dev/null | tail -n 1
    # Issue #11: Type=exec; the limits of the board's profile (Pi Zero is
    # not Pi 5), overridden by the inventory.
    u=$TMP/plain/boardpipe-worker.service
    grep -qx 'Type=exec' "$u" || { echo "FAIL: the unit is not Type=exec"; exit 1; }
    lim() { grep -E '^(MemoryMax|TasksMax|Nice|OOMScoreAdjust)=' | tr '\n' ' '; }
    want='MemoryMax=2G TasksMax=1024 Nice=0 OOMScoreAdjust=100 '
    [ "$(lim <"$u")" = "$want" ] || { echo "FAIL: x86_64 limits: $(lim <"$u") (want $want)"; exit 1; }
    {
        printf 'zero  root@localhost  pi0     %s  service=systemd\n' "$TMP"
        printf 'five  root@localhost  pi5-64  %s  service=systemd\n' "$TMP"
        printf 'own   root@localhost  pi0     %s  service=systemd MemoryMax=200M Nice=-3 --jobs 2\n' "$TMP"
    } >"$TMP/inv-limits"
    for bw in "zero:MemoryMax=128M TasksMax=32 Nice=10 OOMScoreAdjust=500 " \
        "five:MemoryMax=1G TasksMax=512 Nice=0 OOMScoreAdjust=200 " \
        "own:MemoryMax=200M TasksMax=32 Nice=-3 OOMScoreAdjust=500 "; do
        got=$("$ROOT/board/bpfleet" -i "$TMP/inv-limits" unit "${bw%%:*}" | lim)
        [ "$got" = "${bw#*:}" ] || { echo "FAIL: limits of ${bw%%:*}: $got (want ${bw#*:})"; exit 1; }
        echo "limits of ${bw%%:*}: $got"
    done
    # A PREFIX under /home (hidden by ProtectHome=yes: 203/EXEC at start)
    # gets an adapted unit that systemd accepts.
    H=/home/bpfcheck$$
    if mkdir -p "$H/bin" "$H/etc" 2>/dev/null; then
        trap 'rm -rf "$TMP" "$H"' EXIT
        cp "$TMP/bin/worker" "$H/bin/worker" && cp "$TMP/etc/worker.env" "$H/etc/worker.env"
        printf 'h  root@localhost  pi2  %s  service=systemd\n' "$H" >"$TMP/inv-home"
        mkdir -p "$TMP/home"
        "$ROOT/board/bpfleet" -i "$TMP/inv-home" unit h >"$TMP/home/boardpipe-worker.service" || { echo "FAIL: bpfleet unit (home)"; exit 1; }
        if ! grep -qx 'ProtectHome=tmpfs' "$TMP/home/boardpipe-worker.service" ||
            ! grep -qx "BindReadOnlyPaths=$H" "$TMP/home/boardpipe-worker.service" ||
            grep -qx 'ProtectHome=yes' "$TMP/home/boardpipe-worker.service"; then
            echo "FAIL: the unit for PREFIX $H is not adapted"
            exit 1
        fi
        out=$(cd "$TMP/home" && systemd-analyze verify ./boardpipe-worker.service 2>&1)
        rc=$?
        if [ $rc -ne 0 ] || grep -q 'boardpipe-worker.service' <<<"$out"; then
            echo "FAIL: systemd-analyze verify (home): $out"
            exit 1
        fi
        echo "systemd-analyze verify (PREFIX under /home: ProtectHome=tmpfs + BindReadOnlyPaths=$H): clean"
    else
        echo "(cannot create $H: /home case not verified by systemd-analyze)"
    fi
    exit 0
    ;;
inventory)
    for p in aarch64-musl armv7-musl armv6-musl x86_64-musl; do
        mkdir -p "$TMP/build/$p/bin" && : >"$TMP/build/$p/bin/worker"
    done
    out=$("$ROOT/board/bpfleet" -i "$ROOT/board/inventory.sample" --build-root "$TMP/build" check 2>&1)
    rc=$?
    printf '%s\n' "$out"
    [ $rc = 0 ] || { echo "FAIL: bpfleet check"; exit 1; }
    for want in "BP_EXEC='gzip -c | wc -c'" "BP_JOBS='2'" "BP_TASK_TIMEOUT='30s'" "BP_VERBOSE='1'" \
        "service supervise" "bpfleet check: 5 ok, 0 failed"; do
        grep -qF -- "$want" <<<"$out" || { echo "FAIL: missing '$want'"; exit 1; }
    done
    # Broken inventories are refused with status 2 and the line number.
    printf 'a root@h nosuchprofile /opt/bp\n' >"$TMP/bad1"
    printf 'a root@h pi2 relative/path\n' >"$TMP/bad2"
    printf 'a root@h pi2 /opt/bp --exec\n' >"$TMP/bad3"
    printf 'a root@h pi2 /opt/bp\na root@h pi2 /opt/bp\n' >"$TMP/bad4"
    # Issue #11: an empty value, ssh options or quotes posing as SSH-DEST, a
    # port out of range, an unbalanced quote: refused, with the line number.
    printf '# ok\nok root@h pi2 /opt/bp\na root@h pi2 /opt/bp --exec %s --jobs 2\n' "''" >"$TMP/bad5"
    printf 'a -oProxyCommand=x pi2 /opt/bp\n' >"$TMP/bad6"
    printf "a 'root@h' pi2 /opt/bp\n" >"$TMP/bad7"
    printf 'a root@h:70000 pi2 /opt/bp\n' >"$TMP/bad8"
    printf "a root@h pi2 /opt/bp --exec 'tr a-z\n" >"$TMP/bad9"
    printf 'a root@h pi2 /opt/bp --exec %s\n' "''" >"$TMP/bad10"
    for f in bad1 bad2 bad3 bad4 bad5 bad6 bad7 bad8 bad9 bad10; do
        e=$("$ROOT/board/bpfleet" -i "$TMP/$f" --build-root "$TMP/build" check 2>&1)
        rc=$?
        if [ $rc != 2 ] || ! grep -q "$TMP/$f:[0-9]" <<<"$e" || [ "$(wc -l <<<"$e")" != 1 ]; then
            echo "FAIL: $f accepted or not refused in one line (rc $rc): $e"
            exit 1
        fi
        echo "refused as expected: $e"
    done
    grep -q "bad5:3: flag --exec has an empty value" <<<"$("$ROOT/board/bpfleet" -i "$TMP/bad5" --build-root "$TMP/build" check 2>&1)" ||
        { echo "FAIL: bad5 not refused at line 3 for its empty --exec"; exit 1; }
    # A '#' inside quotes is part of the value; one after a space ends the line.
    printf "a root@h pi2 /opt/bp --exec 'grep -c \"#x\"' --jobs 3 # --once\n" >"$TMP/hash"
    out=$("$ROOT/board/bpfleet" -i "$TMP/hash" --build-root "$TMP/build" check 2>&1)
    if ! grep -qxF "  BP_EXEC='grep -c \"#x\"'" <<<"$out" || ! grep -qxF "  BP_JOBS='3'" <<<"$out" ||
        grep -q BP_ONCE <<<"$out"; then
        echo "FAIL: '#' in quotes: $out"
        exit 1
    fi
    echo "'#' in quotes kept: $(grep BP_EXEC <<<"$out")"
    # Endpoints reach the board's env file (sourced by sh): quotes refused.
    # shellcheck disable=SC2016  # the $(id) must reach bpfleet unexpanded
    for ep in "tcp://h:1'; touch /tmp/x; '" 'tcp://h:1 x' 'tcp://$(id):1'; do
        e=$("$ROOT/board/bpfleet" -i "$TMP/hash" --build-root "$TMP/build" --tasks "$ep" --results tcp://h:2 check 2>&1)
        rc=$?
        if [ $rc != 2 ] || [ "$(wc -l <<<"$e")" != 1 ] || ! grep -q 'is not an endpoint' <<<"$e"; then
            echo "FAIL: --tasks \"$ep\" gave status $rc: $e"
            exit 1
        fi
        echo "refused as expected: $e"
    done
    # bpfleet's own requirement: bash >= 4.3, said in one line by any sh.
    if command -v dash >/dev/null; then
        e=$(dash "$ROOT/board/bpfleet" profiles 2>&1)
        rc=$?
        if [ $rc != 2 ] || [ "$(wc -l <<<"$e")" != 1 ] || ! grep -q 'needs bash 4.3 or later' <<<"$e"; then
            echo "FAIL: bpfleet run by dash: status $rc: $e"
            exit 1
        fi
        echo "refused as expected: $e"
    fi
    # CURVE options: both or neither, a public host key; revoke works offline.
    F=$ROOT/board/bpfleet
    mkdir -p "$TMP/allow"
    key='rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7'
    printf 'metadata\ncurve\n    public-key = "%s"\n' "$key" >"$TMP/host.key"
    printf 'metadata\ncurve\n    public-key = "%s"\n    secret-key = "%s"\n' "$key" "$key" >"$TMP/host.key_secret"
    inv=(-i "$ROOT/board/inventory.sample" --build-root "$TMP/build")
    for bad in "--curve-allow $TMP/allow check" "--curve-host-key $TMP/host.key check" \
        "--curve-host-key $TMP/host.key_secret --curve-allow $TMP/allow check" \
        "--rekey check" "revoke nuc" "--curve-allow $TMP/allow revoke" "--curve-allow $TMP/nodir revoke nuc"; do
        # shellcheck disable=SC2086  # the words of $bad are options
        e=$("$F" "${inv[@]}" $bad 2>&1)
        rc=$?
        if [ $rc != 2 ] || [ "$(wc -l <<<"$e")" != 1 ]; then
            echo "FAIL: 'bpfleet $bad' gave status $rc (want 2 and one line): $e"
            exit 1
        fi
        echo "refused as expected: $e"
    done
    out=$("$F" "${inv[@]}" --curve-host-key "$TMP/host.key" --curve-allow "$TMP/allow" check 2>&1) ||
        { echo "FAIL: check with CURVE: $out"; exit 1; }
    grep -qF "allowlist $TMP/allow/nuc.key (missing)" <<<"$out" || { echo "FAIL: no CURVE line in: $out"; exit 1; }
    cp "$TMP/host.key" "$TMP/allow/nuc.key"
    out=$("$F" --curve-allow "$TMP/allow" revoke nuc 2>&1)
    rc=$?
    printf '%s\n' "$out"
    if [ $rc != 0 ] || [ -e "$TMP/allow/nuc.key" ] || ! grep -qF "$key nuc " "$TMP/allow/.revoked" ||
        ! grep -q 'kill -HUP the ventilator and the sink' <<<"$out"; then
        echo "FAIL: revoke nuc (status $rc)"
        exit 1
    fi
    out=$("$F" --curve-allow "$TMP/allow" revoke nuc 2>&1)
    rc=$?
    if [ $rc != 1 ] || ! grep -q '^nuc .*FAIL .*nothing to revoke' <<<"$out"; then
        echo "FAIL: revoking an absent key: status $rc: $out"
        exit 1
    fi
    # Issue #11: limits from the inventory are checked; a PREFIX the unit
    # cannot reach is refused at deploy (before any ssh), in one line.
    printf 'a root@h pi2 /opt/bp Nice=99\n' >"$TMP/badlim"
    e=$("$F" -i "$TMP/badlim" --build-root "$TMP/build" check 2>&1)
    rc=$?
    if [ $rc != 2 ] || ! grep -qF "$TMP/badlim:1: Nice=99: want -20..19" <<<"$e"; then
        echo "FAIL: Nice=99 gave status $rc: $e"
        exit 1
    fi
    echo "refused as expected: $e"
    printf 'tmpb root@127.0.0.1:1 x86_64 /tmp/bp service=systemd\n' >"$TMP/tmpprefix"
    out=$("$F" -i "$TMP/tmpprefix" --build-root "$TMP/build" --tasks tcp://h:1 --results tcp://h:2 \
        --connect-timeout 2 deploy 2>&1)
    rc=$?
    if [ $rc != 1 ] || ! grep -q '^tmpb .*FAIL  PREFIX /tmp/bp is under /tmp or /var/tmp, which the unit replaces' <<<"$out"; then
        echo "FAIL: deploy of a systemd board with PREFIX /tmp/bp: status $rc: $out"
        exit 1
    fi
    echo "refused at deploy as expected: $(head -n 1 <<<"$out")"
    echo "inventory: ok"
    ;;
*)
    echo "unknown check $what"
    exit 2
    ;;
esac
