package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// Load reads and parses the file at path. An empty file gives Default with
// File set. Errors: see Parse.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		why := err
		var pe *fs.PathError
		if errors.As(err, &pe) {
			why = pe.Err // the path is already in the message
		}
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read the configuration: %v", why) + readHint(err)}
	}
	return Parse(path, data)
}

func readHint(err error) string {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "; give the path of an existing file (config.example.toml documents every key)"
	case errors.Is(err, os.ErrPermission):
		return "; make the file readable by the user rstguard runs as"
	}
	return ""
}

// Parse parses data, the contents of the file name (used in errors and
// stored in File). Keys not given keep their Default value. The error is a
// *Error or several joined with errors.Join, sorted by line: a TOML syntax
// error (the parser stops at the first), or every unknown key, wrong type and
// bad value of the file.
func Parse(name string, data []byte) (*Config, error) {
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		return nil, syntaxError(name, err)
	}
	d := &decoder{file: name, pos: locate(string(data))}
	c := Default()
	c.File = name
	d.table(schema, nil, raw, c)
	d.crossChecks(c)
	if err := join(d.errs); err != nil {
		return nil, err
	}
	return c, nil
}

func syntaxError(name string, err error) error {
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		return &Error{File: name, Msg: "cannot parse the configuration: " + err.Error()}
	}
	key := ""
	if pe.LastKey != "" {
		key = keyName(strings.Split(pe.LastKey, "."))
	}
	return &Error{
		File: name, Line: pe.Position.Line, Column: pe.Position.Col, Key: key,
		Msg: fmt.Sprintf("TOML syntax error at column %d: %s; fix the syntax (strings take double quotes, sections are [name] on a line of their own; config.example.toml shows every key)",
			pe.Position.Col, pe.Message),
	}
}

type decoder struct {
	file string
	pos  map[string]position
	errs []*Error
}

// errorf records a mistake at path.
func (d *decoder) errorf(path []string, format string, args ...any) {
	d.errorAt(path, keyName(path), format, args...)
}

// errorAt records a mistake at path, naming the key as key.
func (d *decoder) errorAt(path []string, key, format string, args ...any) {
	p := d.pos[pathKey(path)]
	d.errs = append(d.errs, &Error{
		File: d.file, Line: p.line, Column: p.col, Key: key,
		Msg: fmt.Sprintf(format, args...),
	})
}

// table decodes the TOML table m at path against the schema node n.
func (d *decoder) table(n *node, path []string, m map[string]any, c *Config) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := m[k]
		kp := append(append([]string(nil), path...), k)
		child := n.child(k)
		switch {
		case child == nil:
			d.unknown(n, kp, v)
		case child.isTable():
			sub, ok := v.(map[string]any)
			if !ok {
				d.errorf(kp, "must be a table, not %s; write it as a section header [%s] followed by its keys",
					describe(v), strings.Join(kp, "."))
				continue
			}
			d.table(child, kp, sub, c)
		default:
			child.decode(d, kp, v, c)
		}
	}
}

// crossChecks finds mistakes between keys, reported at the later key.
func (d *decoder) crossChecks(c *Config) {
	q := c.Queue
	if q.MarkAccept != nil && q.MarkDrop != nil && *q.MarkAccept == *q.MarkDrop {
		d.errorf([]string{"queue", "mark_drop"}, "equals mark_accept (%s), so a firewall rule could not tell dropped packets from accepted ones; use two different marks", q.MarkDrop)
	}
}
