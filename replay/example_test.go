package replay_test

import (
	"fmt"
	"os"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/policy"
	"github.com/rstguard/rstguard/replay"
)

// Replaying a capture of a refused connection: ARP, the SYN, the RST|ACK
// that refuses it, and IPv6 multicast listener reports.
func ExampleRun() {
	f, err := os.Open("testdata/refused.pcap")
	if err != nil {
		panic(err)
	}
	defer f.Close()
	eng := policy.NewEngine(policy.DefaultConfig(), conntrack.DefaultConfig())
	sum, err := replay.Run(f, eng, func(fr replay.Frame) {
		fmt.Printf("%s\n", fr.AppendText(nil))
	})
	if err != nil {
		panic(err)
	}
	_ = sum.WriteSummary(os.Stdout)
	// Output:
	//      1 07:48:14.210215000 accept  not_tcp                  none         (not IP)
	//      2 07:48:14.210258000 accept  not_tcp                  none         (not IP)
	//      3 07:48:14.210262000 accept  tracked                  none                192.0.2.1:48994 > 192.0.2.2:9            S   seq=2969794058 ack=0 len=0
	//      4 07:48:14.210283000 accept  rst_valid                syn_sent                192.0.2.2:9 > 192.0.2.1:48994        RA  seq=0 ack=2969794059 len=0
	//      5 07:48:14.332777000 accept  not_tcp                  none                             :: > ff02::16
	//      6 07:48:14.460792000 accept  not_tcp                  none                             :: > ff02::16
	// frames: 6 (TCP 2, not IP 2), flows created: 1, dropped: 0
	// verdict  reason     frames
	// accept   tracked    1
	// accept   rst_valid  1
	// accept   not_tcp    4
}
