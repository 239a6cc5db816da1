package report

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
)

func TestTailIndentLastLine(t *testing.T) {
	if got := Tail("a\nb\nc\n", 2); got != "b\nc" {
		t.Errorf("Tail = %q", got)
	}
	if got := Tail("\n\n", 3); got != "" {
		t.Errorf("Tail of blank = %q", got)
	}
	if got := Indent("a\nb\n", "  | "); got != "  | a\n  | b" {
		t.Errorf("Indent = %q", got)
	}
	if got := LastLine("x\nlast\n\n"); got != "last" {
		t.Errorf("LastLine = %q", got)
	}
	if got := LastLine(strings.Repeat("y", 400)); len(got) != 300+len("…") {
		t.Errorf("LastLine not cut: %d", len(got))
	}
}

func TestGroupFoldsIdentical(t *testing.T) {
	var b strings.Builder
	Group(&b, []Output{{Host: "a", Text: "same\n"}, {Host: "b", Text: "other\n"}, {Host: "c", Text: "same\n"}, {Host: "d", Text: "same\n", Status: "exit 1"}})
	out := b.String()
	if !strings.Contains(out, "a,c (2)\n") || !strings.Contains(out, "b (1)\n") || !strings.Contains(out, "d (1) exit 1\n") || strings.Count(out, "same") != 2 {
		t.Errorf("grouped:\n%s", out)
	}
}

// exec --group headers name their hosts folded: node[01-03,05] (4).
func TestGroupFoldsHostNames(t *testing.T) {
	var outs []Output
	for _, h := range []string{"node01", "node02", "node03", "node05", "node04"} {
		text := "same\n"
		if h == "node04" {
			text = "other\n"
		}
		outs = append(outs, Output{Host: h, Text: text})
	}
	var b strings.Builder
	Group(&b, outs)
	if out := b.String(); !strings.Contains(out, "\nnode[01-03,05] (4)\n") || !strings.Contains(out, "\nnode04 (1)\n") {
		t.Errorf("grouped:\n%s", out)
	}
}

func TestHostListFoldsAndStaysShort(t *testing.T) {
	if got := HostList([]string{"node03", "node01", "node02", "gpu1"}); got != "gpu1,node[01-03]" {
		t.Errorf("HostList = %q", got)
	}
	// Every other host of 500: no range folds them, so the list names the
	// first ones and counts the rest.
	var odd []string
	for i := 1; i <= 500; i += 2 {
		odd = append(odd, fmt.Sprintf("node%03d", i))
	}
	got := HostList(odd)
	if len(got) > MaxHostList+len(" and 999 more") || !strings.HasPrefix(got, "node[001,003,005,") || !strings.HasSuffix(got, " more") {
		t.Fatalf("HostList of 250 hosts = %q (%d bytes)", got, len(got))
	}
	list, tail, _ := strings.Cut(got, " and ")
	var more int
	fmt.Sscanf(tail, "%d more", &more)
	shown := strings.Count(list, ",") + 1 // no ranges among odd numbers
	if shown+more != len(odd) {
		t.Errorf("%q names %d hosts and %d more, want %d in all", got, shown, more, len(odd))
	}
}

func TestTableAligns(t *testing.T) {
	var b strings.Builder
	Table(&b, []string{"HOST", "STATE"}, [][]string{{"node01", "running"}, {"n2", "absent"}})
	want := "HOST    STATE\nnode01  running\nn2      absent\n"
	if b.String() != want {
		t.Errorf("got\n%q\nwant\n%q", b.String(), want)
	}
}

// countWriter counts what reaches it.
type countWriter struct{ n, lines int }

func (c *countWriter) Write(b []byte) (int, error) {
	c.n += len(b)
	c.lines += bytes.Count(b, []byte("\n"))
	return len(b), nil
}

// Issue 9 item 12: output without newlines (a progress bar using \r) is
// cut into lines of at most MaxLine bytes; the writer never holds more.
func TestPrefixBoundsAPartialLine(t *testing.T) {
	var out countWriter
	p := &Prefix{W: &out, Host: "h", Locker: &sync.Mutex{}}
	chunk := bytes.Repeat([]byte("x"), 4096)
	const total = 8 << 20
	for written := 0; written < total; written += len(chunk) {
		p.Write(chunk)
		if len(p.lines.buf) > MaxLine {
			t.Fatalf("the writer holds %d bytes of a line, more than %d", len(p.lines.buf), MaxLine)
		}
	}
	p.Flush()
	if want := total / MaxLine; out.lines != want {
		t.Errorf("%d lines, want %d", out.lines, want)
	}
	if out.n != total+out.lines*len("h: \n") {
		t.Errorf("%d bytes out for %d in", out.n, total)
	}
}

func TestPrefixSplitsLinesInOneWrite(t *testing.T) {
	var b strings.Builder
	p := &Prefix{W: &b, Host: "h", Locker: &sync.Mutex{}}
	p.Write([]byte("a\nbb\nc"))
	p.Write([]byte("c\n\nd"))
	p.Flush()
	if got := b.String(); got != "h: a\nh: bb\nh: cc\nh: \nh: d\n" {
		t.Errorf("got %q", got)
	}
}

func TestTailBufferKeepsTheEnd(t *testing.T) {
	tb := NewTailBuffer(10)
	tb.Write([]byte("0123456"))
	if string(tb.Bytes()) != "0123456" || tb.Dropped() != 0 {
		t.Errorf("%q %d", tb.Bytes(), tb.Dropped())
	}
	tb.Write([]byte("789abc"))
	if string(tb.Bytes()) != "3456789abc" || tb.Dropped() != 3 {
		t.Errorf("%q %d", tb.Bytes(), tb.Dropped())
	}
	tb.Write([]byte("0123456789ABCDEF"))
	if string(tb.Bytes()) != "6789ABCDEF" || tb.Dropped() != 19 {
		t.Errorf("%q %d", tb.Bytes(), tb.Dropped())
	}
}

// A command's output buffers cost what the command printed, not their
// limit: cvs holds two per command on every host at once (500 hosts, a
// 1 MiB limit each, were 1 GiB of allocation for `true`).
func TestTailBufferGrowsWithWhatIsWritten(t *testing.T) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	bufs := make([]*TailBuffer, 100)
	for i := range bufs {
		bufs[i] = NewTailBuffer(1 << 20)
		bufs[i].Write([]byte("ok\n"))
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Errorf("100 buffers holding 3 bytes each allocated %d KiB", got>>10)
	}
	for _, b := range bufs {
		if b.String() != "ok\n" {
			t.Fatalf("%q", b.String())
		}
	}
}

func TestKeepTail(t *testing.T) {
	for _, c := range []struct {
		in        string
		lines, by int
		want      string
		cut       int64
	}{
		{"", 20, 4096, "", 0},
		{"a\nb\n", 20, 4096, "a\nb\n", 0},
		{"a\nb\nc\n", 2, 4096, "b\nc\n", 2},
		{"a\nb\nc", 2, 4096, "b\nc", 2},
		{"aaaa\nbbbb\ncc\n", 20, 8, "bbbb\ncc\n", 5},
		{"aaaa\nbbbb\ncc\n", 20, 7, "cc\n", 10},     // cut at a line start
		{strings.Repeat("x", 10), 20, 4, "xxxx", 6}, // one long line: its end
	} {
		got, cut := KeepTail([]byte(c.in), c.lines, c.by)
		if got != c.want || cut != c.cut {
			t.Errorf("KeepTail(%q, %d, %d) = %q, %d; want %q, %d", c.in, c.lines, c.by, got, cut, c.want, c.cut)
		}
	}
}
