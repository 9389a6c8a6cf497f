#!/usr/bin/env bash
# Checks of board/ that need no boards (CTest label fleet):
#   static_checks.sh shellcheck REPO   shellcheck the deploy tool and scripts
#   static_checks.sh systemd REPO      systemd-analyze verify the rendered unit
#   static_checks.sh inventory REPO    bpfleet parses the sample inventory
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
    mkdir -p "$TMP/bin" "$TMP/etc"
    printf '#!/bin/sh\nexit 0\n' >"$TMP/bin/worker"
    chmod 755 "$TMP/bin/worker"
    printf "BP_ID='check'\n" >"$TMP/etc/worker.env"
    # Rendered exactly as bpfleet renders it.
    sed -e "s|@BP_WORKER@|$TMP/bin/worker|g" -e "s|@BP_ENVFILE@|$TMP/etc/worker.env|g" \
        "$ROOT/board/systemd/boardpipe-worker.service.in" >"$TMP/boardpipe-worker.service"
    grep -q '@BP_' "$TMP/boardpipe-worker.service" && { echo "placeholders left"; exit 1; }
    out=$(cd "$TMP" && systemd-analyze verify ./boardpipe-worker.service 2>&1)
    rc=$?
    printf '%s\n' "$out"
    # verify exits 0 on unknown keys and bad values; it only warns.
    if [ $rc -ne 0 ] || grep -q 'boardpipe-worker.service' <<<"$out"; then
        echo "FAIL: systemd-analyze verify"
        exit 1
    fi
    echo "systemd-analyze verify: clean"
    systemd-analyze security --offline=yes "$TMP/boardpipe-worker.service" 2>/dev/null | tail -n 1
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
    echo "inventory: ok"
    ;;
*)
    echo "unknown check $what"
    exit 2
    ;;
esac
