package config

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/policy"
)

func u32(v uint32) *MaskedMark { return &MaskedMark{Value: v, Mask: 0xffffffff} }

// TestParseValid sets every key to values it accepts and checks that exactly
// that field changed from Default.
func TestParseValid(t *testing.T) {
	tests := []struct {
		name string
		toml string
		want func(c *Config) // applied to Default
	}{
		{"queue array", "[queue]\nnumbers = [0, 1, 2]", func(c *Config) { c.Queue.Numbers = []uint16{0, 1, 2} }},
		{"queue array unordered", "[queue]\nnumbers = [7, 3]", func(c *Config) { c.Queue.Numbers = []uint16{7, 3} }},
		{"queue array multiline", "[queue]\nnumbers = [\n  4,\n  5, # five\n]", func(c *Config) { c.Queue.Numbers = []uint16{4, 5} }},
		{"queue range", "[queue]\nnumbers = \"0:3\"", func(c *Config) { c.Queue.Numbers = []uint16{0, 1, 2, 3} }},
		{"queue range spaces", "[queue]\nnumbers = \" 10 : 12 \"", func(c *Config) { c.Queue.Numbers = []uint16{10, 11, 12} }},
		{"queue range of one", "[queue]\nnumbers = \"5:5\"", func(c *Config) { c.Queue.Numbers = []uint16{5} }},
		{"queue single string", "[queue]\nnumbers = \"9\"", func(c *Config) { c.Queue.Numbers = []uint16{9} }},
		{"queue integer", "[queue]\nnumbers = 65535", func(c *Config) { c.Queue.Numbers = []uint16{65535} }},
		{"queue range top", "[queue]\nnumbers = \"65534:65535\"", func(c *Config) { c.Queue.Numbers = []uint16{65534, 65535} }},
		{"fail_open false", "[queue]\nfail_open = false", func(c *Config) { c.Queue.FailOpen = false }},
		{"gso false", "[queue]\ngso = false", func(c *Config) { c.Queue.GSO = false }},
		{"max_queue_len", "[queue]\nmax_queue_len = 1", func(c *Config) { c.Queue.MaxQueueLen = 1 }},
		{"max_queue_len max", "[queue]\nmax_queue_len = 4294967295", func(c *Config) { c.Queue.MaxQueueLen = 4294967295 }},
		{"copy_range min", "[queue]\ncopy_range = 128", func(c *Config) { c.Queue.CopyRange = 128 }},
		{"copy_range max", "[queue]\ncopy_range = 65535", func(c *Config) { c.Queue.CopyRange = 65535 }},
		{"socket_receive_buffer", "[queue]\nsocket_receive_buffer = 65536", func(c *Config) { c.Queue.SocketReceiveBuffer = 65536 }},
		{"socket_receive_buffer max", "[queue]\nsocket_receive_buffer = 1073741824", func(c *Config) { c.Queue.SocketReceiveBuffer = 1 << 30 }},
		{"mark_accept hex", "[queue]\nmark_accept = 0x10", func(c *Config) { c.Queue.MarkAccept = u32(16) }},
		{"mark_accept zero", "[queue]\nmark_accept = 0", func(c *Config) { c.Queue.MarkAccept = u32(0) }},
		{"mark_drop max", "[queue]\nmark_drop = 0xffffffff", func(c *Config) { c.Queue.MarkDrop = u32(0xffffffff) }},
		{"both marks", "[queue]\nmark_accept = 1\nmark_drop = 2", func(c *Config) { c.Queue.MarkAccept, c.Queue.MarkDrop = u32(1), u32(2) }},
		{"mark_accept value/mask", "[queue]\nmark_accept = \"0x10/0xf0\"", func(c *Config) { c.Queue.MarkAccept = &MaskedMark{0x10, 0xf0} }},
		{"judged_mark bit", "[guard]\njudged_mark = \"0x100/0x100\"", func(c *Config) { c.Guard.JudgedMark = MaskedMark{0x100, 0x100} }},
		{"judged_mark field", "[guard]\njudged_mark = \" 0x20 / 0xf0 \"", func(c *Config) { c.Guard.JudgedMark = MaskedMark{0x20, 0xf0} }},
		{"judged_mark decimal", "[guard]\njudged_mark = \"4/4\"", func(c *Config) { c.Guard.JudgedMark = MaskedMark{4, 4} }},
		{"judged_mark off", "[guard]\njudged_mark = \"\"", func(c *Config) { c.Guard.JudgedMark = MaskedMark{} }},
		{"judged_mark off 0/0", "[guard]\njudged_mark = \"0/0\"", func(c *Config) { c.Guard.JudgedMark = MaskedMark{} }},
		{"max_flows min", "[conntrack]\nmax_flows = 1024", func(c *Config) { c.Conntrack.MaxFlows = 1024 }},
		{"max_flows underscores", "[conntrack]\nmax_flows = 2_000_000", func(c *Config) { c.Conntrack.MaxFlows = 2000000 }},
		{"pickup false", "[conntrack]\npickup = false", func(c *Config) { c.Conntrack.Pickup = false }},
		{"timeout string", "[conntrack.timeouts]\nsyn_sent = \"30s\"", func(c *Config) { c.Conntrack.Timeouts.SynSent = 30 * time.Second }},
		{"timeout seconds", "[conntrack.timeouts]\nsyn_recv = 45", func(c *Config) { c.Conntrack.Timeouts.SynRecv = 45 * time.Second }},
		{"timeout hours", "[conntrack.timeouts]\nestablished = \"48h\"", func(c *Config) { c.Conntrack.Timeouts.Established = 48 * time.Hour }},
		{"timeout compound", "[conntrack.timeouts]\nfin_wait = \"1m30s\"", func(c *Config) { c.Conntrack.Timeouts.FinWait = 90 * time.Second }},
		{"timeout min", "[conntrack.timeouts]\nclose_wait = \"1s\"", func(c *Config) { c.Conntrack.Timeouts.CloseWait = time.Second }},
		{"timeout max", "[conntrack.timeouts]\nlast_ack = \"8760h\"", func(c *Config) { c.Conntrack.Timeouts.LastAck = 8760 * time.Hour }},
		{"timeout max seconds", "[conntrack.timeouts]\ntime_wait = 31536000", func(c *Config) { c.Conntrack.Timeouts.TimeWait = 8760 * time.Hour }},
		{"timeout closed", "[conntrack.timeouts]\nclosed = \"2500ms\"", func(c *Config) { c.Conntrack.Timeouts.Closed = 2500 * time.Millisecond }},
		{"timeouts inline table", "[conntrack]\ntimeouts = { syn_sent = 5, closed = \"3s\" }", func(c *Config) {
			c.Conntrack.Timeouts.SynSent, c.Conntrack.Timeouts.Closed = 5*time.Second, 3*time.Second
		}},
		{"timeouts dotted", "conntrack.timeouts.time_wait = 7", func(c *Config) { c.Conntrack.Timeouts.TimeWait = 7 * time.Second }},
		{"rst_mode exact", "[policy]\nrst_mode = \"exact\"", func(c *Config) { c.Policy.RSTMode = "exact" }},
		{"rst_mode window", "[policy]\nrst_mode = 'window'", func(c *Config) {}},
		{"unknown_flow_rst drop", "[policy]\nunknown_flow_rst = \"drop\"", func(c *Config) { c.Policy.UnknownFlowRST = "drop" }},
		{"drop_out_of_window", "[policy]\ndrop_out_of_window = true", func(c *Config) { c.Policy.DropOutOfWindow = true }},
		{"listen off", "[metrics]\nlisten = \"\"", func(c *Config) { c.Metrics.Listen = "" }},
		{"listen all", "[metrics]\nlisten = \":9100\"", func(c *Config) { c.Metrics.Listen = ":9100" }},
		{"listen v6", "[metrics]\nlisten = \"[::1]:9813\"", func(c *Config) { c.Metrics.Listen = "[::1]:9813" }},
		{"listen v6 doc", "[metrics]\nlisten = \"[2001:db8::1]:80\"", func(c *Config) { c.Metrics.Listen = "[2001:db8::1]:80" }},
		{"listen hostname", "[metrics]\nlisten = \"localhost:9813\"", func(c *Config) { c.Metrics.Listen = "localhost:9813" }},
		{"level debug", "[log]\nlevel = \"debug\"", func(c *Config) { c.Log.Level = "debug" }},
		{"level warn", "[log]\nlevel = \"warn\"", func(c *Config) { c.Log.Level = "warn" }},
		{"level error", "[log]\nlevel = \"error\"", func(c *Config) { c.Log.Level = "error" }},
		{"format json", "[log]\nformat = \"json\"", func(c *Config) { c.Log.Format = "json" }},
		{"format text", "[log]\nformat = \"text\"", func(c *Config) { c.Log.Format = "text" }},
		{"format journal", "[log]\nformat = \"journal\"", func(c *Config) { c.Log.Format = "journal" }},
		{"format auto", "[log]\nformat = \"auto\"", func(c *Config) { c.Log.Format = "auto" }},
		{"rate_limit float", "[log]\nrate_limit = 0.5", func(c *Config) { c.Log.RateLimit = 0.5 }},
		{"rate_limit off", "[log]\nrate_limit = 0", func(c *Config) { c.Log.RateLimit = 0 }},
		{"rate_limit int", "[log]\nrate_limit = 1000", func(c *Config) { c.Log.RateLimit = 1000 }},
		{"burst", "[log]\nburst = 1", func(c *Config) { c.Log.Burst = 1 }},
		{"inline section", "queue = { gso = false }", func(c *Config) { c.Queue.GSO = false }},
		{"comments and blanks", "# nothing\n\n[log] # the log\n  burst = 3 # three\n", func(c *Config) { c.Log.Burst = 3 }},
		{"empty sections", "[queue]\n[conntrack]\n[conntrack.timeouts]\n[policy]\n[metrics]\n[log]\n", func(c *Config) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse("t.toml", []byte(tt.toml))
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.toml, err)
			}
			want := Default()
			want.File = "t.toml"
			tt.want(want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Parse(%q)\n got %+v\nwant %+v", tt.toml, got, want)
			}
		})
	}
}

// TestParseInvalid gives every key values it rejects and checks the one
// error's line, key and message.
func TestParseInvalid(t *testing.T) {
	tests := []struct {
		name string
		toml string
		line int
		key  string
		msg  string // a substring of Msg
	}{
		// [queue] numbers
		{"queue duplicate array", "[queue]\nnumbers = [1, 2, 1]", 2, "[queue] numbers", "queue 1 is listed twice"},
		{"queue empty array", "[queue]\nnumbers = []", 2, "[queue] numbers", "no queues given"},
		{"queue too big", "[queue]\nnumbers = [65536]", 2, "[queue] numbers", "queue 65536 is out of range"},
		{"queue negative", "[queue]\nnumbers = -1", 2, "[queue] numbers", "queue -1 is out of range"},
		{"queue range too big", "[queue]\nnumbers = \"65535:65536\"", 2, "[queue] numbers", "out of range; queue numbers go from 0 to 65535"},
		{"queue range backwards", "\n[queue]\n\nnumbers = \"3:0\"", 4, "[queue] numbers", `runs backwards; write the lower queue first, e.g. "0:3"`},
		{"queue range garbage", "[queue]\nnumbers = \"0-3\"", 2, "[queue] numbers", `"0-3" is not a queue range`},
		{"queue range open", "[queue]\nnumbers = \"0:\"", 2, "[queue] numbers", "is not a queue range"},
		{"queue range negative", "[queue]\nnumbers = \"-1:2\"", 2, "[queue] numbers", "out of range"},
		{"queue empty string", "[queue]\nnumbers = \"\"", 2, "[queue] numbers", "is not a queue range"},
		{"queue array of strings", "[queue]\nnumbers = [\"0\"]", 2, "[queue] numbers", "queue numbers must be integers"},
		{"queue float", "[queue]\nnumbers = 1.5", 2, "[queue] numbers", "must be an array of queue numbers or a range string"},
		{"queue bool", "[queue]\nnumbers = true", 2, "[queue] numbers", "not the boolean true"},
		// [queue] others
		{"fail_open string", "[queue]\nfail_open = \"true\"", 2, "[queue] fail_open", "must be true or false (without quotes), not the string \"true\""},
		{"gso int", "[queue]\ngso = 1", 2, "[queue] gso", "must be true or false"},
		{"max_queue_len zero", "[queue]\nmax_queue_len = 0", 2, "[queue] max_queue_len", "0 is out of range; use an integer from 1 to 4294967295"},
		{"max_queue_len too big", "[queue]\nmax_queue_len = 4294967296", 2, "[queue] max_queue_len", "out of range"},
		{"max_queue_len string", "[queue]\nmax_queue_len = \"8k\"", 2, "[queue] max_queue_len", "must be an integer"},
		{"copy_range small", "[queue]\ncopy_range = 64", 2, "[queue] copy_range", "64 is out of range; use an integer from 128 to 65535"},
		{"copy_range big", "[queue]\ncopy_range = 65536", 2, "[queue] copy_range", "out of range"},
		{"copy_range float", "[queue]\ncopy_range = 256.0", 2, "[queue] copy_range", "not the float 256"},
		{"socket_receive_buffer small", "[queue]\nsocket_receive_buffer = 4096", 2, "[queue] socket_receive_buffer", "from 65536 to 1073741824"},
		{"socket_receive_buffer big", "[queue]\nsocket_receive_buffer = 2147483648", 2, "[queue] socket_receive_buffer", "out of range"},
		{"socket_receive_buffer string", "[queue]\nsocket_receive_buffer = \"4MiB\"", 2, "[queue] socket_receive_buffer", "must be an integer"},
		{"mark_accept negative", "[queue]\nmark_accept = -1", 2, "[queue] mark_accept", "must be a packet mark"},
		{"mark_accept big", "[queue]\nmark_accept = 0x100000000", 2, "[queue] mark_accept", "from 0 to 4294967295"},
		{"mark_drop string", "[queue]\nmark_drop = \"0x2\"", 2, "[queue] mark_drop", "write an integer (the whole mark) or"},
		{"marks equal", "[queue]\nmark_accept = 7\nmark_drop = 7", 3, "[queue] mark_drop", "use two different marks"},
		{"judged_mark integer", "[guard]\njudged_mark = 4", 2, "[guard] judged_mark", "must be a string"},
		{"judged_mark no mask", "[guard]\njudged_mark = \"0x4\"", 2, "[guard] judged_mark", "is not a mark"},
		{"judged_mark garbage", "[guard]\njudged_mark = \"x/0x4\"", 2, "[guard] judged_mark", "is not a mark"},
		{"judged_mark outside mask", "[guard]\njudged_mark = \"0x3/0x1\"", 2, "[guard] judged_mark", "outside its mask"},
		{"judged_mark clears", "[guard]\njudged_mark = \"0/0x4\"", 2, "[guard] judged_mark", "clears the bits"},
		{"judged_mark too big", "[guard]\njudged_mark = \"0x100000000/0x100000000\"", 2, "[guard] judged_mark", "is not a mark"},
		// [conntrack]
		{"max_flows small", "[conntrack]\nmax_flows = 1023", 2, "[conntrack] max_flows", "1023 is out of range; use an integer from 1024"},
		{"max_flows big", "[conntrack]\nmax_flows = 134217729", 2, "[conntrack] max_flows", "out of range"},
		{"max_flows negative", "[conntrack]\nmax_flows = -5", 2, "[conntrack] max_flows", "out of range"},
		{"max_flows string", "[conntrack]\nmax_flows = \"1M\"", 2, "[conntrack] max_flows", "not the string \"1M\""},
		{"pickup string", "[conntrack]\npickup = \"on\"", 2, "[conntrack] pickup", "must be true or false"},
		{"timeouts not a table", "[conntrack]\ntimeouts = 5", 2, "[conntrack.timeouts]", "must be a table, not the integer 5; write it as a section header [conntrack.timeouts]"},
		{"timeout days", "[conntrack.timeouts]\nestablished = \"5d\"", 2, "[conntrack.timeouts] established", `"5d" is not a duration`},
		{"timeout zero", "[conntrack.timeouts]\nsyn_sent = 0", 2, "[conntrack.timeouts] syn_sent", "out of range"},
		{"timeout below 1s", "[conntrack.timeouts]\nsyn_recv = \"500ms\"", 2, "[conntrack.timeouts] syn_recv", "500ms is out of range; use a timeout from 1s"},
		{"timeout negative", "[conntrack.timeouts]\nfin_wait = \"-5s\"", 2, "[conntrack.timeouts] fin_wait", "out of range"},
		{"timeout negative int", "[conntrack.timeouts]\nclose_wait = -5", 2, "[conntrack.timeouts] close_wait", "out of range"},
		{"timeout huge int", "[conntrack.timeouts]\nlast_ack = 9223372036854775807", 2, "[conntrack.timeouts] last_ack", "out of range"},
		{"timeout above a year", "[conntrack.timeouts]\ntime_wait = \"8761h\"", 2, "[conntrack.timeouts] time_wait", "out of range"},
		{"timeout float", "[conntrack.timeouts]\nclosed = 1.5", 2, "[conntrack.timeouts] closed", "must be a duration, not the float 1.5"},
		{"timeout no unit", "[conntrack.timeouts]\nclosed = \"10\"", 2, "[conntrack.timeouts] closed", `"10" is not a duration`},
		// [policy]
		{"rst_mode strict", "[policy]\nrst_mode = \"strict\"", 2, "[policy] rst_mode", `"strict" is not a valid value; use "window" or "exact"`},
		{"rst_mode case", "[policy]\nrst_mode = \"Exact\"", 2, "[policy] rst_mode", "not a valid value"},
		{"rst_mode bool", "[policy]\nrst_mode = true", 2, "[policy] rst_mode", "the boolean true is not a valid value"},
		{"unknown_flow_rst", "[policy]\nunknown_flow_rst = \"reject\"", 2, "[policy] unknown_flow_rst", `use "accept" or "drop"`},
		{"drop_out_of_window", "[policy]\ndrop_out_of_window = \"no\"", 2, "[policy] drop_out_of_window", "must be true or false"},
		// [metrics]
		{"listen no port", "[metrics]\nlisten = \"127.0.0.1\"", 2, "[metrics] listen", "is not a listen address"},
		{"listen port zero", "[metrics]\nlisten = \"127.0.0.1:0\"", 2, "[metrics] listen", "the port must be a number from 1 to 65535"},
		{"listen port big", "[metrics]\nlisten = \":70000\"", 2, "[metrics] listen", "the port must be"},
		{"listen port name", "[metrics]\nlisten = \":http\"", 2, "[metrics] listen", "the port must be"},
		{"listen bad host", "[metrics]\nlisten = \"no_such host:80\"", 2, "[metrics] listen", "neither an IP address nor a host name"},
		{"listen int", "[metrics]\nlisten = 9813", 2, "[metrics] listen", "must be a string, not the integer 9813"},
		// [log]
		{"level", "[log]\nlevel = \"verbose\"", 2, "[log] level", `use "debug", "info", "warn" or "error"`},
		{"format", "[log]\nformat = \"logfmt\"", 2, "[log] format", `use "auto", "text", "json" or "journal"`},
		{"rate_limit negative", "[log]\nrate_limit = -1", 2, "[log] rate_limit", "out of range"},
		{"rate_limit nan", "[log]\nrate_limit = nan", 2, "[log] rate_limit", "out of range"},
		{"rate_limit inf", "[log]\nrate_limit = inf", 2, "[log] rate_limit", "out of range"},
		{"rate_limit string", "[log]\nrate_limit = \"10/s\"", 2, "[log] rate_limit", "must be a number of log lines per second"},
		{"burst zero", "[log]\nburst = 0", 2, "[log] burst", "0 is out of range; use an integer from 1"},
		{"burst float", "[log]\nburst = 2.5", 2, "[log] burst", "must be an integer"},
		// Unknown keys and sections.
		{"unknown top-level", "# c\n\nverbose = true", 3, "verbose", "unknown key; keys go in one of the sections [queue], [conntrack], [policy], [metrics], [log], [guard], [control], [injection] and [events]"},
		{"key outside its section", "[log]\nlevel = \"info\"\n[queue]\nmax_flows = 5000", 4, "[queue] max_flows", "max_flows belongs in [conntrack]"},
		{"top-level key of a section", "rst_mode = \"exact\"", 1, "rst_mode", "rst_mode belongs in [policy]"},
		{"unknown in section", "[policy]\nrst_mode = \"exact\"\n\n  rst_mdoe = \"exact\"", 4, "[policy] rst_mdoe", `did you mean "rst_mode"? the keys of [policy] are mode, override, rst_mode, unknown_flow_rst and drop_out_of_window`},
		{"unknown in subsection", "[conntrack.timeouts]\nsyn_sent = 5\nsynsent = 5", 3, "[conntrack.timeouts] synsent", `did you mean "syn_sent"?`},
		{"unknown section", "[queue]\nnumbers = [0]\n[queues]\nx = 1", 3, "[queues]", "unknown section; the sections are [queue], [conntrack], [policy], [metrics], [log], [guard], [control], [injection] and [events]"},
		{"unknown subsection", "[conntrack]\n[conntrack.timeout]\nsyn_sent = 1", 2, "[conntrack.timeout]", "unknown table"},
		{"unknown in inline table", "[conntrack]\ntimeouts = { syn_sent = 5,\n  bogus = 1 }", 3, "[conntrack.timeouts] bogus", "the keys of [conntrack.timeouts] are syn_sent"},
		{"unknown dotted", "policy.modes = \"exact\"", 1, "[policy] modes", "unknown key"},
		{"unknown quoted", "[log]\n\"rate limit\" = 5", 2, "[log] rate limit", "unknown key"},
		{"case matters", "[Queue]\nnumbers = [0]", 1, "[Queue]", "unknown section"},
		{"section not a table", "log = \"debug\"", 1, "[log]", "must be a table, not the string \"debug\"; write it as a section header [log]"},
		{"array of tables", "[[queue]]\nnumbers = [0]", 1, "[queue]", "must be a table, not an array of tables"},
		{"byte order mark", "\ufeff[log]\nlevel = \"x\"", 2, "[log] level", "not a valid value"},
		{"CRLF", "[log]\r\n\r\nbogus = 1\r\n", 3, "[log] bogus", "unknown key"},
		// TOML syntax errors: the parser's position.
		{"syntax unterminated array", "[queue]\nnumbers = [1,\n", 2, "[queue] numbers", "TOML syntax error at column 14"},
		{"syntax bare string", "[policy]\n\nrst_mode = exact", 3, "[policy] rst_mode", "TOML syntax error"},
		{"syntax unquoted duration", "[conntrack.timeouts]\nsyn_sent = 5d", 2, "[conntrack.timeouts]", "TOML syntax error at column 13"},
		{"syntax duplicate key", "[log]\nlevel = \"info\"\nlevel = \"debug\"", 3, "[log] level", "has already been defined"},
		{"syntax duplicate section", "[log]\n[policy]\n[log]", 3, "", "has already been defined"},
		{"syntax bad header", "[log\nlevel = 1", 2, "", "expected '.' or ']' to end table name"},
		{"syntax int overflow", "[conntrack]\nmax_flows = 99999999999999999999", 2, "[conntrack] max_flows", "out of range for int64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("/etc/rstguard/config.toml", []byte(tt.toml))
			if err == nil {
				t.Fatalf("Parse(%q) = %+v, want an error", tt.toml, c)
			}
			errs := Errors(err)
			if len(errs) != 1 {
				t.Fatalf("Parse(%q): %d errors, want 1: %v", tt.toml, len(errs), err)
			}
			e := errs[0]
			if e.File != "/etc/rstguard/config.toml" || e.Line != tt.line || e.Key != tt.key || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("Parse(%q):\n got file %q line %d key %q msg %q\nwant line %d key %q msg containing %q",
					tt.toml, e.File, e.Line, e.Key, e.Msg, tt.line, tt.key, tt.msg)
			}
			if e.Line > 0 && e.Column < 1 {
				t.Errorf("Parse(%q): line %d without a column", tt.toml, e.Line)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	_, err := Parse("/etc/rstguard/config.toml", []byte("[policy]\nrst_mode = \"strict\"\n"))
	want := `/etc/rstguard/config.toml:2: [policy] rst_mode: "strict" is not a valid value; use "window" or "exact"`
	if err == nil || err.Error() != want {
		t.Errorf("error = %v\nwant %s", err, want)
	}
	var ce *Error
	if !errors.As(err, &ce) || ce.Column != 1 {
		t.Errorf("errors.As: %+v, want an *Error at column 1", ce)
	}
	for _, tt := range []struct {
		e    Error
		want string
	}{
		{Error{File: "a.toml", Line: 3, Key: "foo", Msg: "m"}, "a.toml:3: foo: m"},
		{Error{File: "a.toml", Line: 3, Msg: "m"}, "a.toml:3: m"},
		{Error{File: "a.toml", Msg: "m"}, "a.toml: m"},
		{Error{Msg: "m"}, "config: m"},
	} {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("%+v.Error() = %q, want %q", tt.e, got, tt.want)
		}
	}
}

// TestSeveralErrors: every mistake of a file is reported, sorted by line,
// whatever order the keys are decoded in.
func TestSeveralErrors(t *testing.T) {
	const file = `# several mistakes
[log]
level = "loud"
burst = -1

[queue]
numbers = [1, 1]
gso = "yes"
mark_accept = 3
mark_drop = 3

[conntrack]
max_flows = 1
[conntrack.timeouts]
established = "5d"

[policy]
rst_mode = "strict"
colour = "blue"

[metrics]
listen = "nowhere"

[extra]
`
	_, err := Parse("many.toml", []byte(file))
	errs := Errors(err)
	want := []struct {
		line int
		key  string
	}{
		{3, "[log] level"}, {4, "[log] burst"}, {7, "[queue] numbers"}, {8, "[queue] gso"},
		{10, "[queue] mark_drop"}, {13, "[conntrack] max_flows"}, {15, "[conntrack.timeouts] established"},
		{18, "[policy] rst_mode"}, {19, "[policy] colour"}, {22, "[metrics] listen"}, {24, "[extra]"},
	}
	if len(errs) != len(want) {
		t.Fatalf("%d errors, want %d:\n%v", len(errs), len(want), err)
	}
	for i, w := range want {
		if errs[i].Line != w.line || errs[i].Key != w.key || errs[i].File != "many.toml" {
			t.Errorf("error %d = %v, want line %d key %q", i, errs[i], w.line, w.key)
		}
	}
	// The joined error prints one mistake per line, in order.
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) || !strings.HasPrefix(lines[0], "many.toml:3: [log] level: ") {
		t.Errorf("joined error:\n%v", err)
	}
}

func TestEmptyIsDefault(t *testing.T) {
	for _, src := range []string{"", "\n\n", "# only a comment\n", "  \t\n# x\n"} {
		c, err := Parse("empty.toml", []byte(src))
		if err != nil {
			t.Fatalf("Parse(%q): %v", src, err)
		}
		want := Default()
		want.File = "empty.toml"
		if !reflect.DeepEqual(c, want) {
			t.Errorf("Parse(%q) = %+v, want the defaults", src, c)
		}
	}
}

// TestDefault pins the documented defaults (SPEC sections 3 and 6).
func TestDefault(t *testing.T) {
	c := Default()
	if c.File != "" || !slices.Equal(c.Queue.Numbers, []uint16{0, 1}) || !c.Queue.FailOpen || !c.Queue.GSO ||
		c.Queue.MaxQueueLen != 8192 || c.Queue.CopyRange != 256 || c.Queue.SocketReceiveBuffer != 4194304 ||
		c.Queue.MarkAccept != nil || c.Queue.MarkDrop != nil {
		t.Errorf("queue defaults: %+v", c.Queue)
	}
	if c.Guard.JudgedMark != (MaskedMark{Value: 0x40000000, Mask: 0x40000000}) {
		t.Errorf("guard defaults: %+v (the shipped rules test bit 0x40000000)", c.Guard)
	}
	if c.Conntrack.MaxFlows != 1048576 || !c.Conntrack.Pickup || c.Conntrack.Timeouts != conntrack.DefaultTimeouts() {
		t.Errorf("conntrack defaults: %+v", c.Conntrack)
	}
	if c.Conntrack.Timeouts.Established != 5*24*time.Hour || c.Conntrack.Timeouts.Closed != 10*time.Second {
		t.Errorf("timeouts: %+v", c.Conntrack.Timeouts)
	}
	if !reflect.DeepEqual(c.Policy, Policy{Mode: "enforce", RSTMode: "window", UnknownFlowRST: "accept"}) {
		t.Errorf("policy defaults: %+v", c.Policy)
	}
	if c.Metrics.Listen != "127.0.0.1:9813" {
		t.Errorf("metrics listen %q", c.Metrics.Listen)
	}
	if c.Log != (Log{Level: "info", Format: "auto", RateLimit: 10, Burst: 20}) {
		t.Errorf("log defaults: %+v", c.Log)
	}
	// Default returns a fresh value each time.
	c.Queue.Numbers[0] = 9
	if Default().Queue.Numbers[0] != 0 {
		t.Error("Default shares its Numbers slice")
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(p, []byte("[policy]\nrst_mode = \"exact\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.File != p || c.Policy.RSTMode != "exact" {
		t.Errorf("Load: File %q RSTMode %q", c.File, c.Policy.RSTMode)
	}

	missing := filepath.Join(dir, "missing.toml")
	_, err = Load(missing)
	var ce *Error
	if !errors.As(err, &ce) || ce.File != missing || !strings.Contains(ce.Msg, "no such file") || !strings.Contains(ce.Msg, "existing file") {
		t.Errorf("Load(missing) = %v", err)
	}

	if err := os.WriteFile(p, []byte("[log]\nburst = 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err == nil || !strings.HasPrefix(err.Error(), p+":2: [log] burst: ") {
		t.Errorf("Load(bad) = %v", err)
	}
}

func TestPolicyConfig(t *testing.T) {
	tests := []struct {
		pol  Policy
		want policy.Config
	}{
		{Policy{RSTMode: "window", UnknownFlowRST: "accept"}, policy.Config{RSTMode: policy.RSTModeWindow}},
		{Policy{RSTMode: "exact", UnknownFlowRST: "accept"}, policy.Config{RSTMode: policy.RSTModeExact}},
		{Policy{RSTMode: "window", UnknownFlowRST: "drop"}, policy.Config{RSTMode: policy.RSTModeWindow, DropUnknownFlowRST: true}},
		{Policy{RSTMode: "exact", UnknownFlowRST: "drop", DropOutOfWindow: true},
			policy.Config{RSTMode: policy.RSTModeExact, DropUnknownFlowRST: true, DropOutOfWindow: true}},
	}
	for _, tt := range tests {
		c := Default()
		c.Policy = tt.pol
		tt.want.Injection = policy.DefaultConfig().Injection
		if got := c.PolicyConfig(); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("PolicyConfig(%+v) = %+v, want %+v", tt.pol, got, tt.want)
		}
	}
	// The defaults agree with the engine's own.
	if got := Default().PolicyConfig(); !reflect.DeepEqual(got, policy.DefaultConfig()) {
		t.Errorf("Default().PolicyConfig() = %+v, want policy.DefaultConfig() %+v", got, policy.DefaultConfig())
	}
	// Through the file, too.
	c, err := Parse("p.toml", []byte("[policy]\nrst_mode = \"exact\"\nunknown_flow_rst = \"drop\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if pc := c.PolicyConfig(); pc.RSTMode != policy.RSTModeExact || !pc.DropUnknownFlowRST || pc.DropOutOfWindow {
		t.Errorf("PolicyConfig = %+v", pc)
	}
}

func TestTableConfig(t *testing.T) {
	tests := []struct {
		maxFlows, shards, want int
	}{
		{1048576, 1, 1048576},
		{1048576, 4, 262144},
		{1048576, 3, 349526}, // ceil: 3 shards hold at least max_flows
		{1024, 0, 1024},      // shards below 1 count as 1
		{1024, -2, 1024},
		{1025, 2, 513},
		{1024, 4096, 1},
	}
	for _, tt := range tests {
		c := Default()
		c.Conntrack.MaxFlows = tt.maxFlows
		c.Conntrack.Pickup = false
		c.Conntrack.Timeouts.SynSent = 7 * time.Second
		got := c.TableConfig(tt.shards)
		want := conntrack.Config{MaxFlows: tt.want, Timeouts: c.Conntrack.Timeouts, Pickup: false}
		if got != want {
			t.Errorf("TableConfig(%d) with max_flows %d = %+v, want %+v", tt.shards, tt.maxFlows, got, want)
		}
		if n := max(tt.shards, 1); got.MaxFlows*n < tt.maxFlows {
			t.Errorf("%d shards of %d hold fewer than max_flows %d", n, got.MaxFlows, tt.maxFlows)
		}
	}
	if got := Default().TableConfig(1); got.Timeouts != conntrack.DefaultTimeouts() || !got.Pickup {
		t.Errorf("Default().TableConfig(1) = %+v", got)
	}
}

func TestSlogLevel(t *testing.T) {
	for level, want := range map[string]slog.Level{
		"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError, "": slog.LevelInfo,
	} {
		c := Default()
		c.Log.Level = level
		if got := c.SlogLevel(); got != want {
			t.Errorf("SlogLevel(%q) = %v, want %v", level, got, want)
		}
	}
}

func TestQueueList(t *testing.T) {
	for _, tt := range []struct {
		qs   []uint16
		want string
	}{
		{nil, ""}, {[]uint16{0}, "0"}, {[]uint16{0, 1, 2, 3}, "0-3"}, {[]uint16{0, 1, 5, 7, 8}, "0-1,5,7-8"},
		{[]uint16{3, 2}, "3,2"}, {[]uint16{65534, 65535}, "65534-65535"},
	} {
		if got := QueueList(tt.qs); got != tt.want {
			t.Errorf("QueueList(%v) = %q, want %q", tt.qs, got, tt.want)
		}
	}
}

func TestSummary(t *testing.T) {
	c, err := Parse("s.toml", []byte(`
[queue]
numbers = "0:3"
mark_drop = 0x2
[conntrack]
max_flows = 4096
[policy]
rst_mode = "exact"
[metrics]
listen = ""
`))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Summary()
	for _, want := range []string{"queues 0-3", "mark_drop=0x2", "max_flows 4096 (1024 per queue)", "rst_mode=exact", "metrics off", "log info auto"} {
		if !strings.Contains(s, want) {
			t.Errorf("Summary() = %q, missing %q", s, want)
		}
	}
	if strings.Contains(s, "\n") {
		t.Errorf("Summary() is more than one line: %q", s)
	}
}

func TestFlatten(t *testing.T) {
	a, b, c := errors.New("a"), &Error{File: "f", Line: 2, Key: "k", Msg: "m"}, errors.New("c")
	got := Flatten(errors.Join(a, errors.Join(b, c)))
	if len(got) != 3 || got[0] != a || got[1] != error(b) || got[2] != c {
		t.Errorf("Flatten = %v, want [a b c]", got)
	}
	if got := Flatten(a); len(got) != 1 || got[0] != a {
		t.Errorf("Flatten(single) = %v", got)
	}
	if Flatten(nil) != nil {
		t.Error("Flatten(nil) != nil")
	}
	if es := Errors(errors.Join(a, b)); len(es) != 1 || es[0] != b {
		t.Errorf("Errors = %v", es)
	}
}
