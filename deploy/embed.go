package deploy

import _ "embed"

// The shipped rules and their installer, embedded so that `rstguard lab`
// installs in its gateway exactly what users install, wherever the binary
// runs from.
var (
	//go:embed iptables.rules
	IPTablesRules []byte
	//go:embed ip6tables.rules
	IP6TablesRules []byte
	//go:embed rstguard-rules.sh
	RulesScript []byte
)

// The keepalived scripts of an rstguard gateway pair (deploy/keepalived/),
// embedded so that the HA lab (`rstguard lab --only ha-failover`) runs the
// ones users install.
var (
	//go:embed keepalived/rstguard-check.sh
	KeepalivedCheck []byte
	//go:embed keepalived/rstguard-notify.sh
	KeepalivedNotify []byte
)
