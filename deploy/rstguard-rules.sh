#!/bin/sh
# Install or remove rstguard's firewall rules (iptables and ip6tables),
# idempotently and exactly.
#
#   rstguard-rules.sh install [iptables|ip6tables|both]   (default both)
#   rstguard-rules.sh remove  [iptables|ip6tables|both]
#   rstguard-rules.sh status  [iptables|ip6tables|both]
#
# install loads rstguard's own chains from iptables.rules / ip6tables.rules
# (iptables-restore --noflush creates them, or flushes and refills them) and
# adds the two jumps from built-in chains only where they are missing, so
# running it twice leaves one copy of everything. remove deletes every copy
# of the two jumps, then flushes and deletes the chains; no other rule is
# touched. The rules files are read from $RSTGUARD_RULES_DIR, else the
# directory of this script, else /usr/local/share/rstguard or
# /usr/share/rstguard.
set -eu

action=${1:-}
which=${2:-both}
here=$(cd "$(dirname "$0")" && pwd)
dir=${RSTGUARD_RULES_DIR:-}
if [ -z "$dir" ]; then
	for d in "$here" /usr/local/share/rstguard /usr/share/rstguard; do
		if [ -f "$d/iptables.rules" ]; then dir=$d; break; fi
	done
fi

die() { echo "rstguard-rules.sh: $*" >&2; exit 1; }

# The jumps (table, chain, rule) and rstguard's chains (table chain).
QUEUE_JUMP="-p tcp -j RSTGUARD"
GUARD_JUMP="-m mark --mark 0x20000000/0x60000000 -j RSTGUARD-UNJUDGED"

install_family() { # $1 = iptables or ip6tables
	ipt=$1
	command -v "$ipt-restore" >/dev/null || die "$ipt-restore not found; install the iptables package"
	[ -f "$dir/$ipt.rules" ] || die "no $ipt.rules in '$dir'; set RSTGUARD_RULES_DIR"
	"$ipt-restore" --noflush <"$dir/$ipt.rules"
	# shellcheck disable=SC2086
	"$ipt" -t security -C FORWARD $QUEUE_JUMP 2>/dev/null || "$ipt" -t security -A FORWARD $QUEUE_JUMP
	# shellcheck disable=SC2086
	"$ipt" -t mangle -C POSTROUTING $GUARD_JUMP 2>/dev/null || "$ipt" -t mangle -A POSTROUTING $GUARD_JUMP
}

remove_family() {
	ipt=$1
	command -v "$ipt" >/dev/null || die "$ipt not found; install the iptables package"
	# shellcheck disable=SC2086
	while "$ipt" -t security -C FORWARD $QUEUE_JUMP 2>/dev/null; do "$ipt" -t security -D FORWARD $QUEUE_JUMP; done
	# shellcheck disable=SC2086
	while "$ipt" -t mangle -C POSTROUTING $GUARD_JUMP 2>/dev/null; do "$ipt" -t mangle -D POSTROUTING $GUARD_JUMP; done
	for tc in "security RSTGUARD" "mangle RSTGUARD-UNJUDGED"; do
		set -- $tc
		if "$ipt" -t "$1" -nL "$2" >/dev/null 2>&1; then
			"$ipt" -t "$1" -F "$2"
			"$ipt" -t "$1" -X "$2"
		fi
	done
}

status_family() {
	ipt=$1
	"$ipt" -t security -nvxL RSTGUARD || echo "$ipt: chain RSTGUARD is not installed"
	"$ipt" -t mangle -nvxL RSTGUARD-UNJUDGED || echo "$ipt: chain RSTGUARD-UNJUDGED is not installed"
}

case "$which" in
both) families="iptables ip6tables" ;;
iptables | ip6tables) families=$which ;;
*) die "unknown family '$which'; use iptables, ip6tables or both" ;;
esac
case "$action" in
install | remove | status) ;;
*) die "usage: rstguard-rules.sh install|remove|status [iptables|ip6tables|both]" ;;
esac
for f in $families; do "${action}_family" "$f"; done
