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
# The files an upgrade replaced (NAME + .dest lines): rollback puts them back.
PREV=$P/.bpfleet-prev
CDIR=$P/etc/curve
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
# Where the boot hook of a supervise board goes: / on a real board; the
# simulated fleet gives each board its own (sshd SetEnv BPFLEET_SYSROOT).
SYSROOT=${BPFLEET_SYSROOT:-}
# The boot hook's name: one per PREFIX (cron.d names: [A-Za-z0-9_-] only).
HOOKNAME=boardpipe-worker$(printf '%s' "$P" | tr -c 'A-Za-z0-9_-' '_')

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

# The boot hook in place, as KIND:PATH (nothing when there is none).
boot_hook_state() {
    sed -n 's/^boot //p' "$MAN" 2>/dev/null | head -n 1
}

# Installs the boot hook of a supervise board, the first of: OpenRC
# (openrc-run), sysvinit (update-rc.d or chkconfig, /etc/init.d), cron
# (/etc/cron.d, @reboot). Prints boot=KIND:PATH, or boot=none.
install_boot_hook() {
    cmd="sh $P/bin/bp-supervise boot $P"
    initd=$SYSROOT/etc/init.d
    # A non-root ssh user cannot write /etc (and bpfleet asks sudo for no
    # more than the systemd unit): no boot hook, said so.
    if [ "$(id -u)" -ne 0 ] && [ ! -w "$SYSROOT/etc/cron.d" ] && [ ! -w "$initd" ]; then
        echo "boot.warning=not root: cannot write $SYSROOT/etc/cron.d or $initd; add '@reboot $cmd' to this user's crontab (crontab -e) for reboots"
        echo "boot=none"
        return 0
    fi
    if [ -d "$initd" ] && { [ -x "$SYSROOT/sbin/openrc-run" ] || [ -x "$SYSROOT/usr/sbin/openrc-run" ]; }; then
        f=$initd/$HOOKNAME
        printf '#!/sbin/openrc-run\n# boardpipe worker under %s (bpfleet)\ndepend() { need net; }\nstart() { %s; }\nstop() { sh %s/bin/bp-supervise stop %s; }\n' \
            "$P" "$cmd" "$P" "$P" >"$f.new" || rc=3 die "cannot write $f.new"
        { chmod 755 "$f.new" && mv -f "$f.new" "$f"; } || rc=3 die "cannot write $f"
        [ -n "$SYSROOT" ] || rc-update add "$HOOKNAME" default >/dev/null 2>&1 || rc=3 die "rc-update add $HOOKNAME failed"
        echo "boot=openrc:$f"
    elif [ -d "$initd" ] && { command -v update-rc.d >/dev/null 2>&1 || command -v chkconfig >/dev/null 2>&1; } && [ ! -d "$SYSROOT/etc/cron.d" ]; then
        f=$initd/$HOOKNAME
        # shellcheck disable=SC2016  # the init script's own $1, $0
        printf '#!/bin/sh\n### BEGIN INIT INFO\n# Provides: %s\n# Required-Start: $network $remote_fs\n# Required-Stop: $network $remote_fs\n# Default-Start: 2 3 4 5\n# Default-Stop: 0 1 6\n# Short-Description: boardpipe worker under %s (bpfleet)\n### END INIT INFO\ncase "$1" in\nstart) %s ;;\nstop) sh %s/bin/bp-supervise stop %s ;;\nstatus) sh %s/bin/bp-supervise status %s ;;\nrestart) sh %s/bin/bp-supervise stop %s; %s ;;\n*) echo "usage: $0 start|stop|status|restart"; exit 2 ;;\nesac\n' \
            "$HOOKNAME" "$P" "$cmd" "$P" "$P" "$P" "$P" "$P" "$P" "$cmd" >"$f.new" || rc=3 die "cannot write $f.new"
        { chmod 755 "$f.new" && mv -f "$f.new" "$f"; } || rc=3 die "cannot write $f"
        if [ -z "$SYSROOT" ]; then
            if command -v update-rc.d >/dev/null 2>&1; then
                update-rc.d "$HOOKNAME" defaults >/dev/null 2>&1 || rc=3 die "update-rc.d $HOOKNAME defaults failed"
            else
                chkconfig --add "$HOOKNAME" >/dev/null 2>&1 || rc=3 die "chkconfig --add $HOOKNAME failed"
            fi
        fi
        echo "boot=sysv:$f"
    elif [ -d "$SYSROOT/etc/cron.d" ]; then
        f=$SYSROOT/etc/cron.d/$HOOKNAME
        printf '# boardpipe worker under %s: started at boot (bpfleet)\n@reboot root %s\n' "$P" "$cmd" >"$f.new" ||
            rc=3 die "cannot write $f.new"
        { chmod 644 "$f.new" && mv -f "$f.new" "$f"; } || rc=3 die "cannot write $f"
        if ! command -v cron >/dev/null 2>&1 && ! command -v crond >/dev/null 2>&1; then
            echo "boot.warning=no cron daemon found: $f is only read where cron runs"
        fi
        echo "boot=cron:$f"
    else
        echo "boot=none"
    fi
}

# Removes the boot hook named in the manifest.
remove_boot_hook() {
    h=$(boot_hook_state)
    [ -n "$h" ] || return 0
    f=${h#*:}
    case $h in
    openrc:*) [ -n "$SYSROOT" ] || rc-update del "$HOOKNAME" default >/dev/null 2>&1 ;;
    sysv:*)
        if [ -z "$SYSROOT" ]; then
            update-rc.d -f "$HOOKNAME" remove >/dev/null 2>&1 || chkconfig --del "$HOOKNAME" >/dev/null 2>&1
        fi
        ;;
    esac
    case $h in none) ;; *) rm -f "$f" ;; esac
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

metrics_file() {
    if [ "$(installed_mode)" = systemd ]; then
        echo /run/boardpipe-worker/metrics.prom
    else
        echo "$P/run/metrics.prom"
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
    t_end=$(($(date +%s) + $1))
    while [ "$(date +%s)" -lt "$t_end" ]; do
        if p=$(worker_pid); then
            sleep 2
            if [ "$(worker_pid)" = "$p" ]; then
                echo "pid=$p"
                return 0
            fi
        else
            sleep 1
        fi
    done
    return 1
}

# Where an installed file NAME goes.
dest_of() {
    case $1 in
    worker) echo "$P/bin/worker" ;;
    worker.env) echo "$P/etc/worker.env" ;;
    bp-supervise) echo "$P/bin/bp-supervise" ;;
    boardpipe-worker.service) echo "$UNITPATH" ;;
    host.key) echo "$CDIR/host.key" ;;
    *) return 1 ;;
    esac
}

# Puts the files of PREV back (the previous deploy's), then drops PREV.
# Prints restored=NAME lines; dies when something cannot be restored.
restore_prev() {
    { [ -d "$PREV" ] && [ -n "$(ls "$PREV" 2>/dev/null)" ]; } || rc=9 die "no previous version kept under $PREV (nothing to roll back to)"
    for f in "$PREV"/*; do
        name=${f##*/}
        dest=$(dest_of "$name") || continue
        if [ "$dest" = "$UNITPATH" ]; then
            { $SUDO cp "$f" "$dest.bpfleet-new" && $SUDO mv -f "$dest.bpfleet-new" "$dest"; } ||
                rc=9 die "cannot restore $dest"
        else
            { cp -p "$f" "$dest.bpfleet-new" && mv -f "$dest.bpfleet-new" "$dest"; } ||
                rc=9 die "cannot restore $dest"
        fi
        echo "restored=$name"
    done
    rm -rf "$PREV" || rc=9 die "cannot remove $PREV"
    if [ "$(installed_mode)" = systemd ]; then
        $SUDO systemctl daemon-reload || rc=9 die "systemctl daemon-reload failed"
    fi
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
    echo "boothook=$(boot_hook_state)"
    if [ "$svc" = systemd ]; then
        # The first existing directory on the way to PREFIX that others
        # (the unit's dynamic user) cannot pass through.
        d=$P
        while [ -n "$d" ] && [ "$d" != / ]; do
            if [ -d "$d" ]; then
                case $(ls -ld "$d" 2>/dev/null) in
                d????????[xt]*) ;;
                *) echo "prefix.closed=$d" ;;
                esac
            fi
            d=$(dirname "$d")
        done | tail -n 1
    fi
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
    rm -rf "$STAGE" || rc=3 die "cannot remove the old $STAGE"
    mkdir -p "$STAGE" || rc=3 die "cannot create $STAGE"
    printf '%s\n' "$created" | sed '/^$/d' >"$STAGE/.created" || rc=3 die "cannot write $STAGE/.created"
    # Recorded now, so that undeploy can remove them even when this first
    # deploy fails before install writes the full manifest.
    if [ -s "$STAGE/.created" ]; then
        { [ ! -f "$MAN" ] || cat "$MAN"; sed 's/^/dir /' "$STAGE/.created"; } | awk '!seen[$0]++' >"$MAN.new" ||
            rc=3 die "cannot write $MAN.new"
        mv -f "$MAN.new" "$MAN" || rc=3 die "cannot write $MAN"
    fi
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
        (do_stop) >/dev/null 2>&1 || true
        if [ "$old" = systemd ]; then
            $SUDO systemctl disable "$UNIT" >/dev/null 2>&1 || true
            $SUDO rm -f "$UNITPATH"
            $SUDO systemctl daemon-reload || true
        else
            rm -f "$P/bin/bp-supervise"
        fi
    fi
    # Keep the files about to be replaced (one generation) for rollback.
    # A deploy that changes nothing keeps the older generation.
    snap=0
    for a in "$@"; do
        [ -f "$STAGE/$a" ] && snap=1
    done
    if [ "$snap" = 1 ] && [ -f "$P/bin/worker" ] && [ -n "$old" ]; then
        { rm -rf "$PREV" && mkdir -p "$PREV"; } || rc=3 die "cannot create $PREV"
        n=0
        for a in "$@"; do
            n=$((n + 1))
            [ $((n % 2)) = 1 ] || continue
            d=$(dest_of "$a") || continue
            if [ -f "$d" ]; then cp -p "$d" "$PREV/$a" || rc=3 die "cannot keep $d in $PREV"; fi
        done
        echo "kept_previous=1"
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
            chmod "$mode" "$STAGE/$name" || rc=3 die "cannot chmod $mode $STAGE/$name"
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
    } | awk '!seen[$0]++' >"$MAN.new" || rc=3 die "cannot write $MAN.new"
    mv -f "$MAN.new" "$MAN" || rc=3 die "cannot write $MAN"
    rm -rf "$STAGE" || rc=3 die "cannot remove $STAGE"
    if [ "$svc" = supervise ]; then
        hook=$(install_boot_hook) || { printf '%s\n' "$hook"; exit 3; }
        printf '%s\n' "$hook"
        b=$(printf '%s\n' "$hook" | sed -n 's/^boot=//p')
        { grep -v '^boot ' "$MAN"; echo "boot $b"; } >"$MAN.new" || rc=3 die "cannot write $MAN.new"
        mv -f "$MAN.new" "$MAN" || rc=3 die "cannot write $MAN"
    else
        remove_boot_hook
    fi
    if [ "$svc" = systemd ]; then
        $SUDO systemctl daemon-reload || rc=3 die "systemctl daemon-reload failed"
        $SUDO systemctl enable "$UNIT" >/dev/null 2>&1 || rc=3 die "systemctl enable failed"
    fi
    v=$(worker_version)
    if [ -z "$v" ]; then
        if [ -d "$PREV" ] && (restore_prev) >/dev/null 2>&1; then
            rc=7 die "the new worker does not run on this board ($(uname -m)): wrong profile? (the previous files are back)"
        fi
        rc=7 die "installed worker does not run on this board ($(uname -m)): wrong profile?"
    fi
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
upgrade-restart)
    # ARGS: seconds the new worker has to come up and stay up. If it does
    # not, the board puts the previous files back and starts them itself.
    wait_s=${1:-20}
    do_stop
    if out=$(START_WAIT=$wait_s do_start); then
        printf '%s\n' "$out"
        exit 0
    fi
    why=$(printf '%s\n' "$out" | sed -n 's/^error=//p' | head -n 1)
    [ -d "$PREV" ] || rc=5 die "new worker not healthy within ${wait_s}s ($why); no previous version kept to roll back to"
    do_stop >/dev/null 2>&1
    (restore_prev) >/dev/null || rc=9 die "new worker not healthy within ${wait_s}s ($why); ROLLBACK FAILED: cannot restore the previous files"
    echo "rolled_back=1"
    if out=$(do_start); then
        printf '%s\n' "$out"
        echo "version=$(worker_version)"
        rc=5 die "new worker not healthy within ${wait_s}s ($why): rolled back to the previous version $(worker_version), running again"
    fi
    rc=9 die "new worker not healthy within ${wait_s}s ($why); rolled back, but the previous version does not start either"
    ;;
rollback)
    # Puts the previous deploy's files back; restarts the worker if it ran.
    [ -n "$(installed_mode)" ] || rc=4 die "not deployed under $P"
    [ -d "$PREV" ] || rc=9 die "no previous version kept under $PREV (nothing to roll back to)"
    was=no
    worker_pid >/dev/null && was=yes
    do_stop >/dev/null
    restore_prev
    echo "version=$(worker_version)"
    if [ "$was" = yes ]; then do_start; fi
    echo "was_running=$was"
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
                grep -E '^(state|done|failed|label\.[A-Za-z0-9_.-]+)=' "$sf"
            fi
        fi
        mf=$(metrics_file)
        # Only a fresh metrics file: the running worker rewrites it every
        # second (a stale one is a stopped worker's).
        mt=$(stat -c %Y "$mf" 2>/dev/null) || mt=0
        if [ -r "$mf" ] && [ $(($(date +%s) - mt)) -le 5 ]; then
            awk '$1 ~ /^boardpipe_worker_tasks_done_total[{]/ { print "metrics.tasks_done=" $2 }
                $1 ~ /^boardpipe_worker_tasks_failed_total[{]/ { print "metrics.tasks_failed=" $2 }
                $1 ~ /^boardpipe_worker_last_task_timestamp_seconds[{]/ { print "metrics.last_task=" $2 }' "$mf"
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
    [ -z "$mode" ] || (do_stop) >/dev/null 2>&1 || true
    if [ "$mode" = systemd ]; then
        $SUDO systemctl disable "$UNIT" >/dev/null 2>&1 || true
    fi
    grep -q '\.key_secret$' "$MAN" && echo "curve=1"
    remove_boot_hook
    sed -n 's/^file //p' "$MAN" | while IFS= read -r f; do
        if [ "$f" = "$UNITPATH" ]; then $SUDO rm -f "$f"; else rm -f "$f"; fi
    done
    [ "$mode" = systemd ] && { $SUDO systemctl daemon-reload || true; }
    # Runtime files the worker and supervisor made.
    rm -f "$P/run/supervise.pid" "$P/run/worker.pid" "$P/run/status" "$P/run/metrics.prom" \
        "$P/log/worker.log" "$P/log/worker.log".[0-9]* "$P/run/log.fifo"
    rm -rf "$STAGE" "$PREV"
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
