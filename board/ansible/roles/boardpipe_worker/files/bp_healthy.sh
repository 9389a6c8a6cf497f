#!/bin/sh
# bp_healthy.sh KIND PREFIX SECONDS: waits until the worker runs and keeps
# the same pid for 2 s (as bpfleet's upgrade does); prints pid=N, exit 0;
# exit 1 when it does not within SECONDS.
kind=$1 P=$2 secs=$3
pid_of() {
    if [ "$kind" = systemd ]; then
        systemctl is-active --quiet boardpipe-worker.service || return 1
        p=$(systemctl show -p MainPID --value boardpipe-worker.service)
    else
        out=$(sh "$P/bin/bp-supervise" status "$P" 2>/dev/null) || return 1
        p=${out##* worker }
    fi
    case $p in '' | 0 | *[!0-9]*) return 1 ;; esac
    echo "$p"
}
t_end=$(($(date +%s) + secs))
while [ "$(date +%s)" -lt "$t_end" ]; do
    if p=$(pid_of); then
        sleep 2
        if [ "$(pid_of)" = "$p" ]; then
            echo "pid=$p"
            exit 0
        fi
    else
        sleep 1
    fi
done
echo "the worker did not come up and stay up within ${secs}s" >&2
exit 1
