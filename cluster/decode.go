package cluster

// Generic strict decoding of TOML values: every key checked against the
// table's known keys, every value against its type, every problem kept
// with its line.

import (
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// displayKey drops array indices from a path for messages:
// suites.test.steps.1.run is shown as suites.test.steps[1].run.
func displayKey(path string) string {
	parts := strings.Split(path, ".")
	var b strings.Builder
	for i, p := range parts {
		if _, err := strconv.Atoi(p); err == nil && i > 0 {
			b.WriteString("[" + p + "]")
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

func (d *decoder) checkKeys(m map[string]any, prefix string, known []string, legacy map[string]string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if msg, ok := legacy[k]; ok {
			d.fail(join(prefix, k), "%s", msg)
			continue
		}
		if contains(known, k) {
			continue
		}
		msg := "unknown key"
		if s := closest(k, known); s != "" {
			msg += fmt.Sprintf("; did you mean %q?", s)
		} else {
			msg += "; valid keys here: " + strings.Join(known, ", ")
		}
		d.fail(join(prefix, k), "%s", msg)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (d *decoder) expand(s string) string { return strings.ReplaceAll(s, UserPlaceholder, d.user) }

func (d *decoder) str(m map[string]any, prefix, key string) (string, bool) {
	v, ok := m[key]
	if !ok {
		return "", false
	}
	s, isStr := v.(string)
	if !isStr {
		d.fail(join(prefix, key), "must be a string, not %s", tomlType(v))
		return "", false
	}
	return d.expand(s), true
}

// strList accepts one string or a list of strings.
func (d *decoder) strList(m map[string]any, prefix, key string, single bool) ([]string, bool) {
	v, ok := m[key]
	if !ok {
		return nil, false
	}
	if s, isStr := v.(string); isStr && single {
		return []string{d.expand(s)}, true
	}
	list, isList := v.([]any)
	if !isList {
		want := "a list of strings"
		if single {
			want = "a string or a list of strings"
		}
		d.fail(join(prefix, key), "must be %s, not %s", want, tomlType(v))
		return nil, false
	}
	out := make([]string, 0, len(list))
	for i, it := range list {
		s, isStr := it.(string)
		if !isStr {
			d.fail(join(prefix, key), "item %d must be a string, not %s", i+1, tomlType(it))
			continue
		}
		out = append(out, d.expand(s))
	}
	return out, true
}

func (d *decoder) integer(m map[string]any, prefix, key string, lo, hi int64) (int, bool) {
	v, ok := m[key]
	if !ok {
		return 0, false
	}
	n, isInt := v.(int64)
	if !isInt {
		d.fail(join(prefix, key), "must be an integer, not %s", tomlType(v))
		return 0, false
	}
	if n < lo || n > hi {
		d.fail(join(prefix, key), "%d is out of range %d to %d", n, lo, hi)
		return 0, false
	}
	return int(n), true
}

func (d *decoder) boolean(m map[string]any, prefix, key string) (bool, bool) {
	v, ok := m[key]
	if !ok {
		return false, false
	}
	b, isBool := v.(bool)
	if !isBool {
		d.fail(join(prefix, key), "must be true or false, not %s", tomlType(v))
		return false, false
	}
	return b, true
}

func (d *decoder) duration(m map[string]any, prefix, key string) (time.Duration, bool) {
	return d.durationFrom(m, prefix, key, 1)
}

// durationOrZero is duration, "0s" allowed (a key whose zero means "never").
func (d *decoder) durationOrZero(m map[string]any, prefix, key string) (time.Duration, bool) {
	return d.durationFrom(m, prefix, key, 0)
}

func (d *decoder) durationFrom(m map[string]any, prefix, key string, least time.Duration) (time.Duration, bool) {
	s, ok := d.str(m, prefix, key)
	if !ok {
		if _, present := m[key]; present {
			return 0, false // str already reported the type
		}
		return 0, false
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < least {
		what := "a positive duration"
		if least == 0 {
			what = "a duration of 0s or more"
		}
		d.fail(join(prefix, key), "%q is not %s; write e.g. \"30s\", \"15m\" or \"1h30m\"", s, what)
		return 0, false
	}
	return v, true
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (d *decoder) env(m map[string]any, prefix, key string) map[string]string {
	v, ok := m[key]
	if !ok {
		return nil
	}
	t, isTable := v.(map[string]any)
	if !isTable {
		d.fail(join(prefix, key), "must be a table of NAME = \"value\", not %s", tomlType(v))
		return nil
	}
	out := make(map[string]string, len(t))
	for k, val := range t {
		path := join(join(prefix, key), k)
		if !envName.MatchString(k) {
			d.fail(path, "%q is not a valid environment variable name", k)
			continue
		}
		s, secret, ok := d.envValue(path, val)
		if !ok {
			continue
		}
		if strings.ContainsAny(s, "\n\r\x00") {
			// An env file has one variable a line: a newline would cut the
			// value and could smuggle in another variable.
			d.fail(path, "must be a single line (no newline or NUL characters)")
			continue
		}
		if !secret {
			s = d.expand(s)
		}
		if secret || SecretName(k) {
			d.secrets = append(d.secrets, s)
			d.secretKeys = append(d.secretKeys, path)
		}
		out[k] = s
	}
	return out
}

func (d *decoder) table(m map[string]any, prefix, key string) (map[string]any, bool) {
	v, ok := m[key]
	if !ok {
		return nil, false
	}
	t, isTable := v.(map[string]any)
	if !isTable {
		d.fail(join(prefix, key), "must be a table ([%s]), not %s", join(prefix, key), tomlType(v))
		return nil, false
	}
	return t, true
}

func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any, []map[string]any:
		return "a list"
	case map[string]any:
		return "a table"
	case time.Time:
		return "a date"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// path resolves a file name from the cluster file: "~" is the home
// directory, a relative path is relative to the cluster file's folder.
func (d *decoder) path(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		return filepath.Join(d.home, p[1:])
	}
	if !filepath.IsAbs(p) {
		return filepath.Join(d.dir, p)
	}
	return filepath.Clean(p)
}

// namedTable is one [KEY.NAME] table.
type namedTable struct {
	name, path string
	m          map[string]any
}

// namedTables returns the [key.NAME] tables of raw, sorted by name; a
// value that is not a table is a problem (and left out).
func (d *decoder) namedTables(raw map[string]any, key string) []namedTable {
	m, ok := d.table(raw, "", key)
	if !ok {
		return nil
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	var out []namedTable
	for _, name := range names {
		if t, ok := d.table(m, key, name); ok {
			out = append(out, namedTable{name: name, path: key + "." + name, m: t})
		}
	}
	return out
}
