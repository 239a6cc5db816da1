package report

import (
	"bytes"
	"strings"
)

// Tail returns the last n lines of s, without the trailing newline; empty
// for blank s. Error messages carry a command's output this way.
func Tail(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// KeepTail returns a copy of the end of b: its last maxLines lines, at most
// maxBytes of them (cut at a line start where there is one), and how many
// bytes of b it leaves out. The copy shares no memory with b, so b can be
// freed.
func KeepTail(b []byte, maxLines, maxBytes int) (string, int64) {
	start := max(0, len(b)-maxBytes)
	end := len(b)
	if end > 0 && b[end-1] == '\n' {
		end-- // the last line's newline does not start a line
	}
	lines := 0
	for i := end - 1; i >= start; i-- {
		if b[i] != '\n' {
			continue
		}
		if lines++; lines == maxLines {
			start = i + 1
			break
		}
	}
	if start > 0 && start < len(b) && b[start-1] != '\n' {
		// Cut inside a line: begin at the next line when there is one.
		if i := bytes.IndexByte(b[start:end], '\n'); i >= 0 {
			start += i + 1
		}
	}
	return string(b[start:]), int64(start)
}

// Indent puts prefix before every line of s.
func Indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n")
}

// LastLine returns the last non-blank line of s, cut to 300 bytes.
func LastLine(s string) string {
	s = Tail(strings.TrimSpace(s), 1)
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
