package policy

import "testing"

func TestSignalsAppendJSON(t *testing.T) {
	tests := []struct {
		ss   Signals
		want string
	}{
		{0, `[]`},
		{1 << SignalTTLMismatch, `["ttl_mismatch"]`},
		{1<<SignalSynAckAfterRefusal | 1<<SignalTalkedAfterReset, `["talked_after_reset","synack_after_refusal"]`},
		{1<<NumSignals - 1, `["talked_after_reset","ttl_mismatch","reset_seq_changed","synack_after_refusal"]`},
	}
	for _, tt := range tests {
		if got := string(tt.ss.AppendJSON(nil)); got != tt.want {
			t.Errorf("Signals(%b).AppendJSON = %s, want %s", tt.ss, got, tt.want)
		}
	}
}

func TestSignalsAppendFields(t *testing.T) {
	if got := string(Signals(0).AppendFields([]byte("{"), 1, 2)); got != "{" {
		t.Errorf("no signals: %s, want nothing appended", got)
	}
	ss := Signals(1 << SignalTalkedAfterReset)
	if got, want := string(ss.AppendFields(nil, 745, 1745)), `,"signals":["talked_after_reset"],"expected":745,"seen":1745`; got != want {
		t.Errorf("AppendFields = %s, want %s", got, want)
	}
}
