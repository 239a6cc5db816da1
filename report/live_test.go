package report

import (
	"bytes"
	"strings"
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
