package report

import "strings"

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
