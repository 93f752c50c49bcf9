#!/bin/sh
# rstguard-check.sh [ADDR]: keepalived's track script on an rstguard gateway
# (vrrp_script in keepalived.conf). It succeeds while the local rstguard
# answers /readyz on its metrics listener ADDR (default 127.0.0.1:9813):
# every queue bound, packets judged. With `init_fail`, a gateway starts in
# FAULT and leaves it only once its guard is ready, so a backup never takes
# the virtual addresses before its guard judges what they bring; an active
# gateway whose guard dies gives them up.
addr=${1:-127.0.0.1:9813}
exec curl -fsS -o /dev/null --max-time 1 "http://$addr/readyz"
