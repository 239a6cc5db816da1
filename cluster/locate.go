package cluster

import (
	"strconv"
	"strings"
)

// keyLines maps dotted key paths to the line that defines them. Elements of
// arrays of tables carry their index ("suites.test.steps.1.run"). The TOML
// decoder does not expose key positions, so this is a small line scanner
// over the same text; it only has to be right for files the decoder
// accepted.
type keyLines map[string]int

func locateKeys(text string) keyLines {
	lines := keyLines{}
	arrayCount := map[string]int{}
	table := ""
	var inMulti string // the closing delimiter while inside a multi-line string
	for i, raw := range strings.Split(text, "\n") {
		n := i + 1
		line := strings.TrimSpace(raw)
		if inMulti != "" {
			if strings.Contains(line, inMulti) {
				inMulti = ""
			}
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		switch {
		case strings.HasPrefix(line, "[["):
			end := strings.Index(line, "]]")
			if end < 0 {
				continue
			}
			p := joinKey(splitKey(line[2:end]))
			idx := arrayCount[p]
			arrayCount[p]++
			table = p + "." + strconv.Itoa(idx)
			setFirst(lines, p, n)
			lines[table] = n
		case line[0] == '[':
			end := strings.IndexByte(line, ']')
			if end < 0 {
				continue
			}
			parts := splitKey(line[1:end])
			for i := 1; i < len(parts); i++ {
				setFirst(lines, resolveArrays(joinKey(parts[:i]), arrayCount), n)
			}
			table = resolveArrays(joinKey(parts), arrayCount)
			setFirst(lines, table, n)
		default:
			eq := keyEnd(line)
			if eq < 0 {
				continue
			}
			p := joinKey(splitKey(line[:eq]))
			if table != "" {
				p = table + "." + p
			}
			setFirst(lines, p, n)
			val := line[eq+1:]
			for _, d := range []string{`"""`, `'''`} {
				if strings.Count(val, d) == 1 {
					inMulti = d
				}
			}
		}
	}
	return lines
}

// resolveArrays rewrites a [a.b.c] header so that a prefix naming an array
// of tables points at its last element, as TOML defines it.
func resolveArrays(p string, counts map[string]int) string {
	parts := strings.Split(p, ".")
	for i := len(parts) - 1; i > 0; i-- {
		prefix := strings.Join(parts[:i], ".")
		if c, ok := counts[prefix]; ok {
			return prefix + "." + strconv.Itoa(c-1) + "." + strings.Join(parts[i:], ".")
		}
	}
	return p
}

func setFirst(m keyLines, k string, n int) {
	if _, ok := m[k]; !ok {
		m[k] = n
	}
}

// keyEnd returns the index of the '=' that ends the key of a key/value line,
// skipping quoted key parts, or -1.
func keyEnd(line string) int {
	var q byte
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case q != 0:
			if c == q {
				q = 0
			}
		case c == '"' || c == '\'':
			q = c
		case c == '=':
			return i
		}
	}
	return -1
}

func splitKey(k string) []string {
	var parts []string
	var cur strings.Builder
	var q byte
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case q != 0:
			if c == q {
				q = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '"' || c == '\'':
			q = c
		case c == '.':
			parts = append(parts, strings.TrimSpace(cur.String()))
			cur.Reset()
		case c == ' ' || c == '\t':
		default:
			cur.WriteByte(c)
		}
	}
	return append(parts, strings.TrimSpace(cur.String()))
}

func joinKey(parts []string) string { return strings.Join(parts, ".") }

// line returns the line of path, or of its nearest defined parent (a key
// inside an inline table has its table's line).
func (m keyLines) line(path string) int {
	for {
		if n, ok := m[path]; ok {
			return n
		}
		dot := strings.LastIndexByte(path, '.')
		if dot < 0 {
			return 0
		}
		path = path[:dot]
	}
}
