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
