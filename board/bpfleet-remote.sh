#!/bin/sh
# The board side of bpfleet. bpfleet sends this script over ssh as the
# argument of `sh -c` (nothing is left on the board by it):
#   sh -c '<this script>' bpfleet-remote OP PREFIX [ARGS...]
# POSIX sh, busybox-safe. Prints key=value lines that bpfleet parses;
# "error=..." and a non-zero status on failure.
#
# What a deploy puts on a board (and undeploy removes; .bpfleet-manifest
# lists it, including the directories the deploy created):
#   PREFIX/bin/worker         the worker binary for the board's profile
#   PREFIX/etc/worker.env     BP_* settings (host endpoints, id, jobs, ...)
#   PREFIX/bin/bp-supervise   (boards without systemd) the supervisor
#   PREFIX/run/, PREFIX/log/  (boards without systemd) pidfiles, status, log
#   /etc/systemd/system/boardpipe-worker.service  (boards with systemd)
#   PREFIX/etc/curve/         (CURVE) host.key, the host's public key, and
#                             NAME.key + NAME.key_secret, the board's key pair,
#                             made here by the worker (--keygen); the secret
#                             (mode 600) is never sent anywhere
set -u

op=${1:-}
P=${2:-}
[ $# -ge 2 ] && shift 2

UNIT=boardpipe-worker.service
UNITPATH=/etc/systemd/system/$UNIT
MAN=$P/.bpfleet-manifest
STAGE=$P/.bpfleet-stage
CDIR=$P/etc/curve
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO="sudo -n"

die() {
    echo "error=$*"
    exit "${rc:-1}"
}

sha() {
    if [ -f "$1" ]; then
        sha256sum "$1" 2>/dev/null | cut -d' ' -f1
    else
        echo none
    fi
}

has_systemd() {
    [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1
}

installed_mode() {
    sed -n 's/^service //p' "$MAN" 2>/dev/null | head -n 1
}

# Runs the installed worker with its env file's QEMU_CPU (simulated boards).
run_worker() {
    (
        QEMU_CPU=
        if [ -r "$P/etc/worker.env" ]; then
            QEMU_CPU=$(sed -n "s/^QEMU_CPU='\(.*\)'$/\1/p" "$P/etc/worker.env")
        fi
        if [ -n "$QEMU_CPU" ]; then export QEMU_CPU; else unset QEMU_CPU; fi
        exec "$P/bin/worker" "$@" </dev/null
    )
}

worker_version() {
    # "worker (boardpipe) 0.1.0 (git REV)" -> 0.1.0+REV (older builds: 0.1.0)
    run_worker --version 2>/dev/null | head -n 1 |
        sed -n -e 's/^worker (boardpipe) \([^ ]*\) (git \([^)]*\)).*/\1+\2/p' \
            -e 't' -e 's/^worker (boardpipe) \([^ ]*\)$/\1/p'
}

# Whether FILE is a regular file with mode 600 (-rw-------).
private_file() {
    case $(ls -ln "$1" 2>/dev/null) in -rw-------*) return 0 ;; esac
    return 1
}

status_file() {
    if [ "$(installed_mode)" = systemd ]; then
        echo /run/boardpipe-worker/status
    else
        echo "$P/run/status"
    fi
}

# Prints the worker's pid if it runs, else returns 1.
worker_pid() {
    case $(installed_mode) in
    systemd)
        systemctl is-active --quiet "$UNIT" 2>/dev/null || return 1
        p=$(systemctl show -p MainPID --value "$UNIT" 2>/dev/null)
        [ -n "$p" ] && [ "$p" != 0 ] && echo "$p"
        ;;
    supervise)
        out=$(sh "$P/bin/bp-supervise" status "$P" 2>/dev/null) || return 1
        p=${out##* worker }
        case $p in '' | *[!0-9]*) return 1 ;; esac
        echo "$p"
        ;;
    *) return 1 ;;
    esac
}

# Waits (up to $1 s) for a worker pid that stays alive for 2 s.
wait_running() {
    i=0
    while [ "$i" -lt "$1" ]; do
        if p=$(worker_pid); then
            sleep 2
            if [ "$(worker_pid)" = "$p" ]; then
                echo "pid=$p"
                return 0
            fi
        else
            sleep 1
        fi
        i=$((i + 1))
    done
    return 1
}

do_start() {
    case $(installed_mode) in
    systemd) $SUDO systemctl start "$UNIT" || rc=5 die "systemctl start failed" ;;
    supervise) sh "$P/bin/bp-supervise" start "$P" >/dev/null || rc=5 die "bp-supervise start failed (see $P/log/worker.log)" ;;
    *) rc=4 die "not deployed under $P" ;;
    esac
    wait_running "${START_WAIT:-20}" || rc=5 die "worker did not stay up; see: bpfleet logs"
}

do_stop() {
    case $(installed_mode) in
    systemd) $SUDO systemctl stop "$UNIT" || rc=5 die "systemctl stop failed" ;;
    supervise) sh "$P/bin/bp-supervise" stop "$P" >/dev/null || rc=5 die "bp-supervise stop failed" ;;
    *) rc=4 die "not deployed under $P" ;;
    esac
}

case $op in
probe)
    # ARGS: wanted service (auto|systemd|supervise), CURVE key name or -
    want=${1:-auto}
    key=${2:--}
    command -v sha256sum >/dev/null 2>&1 || rc=3 die "no sha256sum on the board"
    case $want in
    auto) if has_systemd; then svc=systemd; else svc=supervise; fi ;;
    systemd)
        has_systemd || rc=3 die "service=systemd but systemd is not running on the board"
        svc=systemd
        ;;
    supervise) svc=supervise ;;
    *) rc=3 die "unknown service kind $want" ;;
    esac
    echo "service=$svc"
    [ "$svc" = systemd ] && echo "systemd=$(systemctl --version 2>/dev/null | sed -n '1s/^systemd \([0-9]*\).*/\1/p')"
    echo "uname=$(uname -m)"
    echo "installed=$(installed_mode)"
    echo "sha.worker=$(sha "$P/bin/worker")"
    echo "sha.worker.env=$(sha "$P/etc/worker.env")"
    echo "sha.bp-supervise=$(sha "$P/bin/bp-supervise")"
    echo "sha.boardpipe-worker.service=$(sha "$UNITPATH")"
    if worker_pid >/dev/null; then echo running=yes; else echo running=no; fi
    if [ "$key" != - ]; then
        echo "sha.host.key=$(sha "$CDIR/host.key")"
        if [ -f "$CDIR/$key.key_secret" ]; then
            echo "curve.secret=yes"
            if private_file "$CDIR/$key.key_secret"; then echo curve.private=yes; else echo curve.private=no; fi
            # The public certificate only, for the host's allowlist.
            [ -f "$CDIR/$key.key" ] && sed 's/^/curve.cert=/' "$CDIR/$key.key"
        else
            echo "curve.secret=no"
        fi
    fi
    ;;
prepare)
    # ARGS: CURVE key name or -.
    # Creates PREFIX and its directories, noting which ones did not exist
    # before (undeploy removes exactly those), and an empty staging dir.
    key=${1:--}
    case $P in /?*) ;; *) rc=3 die "prefix must be an absolute path" ;; esac
    created=
    d=$P
    while [ -n "$d" ] && [ "$d" != / ] && [ ! -e "$d" ]; do
        created="$d
$created"
        d=$(dirname "$d")
    done
    for sub in bin etc run log; do
        [ -e "$P/$sub" ] || created="$created
$P/$sub"
    done
    mkdir -p "$P/bin" "$P/etc" "$P/run" "$P/log" || rc=3 die "cannot create $P"
    if [ "$key" != - ] && [ ! -e "$CDIR" ]; then
        created="$created
$CDIR"
        # The unit's dynamic user reads host.key in it.
        mkdir -m 755 "$CDIR" || rc=3 die "cannot create $CDIR"
    fi
    rm -rf "$STAGE"
    mkdir -p "$STAGE" || rc=3 die "cannot create $STAGE"
    printf '%s\n' "$created" | sed '/^$/d' >"$STAGE/.created"
    echo "ok=1"
    ;;
install)
    # ARGS: service, CURVE key name or -, rekey (0|1), then NAME SHA256
    # pairs. A staged file must match its SHA-256; a file not staged must
    # already be installed with it. With a key name, makes the board's key
    # pair unless it has one (rekey: a new one anyway) and prints its public
    # certificate as curve.cert= lines.
    svc=$1 key=$2 rekey=$3
    shift 3
    [ -d "$STAGE" ] || rc=3 die "nothing staged (run prepare first)"
    old=$(installed_mode)
    if [ -n "$old" ] && [ "$old" != "$svc" ]; then
        do_stop >/dev/null 2>&1 || true
        if [ "$old" = systemd ]; then
            $SUDO systemctl disable "$UNIT" >/dev/null 2>&1 || true
            $SUDO rm -f "$UNITPATH"
            $SUDO systemctl daemon-reload || true
        else
            rm -f "$P/bin/bp-supervise"
        fi
    fi
    files=
    while [ $# -ge 2 ]; do
        name=$1 want=$2
        shift 2
        case $name in
        worker) dest=$P/bin/worker mode=755 ;;
        worker.env) dest=$P/etc/worker.env mode=600 ;;
        bp-supervise) dest=$P/bin/bp-supervise mode=755 ;;
        boardpipe-worker.service) dest=$UNITPATH mode=644 ;;
        host.key) dest=$CDIR/host.key mode=644 ;;
        *) rc=3 die "unknown file $name" ;;
        esac
        if [ -f "$STAGE/$name" ]; then
            got=$(sha "$STAGE/$name")
            [ "$got" = "$want" ] || rc=6 die "sha256 mismatch for $name after copy: $got, expected $want"
            chmod "$mode" "$STAGE/$name"
            if [ "$dest" = "$UNITPATH" ]; then
                if ! { $SUDO cp "$STAGE/$name" "$dest.bpfleet-new" &&
                    $SUDO mv -f "$dest.bpfleet-new" "$dest"; }; then
                    rc=3 die "cannot install $dest"
                fi
            else
                mv -f "$STAGE/$name" "$dest" || rc=3 die "cannot install $dest"
            fi
            echo "changed=$name"
        else
            got=$(sha "$dest")
            [ "$got" = "$want" ] || rc=6 die "$dest has sha256 $got, expected $want"
        fi
        files="$files
file $dest"
    done
    # The manifest: service kind, installed files, created directories
    # (first deploy's list is kept on redeploys).
    {
        echo "service $svc"
        printf '%s\n' "$files" | sed '/^$/d'
        [ "$key" = - ] || printf 'file %s\n' "$CDIR/$key.key" "$CDIR/$key.key_secret"
        # Key files of earlier deploys stay listed (undeploy removes them).
        [ -f "$MAN" ] && awk -v d="file $CDIR/" 'index($0, d) == 1' "$MAN"
        sed -n 's/^dir /dir /p' "$MAN" 2>/dev/null
        sed 's/^/dir /' "$STAGE/.created"
    } | awk '!seen[$0]++' >"$MAN.new" && mv -f "$MAN.new" "$MAN"
    rm -rf "$STAGE"
    if [ "$svc" = systemd ]; then
        $SUDO systemctl daemon-reload || rc=3 die "systemctl daemon-reload failed"
        $SUDO systemctl enable "$UNIT" >/dev/null 2>&1 || rc=3 die "systemctl enable failed"
    fi
    v=$(worker_version)
    [ -n "$v" ] || rc=7 die "installed worker does not run on this board ($(uname -m)): wrong profile?"
    echo "version=$v"
    if [ "$key" != - ]; then
        sec=$CDIR/$key.key_secret
        pub=$CDIR/$key.key
        if [ "$rekey" = 1 ]; then
            rm -f "$sec" "$pub" || rc=8 die "cannot remove the old key pair in $CDIR"
        fi
        if [ ! -f "$sec" ]; then
            rm -f "$pub"
            err=$(umask 022 && run_worker --keygen "$CDIR/$key" 2>&1 >/dev/null) ||
                rc=8 die "worker --keygen failed: $(printf '%s\n' "$err" | tail -n 1)"
            echo "keygen=1"
        fi
        [ -f "$pub" ] || rc=8 die "$sec has no $pub beside it: deploy --rekey makes a new pair"
        chmod 600 "$sec" || rc=8 die "cannot chmod 600 $sec"
        sed 's/^/curve.cert=/' "$pub"
    fi
    if worker_pid >/dev/null; then echo running=yes; else echo running=no; fi
    ;;
start)
    do_start
    ;;
stop)
    do_stop
    echo "stopped=1"
    ;;
restart)
    do_stop
    do_start
    ;;
status)
    mode=$(installed_mode)
    if [ -z "$mode" ]; then
        echo "deployed=no"
        exit 0
    fi
    echo "deployed=yes"
    echo "service=$mode"
    echo "version=$(worker_version)"
    if p=$(worker_pid); then
        echo "running=yes"
        echo "pid=$p"
        sf=$(status_file)
        if [ -r "$sf" ]; then
            # Only trust a status file written by the running worker.
            if grep -qx "pid=$p" "$sf"; then
                grep -E '^(state|done|failed)=' "$sf"
            fi
        fi
    else
        echo "running=no"
    fi
    ;;
logs)
    n=${1:-50}
    case $(installed_mode) in
    systemd)
        journalctl -u "$UNIT" -n "$n" --no-pager 2>/dev/null ||
            $SUDO journalctl -u "$UNIT" -n "$n" --no-pager 2>&1
        ;;
    supervise) tail -n "$n" "$P/log/worker.log" 2>/dev/null || echo "(no log yet)" ;;
    *) rc=4 die "not deployed under $P" ;;
    esac
    ;;
undeploy)
    mode=$(installed_mode)
    if [ -z "$mode" ] && [ ! -e "$MAN" ]; then
        rm -rf "$STAGE"
        echo "deployed=no"
        exit 0
    fi
    do_stop >/dev/null 2>&1 || true
    if [ "$mode" = systemd ]; then
        $SUDO systemctl disable "$UNIT" >/dev/null 2>&1 || true
    fi
    grep -q '\.key_secret$' "$MAN" && echo "curve=1"
    sed -n 's/^file //p' "$MAN" | while IFS= read -r f; do
        if [ "$f" = "$UNITPATH" ]; then $SUDO rm -f "$f"; else rm -f "$f"; fi
    done
    [ "$mode" = systemd ] && { $SUDO systemctl daemon-reload || true; }
    # Runtime files the worker and supervisor made.
    rm -f "$P/run/supervise.pid" "$P/run/worker.pid" "$P/run/status" \
        "$P/log/worker.log" "$P/log/worker.log.1"
    rm -rf "$STAGE"
    dirs=$(sed -n 's/^dir //p' "$MAN")
    rm -f "$MAN"
    # Deepest first; rmdir leaves anything that is not empty.
    printf '%s\n' "$dirs" | awk '{ print length($0) "\t" $0 }' | sort -rn |
        cut -f2- | while IFS= read -r d; do
        [ -n "$d" ] && rmdir "$d" 2>/dev/null
    done
    left=
    [ -e "$P" ] && left=$(find "$P" 2>/dev/null | head -n 5 | tr '\n' ' ')
    echo "removed=1"
    [ -n "$left" ] && echo "left=$left"
    exit 0
    ;;
*)
    rc=2 die "unknown op '$op'"
    ;;
esac
