package config

import (
	"strconv"
	"strings"
)

// BurntSushi/toml records where each key was defined but does not export it
// (MetaData has no key positions in v1.6.0), so the decoder finds them itself:
// locate scans text the TOML parser has already accepted and records the line
// and column of every key path — table headers, dotted keys and keys inside
// inline tables — where it is first defined. It is a scanner for valid TOML
// only; on anything unexpected it stops early, and a key it did not find is
// reported without a line rather than not at all.

type position struct{ line, col int }

// pathKey is the map key of a key path; "\x00" cannot appear in a TOML key.
func pathKey(path []string) string { return strings.Join(path, "\x00") }

type locator struct {
	src    string
	i      int
	line   int
	col    int
	pos    map[string]position
	arrays map[string]int // elements of each array of tables seen so far
}

func locate(src string) map[string]position {
	l := &locator{src: src, line: 1, col: 1, pos: make(map[string]position), arrays: map[string]int{}}
	if strings.HasPrefix(src, "\ufeff") { // a byte order mark, which TOML allows
		l.i = len("\ufeff")
	}
	l.document()
	return l.pos
}

func (l *locator) eof() bool { return l.i >= len(l.src) }

func (l *locator) peek() byte {
	if l.eof() {
		return 0
	}
	return l.src[l.i]
}

func (l *locator) hasPrefix(s string) bool { return strings.HasPrefix(l.src[l.i:], s) }

func (l *locator) advance(n int) {
	for ; n > 0 && !l.eof(); n-- {
		if l.src[l.i] == '\n' {
			l.line++
			l.col = 1
		} else {
			l.col++
		}
		l.i++
	}
}

func (l *locator) here() position { return position{l.line, l.col} }

// record notes path and each of its prefixes longer than from, where not
// already known.
func (l *locator) record(path []string, from int, p position) {
	for n := max(from, 1); n <= len(path); n++ {
		k := pathKey(path[:n])
		if _, ok := l.pos[k]; !ok {
			l.pos[k] = p
		}
	}
}

// skipSpace skips blanks and tabs.
func (l *locator) skipSpace() {
	for c := l.peek(); c == ' ' || c == '\t'; c = l.peek() {
		l.advance(1)
	}
}

// skipBlank skips whitespace, newlines and comments.
func (l *locator) skipBlank() {
	for !l.eof() {
		switch l.peek() {
		case ' ', '\t', '\r', '\n':
			l.advance(1)
		case '#':
			l.skipComment()
		default:
			return
		}
	}
}

func (l *locator) skipComment() {
	for !l.eof() && l.peek() != '\n' {
		l.advance(1)
	}
}

func (l *locator) document() {
	var table []string
	for {
		l.skipBlank()
		if l.eof() {
			return
		}
		start := l.i
		if l.peek() == '[' {
			l.advance(1)
			array := l.peek() == '['
			if array {
				l.advance(1)
			}
			l.skipSpace()
			p := l.here()
			parts, ok := l.key()
			if !ok {
				return
			}
			l.record(parts, 1, p)
			if array {
				// Each [[a.b]] is an element: a.b.#0, a.b.#1, ...
				k := pathKey(parts)
				parts = append(parts, "#"+strconv.Itoa(l.arrays[k]))
				l.arrays[k]++
				l.record(parts, len(parts), p)
			}
			table = parts
			l.skipSpace()
			l.advance(1) // ]
			if array {
				l.advance(1)
			}
		} else {
			p := l.here()
			parts, ok := l.key()
			if !ok {
				return
			}
			path := append(append([]string(nil), table...), parts...)
			l.record(path, len(table)+1, p)
			l.skipSpace()
			if l.peek() != '=' {
				return
			}
			l.advance(1)
			l.skipSpace()
			l.value(path)
		}
		if l.i == start {
			return // no progress: not TOML we understand
		}
	}
}

// key reads a possibly dotted key.
func (l *locator) key() ([]string, bool) {
	var parts []string
	for {
		l.skipSpace()
		var part string
		switch c := l.peek(); {
		case c == '"' || c == '\'':
			part = l.str()
		case isBare(c):
			s := l.i
			for isBare(l.peek()) {
				l.advance(1)
			}
			part = l.src[s:l.i]
		default:
			return nil, false
		}
		parts = append(parts, part)
		l.skipSpace()
		if l.peek() != '.' {
			return parts, true
		}
		l.advance(1)
	}
}

func isBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// value skips one value, recording the keys of inline tables under path
// (nil: inside an array, keys are not recorded).
func (l *locator) value(path []string) {
	switch l.peek() {
	case '"', '\'':
		l.str()
	case '[':
		l.advance(1)
		for !l.eof() {
			l.skipBlank()
			if l.peek() == ']' {
				l.advance(1)
				return
			}
			s := l.i
			l.value(nil)
			l.skipBlank()
			if l.peek() == ',' {
				l.advance(1)
			} else if l.i == s {
				return
			}
		}
	case '{':
		l.advance(1)
		for !l.eof() {
			l.skipBlank()
			if l.peek() == '}' {
				l.advance(1)
				return
			}
			p := l.here()
			parts, ok := l.key()
			if !ok {
				return
			}
			var sub []string
			if path != nil {
				sub = append(append([]string(nil), path...), parts...)
				l.record(sub, len(path)+1, p)
			}
			l.skipSpace()
			if l.peek() != '=' {
				return
			}
			l.advance(1)
			l.skipBlank()
			l.value(sub)
			l.skipBlank()
			if l.peek() == ',' {
				l.advance(1)
			}
		}
	default:
		// Numbers, booleans, dates (which may hold one space).
		for !l.eof() {
			switch l.peek() {
			case ',', ']', '}', '#', '\n', '\r':
				return
			}
			l.advance(1)
		}
	}
}

// str reads a basic, literal or multi-line string and returns its content
// (escapes decoded where strconv understands them).
func (l *locator) str() string {
	q := l.peek()
	delim := string(q)
	if l.hasPrefix(strings.Repeat(delim, 3)) {
		l.advance(3)
		s := l.i
		for !l.eof() {
			if q == '"' && l.peek() == '\\' {
				l.advance(2)
				continue
			}
			if l.hasPrefix(strings.Repeat(delim, 3)) {
				// Up to two more quotes belong to the content.
				n := 3
				for n < 5 && l.i+n < len(l.src) && l.src[l.i+n] == q {
					n++
				}
				e := l.i + n - 3
				l.advance(n)
				return l.src[s:e]
			}
			l.advance(1)
		}
		return l.src[s:]
	}
	l.advance(1)
	s := l.i
	for !l.eof() && l.peek() != '\n' {
		c := l.peek()
		if c == '\\' && q == '"' {
			l.advance(2)
			continue
		}
		if c == q {
			raw := l.src[s:l.i]
			l.advance(1)
			if q == '"' {
				if u, err := strconv.Unquote(`"` + raw + `"`); err == nil {
					return u
				}
			}
			return raw
		}
		l.advance(1)
	}
	return l.src[s:l.i]
}
