package cluster

// Env values that come from the controller's environment or a file, and
// which values count as secrets.

import (
	"errors"
	"io/fs"
	"os"
	"slices"
	"strings"
)

// secretWords are the parts of a variable name that make its literal
// value a secret. KEY counts only as a whole word between underscores, so
// that API_KEY is one and MONKEY or KEYBOARD_LAYOUT are not.
var secretWords = []string{"PASSWORD", "PASSWD", "SECRET", "TOKEN", "CREDENTIAL"}

// SecretName reports whether an environment variable's name looks secret
// (case-insensitive): it contains PASSWORD, PASSWD, SECRET, TOKEN or
// CREDENTIAL, or has KEY as one of its _-separated words.
func SecretName(name string) bool {
	up := strings.ToUpper(name)
	for _, w := range secretWords {
		if strings.Contains(up, w) {
			return true
		}
	}
	return slices.Contains(strings.Split(up, "_"), "KEY")
}

// envValue reads one env value: a string as written, or { env = "NAME" }
// (the controller's environment, at load) or { file = "path" } (the
// file's text, one trailing newline trimmed). secret is true for the two
// latter forms. Problems never show the value.
func (d *decoder) envValue(path string, val any) (s string, secret, ok bool) {
	switch v := val.(type) {
	case string:
		return v, false, true
	case map[string]any:
		if len(v) != 1 {
			break
		}
		if name, present := v["env"]; present {
			n, isStr := name.(string)
			if !isStr {
				d.fail(path, "env must be a string naming an environment variable of this machine, not %s", tomlType(name))
				return "", true, false
			}
			if !envName.MatchString(n) {
				d.fail(path, "env: %q is not a valid environment variable name", n)
				return "", true, false
			}
			s, set := d.lookupEnv(n)
			if !set {
				d.fail(path, "the environment variable %s is not set (this value is read from cvs's own environment)", n)
				return "", true, false
			}
			d.source(path, "$"+n)
			return s, true, true
		}
		if file, present := v["file"]; present {
			f, isStr := file.(string)
			if !isStr || f == "" {
				d.fail(path, "file must be a string naming a file of this machine, not %s", tomlType(file))
				return "", true, false
			}
			return d.secretFile(path, d.path(f))
		}
	}
	if _, isTable := val.(map[string]any); isTable {
		d.fail(path, `write either { env = "NAME" } or { file = "path" }: one key, env or file`)
		return "", false, false
	}
	d.fail(path, `must be a string, { env = "NAME" } or { file = "path" }, not %s (quote numbers: "1")`, tomlType(val))
	return "", false, false
}

// secretFile reads an env value's file: one line (a trailing newline is
// dropped); a file others may read is accepted with a warning.
func (d *decoder) secretFile(path, file string) (string, bool, bool) {
	b, err := os.ReadFile(file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		d.fail(path, "%s: no such file (relative paths start at the cluster file's folder)", file)
		return "", true, false
	case err != nil:
		d.fail(path, "%v", err)
		return "", true, false
	}
	s := strings.TrimSuffix(string(b), "\n")
	s = strings.TrimSuffix(s, "\r")
	if strings.ContainsAny(s, "\n\r\x00") {
		d.fail(path, "%s must hold a single line (one trailing newline is allowed)", file)
		return "", true, false
	}
	if st, err := os.Stat(file); err == nil && st.Mode().Perm()&0o077 != 0 {
		d.warnings = append(d.warnings, displayKey(path)+": "+file+" holds a secret but other users may read it (mode "+st.Mode().Perm().String()+"); chmod 600 "+file)
	}
	d.source(path, "file "+file)
	return s, true, true
}

func (d *decoder) lookupEnv(name string) (string, bool) {
	if d.lookup != nil {
		return d.lookup(name)
	}
	s := d.getenv(name)
	return s, s != ""
}

func (d *decoder) source(path, from string) {
	if d.envFrom == nil {
		d.envFrom = map[string]string{}
	}
	d.envFrom[path] = from
}

// shownEnv is an env map as the effective configuration prints it: a
// copy in which values read from the environment or a file name their
// source instead, since even --show-secrets must not print them.
func (c *Config) shownEnv(prefix string, m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		if from, ok := c.envFrom[join(prefix, k)]; ok {
			v = "<from " + from + ">"
		}
		out[k] = v
	}
	return out
}
