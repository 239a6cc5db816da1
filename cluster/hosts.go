package cluster

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// maxExpansion bounds what one hosts entry may expand to, so that a typo
// such as node[1-1000000] is an error rather than an out-of-memory.
const maxExpansion = 10000

// hostSpec is one expanded hosts entry before ~/.ssh/config and defaults
// are applied.
type hostSpec struct {
	name string // as written, "addr" or "addr:port"
	addr string
	user string // empty when the entry does not pin it
	port int    // 0 when the entry does not pin it
}

// parseHostEntry expands one hosts entry: "addr", "user@addr:port",
// "[v6addr]:port" and ranges such as "node[01-64]" or "10.0.0.[1-4,9]".
func parseHostEntry(entry string) ([]hostSpec, error) {
	s := strings.TrimSpace(entry)
	if s == "" {
		return nil, fmt.Errorf("empty host entry")
	}
	if strings.ContainsAny(s, " \t\n/") {
		return nil, fmt.Errorf("host entry %q contains a space or '/'; write one host or range per entry", entry)
	}
	var user string
	if at := strings.LastIndexByte(s, '@'); at >= 0 {
		user, s = s[:at], s[at+1:]
		if user == "" || s == "" {
			return nil, fmt.Errorf("host entry %q: expected user@host", entry)
		}
	}

	// A bracket at the start holding a colon is an IPv6 literal.
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end > 0 && strings.Contains(s[1:end], ":") {
			addr := s[1:end]
			if net.ParseIP(addr) == nil {
				return nil, fmt.Errorf("host entry %q: %q is not an IPv6 address", entry, addr)
			}
			rest := s[end+1:]
			spec := hostSpec{name: addr, addr: addr, user: user}
			if rest != "" {
				if !strings.HasPrefix(rest, ":") {
					return nil, fmt.Errorf("host entry %q: unexpected %q after the address", entry, rest)
				}
				p, err := parsePort(rest[1:])
				if err != nil {
					return nil, fmt.Errorf("host entry %q: %v", entry, err)
				}
				spec.port = p
				spec.name = "[" + addr + "]:" + rest[1:]
			}
			return []hostSpec{spec}, nil
		}
	}
	// Several colons and no brackets: a bare IPv6 address without a port.
	if strings.Count(s, ":") > 1 && !strings.Contains(s, "[") {
		if net.ParseIP(s) == nil {
			return nil, fmt.Errorf("host entry %q: not an IPv6 address; write [addr]:port to give a port", entry)
		}
		return []hostSpec{{name: s, addr: s, user: user}}, nil
	}

	hostPart, port := s, 0
	if c := lastColonOutsideBrackets(s); c >= 0 {
		p, err := parsePort(s[c+1:])
		if err != nil {
			return nil, fmt.Errorf("host entry %q: %v", entry, err)
		}
		hostPart, port = s[:c], p
	}
	names, err := expandRanges(hostPart)
	if err != nil {
		return nil, fmt.Errorf("host entry %q: %v", entry, err)
	}
	out := make([]hostSpec, 0, len(names))
	for _, n := range names {
		if err := checkHostname(n); err != nil {
			return nil, fmt.Errorf("host entry %q: %v", entry, err)
		}
		spec := hostSpec{name: n, addr: n, user: user, port: port}
		if port != 0 {
			spec.name = n + ":" + strconv.Itoa(port)
		}
		out = append(out, spec)
	}
	return out, nil
}

func lastColonOutsideBrackets(s string) int {
	depth := 0
	for i := len(s) - 1; i >= 0; i-- {
		switch s[i] {
		case ']':
			depth++
		case '[':
			depth--
		case ':':
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535", s)
	}
	return p, nil
}

func checkHostname(n string) error {
	if n == "" {
		return fmt.Errorf("empty host name")
	}
	for _, c := range n {
		if !(c == '-' || c == '.' || c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return fmt.Errorf("host name %q contains %q", n, c)
		}
	}
	return nil
}

// expandRanges expands every [a-b,c,...] group in s, left to right; a range
// whose start has a leading zero keeps that width (node[01-10] gives node01
// to node10).
func expandRanges(s string) ([]string, error) {
	open := strings.IndexByte(s, '[')
	if open < 0 {
		if strings.IndexByte(s, ']') >= 0 {
			return nil, fmt.Errorf("']' without '['")
		}
		return []string{s}, nil
	}
	end := strings.IndexByte(s[open:], ']')
	if end < 0 {
		return nil, fmt.Errorf("'[' without ']'")
	}
	end += open
	items, err := expandList(s[open+1 : end])
	if err != nil {
		return nil, err
	}
	tails, err := expandRanges(s[end+1:])
	if err != nil {
		return nil, err
	}
	if len(items)*len(tails) > maxExpansion {
		return nil, fmt.Errorf("expands to more than %d hosts", maxExpansion)
	}
	out := make([]string, 0, len(items)*len(tails))
	for _, it := range items {
		for _, t := range tails {
			out = append(out, s[:open]+it+t)
		}
	}
	return out, nil
}

func expandList(body string) ([]string, error) {
	if body == "" {
		return nil, fmt.Errorf("empty range []")
	}
	var out []string
	for _, part := range strings.Split(body, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("range item %q is not a number or a-b", part)
		}
		if !isRange {
			out = append(out, lo)
			continue
		}
		b, err := strconv.Atoi(hi)
		if err != nil || b < a {
			return nil, fmt.Errorf("range %q: expected a-b with a <= b", part)
		}
		if b-a+1 > maxExpansion {
			return nil, fmt.Errorf("range %q expands to more than %d hosts", part, maxExpansion)
		}
		width := 0
		if len(lo) > 1 && lo[0] == '0' {
			width = len(lo)
		}
		for i := a; i <= b; i++ {
			out = append(out, fmt.Sprintf("%0*d", width, i))
		}
	}
	return out, nil
}

// ExpandHostList expands a comma-separated list of host names and ranges
// (commas inside brackets belong to the range): "n[1-2],m" gives n1, n2, m.
func ExpandHostList(list string) ([]string, error) {
	var out []string
	depth, start := 0, 0
	for i := 0; i <= len(list); i++ {
		if i < len(list) {
			switch list[i] {
			case '[':
				depth++
				continue
			case ']':
				depth--
				continue
			case ',':
				if depth > 0 {
					continue
				}
			default:
				continue
			}
		}
		item := strings.TrimSpace(list[start:i])
		start = i + 1
		if item == "" {
			continue
		}
		specs, err := parseHostEntry(item)
		if err != nil {
			return nil, err
		}
		for _, s := range specs {
			out = append(out, s.name)
		}
	}
	return out, nil
}

// FindHost returns the host whose name or address is n.
func (c *Config) FindHost(n string) (Host, bool) {
	for _, h := range c.Hosts {
		if h.Name == n || h.Addr == n {
			return h, true
		}
	}
	return Host{}, false
}

// SelectHosts picks the hosts named by list (names, addresses or ranges,
// comma-separated, as in the cluster file) or the head host; neither means
// every host.
func (c *Config) SelectHosts(list string, head bool) ([]Host, error) {
	if head {
		if list != "" {
			return nil, errors.New("--head and --hosts cannot be used together")
		}
		return []Host{c.Head()}, nil
	}
	if list == "" {
		return c.Hosts, nil
	}
	names, err := ExpandHostList(list)
	if err != nil {
		return nil, fmt.Errorf("--hosts: %v", err)
	}
	var out []Host
	var unknown []string
	for _, n := range names {
		h, ok := c.FindHost(n)
		if !ok {
			unknown = append(unknown, n)
			continue
		}
		out = append(out, h)
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("--hosts: %s not in %s (hosts there: %s)", FoldHostList(unknown), c.File, c.hostSample())
	}
	return out, nil
}

// hostSample names the cluster's hosts folded, the first five of them
// when that is long.
func (c *Config) hostSample() string {
	names := c.HostNames()
	if s := FoldHostList(names); len(s) <= 160 {
		return s
	}
	return fmt.Sprintf("%s and %d more", FoldHostList(names[:5]), len(names)-5)
}
