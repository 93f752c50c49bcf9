#!/bin/sh
# Install rstguard on a gateway: the binary, the systemd unit, the example
# configuration (only if none exists), the rules, dashboard and alerts, the
# man page and the bash completion. --uninstall removes them again.
#
#   deploy/install.sh [BINARY]          (make install calls it)
#   deploy/install.sh --uninstall       (make uninstall calls it)
#
# BINARY defaults to bin/rstguard. Environment:
#   DESTDIR  staging root for packaging (default: empty, the live system)
#   PREFIX   where the binary and shared files go (default: /usr/local)
#   SYSCONFDIR  configuration root (default: /etc)
#   UNITDIR  systemd unit directory (default: $SYSCONFDIR/systemd/system)
#
# It never overwrites an existing configuration, and it does not start
# anything: it prints the commands that do. --uninstall removes every file
# install put there (with the same DESTDIR, PREFIX, SYSCONFDIR, UNITDIR),
# the configuration only if it is still the shipped example (an edited one
# is kept and named), and the directories that are left empty; on the live
# system it first stops and disables the service.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
mode=install
if [ "${1:-}" = --uninstall ]; then
	mode=uninstall
	shift
fi
bin=${1:-$root/bin/rstguard}
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
SYSCONFDIR=${SYSCONFDIR:-/etc}
UNITDIR=${UNITDIR:-$SYSCONFDIR/systemd/system}

die() { echo "install.sh: $*" >&2; exit 1; }

case "$PREFIX" in /*) ;; *) die "PREFIX must be an absolute path, got '$PREFIX'" ;; esac

example=""
for f in "$root/config.example.toml" "$root/config/config.example.toml"; do
	if [ -f "$f" ]; then example=$f; break; fi
done

bindir=$PREFIX/bin
sharedir=$PREFIX/share/rstguard
confdir=$SYSCONFDIR/rstguard
mandir=$PREFIX/share/man/man8
compdir=$PREFIX/share/bash-completion/completions
shared="iptables.rules ip6tables.rules nftables.conf grafana-dashboard.json alerts.yml rstguard-rules.sh config.example.toml"

if [ "$mode" = uninstall ]; then
	if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && [ -e "$UNITDIR/rstguard.service" ]; then
		systemctl disable --now rstguard.service || true
	fi
	for f in "$bindir/rstguard" "$UNITDIR/rstguard.service" "$mandir/rstguard.8" "$compdir/rstguard"; do
		rm -f "$DESTDIR$f"
	done
	for f in $shared; do
		rm -f "$DESTDIR$sharedir/$f"
	done
	conf=$DESTDIR$confdir/config.toml
	if [ -e "$conf" ]; then
		if [ -n "$example" ] && cmp -s "$conf" "$example"; then
			rm -f "$conf"
		else
			echo "kept $conf: it differs from the shipped example (remove it by hand)"
		fi
	fi
	rmdir "$DESTDIR$sharedir" "$DESTDIR$confdir" 2>/dev/null || true
	if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
	fi
	echo "removed rstguard from $DESTDIR$bindir, $DESTDIR$UNITDIR, $DESTDIR$sharedir, $DESTDIR$mandir, $DESTDIR$compdir"
	exit 0
fi

[ -f "$bin" ] && [ -x "$bin" ] || die "$bin is not an executable file; build it first (make build) or pass its path"

install -d -m 0755 "$DESTDIR$bindir" "$DESTDIR$UNITDIR" "$DESTDIR$confdir" "$DESTDIR$sharedir" \
	"$DESTDIR$mandir" "$DESTDIR$compdir"
install -m 0755 "$bin" "$DESTDIR$bindir/rstguard"

# The unit names /usr/local/bin/rstguard and /etc/rstguard/config.toml;
# rewrite both for another PREFIX or SYSCONFDIR.
sed -e "s#/usr/local/bin/rstguard#$bindir/rstguard#g" \
	-e "s#/etc/rstguard/config.toml#$confdir/config.toml#g" \
	"$here/rstguard.service" >"$DESTDIR$UNITDIR/rstguard.service.tmp"
chmod 0644 "$DESTDIR$UNITDIR/rstguard.service.tmp"
mv "$DESTDIR$UNITDIR/rstguard.service.tmp" "$DESTDIR$UNITDIR/rstguard.service"

if [ -e "$DESTDIR$confdir/config.toml" ]; then
	echo "kept existing $DESTDIR$confdir/config.toml"
elif [ -n "$example" ]; then
	install -m 0644 "$example" "$DESTDIR$confdir/config.toml"
else
	echo "install.sh: no config.example.toml in $root; writing an empty configuration (all defaults)" >&2
	printf '# rstguard configuration; every key and its default: config.example.toml in the source.\n' >"$DESTDIR$confdir/config.toml"
	chmod 0644 "$DESTDIR$confdir/config.toml"
fi

for f in iptables.rules ip6tables.rules nftables.conf grafana-dashboard.json alerts.yml; do
	install -m 0644 "$here/$f" "$DESTDIR$sharedir/$f"
done
install -m 0755 "$here/rstguard-rules.sh" "$DESTDIR$sharedir/rstguard-rules.sh"
if [ -n "$example" ]; then
	install -m 0644 "$example" "$DESTDIR$sharedir/config.example.toml"
fi
install -m 0644 "$root/docs/rstguard.8" "$DESTDIR$mandir/rstguard.8"
install -m 0644 "$here/rstguard.bash-completion" "$DESTDIR$compdir/rstguard"

echo "installed rstguard to $DESTDIR$bindir, unit to $DESTDIR$UNITDIR, rules and dashboards to $DESTDIR$sharedir, man page to $DESTDIR$mandir, completion to $DESTDIR$compdir"
if [ -z "$DESTDIR" ]; then
	cat <<EOF
next:
  $bindir/rstguard check-config $confdir/config.toml
  systemctl daemon-reload && systemctl enable --now rstguard
  $sharedir/rstguard-rules.sh install      (iptables and ip6tables; idempotent)
  (or: nft -f $sharedir/nftables.conf, on a kernel with nft_queue)
EOF
fi
