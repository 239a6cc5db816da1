package sshdfarm

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"
)

// RequireEnv is the environment variable that turns a missing sshd or
// ssh-agent from a skipped test into a failed one. CI sets it to 1 so
// that the real-sshd test tier cannot silently skip.
const RequireEnv = "CVS_REQUIRE_SSHD"

// StartT starts a farm for a test and stops it in t.Cleanup. Dir defaults
// to t.TempDir(). If sshd is not installed the test is skipped, or fails
// when $CVS_REQUIRE_SSHD is 1. Any start-up error fails the test. When the
// test has failed, the cleanup logs the tail of the first hosts' logs.
func StartT(t testing.TB, o Options) *Farm {
	t.Helper()
	if _, err := SSHDPath(); err != nil {
		skipOrFail(t, err)
	}
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), defaultStartTimeout)
	defer cancel()
	f, err := Start(ctx, o)
	if err != nil {
		t.Fatalf("start sshd farm: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, h := range f.Hosts {
				if i == 3 {
					break
				}
				b, _ := os.ReadFile(h.LogFile)
				t.Logf("sshd log of %s (%s): %s", h.HostPort(), h.LogFile, lastLines(b, 20))
			}
		}
		if err := f.Stop(); err != nil {
			t.Errorf("stop sshd farm: %v", err)
		}
	})
	return f
}

// StartAgentT starts an ssh-agent holding keyFiles for a test, stops it in
// t.Cleanup and returns its socket path (the value for SSH_AUTH_SOCK).
// A missing ssh-agent skips the test, or fails it when $CVS_REQUIRE_SSHD
// is 1.
func StartAgentT(t testing.TB, keyFiles ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := StartAgent(ctx, keyFiles...)
	if err != nil {
		if errors.Is(err, ErrNotInstalled) {
			skipOrFail(t, err)
		}
		t.Fatalf("start ssh-agent: %v", err)
	}
	t.Cleanup(func() {
		if err := a.Stop(); err != nil {
			t.Errorf("stop ssh-agent: %v", err)
		}
	})
	return a.Socket
}

func skipOrFail(t testing.TB, err error) {
	t.Helper()
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%v (%s=1 requires it)", err, RequireEnv)
	}
	t.Skipf("%v (set %s=1 to fail instead of skipping)", err, RequireEnv)
}
