// Package shell builds POSIX shell command lines from argv.
//
// Every command cvs sends to a remote host goes through Join, so that an
// argument is always one word on the far side, whatever bytes it holds.
package shell

import "strings"

// Quote returns s as a single POSIX shell word. Words made only of
// characters that no shell treats specially are returned as they are, so
// that logged commands stay readable; everything else is single-quoted, an
// embedded single quote being written as: close quote, backslash-quote,
// open quote.
func Quote(s string) string {
	if s == "" {
		return "''"
	}
	if isSafe(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			b.WriteString(`'\''`)
			continue
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('\'')
	return b.String()
}

// Join quotes each element of argv and joins them with single spaces. The
// result, given to sh -c, runs argv[0] with exactly the arguments argv[1:].
func Join(argv ...string) string {
	parts := make([]string, len(argv))
	for i, a := range argv {
		parts[i] = Quote(a)
	}
	return strings.Join(parts, " ")
}

func isSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("_-./:,+@%=", c) >= 0:
			// '=' is safe only after the first character: a leading
			// NAME=value word would be read as an assignment.
			if c == '=' && i == 0 {
				return false
			}
		default:
			return false
		}
	}
	// A word that looks like an assignment (FOO=bar) is quoted so that it
	// stays an argument even in the command position.
	if eq := strings.IndexByte(s, '='); eq > 0 && isName(s[:eq]) {
		return false
	}
	return true
}

func isName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9' {
			continue
		}
		return false
	}
	return true
}
