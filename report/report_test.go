package report

import (
	"strings"
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

func TestTableAligns(t *testing.T) {
	var b strings.Builder
	Table(&b, []string{"HOST", "STATE"}, [][]string{{"node01", "running"}, {"n2", "absent"}})
	want := "HOST    STATE\nnode01  running\nn2      absent\n"
	if b.String() != want {
		t.Errorf("got\n%q\nwant\n%q", b.String(), want)
	}
}
