package replay

import "github.com/rstguard/rstguard/flowfilter"

// FilterSyntax documents the syntax ParseFlowFilter reads, for help texts.
const FilterSyntax = flowfilter.Syntax

// FlowFilter selects flows of a capture by their endpoints: it matches a
// frame when every one of its terms matches the frame's source or its
// destination (package flowfilter). The zero FlowFilter matches every
// frame.
type FlowFilter struct{ f flowfilter.Filter }

// ParseFlowFilter parses a filter in the syntax of FilterSyntax, without
// state terms (a capture's packets have no one state).
func ParseFlowFilter(s string) (FlowFilter, error) {
	f, err := flowfilter.Parse(s, false)
	return FlowFilter{f}, err
}

// String returns the filter as parsed (words separated by single spaces).
func (ff *FlowFilter) String() string { return ff.f.String() }

// Match reports whether f belongs to a flow the filter selects. Frames
// without IP match only the empty filter; port and ADDR:PORT terms match
// only TCP frames.
func (ff *FlowFilter) Match(f *Frame) bool {
	if ff.f.Empty() {
		return true
	}
	return f.IP && ff.f.Match(f.Src, f.Dst, f.TCP)
}
