package config

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/rstguard/rstguard/conntrack"
)

const examplePath = "../config.example.toml"

// TestExampleIsDefault: config.example.toml, which sets every key to its
// default, parses to exactly Default.
func TestExampleIsDefault(t *testing.T) {
	c, err := Load(examplePath)
	if err != nil {
		t.Fatalf("config.example.toml: %v", err)
	}
	want := Default()
	want.File = examplePath
	if !reflect.DeepEqual(c, want) {
		t.Errorf("config.example.toml parses to\n%+v\nwant Default()\n%+v", c, want)
	}
}

// configKeys lists the key paths of Config from its toml tags; the fields of
// conntrack.Timeouts, which has no tags, by their snake_case names. optional
// reports the pointer fields (keys absent by default).
func configKeys(t *testing.T) (paths [][]string, optional map[string]bool) {
	optional = make(map[string]bool)
	var walk func(rt reflect.Type, path []string)
	walk = func(rt reflect.Type, path []string) {
		for f := range rt.Fields() {
			name := f.Tag.Get("toml")
			if name == "-" {
				continue
			}
			if name == "" {
				if rt != reflect.TypeFor[conntrack.Timeouts]() {
					t.Errorf("field %s.%s has no toml tag", rt, f.Name)
					continue
				}
				name = snake(f.Name)
			}
			p := append(append([]string(nil), path...), name)
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[MaskedMark]() {
				walk(f.Type, p)
				continue
			}
			if f.Type.Kind() == reflect.Pointer || f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct {
				optional[pathKey(p)] = true // no default: a commented sample in the example
			}
			paths = append(paths, p)
		}
	}
	walk(reflect.TypeFor[Config](), nil)
	return paths, optional
}

func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// TestExampleDocumentsEveryKey: every field of Config has its key in
// config.example.toml, in the right section, with a comment; optional keys
// (absent by default) appear commented out ("# mark_drop = 0x2") with a
// value that parses.
func TestExampleDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	paths, optional := configKeys(t)
	if len(paths) < 20 {
		t.Fatalf("found only %d keys in Config: %v", len(paths), paths)
	}
	// Uncomment the optional keys' sample lines.
	text := string(data)
	for _, p := range paths {
		if !optional[pathKey(p)] {
			continue
		}
		re := regexp.MustCompile(`(?m)^# (` + regexp.QuoteMeta(p[len(p)-1]) + ` = )`)
		if !re.MatchString(text) {
			t.Errorf("config.example.toml: optional key %s has no commented-out sample line", keyName(p))
		}
		text = re.ReplaceAllString(text, "$1")
	}
	if _, err := Parse("uncommented example", []byte(text)); err != nil {
		t.Errorf("config.example.toml with its optional keys uncommented: %v", err)
	}
	pos := locate(text)
	lines := strings.Split(text, "\n")
	for _, p := range paths {
		at, ok := pos[pathKey(p)]
		if !ok {
			t.Errorf("config.example.toml does not document %s", keyName(p))
			continue
		}
		line := lines[at.line-1]
		prev := ""
		if at.line >= 2 {
			prev = strings.TrimSpace(lines[at.line-2])
		}
		if !strings.Contains(line, "#") && !strings.HasPrefix(prev, "#") {
			t.Errorf("config.example.toml:%d: %s has no comment saying what it does", at.line, keyName(p))
		}
	}
}

// TestSchemaMatchesConfig: the decoder's schema and Config's fields name the
// same keys, so no field is left without a key or a key without a field.
func TestSchemaMatchesConfig(t *testing.T) {
	paths, _ := configKeys(t)
	var fromStruct, fromSchema []string
	for _, p := range paths {
		fromStruct = append(fromStruct, strings.Join(p, "."))
	}
	var walk func(n *node, path []string)
	walk = func(n *node, path []string) {
		for _, c := range n.children {
			p := append(append([]string(nil), path...), c.name)
			if c.isTable() {
				walk(c, p)
			} else {
				fromSchema = append(fromSchema, strings.Join(p, "."))
			}
		}
	}
	walk(schema, nil)
	slices.Sort(fromStruct)
	slices.Sort(fromSchema)
	if !slices.Equal(fromStruct, fromSchema) {
		t.Errorf("Config keys %v\nschema keys %v", fromStruct, fromSchema)
	}
}

// TestEveryKeySetsItsField: each schema key, given a valid non-default
// value, changes its own field and no other.
func TestEveryKeySetsItsField(t *testing.T) {
	values := map[string]string{
		"queue.numbers": "[3]", "queue.fail_open": "false", "queue.gso": "false", "queue.max_queue_len": "10",
		"queue.copy_range": "200", "queue.socket_receive_buffer": "100000", "queue.mark_accept": "5", "queue.mark_drop": "6",
		"conntrack.max_flows": "5000", "conntrack.pickup": "false",
		"policy.mode": `"monitor"`, "policy.override": `[{ dst = ["198.51.100.0/24"], validate = false }]`, "policy.rst_mode": `"exact"`, "policy.unknown_flow_rst": `"drop"`, "policy.drop_out_of_window": "true",
		"metrics.listen": `":1"`, "log.level": `"debug"`, "log.format": `"json"`, "log.rate_limit": "1.5", "log.burst": "2",
		"guard.judged_mark": `"0x8/0x8"`,
		"control.socket":    `"/tmp/c.sock"`, "events.path": `"/tmp/e.jsonl"`, "events.journal": "true", "events.ring_size": "2048",
		"injection.mode": `"hold"`, "injection.ttl_tolerance": "5", "injection.max_hold": `"20ms"`, "injection.max_held": "64",
	}
	for _, k := range []string{"syn_sent", "syn_recv", "established", "fin_wait", "close_wait", "last_ack", "time_wait", "closed"} {
		values["conntrack.timeouts."+k] = `"3s"`
	}
	paths, _ := configKeys(t)
	for _, p := range paths {
		k := strings.Join(p, ".")
		v, ok := values[k]
		if !ok {
			t.Errorf("no test value for %s", k)
			continue
		}
		src := "[" + strings.Join(p[:len(p)-1], ".") + "]\n" + p[len(p)-1] + " = " + v + "\n"
		c, err := Parse("k.toml", []byte(src))
		if err != nil {
			t.Errorf("%s: %v", k, err)
			continue
		}
		changed := diffFields(reflect.ValueOf(*Default()), reflect.ValueOf(*c), nil)
		changed = slices.DeleteFunc(changed, func(s string) bool { return s == "File" })
		if want := fieldPath(p); !slices.Equal(changed, []string{want}) {
			t.Errorf("%s = %s changed %v, want only %s", k, v, changed, want)
		}
	}
}

// fieldPath is the Go field path of a key path.
func fieldPath(p []string) string {
	rt := reflect.TypeFor[Config]()
	var names []string
	for _, k := range p {
		for f := range rt.Fields() {
			if f.Tag.Get("toml") == k || (f.Tag.Get("toml") == "" && snake(f.Name) == k) {
				names = append(names, f.Name)
				rt = f.Type
				break
			}
		}
	}
	return strings.Join(names, ".")
}

// diffFields lists the leaf fields that differ between a and b.
func diffFields(a, b reflect.Value, path []string) []string {
	if a.Kind() == reflect.Struct && a.Type() != reflect.TypeFor[MaskedMark]() {
		var out []string
		for i := range a.NumField() {
			out = append(out, diffFields(a.Field(i), b.Field(i), append(path, a.Type().Field(i).Name))...)
		}
		return out
	}
	if !reflect.DeepEqual(a.Interface(), b.Interface()) {
		return []string{strings.Join(path, ".")}
	}
	return nil
}

// TestREADMEDocumentsEveryKey: the README's configuration reference has a
// row for every key of config.example.toml.
func TestREADMEDocumentsEveryKey(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	section := ""
	n := 0
	for _, line := range strings.Split(string(example), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "# "))
		if m := regexp.MustCompile(`^\[([a-z.]+)\]$`).FindStringSubmatch(line); m != nil {
			section = m[1]
			continue
		}
		m := regexp.MustCompile(`^([a-z_]+) = `).FindStringSubmatch(line)
		if m == nil || section == "" {
			continue
		}
		n++
		row := "| `[" + section + "] " + m[1] + "` |"
		if !strings.Contains(string(readme), row) {
			t.Errorf("README.md has no configuration row %s", row)
		}
	}
	if n < 20 {
		t.Fatalf("found only %d keys in %s", n, examplePath)
	}
}
