package xdg

import "testing"

func TestFolders(t *testing.T) {
	t.Setenv("HOME", "/home/op")
	for _, c := range []struct{ env, val, want string }{
		{"XDG_STATE_HOME", "/s", "/s/cvs/runs"},
		{"XDG_STATE_HOME", "", "/home/op/.local/state/cvs/runs"},
		{"XDG_STATE_HOME", "rel/ative", "/home/op/.local/state/cvs/runs"},
	} {
		t.Setenv(c.env, c.val)
		if got, err := State("runs"); err != nil || got != c.want {
			t.Errorf("%s=%q: State = %q, %v; want %q", c.env, c.val, got, err, c.want)
		}
	}
	t.Setenv("XDG_CACHE_HOME", "")
	if got, _ := Cache("digests"); got != "/home/op/.cache/cvs/digests" {
		t.Errorf("Cache = %q", got)
	}
	t.Setenv("XDG_CACHE_HOME", "/c")
	if got, _ := Cache("images"); got != "/c/cvs/images" {
		t.Errorf("Cache = %q", got)
	}
}
