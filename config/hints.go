package config

// Hints for mistakes: where an unknown key belongs, what it may be a
// misspelling of ("did you mean"), and how to name values and lists in
// messages.

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// unknown reports a key the schema does not have, with the best hint: where
// it belongs, what it may be a misspelling of, or what the table holds.
func (d *decoder) unknown(parent *node, path []string, v any) {
	name := path[len(path)-1]
	if _, isTable := v.(map[string]any); isTable {
		key := "[" + strings.Join(path, ".") + "]"
		if len(path) == 1 {
			d.errorAt(path, key, "unknown section; the sections are %s", listOf(parent.names(), "[", "]"))
			return
		}
		d.errorAt(path, key, "unknown table; the keys of [%s] are %s", strings.Join(path[:len(path)-1], "."),
			listOf(parent.names(), "", ""))
		return
	}
	if home := homeOf(name); home != nil && !slices.Equal(home, path[:len(path)-1]) {
		d.errorf(path, "unknown key here; %s belongs in [%s]", name, strings.Join(home, "."))
		return
	}
	hint := ""
	if s := closest(name, parent.names()); s != "" {
		hint = fmt.Sprintf("did you mean %q? ", s)
	}
	if len(path) == 1 {
		d.errorf(path, "unknown key; %skeys go in one of the sections %s", hint, listOf(parent.names(), "[", "]"))
		return
	}
	d.errorf(path, "unknown key; %sthe keys of [%s] are %s", hint, strings.Join(path[:len(path)-1], "."),
		listOf(parent.names(), "", ""))
}

// homeOf finds the table path of the one schema value key called name.
func homeOf(name string) []string {
	var found [][]string
	var walk func(n *node, path []string)
	walk = func(n *node, path []string) {
		for _, c := range n.children {
			p := append(append([]string(nil), path...), c.name)
			if c.name == name && !c.isTable() {
				found = append(found, path)
			}
			walk(c, p)
		}
	}
	walk(schema, nil)
	if len(found) == 1 {
		return found[0]
	}
	return nil
}

// closest returns the candidate nearest to s, if exactly one is nearest and
// it is a likely misspelling: at most 2 edits, and at most a third of s.
func closest(s string, candidates []string) string {
	best, bestD, ties := "", min(3, len(s)/3+1), 0
	for _, c := range candidates {
		switch d := editDistance(strings.ToLower(s), c); {
		case d < bestD:
			best, bestD, ties = c, d, 0
		case d == bestD:
			ties++
		}
	}
	if ties > 0 {
		return ""
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func listOf(names []string, pre, post string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = pre + n + post
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " and " + q[len(q)-1]
}

func orList(allowed []string) string {
	q := make([]string, len(allowed))
	for i, a := range allowed {
		q[i] = strconv.Quote(a)
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

// describe names a TOML value's type and the value, for type errors.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", v)
	case int64:
		return fmt.Sprintf("the integer %d", v)
	case float64:
		return fmt.Sprintf("the float %v", v)
	case bool:
		return fmt.Sprintf("the boolean %t", v)
	case []any:
		return "an array"
	case []map[string]any:
		return "an array of tables"
	case map[string]any:
		return "a table"
	case time.Time:
		return "a date-time"
	default:
		return fmt.Sprintf("a %T", v)
	}
}
