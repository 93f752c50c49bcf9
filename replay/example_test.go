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

// The per-flow summary of a PPP capture with a forged reset, restricted to
// the flows of one server port.
func ExampleFlowTracker() {
	f, err := os.Open("testdata/link-ppp.pcap")
	if err != nil {
		panic(err)
	}
	defer f.Close()
	ff, err := replay.ParseFlowFilter("net 2001:db8::/32 port 8080")
	if err != nil {
		panic(err)
	}
	var flows replay.FlowTracker
	eng := policy.NewEngine(policy.DefaultConfig(), conntrack.DefaultConfig())
	if _, err := replay.Run(f, eng, func(fr replay.Frame) {
		if ff.Match(&fr) {
			flows.Add(&fr)
		}
	}); err != nil {
		panic(err)
	}
	for _, s := range flows.Flows() {
		fmt.Printf("%s\n", s.AppendJSON(nil))
	}
	// Output:
	// {"flow":1,"src":"[2001:db8::1]:54864","dst":"[2001:db8::2]:8080","first_frame":3,"last_frame":32,"first":"2026-11-23T07:48:15.478084Z","last":"2026-11-23T07:48:15.685473Z","packets":29,"accepted":28,"dropped":1,"drops":{"rst_out_of_window":1},"final_state":"time_wait"}
}
