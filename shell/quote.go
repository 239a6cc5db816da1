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

// Split is Join's inverse for the words Join writes: bare words and
// single-quoted words (with the '\” escape), separated by spaces. It is
// how test doubles read back the command lines cvs sends; ok is false for
// anything else (a pipe, a redirection, double quotes).
func Split(line string) (argv []string, ok bool) {
	var word strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == ' ':
			if inWord {
				argv = append(argv, word.String())
				word.Reset()
				inWord = false
			}
		case c == '\'':
			end := strings.IndexByte(line[i+1:], '\'')
			if end < 0 {
				return nil, false
			}
			word.WriteString(line[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case c == '\\' && i+1 < len(line) && line[i+1] == '\'':
			word.WriteByte('\'')
			i++
			inWord = true
		case isSafe(string(c)) || c == '=':
			word.WriteByte(c)
			inWord = true
		default:
			return nil, false
		}
	}
	if inWord {
		argv = append(argv, word.String())
	}
	return argv, true
}
