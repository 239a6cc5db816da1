package sshdfarm_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/cvs-tool/cvs/internal/sshdfarm"
)

// dial connects to h as the farm's user, verifying its host key against
// knownHostsFile.
func dial(t *testing.T, f *sshdfarm.Farm, h sshdfarm.Host, knownHostsFile string, auth ssh.AuthMethod, mod func(*ssh.ClientConfig)) (*ssh.Client, error) {
	t.Helper()
	cb, err := knownhosts.New(knownHostsFile)
	if err != nil {
		t.Fatalf("load known_hosts: %v", err)
	}
	cfg := &ssh.ClientConfig{
		User:            f.User,
		Auth:            []ssh.AuthMethod{auth},
		HostKeyCallback: cb,
		Timeout:         10 * time.Second,
	}
	if mod != nil {
		mod(cfg)
	}
	return ssh.Dial("tcp", h.HostPort(), cfg)
}

func run(t *testing.T, c *ssh.Client, cmd string) string {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatalf("new session: %v", err)
	}
	defer s.Close()
	out, err := s.CombinedOutput(cmd)
	if err != nil {
		t.Fatalf("run %q: %v (output %q)", cmd, err, out)
	}
	return string(out)
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func TestFarmLifecycle(t *testing.T) {
	f := sshdfarm.StartT(t, sshdfarm.Options{N: 3})
	if len(f.Hosts) != 3 {
		t.Fatalf("got %d hosts, want 3", len(f.Hosts))
	}
	fi, err := os.Stat(f.ClientKey)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("client key %s: mode %v, err %v; want 0600", f.ClientKey, fi.Mode().Perm(), err)
	}
	auth := ssh.PublicKeys(f.ClientSigner)
	for _, h := range f.Hosts {
		c, err := dial(t, f, h, f.KnownHosts, auth, nil)
		if err != nil {
			t.Fatalf("dial %s: %v", h.HostPort(), err)
		}
		run(t, c, "true")
		c.Close()
	}
	if n, err := f.Accepted(); err != nil || n != 3 {
		t.Fatalf("Accepted() = %d, %v; want 3", n, err)
	}
	waitIdle(t, f)

	oldPID := f.Hosts[0].PID
	oldKey := f.Hosts[0].HostKeys["ed25519"]
	if err := f.RotateHostKey(t.Context(), 0); err != nil {
		t.Fatalf("RotateHostKey: %v", err)
	}
	if f.Hosts[0].HostKeys["ed25519"] == oldKey || f.Hosts[0].PID == oldPID {
		t.Fatalf("RotateHostKey kept key or PID")
	}
	if alive(oldPID) {
		t.Errorf("old sshd pid %d still runs after RotateHostKey", oldPID)
	}
	_, err = dial(t, f, f.Hosts[0], f.KnownHosts, auth, nil)
	var keyErr *knownhosts.KeyError
	if !errors.As(err, &keyErr) || len(keyErr.Want) == 0 {
		t.Fatalf("dial after rotation: err = %v, want a *knownhosts.KeyError mismatch", err)
	}
	// The other hosts are untouched, and a refreshed file trusts host 0.
	fresh := filepath.Join(t.TempDir(), "known_hosts")
	if err := f.WriteKnownHosts(fresh, false); err != nil {
		t.Fatal(err)
	}
	c, err := dial(t, f, f.Hosts[0], fresh, auth, nil)
	if err != nil {
		t.Fatalf("dial with refreshed known_hosts: %v", err)
	}
	c.Close()

	pids := []int{f.Hosts[0].PID, f.Hosts[1].PID, f.Hosts[2].PID}
	if err := f.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := f.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("sshd pid %d still runs after Stop", pid)
		}
	}
	if procs := processesMentioning(t, f.Dir); len(procs) > 0 {
		t.Errorf("processes still refer to the farm directory after Stop: %v", procs)
	}
	if _, err := net.DialTimeout("tcp", f.Hosts[1].HostPort(), time.Second); err == nil {
		t.Errorf("%s still accepts connections after Stop", f.Hosts[1].HostPort())
	}
}

// waitIdle waits for the farm's connection processes to finish after
// their clients disconnected.
func waitIdle(t *testing.T, f *sshdfarm.Farm) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for f.Connections() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connection processes still run 10s after every client closed", f.Connections())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// processesMentioning lists the command lines of running processes that
// contain s.
func processesMentioning(t *testing.T, s string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	var out []string
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(s)) {
			out = append(out, e.Name()+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}

func TestStopEndsOpenSessions(t *testing.T) {
	f := sshdfarm.StartT(t, sshdfarm.Options{N: 1})
	c, err := dial(t, f, f.Hosts[0], f.KnownHosts, ssh.PublicKeys(f.ClientSigner), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("sleep 300"); err != nil {
		t.Fatal(err)
	}
	if n := f.Connections(); n != 1 {
		t.Errorf("Connections() = %d with one client connected, want 1", n)
	}
	if err := f.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("session still open 10s after Stop")
	}
}

func TestHashedKnownHostsAndSecondKeyType(t *testing.T) {
	f := sshdfarm.StartT(t, sshdfarm.Options{N: 2, HostKeyTypes: []string{"ed25519", "rsa"}})
	hashed := filepath.Join(t.TempDir(), "known_hosts")
	if err := f.WriteKnownHosts(hashed, true); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(hashed)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 4 {
		t.Fatalf("hashed known_hosts has %d lines, want 4 (2 hosts x 2 key types):\n%s", len(lines), b)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "|1|") || strings.Contains(l, f.Hosts[0].Addr) {
			t.Errorf("line is not hashed: %q", l)
		}
	}
	for _, algo := range []string{ssh.KeyAlgoED25519, ssh.KeyAlgoRSASHA512} {
		for _, h := range f.Hosts {
			c, err := dial(t, f, h, hashed, ssh.PublicKeys(f.ClientSigner), func(c *ssh.ClientConfig) {
				c.HostKeyAlgorithms = []string{algo}
			})
			if err != nil {
				t.Fatalf("dial %s offering only %s: %v", h.HostPort(), algo, err)
			}
			c.Close()
		}
	}
}

func TestAgentAuth(t *testing.T) {
	f := sshdfarm.StartT(t, sshdfarm.Options{N: 1})
	sock := sshdfarm.StartAgentT(t, f.ClientKey)
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("dial agent: %v", err)
	}
	defer conn.Close()
	ag := agent.NewClient(conn)
	keys, err := ag.List()
	if err != nil || len(keys) != 1 {
		t.Fatalf("agent holds %d keys (err %v), want 1", len(keys), err)
	}
	c, err := dial(t, f, f.Hosts[0], f.KnownHosts, ssh.PublicKeysCallback(ag.Signers), nil)
	if err != nil {
		t.Fatalf("dial with agent auth: %v", err)
	}
	defer c.Close()
	if got := strings.TrimSpace(run(t, c, "echo ok")); got != "ok" {
		t.Fatalf("output %q, want ok", got)
	}
}

func TestAgentStopRemovesSocket(t *testing.T) {
	a, err := sshdfarm.StartAgent(t.Context())
	if errors.Is(err, sshdfarm.ErrNotInstalled) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if alive(a.PID) {
		t.Errorf("ssh-agent pid %d still runs after Stop", a.PID)
	}
	if _, err := os.Stat(a.Socket); !os.IsNotExist(err) {
		t.Errorf("socket %s still exists after Stop (err %v)", a.Socket, err)
	}
}

func TestExtraConfig(t *testing.T) {
	banner := filepath.Join(t.TempDir(), "banner")
	if err := os.WriteFile(banner, []byte("farm banner\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := sshdfarm.StartT(t, sshdfarm.Options{N: 1, Extra: []string{"Banner " + banner}})
	var got string
	c, err := dial(t, f, f.Hosts[0], f.KnownHosts, ssh.PublicKeys(f.ClientSigner), func(c *ssh.ClientConfig) {
		c.BannerCallback = func(m string) error { got = m; return nil }
	})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if got != "farm banner\n" {
		t.Fatalf("banner %q, want the Extra Banner file's contents", got)
	}
}

func TestAuthRefusedForUnknownKey(t *testing.T) {
	f := sshdfarm.StartT(t, sshdfarm.Options{N: 1})
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	_, err = dial(t, f, f.Hosts[0], f.KnownHosts, ssh.PublicKeys(other), nil)
	if err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("dial with a foreign key: err = %v, want an authentication failure", err)
	}
	if n, _ := f.Accepted(); n != 0 {
		t.Fatalf("Accepted() = %d after a refused login, want 0", n)
	}
}

func TestStartManyHosts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 50 sshds")
	}
	start := time.Now()
	f := sshdfarm.StartT(t, sshdfarm.Options{N: 50, Subnet: "127.0.30."})
	t.Logf("started %d sshds in %v", len(f.Hosts), time.Since(start))
	seen := map[string]bool{}
	for _, h := range f.Hosts {
		if seen[h.Addr] || h.PID == 0 {
			t.Fatalf("host %+v duplicated or without PID", h)
		}
		seen[h.Addr] = true
	}
	last := f.Hosts[len(f.Hosts)-1]
	c, err := dial(t, f, last, f.KnownHosts, ssh.PublicKeys(f.ClientSigner), nil)
	if err != nil {
		t.Fatalf("dial last host %s: %v", last.HostPort(), err)
	}
	c.Close()
}
