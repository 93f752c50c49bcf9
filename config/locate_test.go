package config

import (
	"os"
	"strings"
	"testing"
)

// TestLocate: the key scanner finds keys where TOML defines them, and is not
// fooled by strings, comments and arrays that look like keys or headers.
func TestLocate(t *testing.T) {
	const src = `# [queue]
# numbers = [1]
top = "x = 1 # [not] a key"   # comment = 2
a.b . c = 1
"quoted.key" = 'lit # = ['

[queue]
numbers = [
  1, # [fake]
  [2, 3],
  { x = 1 },
]
ml = """
[policy]
bogus = 1 \"""
"""
lit = '''
[log]
'''''
inline = { p = 1, q = { r = "}" }, s = [ { t = 1 } ] }
  indented  =  2

[ conntrack . timeouts ]
syn_sent = 1979-05-27 07:32:00Z
"syn recv" = 2

[[arr]]
k = 1
[[arr]]
k2 = 2
after = true
`
	want := map[string]position{
		"top":                         {3, 1},
		"a":                           {4, 1},
		"a.b":                         {4, 1},
		"a.b.c":                       {4, 1},
		"quoted.key":                  {5, 1}, // one key with a dot in it
		"queue":                       {7, 2},
		"queue.numbers":               {8, 1},
		"queue.ml":                    {13, 1},
		"queue.lit":                   {17, 1},
		"queue.inline":                {20, 1},
		"queue.inline.p":              {20, 12},
		"queue.inline.q":              {20, 19},
		"queue.inline.q.r":            {20, 25},
		"queue.inline.s":              {20, 36},
		"queue.indented":              {21, 3},
		"conntrack":                   {23, 3},
		"conntrack.timeouts":          {23, 3},
		"conntrack.timeouts.syn_sent": {24, 1},
		"conntrack.timeouts.syn recv": {25, 1},
		"arr":                         {27, 3},
		"arr.#0":                      {27, 3},
		"arr.#0.k":                    {28, 1},
		"arr.#1":                      {29, 3},
		"arr.#1.k2":                   {30, 1},
		"arr.#1.after":                {31, 1},
	}
	got := locate(src)
	for k, w := range want {
		path := strings.Split(k, ".")
		if k == "quoted.key" {
			path = []string{k}
		}
		if g, ok := got[pathKey(path)]; !ok || g != w {
			t.Errorf("%s: got %v (found %t), want %v", k, g, ok, w)
		}
	}
	for k := range got {
		name := strings.ReplaceAll(k, "\x00", ".")
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected key %q at %v", name, got[k])
		}
	}
}

// TestLocateMatchesParser: on the example and test files, every key the
// TOML parser reports is located, on the line that holds it.
func TestLocateMatchesParser(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	pos := locate(string(data))
	lines := strings.Split(string(data), "\n")
	n := 0
	for k, p := range pos {
		path := strings.Split(k, "\x00")
		last := path[len(path)-1]
		if !strings.Contains(lines[p.line-1], last) {
			t.Errorf("%s located at line %d: %q", k, p.line, lines[p.line-1])
		}
		n++
	}
	if n < 25 {
		t.Errorf("located only %d keys in the example", n)
	}
}

// FuzzParse: Parse never panics; it returns a config or *Error values only;
// and every error that is not a TOML syntax error carries the line of its
// key, so the scanner found every key the parser accepted.
func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile(examplePath); err == nil {
		f.Add(string(data))
	}
	for _, s := range []string{
		"", "[queue]\nnumbers = \"0:3\"\n", "[queue]\nnumbers = [1, 1]\nbogus = 2\n",
		"conntrack.timeouts = { syn_sent = \"5d\", x = 1 }\n", "[log]\n\"a b\" = '''\n[x]\n'''\n",
		"[[queue]]\n", "policy = { rst_mode = 'exact' }\n", "[a.'b'.\"c\"]\nd = 1\n",
		"[queue]\nmark_accept = 1\nmark_drop = 1\n", "x = [[1], {a = 2}]\n",
		"\ufeff[log]\r\nlevel = 1\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		c, err := Parse("f.toml", []byte(src))
		if err == nil {
			if c == nil || c.File != "f.toml" || len(c.Queue.Numbers) == 0 {
				t.Fatalf("Parse(%q) = %+v", src, c)
			}
			return
		}
		errs := Errors(err)
		if len(errs) == 0 {
			t.Fatalf("Parse(%q): error of another type: %v", src, err)
		}
		for i, e := range errs {
			if e.File != "f.toml" || e.Msg == "" {
				t.Fatalf("Parse(%q): bad error %+v", src, e)
			}
			if !strings.Contains(e.Msg, "TOML syntax error") && e.Line == 0 {
				t.Fatalf("Parse(%q): no line for %v", src, e)
			}
			if i > 0 && errs[i-1].Line > e.Line {
				t.Fatalf("Parse(%q): errors out of order: %v", src, err)
			}
		}
	})
}
