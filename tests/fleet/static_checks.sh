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
        "$ROOT/tests/fleet/fleet_test.sh" "$ROOT/tests/fleet/static_checks.sh")
    # The board-side scripts must be plain POSIX sh (busybox boards).
    shellcheck -s sh "$ROOT/board/bp-supervise" "$ROOT/board/bpfleet-remote.sh" || exit 1
    shellcheck "${files[@]}" || exit 1
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
    for f in bad1 bad2 bad3 bad4; do
        e=$("$ROOT/board/bpfleet" -i "$TMP/$f" --build-root "$TMP/build" check 2>&1)
        rc=$?
        if [ $rc != 2 ] || ! grep -q "$TMP/$f:[0-9]" <<<"$e"; then
            echo "FAIL: $f accepted (rc $rc): $e"
            exit 1
        fi
        echo "refused as expected: $e"
    done
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
    echo "inventory: ok"
    ;;
*)
    echo "unknown check $what"
    exit 2
    ;;
esac
