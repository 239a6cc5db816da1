// Package xdg finds cvs's folders on this machine as the XDG Base
// Directory specification says: state (run records, cluster keys) under
// $XDG_STATE_HOME/cvs (~/.local/state/cvs), caches (digests, images) under
// $XDG_CACHE_HOME/cvs (~/.cache/cvs). A relative value of either variable
// is invalid by the specification and ignored.
package xdg

import (
	"fmt"
	"os"
	"path/filepath"
)

// State is the folder elem... under cvs's state folder.
func State(elem ...string) (string, error) {
	return under("XDG_STATE_HOME", filepath.Join(".local", "state"), elem)
}

// Cache is the folder elem... under cvs's cache folder.
func Cache(elem ...string) (string, error) {
	return under("XDG_CACHE_HOME", ".cache", elem)
}

func under(env, fallback string, elem []string) (string, error) {
	base := os.Getenv(env)
	if !filepath.IsAbs(base) {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no %s and no home folder: %w", env, err)
		}
		base = filepath.Join(home, fallback)
	}
	return filepath.Join(append([]string{base, "cvs"}, elem...)...), nil
}
