package cluster

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// HostRange is one entry of a folded host list: its text, as
// ExpandHostList reads it ("node[01-12,14]"), and how many hosts it names.
type HostRange struct {
	Text  string
	Hosts int
}

// FoldHostList writes host names as one host list, the reverse of
// ExpandHostList: FoldHostList(names) expands back to the distinct names.
// It is FoldHosts' entries joined by commas.
func FoldHostList(names []string) string {
	rs := FoldHosts(names)
	texts := make([]string, len(rs))
	for i, r := range rs {
		texts[i] = r.Text
	}
	return strings.Join(texts, ",")
}

// FoldHosts folds host names into ranges as ClusterShell's and Slurm's
// hostlists do: names that differ only in one number become one entry
// (node01..node12 and node14 give node[01-12,14]), keeping zero padding;
// text after the number stays after the bracket (rack1-node[01-03],
// 10.0.0.[1-4]:22). Names without a number, and names the syntax cannot
// hold (IPv6 addresses, names with brackets or commas), are entries of
// their own, as they are. Duplicates and empty names are dropped; entries
// come in natural order (gpu[1-2] before node[01-04], node2 before
// node10).
func FoldHosts(names []string) []HostRange {
	seen := make(map[string]bool, len(names))
	var atoms []string
	shapes := map[string][]foldName{}
	var shapeOrder []string
	for _, n := range names {
		if n == "" || seen[n] {
			continue
		}
		seen[n] = true
		fn, ok := splitForFold(n)
		if !ok {
			atoms = append(atoms, n)
			continue
		}
		k := fn.shape()
		if _, ok := shapes[k]; !ok {
			shapeOrder = append(shapeOrder, k)
		}
		shapes[k] = append(shapes[k], fn)
	}
	type entry struct {
		first string // the entry's first name, for the order
		HostRange
	}
	var out []entry
	for _, n := range atoms {
		out = append(out, entry{n, HostRange{n, 1}})
	}
	for _, k := range shapeOrder {
		group := shapes[k]
		d := foldDimension(group)
		// Names that agree on every number but the one at d fold together.
		byRest := map[string][]foldName{}
		var restOrder []string
		for _, fn := range group {
			r := fn.rest(d)
			if _, ok := byRest[r]; !ok {
				restOrder = append(restOrder, r)
			}
			byRest[r] = append(byRest[r], fn)
		}
		for _, r := range restOrder {
			fns := byRest[r]
			prefix, suffix := fns[0].around(d)
			values := make([]string, len(fns))
			for i, fn := range fns {
				values[i] = fn.nums[d]
			}
			for _, br := range foldValues(values) {
				first := prefix + br.first + suffix
				if br.hosts == 1 {
					out = append(out, entry{first, HostRange{first, 1}})
					continue
				}
				out = append(out, entry{first, HostRange{prefix + "[" + br.text + "]" + suffix, br.hosts}})
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return naturalLess(out[i].first, out[j].first) })
	rs := make([]HostRange, len(out))
	for i, e := range out {
		rs[i] = e.HostRange
	}
	return rs
}

// foldName is a host name cut at its numbers: texts[0] nums[0] texts[1]
// ... nums[n-1] texts[n], then port (":22" or "").
type foldName struct {
	texts []string
	nums  []string
	port  string
}

// splitForFold cuts a name that ExpandHostList reads as itself; false for
// a name without a number or one the syntax cannot fold.
func splitForFold(n string) (foldName, bool) {
	if strings.ContainsAny(n, "[]") || strings.Count(n, ":") > 1 {
		return foldName{}, false
	}
	if got, err := ExpandHostList(n); err != nil || len(got) != 1 || got[0] != n {
		return foldName{}, false
	}
	host, port := n, ""
	if c := strings.IndexByte(n, ':'); c >= 0 {
		host, port = n[:c], n[c:]
	}
	var fn foldName
	start := 0
	for i := 0; i < len(host); {
		if !isDigit(host[i]) {
			i++
			continue
		}
		j := i
		for j < len(host) && isDigit(host[j]) {
			j++
		}
		if j-i > 18 {
			return foldName{}, false // too long for a range's strconv.Atoi
		}
		fn.texts = append(fn.texts, host[start:i])
		fn.nums = append(fn.nums, host[i:j])
		start, i = j, j
	}
	if len(fn.nums) == 0 {
		return foldName{}, false
	}
	fn.texts = append(fn.texts, host[start:])
	fn.port = port
	return fn, true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// shape is what names must share to fold together: their texts, their
// count of numbers and their port.
func (fn foldName) shape() string {
	return strings.Join(fn.texts, "\x00") + "\x01" + fn.port
}

// rest is the name's numbers but the one at d.
func (fn foldName) rest(d int) string {
	var b strings.Builder
	for i, n := range fn.nums {
		if i != d {
			b.WriteString(n)
		}
		b.WriteByte(0)
	}
	return b.String()
}

// around is the name before and after its number at d.
func (fn foldName) around(d int) (string, string) {
	var pre, suf strings.Builder
	for i, t := range fn.texts {
		w := &pre
		if i > d {
			w = &suf
		}
		w.WriteString(t)
		if i < len(fn.nums) && i != d {
			w.WriteString(fn.nums[i])
		}
	}
	suf.WriteString(fn.port)
	return pre.String(), suf.String()
}

// foldDimension picks which number of names of one shape varies in the
// folded entries: the one that leaves the fewest entries, the last one
// when several do (rack1-node[01-03], not rack[1-2]-node01).
func foldDimension(group []foldName) int {
	best, bestCount := 0, len(group)+1
	for d := range group[0].nums {
		rests := map[string]bool{}
		for _, fn := range group {
			rests[fn.rest(d)] = true
		}
		if len(rests) <= bestCount {
			best, bestCount = d, len(rests)
		}
	}
	return best
}

// bracket is the inside of one [...]: its text ("01-12,14"), the first
// value and how many values it names.
type bracket struct {
	text, first string
	hosts       int
}

// foldValues folds the numbers of one entry into runs a-b ExpandHostList
// expands back to exactly these strings: a run whose start has a leading
// zero keeps that width (09-11), one without none (9-11). Two spellings of
// one number (1 and 01) go in different runs. A bracket names at most
// maxExpansion values, ExpandHostList's limit; more start another.
func foldValues(values []string) []bracket {
	type val struct {
		n int
		s string
	}
	vs := make([]val, 0, len(values))
	for _, s := range values {
		n, _ := strconv.Atoi(s) // splitForFold kept only digits, at most 18
		vs = append(vs, val{n, s})
	}
	sort.Slice(vs, func(i, j int) bool {
		if vs[i].n != vs[j].n {
			return vs[i].n < vs[j].n
		}
		return vs[i].s < vs[j].s
	})
	type run struct {
		lo, hi       val
		width, count int
	}
	var runs []run
	for rest := vs; len(rest) > 0; {
		var later []val
		cur := -1
		for _, v := range rest {
			if cur >= 0 {
				r := &runs[cur]
				if v.n == r.hi.n+1 && r.count < maxExpansion && fmt.Sprintf("%0*d", r.width, v.n) == v.s {
					r.hi, r.count = v, r.count+1
					continue
				}
				if v.n == r.hi.n {
					later = append(later, v) // another spelling: the next pass
					continue
				}
			}
			width := 0
			if len(v.s) > 1 && v.s[0] == '0' {
				width = len(v.s)
			}
			runs = append(runs, run{lo: v, hi: v, width: width, count: 1})
			cur = len(runs) - 1
		}
		rest = later
	}
	sort.SliceStable(runs, func(i, j int) bool {
		if runs[i].lo.n != runs[j].lo.n {
			return runs[i].lo.n < runs[j].lo.n
		}
		return runs[i].lo.s < runs[j].lo.s
	})
	var out []bracket
	var items []string
	var b bracket
	flush := func() {
		if b.hosts > 0 {
			b.text = strings.Join(items, ",")
			out = append(out, b)
		}
		items, b = nil, bracket{}
	}
	for _, r := range runs {
		if b.hosts+r.count > maxExpansion {
			flush()
		}
		if b.hosts == 0 {
			b.first = r.lo.s
		}
		item := r.lo.s
		if r.count > 1 {
			item += "-" + r.hi.s
		}
		items = append(items, item)
		b.hosts += r.count
	}
	flush()
	return out
}

// naturalLess orders host names as people count: numbers by value
// (node2 before node10), then byte by byte.
func naturalLess(a, b string) bool {
	x, y := a, b
	for x != "" && y != "" {
		if isDigit(x[0]) && isDigit(y[0]) {
			i, j := 0, 0
			for i < len(x) && isDigit(x[i]) {
				i++
			}
			for j < len(y) && isDigit(y[j]) {
				j++
			}
			nx, ny := strings.TrimLeft(x[:i], "0"), strings.TrimLeft(y[:j], "0")
			if len(nx) != len(ny) {
				return len(nx) < len(ny)
			}
			if nx != ny {
				return nx < ny
			}
			x, y = x[i:], y[j:]
			continue
		}
		if x[0] != y[0] {
			return x[0] < y[0]
		}
		x, y = x[1:], y[1:]
	}
	if len(x) != len(y) {
		return len(x) < len(y)
	}
	return a < b
}
