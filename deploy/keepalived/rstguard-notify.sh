#!/bin/sh
# rstguard-notify.sh [LOGFILE] TYPE NAME STATE PRIORITY: keepalived's notify
# script on an rstguard gateway (keepalived appends the last four
# arguments). It records every VRRP transition with the wall-clock time and
# whether the local guard was ready at that moment: to LOGFILE if given (an
# absolute path; `rstguard lab --only ha-failover` reads it to time the
# takeover), else to syslog (tag rstguard-ha).
#
# Nothing has to be done on a transition: the guard runs on both gateways
# all the time, and rstguard-check.sh keeps a gateway whose guard is not
# ready from becoming MASTER. A backup's guard picks taken-over flows up
# from their first packet (README, "High availability").
now=$(date +%s.%N)
log=
case ${1:-} in /*) log=$1; shift ;; esac
guard=not-ready
curl -fsS -o /dev/null --max-time 1 "http://${RSTGUARD_METRICS:-127.0.0.1:9813}/readyz" 2>/dev/null && guard=ready
line="$now ${1:-?} ${2:-?} ${3:-?} guard=$guard"
if [ -n "$log" ]; then
	echo "$line" >>"$log"
else
	logger -t rstguard-ha "$line"
fi
exit 0
