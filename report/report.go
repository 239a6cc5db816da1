// Package report renders results for people: aligned tables, outputs of
// many hosts folded when identical, and a progress line for long waits.
package report

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/cvs-tool/cvs/cluster"
)

// Table writes rows under a header with columns aligned by width; a nil
// header writes the rows alone.
func Table(w io.Writer, header []string, rows [][]string) {
	cols := len(header)
	for _, r := range rows {
		cols = max(cols, len(r))
	}
	widths := make([]int, cols)
	for i, h := range header {
		widths[i] = utf8.RuneCountInString(h)
	}
	for _, r := range rows {
		for i, c := range r {
			if i < len(widths) && utf8.RuneCountInString(c) > widths[i] {
				widths[i] = utf8.RuneCountInString(c)
			}
		}
	}
	line := func(cells []string) {
		var b strings.Builder
		for i, c := range cells {
			if i == len(cells)-1 {
				b.WriteString(c)
				break
			}
			b.WriteString(c)
			b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+2))
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	if header != nil {
		line(header)
	}
	for _, r := range rows {
		line(r)
	}
}

// MaxRows is how many rows a long table shows unless asked for all
// (--verbose): the first ones, then "+N more (all in --json)".
const MaxRows = 40

// LongTable is Table bounded to limit rows (all when limit <= 0), then a
// line saying how many more there are.
func LongTable(w io.Writer, header []string, rows [][]string, limit int) {
	if limit <= 0 || len(rows) <= limit {
		Table(w, header, rows)
		return
	}
	Table(w, header, rows[:limit])
	fmt.Fprintf(w, "+%d more (all in --json)\n", len(rows)-limit)
}

// Output is what one host produced.
type Output struct {
	Host string
	Text string
	// Status is a short note shown with the hosts, e.g. "exit 1"; hosts
	// fold together only when both text and status are equal.
	Status string
}

// Group folds identical outputs into blocks, clush -b style: each block
// lists its hosts, then the text once. Blocks come in order of their first
// host in outs.
func Group(w io.Writer, outs []Output) {
	type block struct {
		hosts []string
		first int
		o     Output
	}
	byKey := map[string]*block{}
	var blocks []*block
	for i, o := range outs {
		k := o.Status + "\x00" + o.Text
		b, ok := byKey[k]
		if !ok {
			b = &block{first: i, o: o}
			byKey[k] = b
			blocks = append(blocks, b)
		}
		b.hosts = append(b.hosts, o.Host)
	}
	sort.SliceStable(blocks, func(i, j int) bool { return blocks[i].first < blocks[j].first })
	for _, b := range blocks {
		title := fmt.Sprintf("%s (%d)", cluster.FoldHostList(b.hosts), len(b.hosts))
		if b.o.Status != "" {
			title += " " + b.o.Status
		}
		rule := strings.Repeat("-", min(max(utf8.RuneCountInString(title), 15), 78))
		fmt.Fprintf(w, "%s\n%s\n%s\n", rule, title, rule)
		text := strings.TrimRight(b.o.Text, "\n")
		if text != "" {
			fmt.Fprintln(w, text)
		}
	}
}

// MaxLine is the longest line a Prefix holds: output without newlines (a
// progress bar redrawn with \r, a binary dump) is cut into lines of this
// size, so memory stays bounded and time linear whatever a host prints.
const MaxLine = 64 << 10

// Prefix writes each complete line of one host's output as "host: line".
// Several Prefix writers may share one underlying writer guarded by mu, so
// lines of different hosts never mix within a line.
type Prefix struct {
	W      io.Writer
	Host   string
	Width  int // pad the host name to this width
	Locker interface {
		Lock()
		Unlock()
	}
	lines Lines
}

// Write emits every complete line of b; it looks at each byte once.
func (p *Prefix) Write(b []byte) (int, error) {
	p.lines.Write(b, p.emit)
	return len(b), nil
}

// Flush writes a last line that had no newline.
func (p *Prefix) Flush() { p.lines.Flush(p.emit) }

// Lines cuts a stream into lines, in time linear in its length and memory
// bounded by MaxLine: every output path (host-prefixed lines, the live
// view, log lines) splits with it. The zero value is ready to use.
type Lines struct {
	buf []byte // the start of a line whose newline has not come yet
}

// Write calls emit with each line b completes, without its newline; the
// slice is valid only during the call. A line longer than MaxLine is cut
// into pieces of MaxLine bytes.
func (l *Lines) Write(b []byte, emit func(line []byte)) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			room := MaxLine - len(l.buf)
			if len(b) < room {
				l.buf = append(l.buf, b...)
				return
			}
			l.buf = append(l.buf, b[:room]...)
			emit(l.buf)
			l.buf = l.buf[:0]
			b = b[room:]
			continue
		}
		if len(l.buf)+i > MaxLine {
			i = MaxLine - len(l.buf)
			l.buf = append(l.buf, b[:i]...)
			emit(l.buf)
			l.buf = l.buf[:0]
			b = b[i:]
			continue
		}
		if len(l.buf) > 0 {
			l.buf = append(l.buf, b[:i]...)
			emit(l.buf)
			l.buf = l.buf[:0]
		} else {
			emit(b[:i])
		}
		b = b[i+1:]
	}
}

// Flush calls emit with a last line that had no newline, if any.
func (l *Lines) Flush(emit func(line []byte)) {
	if len(l.buf) > 0 {
		emit(l.buf)
		l.buf = l.buf[:0]
	}
}

func (p *Prefix) emit(line []byte) {
	p.Locker.Lock()
	defer p.Locker.Unlock()
	fmt.Fprintf(p.W, "%-*s %s\n", p.Width+1, p.Host+":", line)
}

// MaxHostList is about the longest a HostList gets, in bytes.
const MaxHostList = 160

// HostList names hosts folded into ranges, as the hosts option writes them
// (cluster.FoldHostList: node[001-003,005],gpu[1-2]). A list longer than
// MaxHostList names the first hosts, in natural order, and how many more:
// "node[001-040,042] and 458 more".
func HostList(hosts []string) string {
	full := cluster.FoldHostList(hosts)
	if len(full) <= MaxHostList {
		return full
	}
	rs := cluster.FoldHosts(hosts)
	sorted := make([]string, 0, len(hosts))
	for _, r := range rs {
		names, err := cluster.ExpandHostList(r.Text)
		if err != nil {
			names = []string{r.Text} // a name the syntax cannot hold: itself
		}
		sorted = append(sorted, names...)
	}
	// The most hosts whose fold fits: the fold of the first k grows with k.
	k := sort.Search(len(sorted), func(k int) bool { return len(cluster.FoldHostList(sorted[:k+1])) > MaxHostList })
	k = max(k, 1)
	return fmt.Sprintf("%s and %d more", cluster.FoldHostList(sorted[:k]), len(sorted)-k)
}
