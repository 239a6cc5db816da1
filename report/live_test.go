package report

import (
	"bytes"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// The live table shows each host's step, its state and last line; without
// colour it has no escape sequences at all.
func TestLiveModel(t *testing.T) {
	var buf bytes.Buffer
	m := newLiveModel(&buf, []string{"node01", "node02", "node03"}, true)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	m.now = func() time.Time { return now.Add(1500 * time.Millisecond) }
	m.Update(stepStarted{step: "nccl", hosts: []string{"node01", "node02"}, at: now})
	m.Update(outputLine{host: "node01", line: "busbw 180 GB/s"})
	m.Update(outputLine{host: "node01", line: "   "}) // blank lines keep the last one
	m.Update(outputLine{host: "node02", line: strings.Repeat("x", 200)})
	m.Update(stepDone{host: "node02", code: 3, at: now.Add(time.Second)})
	v := m.View()
	for _, want := range []string{"node01", "nccl", "running", "1.5s", "busbw 180 GB/s", "exit 3", "1s", "node03", "waiting", "…"} {
		if !strings.Contains(v, want) {
			t.Errorf("view lacks %q:\n%s", want, v)
		}
	}
	if strings.Contains(v, "\x1b[") {
		t.Errorf("NO_COLOR view has escape sequences: %q", v)
	}
	if strings.Contains(v, strings.Repeat("x", 61)) {
		t.Error("the last line is not clipped")
	}
}

func TestLineWriter(t *testing.T) {
	var got []string
	w := LineWriter(func(l string) { got = append(got, l) })
	w.Write([]byte("a\r\nb"))
	w.Write([]byte("c\n"))
	if strings.Join(got, "|") != "a|bc" {
		t.Errorf("lines %q", got)
	}
}

// allocated is how many bytes f allocates on the heap.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// Every output path splits lines in time linear in what it is given: one
// write of many short lines costs a bounded number of bytes per byte
// written, not a copy of the rest of the write per line (issue 21 item 9:
// 64 MiB of short lines took 98 s of CPU). Measured in bytes allocated, so
// a slow machine cannot make it fail.
func TestLineSplittingIsLinear(t *testing.T) {
	input := bytes.Repeat([]byte("ab\n"), 64<<10/3) // 64 KiB of short lines
	var mu sync.Mutex
	for name, w := range map[string]io.Writer{
		"LineWriter": LineWriter(func(string) {}),
		"Live":       &lineWriter{fn: func(string) {}},
		"Prefix":     &Prefix{W: io.Discard, Host: "h", Locker: &mu},
	} {
		got := allocated(func() { w.Write(input) })
		if perByte := float64(got) / float64(len(input)); perByte > 64 {
			t.Errorf("%s: %d bytes allocated to split %d bytes (%.0f per byte): not linear", name, got, len(input), perByte)
		}
	}
}

func BenchmarkLineWriter(b *testing.B) {
	input := bytes.Repeat([]byte("a short line\n"), 1<<20/13)
	w := LineWriter(func(string) {})
	b.SetBytes(int64(len(input)))
	for b.Loop() {
		w.Write(input)
	}
}

func BenchmarkPrefix(b *testing.B) {
	input := bytes.Repeat([]byte("a short line\n"), 1<<20/13)
	var mu sync.Mutex
	w := &Prefix{W: io.Discard, Host: "h", Locker: &mu}
	b.SetBytes(int64(len(input)))
	for b.Loop() {
		w.Write(input)
	}
}
