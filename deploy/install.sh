#!/bin/sh
# Install rstguard on a gateway: the binary, the systemd unit, the example
# configuration (only if none exists) and the rules, dashboard and alerts.
#
#   deploy/install.sh [BINARY]          (make install calls it)
#
# BINARY defaults to bin/rstguard. Environment:
#   DESTDIR  staging root for packaging (default: empty, the live system)
#   PREFIX   where the binary and shared files go (default: /usr/local)
#   SYSCONFDIR  configuration root (default: /etc)
#   UNITDIR  systemd unit directory (default: $SYSCONFDIR/systemd/system)
#
# It never overwrites an existing configuration, and it does not start
# anything: it prints the commands that do.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
bin=${1:-$root/bin/rstguard}
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
SYSCONFDIR=${SYSCONFDIR:-/etc}
UNITDIR=${UNITDIR:-$SYSCONFDIR/systemd/system}

die() { echo "install.sh: $*" >&2; exit 1; }

[ -f "$bin" ] && [ -x "$bin" ] || die "$bin is not an executable file; build it first (make build) or pass its path"
case "$PREFIX" in /*) ;; *) die "PREFIX must be an absolute path, got '$PREFIX'" ;; esac

example=""
for f in "$root/config.example.toml" "$root/config/config.example.toml"; do
	if [ -f "$f" ]; then example=$f; break; fi
done

bindir=$PREFIX/bin
sharedir=$PREFIX/share/rstguard
confdir=$SYSCONFDIR/rstguard

install -d -m 0755 "$DESTDIR$bindir" "$DESTDIR$UNITDIR" "$DESTDIR$confdir" "$DESTDIR$sharedir"
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

echo "installed rstguard to $DESTDIR$bindir, unit to $DESTDIR$UNITDIR, rules and dashboards to $DESTDIR$sharedir"
if [ -z "$DESTDIR" ]; then
	cat <<EOF
next:
  $bindir/rstguard check-config $confdir/config.toml
  systemctl daemon-reload && systemctl enable --now rstguard
  $sharedir/rstguard-rules.sh install      (iptables and ip6tables; idempotent)
  (or: nft -f $sharedir/nftables.conf, on a kernel with nft_queue)
EOF
fi
