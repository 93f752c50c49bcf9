package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/rstguard/rstguard/policy"
)

// overrideKeys are the keys of one [[policy.override]] entry.
var overrideKeys = []string{"name", "src", "dst", "dst_ports", "rst_mode", "unknown_flow_rst", "drop_out_of_window", "validate"}

// decodeOverrides decodes [[policy.override]]: an array of tables, each
// matching flows (src, dst: CIDR lists of the initiator and the responder;
// dst_ports: the responder's ports) and setting rst_mode,
// unknown_flow_rst, drop_out_of_window or validate for them.
func decodeOverrides(d *decoder, path []string, v any, c *Config) {
	list, ok := v.([]map[string]any)
	if arr, isArr := v.([]any); isArr { // an inline array of tables
		ok = true
		for _, x := range arr {
			m, isMap := x.(map[string]any)
			if !isMap {
				ok = false
				break
			}
			list = append(list, m)
		}
	}
	if !ok {
		d.errorf(path, "must be an array of tables: write each entry as a [[policy.override]] section, not %s", describe(v))
		return
	}
	if len(list) > policy.MaxOverrides {
		d.errorf(path, "%d entries; at most %d are allowed (each is matched against every packet of the flows it may cover)", len(list), policy.MaxOverrides)
		return
	}
	c.Policy.Overrides = nil
	for i, m := range list {
		ep := append(append([]string(nil), path...), "#"+strconv.Itoa(i))
		o := policy.Override{Name: "override" + strconv.Itoa(i+1)}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		settings := 0
		for _, k := range keys {
			kp := append(append([]string(nil), ep...), k)
			name := fmt.Sprintf("[[policy.override]] #%d %s", i+1, k)
			bad := func(format string, args ...any) { d.errorAt(kp, name, format, args...) }
			val := m[k]
			switch k {
			case "name":
				s, ok := val.(string)
				if !ok || s == "" || strings.ContainsAny(s, "\"\\\n") {
					bad("must be a non-empty string without quotes or backslashes (it labels rstguard_policy_override_packets_total)")
					continue
				}
				o.Name = s
			case "src", "dst":
				ps, err := prefixes(val)
				if err != nil {
					bad("%v; write a list of CIDR prefixes such as [\"192.0.2.0/24\", \"2001:db8::/32\"]", err)
					continue
				}
				if k == "src" {
					o.Src = ps
				} else {
					o.Dst = ps
				}
			case "dst_ports":
				arr, ok := val.([]any)
				if !ok || len(arr) == 0 {
					bad("must be a non-empty list of TCP ports such as [443, 8443], not %s", describe(val))
					continue
				}
				for _, x := range arr {
					n, ok := x.(int64)
					if !ok || n < 1 || n > 65535 {
						bad("%s is not a TCP port from 1 to 65535", describe(x))
						break
					}
					o.DstPorts = append(o.DstPorts, uint16(n))
				}
			case "rst_mode":
				s, _ := val.(string)
				switch s {
				case "window":
					o.RSTMode = ptr(policy.RSTModeWindow)
				case "exact":
					o.RSTMode = ptr(policy.RSTModeExact)
				default:
					bad("%s is not a valid value; use \"window\" or \"exact\"", describe(val))
					continue
				}
				settings++
			case "unknown_flow_rst":
				s, _ := val.(string)
				if s != "accept" && s != "drop" {
					bad("%s is not a valid value; use \"accept\" or \"drop\"", describe(val))
					continue
				}
				o.DropUnknownFlowRST = ptr(s == "drop")
				settings++
			case "drop_out_of_window", "validate":
				b, ok := val.(bool)
				if !ok {
					bad("must be true or false (without quotes), not %s", describe(val))
					continue
				}
				if k == "validate" {
					o.Validate = ptr(b)
				} else {
					o.DropOutOfWindow = ptr(b)
				}
				settings++
			default:
				hint := ""
				if s := closest(k, overrideKeys); s != "" {
					hint = fmt.Sprintf(" (did you mean %s?)", s)
				}
				bad("unknown key%s; an override takes %s", hint, strings.Join(overrideKeys, ", "))
			}
		}
		if settings == 0 {
			d.errorAt(ep, fmt.Sprintf("[[policy.override]] #%d", i+1),
				"changes nothing; give at least one of rst_mode, unknown_flow_rst, drop_out_of_window, validate")
		}
		c.Policy.Overrides = append(c.Policy.Overrides, o)
	}
}

func ptr[T any](v T) *T { return &v }

func prefixes(v any) ([]netip.Prefix, error) {
	arr, ok := v.([]any)
	if !ok || len(arr) == 0 {
		return nil, fmt.Errorf("must be a non-empty list, not %s", describe(v))
	}
	var out []netip.Prefix
	for _, x := range arr {
		s, ok := x.(string)
		if !ok {
			return nil, fmt.Errorf("%s is not a string", describe(x))
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("%q is neither a CIDR prefix nor an address", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Is4In6() {
			return nil, fmt.Errorf("%q: write IPv4 prefixes in dotted form", s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// OverrideOverlaps explains, for check-config, which overrides can match
// the same flows: the first of them wins for those.
func OverrideOverlaps(ovs []policy.Override) []string {
	var out []string
	for j := range ovs {
		for i := range j {
			if overlaps(ovs[i].Src, ovs[j].Src) && overlaps(ovs[i].Dst, ovs[j].Dst) && portsOverlap(ovs[i].DstPorts, ovs[j].DstPorts) {
				out = append(out, fmt.Sprintf("override %q (#%d) can match flows %q (#%d) matches: %q wins for those, being first",
					ovs[j].Name, j+1, ovs[i].Name, i+1, ovs[i].Name))
			}
		}
	}
	return out
}

func overlaps(a, b []netip.Prefix) bool {
	if len(a) == 0 || len(b) == 0 {
		return true
	}
	for _, x := range a {
		for _, y := range b {
			if x.Overlaps(y) {
				return true
			}
		}
	}
	return false
}

func portsOverlap(a, b []uint16) bool {
	if len(a) == 0 || len(b) == 0 {
		return true
	}
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}
