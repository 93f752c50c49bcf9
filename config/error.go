package config

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
)

// Error is one mistake in a configuration file. Error() reads like
//
//	/etc/rstguard/config.toml:12: [policy] rst_mode: "strict" is not a valid value; use "window" or "exact"
//
// Load and Parse return a single *Error, or several joined with errors.Join
// (sorted by line); errors.As finds the first.
type Error struct {
	File   string // the file's name as given to Load or Parse
	Line   int    // 1-based; 0 when not known
	Column int    // 1-based; 0 when not known
	Key    string // the key as written in messages: "[policy] rst_mode", "[bogus]", "foo"; "" for syntax errors outside a key
	Msg    string // what is wrong and how to fix it
}

func (e *Error) Error() string {
	file := e.File
	if file == "" {
		file = "config"
	}
	loc := file
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", file, e.Line)
	}
	if e.Key == "" {
		return loc + ": " + e.Msg
	}
	return loc + ": " + e.Key + ": " + e.Msg
}

// Flatten returns the errors inside err, one per problem: err itself, or
// each of a (nested) joined error, whatever their type.
func Flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// Errors returns the *Error values inside err (Flatten); errors of other
// types are left out.
func Errors(err error) []*Error {
	var out []*Error
	for _, e := range Flatten(err) {
		var ce *Error
		if errors.As(e, &ce) {
			out = append(out, ce)
		}
	}
	return out
}

// join sorts errs by line, column and key and joins them; nil when empty,
// the *Error itself when there is one.
func join(errs []*Error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	slices.SortStableFunc(errs, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column), cmp.Compare(a.Key, b.Key))
	})
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return errors.Join(out...)
}
