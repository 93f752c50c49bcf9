// Package nspawn tests deploy/rstguard.service under a real systemd: it
// boots systemd (Debian bookworm, systemd 252) as PID 1 of a
// systemd-nspawn container with a private network namespace, installs
// rstguard into it with deploy/install.sh, and checks what only a real
// service manager can show: READY=1 before active, RELOADING=1/READY=1 on
// reload, the watchdog, Restart=on-failure, DynamicUser with only
// CAP_NET_ADMIN, journal priorities, a clean stop and the exposure score of
// systemd-analyze security. TestDebUnderSystemd installs the Debian package
// (make deb) with dpkg in another boot and checks its maintainer scripts
// under that systemd: installed but neither enabled nor started, an upgrade
// restarts the running service, dpkg -r stops it, dpkg --purge leaves
// nothing.
//
// It needs root, systemd-nspawn (Debian package systemd-container) and
// mmdebstrap. The container root is built once with mmdebstrap and cached in
// /var/cache/rstguard-nspawn/bookworm (RSTGUARD_NSPAWN_CACHE overrides);
// every run boots an overlay of it, so the cache stays pristine.
//
//	flock /tmp/rstguard-netns.lock env RSTGUARD_E2E=1 go test -count=1 -v ./deploy/nspawn/
//
// Without RSTGUARD_E2E=1 the test skips (naming what is missing, if
// anything): a plain go test ./... as root must not download a Debian root
// or boot containers outside the netns lock. With it, a missing privilege
// or tool fails the test. RSTGUARD_JOURNAL_PRIORITY_CHECK=1 turns the journal
// priority check into a failure (until the daemon logs with priorities it
// is reported as an expected failure).
package nspawn
