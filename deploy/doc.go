// Package deploy holds rstguard's deployment files: the systemd unit
// (rstguard.service), the iptables, ip6tables and nftables rules that queue
// forwarded TCP with bypass and drop resets rstguard did not judge, with
// rstguard-rules.sh to install and remove them (embedded for the lab, its
// only Go code; it imports nothing of rstguard's), the Grafana dashboard, the Prometheus
// alerting rules and install.sh. Its tests check them: the unit passes
// systemd-analyze verify and keeps its hardening, the alert rules pass
// promtool and their unit tests, every metric the dashboard and the alerts
// name exists in the daemon's golden scrape, the rules load into a scratch
// network namespace, and with no daemon bound forwarded TCP still flows.
package deploy
