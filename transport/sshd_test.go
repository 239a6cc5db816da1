package transport

// Tests against real OpenSSH sshd servers on loopback (internal/sshdfarm).
// They skip when sshd is not installed, unless CVS_REQUIRE_SSHD=1 (CI).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/internal/sshdfarm"
	"github.com/cvs-tool/cvs/report"
	"github.com/cvs-tool/cvs/shell"
)

func farmHost(f *sshdfarm.Farm, i int) cluster.Host {
	h := f.Hosts[i]
	return cluster.Host{Name: h.HostPort(), Addr: h.Addr, Port: h.Port, User: f.User, IdentityFiles: []string{f.ClientKey}}
}

func dialer(t *testing.T, mode cluster.HostKeyCheck, knownHosts string) *Dialer {
	t.Helper()
	d, err := NewDialer(Options{HostKeyCheck: mode, KnownHosts: knownHosts, ConnectTimeout: 10 * time.Second, KeepAlive: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

func mustDial(t *testing.T, d *Dialer, h cluster.Host) *Client {
	t.Helper()
	c, err := d.Dial(context.Background(), h)
	if err != nil {
		t.Fatalf("dial %s: %v", h.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func hostErrorKind(t *testing.T, err error) *HostError {
	t.Helper()
	var he *HostError
	if !errors.As(err, &he) {
		t.Fatalf("want *HostError, got %T %v", err, err)
	}
	return he
}

func TestRealSSHDKeyFileRunAndExitStatus(t *testing.T) {
	f := sshdfarm.StartT(t, sshdfarm.Options{N: 1, Subnet: "127.0.20."})
	c := mustDial(t, dialer(t, cluster.HostKeyStrict, f.KnownHosts), farmHost(f, 0))
	ctx := context.Background()

	res, err := c.Run(ctx, Command{Line: shell.Join("echo", "it's a test")})
	if err != nil || string(res.Stdout) != "it's a test\n" || res.ExitCode != 0 {
		t.Fatalf("echo: %q %v", res.Stdout, err)
	}
	res, err = c.Run(ctx, Command{Line: shell.Join("sh", "-c", "echo out; echo oops >&2; exit 3")})
	var xe *ExitError
	if !errors.As(err, &xe) || xe.Code != 3 || res.ExitCode != 3 || !strings.Contains(xe.StderrTail, "oops") || xe.Host != farmHost(f, 0).Name {
		t.Fatalf("exit 3: res=%+v err=%v", res, err)
	}
	if string(res.Stdout) != "out\n" {
		t.Errorf("stdout of failed command: %q", res.Stdout)
	}
}

func TestRealSSHDStrictMismatchFailsClosed(t *testing.T) {
	f := sshdfarm.StartT(t, sshdfarm.Options{N: 1, Subnet: "127.0.21."})
	if err := f.RotateHostKey(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	d := dialer(t, cluster.HostKeyStrict, f.KnownHosts)
	_, err := d.Dial(context.Background(), farmHost(f, 0))
	he := hostErrorKind(t, err)
	if he.Kind != KindHostKeyMismatch {
		t.Fatalf("kind = %s (%v)", he.Kind, err)
	}
	for _, want := range []string{"SHA256:", f.KnownHosts + ":1", "ssh-keygen -R"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("mismatch error lacks %q: %v", want, err)
		}
	}
	if d.Handshakes() != 0 {
		t.Errorf("handshakes = %d after a refused host", d.Handshakes())
	}
}

func TestRealSSHDStrictUnknownHost(t *testing.T) {
	f := sshdfarm.StartT(t, sshdfarm.Options{N: 1, Subnet: "127.0.22."})
	empty := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(empty, nil, 0o600)
	_, err := dialer(t, cluster.HostKeyStrict, empty).Dial(context.Background(), farmHost(f, 0))
	if he := hostErrorKind(t, err); he.Kind != KindHostKeyUnknown || !strings.Contains(err.Error(), "ssh-keyscan") {
		t.Fatalf("got %v", err)
	}
	_, err = NewDialer(Options{HostKeyCheck: cluster.HostKeyStrict, KnownHosts: filepath.Join(t.TempDir(), "none")})
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("strict with a missing known_hosts: %v", err)
	}
}

func TestRealSSHDAcceptNewRecordsThenPins(t *testing.T) {
	f := sshdfarm.StartT(t, sshdfarm.Options{N: 2, Subnet: "127.0.23."})
	kh := filepath.Join(t.TempDir(), "sub", "known_hosts") // folder does not exist yet
	d := dialer(t, cluster.HostKeyAcceptNew, kh)
	for i := range f.Hosts {
		mustDial(t, d, farmHost(f, i))
	}
	st, err := os.Stat(kh)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("known_hosts mode %v, want 0600", st.Mode().Perm())
	}
	data, _ := os.ReadFile(kh)
	if n := strings.Count(string(data), "\n"); n != 2 {
		t.Errorf("known_hosts has %d lines, want 2:\n%s", n, data)
	}
	// A new invocation, strict, trusts what accept-new recorded.
	mustDial(t, dialer(t, cluster.HostKeyStrict, kh), farmHost(f, 1))

	// A changed key is refused even under accept-new, and nothing is added.
	if err := f.RotateHostKey(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	_, err = dialer(t, cluster.HostKeyAcceptNew, kh).Dial(context.Background(), farmHost(f, 0))
	if he := hostErrorKind(t, err); he.Kind != KindHostKeyMismatch {
		t.Fatalf("accept-new with a changed key: %v", err)
	}
	after, _ := os.ReadFile(kh)
	if string(after) != string(data) {
		t.Errorf("known_hosts changed after a refused key:\n%s", after)
	}
}

func TestRealSSHDHashedKnownHosts(t *testing.T) {
	f := sshdfarm.StartT(t, sshdfarm.Options{N: 1, Subnet: "127.0.24."})
	kh := filepath.Join(t.TempDir(), "known_hosts")
	if err := f.WriteKnownHosts(kh, true); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(kh)
	if !strings.HasPrefix(string(data), "|1|") {
		t.Fatalf("not hashed: %s", data)
	}
	mustDial(t, dialer(t, cluster.HostKeyStrict, kh), farmHost(f, 0))
}

// A host with ed25519 and RSA keys whose known_hosts entry is the RSA key
// must be asked for RSA: offering the default order would get ed25519 and a
// false mismatch.
func TestRealSSHDOffersKnownAlgorithmFirst(t *testing.T) {
	f := sshdfarm.StartT(t, sshdfarm.Options{N: 1, Subnet: "127.0.25.", HostKeyTypes: []string{"ed25519", "rsa"}})
	h := f.Hosts[0]
	for _, typ := range []string{"rsa", "ed25519"} {
		kh := filepath.Join(t.TempDir(), "known_hosts_"+typ)
		line := fmt.Sprintf("[%s]:%d %s\n", h.Addr, h.Port, h.HostKeys[typ])
		os.WriteFile(kh, []byte(line), 0o600)
		d := dialer(t, cluster.HostKeyStrict, kh)
		if algos := d.hostKeys.algorithms(h.HostPort()); len(algos) == 0 || (typ == "rsa") != strings.HasPrefix(algos[0], "rsa-sha2") {
			t.Errorf("%s entry: algorithms offered first: %v", typ, algos)
		}
		mustDial(t, d, farmHost(f, 0))
	}
}

func TestRealSSHDAgentAuth(t *testing.T) {
	f := sshdfarm.StartT(t, sshdfarm.Options{N: 1, Subnet: "127.0.26."})
	sock := sshdfarm.StartAgentT(t, f.ClientKey)
	d, err := NewDialer(Options{HostKeyCheck: cluster.HostKeyStrict, KnownHosts: f.KnownHosts, ConnectTimeout: 10 * time.Second, AgentSocket: sock})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	h := farmHost(f, 0)
	h.IdentityFiles = nil // only the agent holds the key
	c, err := d.Dial(context.Background(), h)
	if err != nil {
		t.Fatalf("agent auth: %v", err)
	}
	c.Close()
}

func TestRealSSHDAuthFailureNamesWhatWasOffered(t *testing.T) {
	f := sshdfarm.StartT(t, sshdfarm.Options{N: 1, Subnet: "127.0.27."})
	other := filepath.Join(t.TempDir(), "other")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other).CombinedOutput(); err != nil {
		t.Skipf("ssh-keygen: %v %s", err, out)
	}
	h := farmHost(f, 0)
	h.IdentityFiles = []string{other}
	_, err := dialer(t, cluster.HostKeyStrict, f.KnownHosts).Dial(context.Background(), h)
	he := hostErrorKind(t, err)
	if he.Kind != KindAuth || !strings.Contains(err.Error(), other) || !strings.Contains(err.Error(), "publickey") {
		t.Fatalf("got %v", err)
	}
}

func TestRealSSHDConnectionRefused(t *testing.T) {
	f := sshdfarm.StartT(t, sshdfarm.Options{N: 1, Subnet: "127.0.28."})
	h := farmHost(f, 0)
	h.Port = 1 // nothing listens on port 1 of this loopback address
	_, err := dialer(t, cluster.HostKeyStrict, f.KnownHosts).Dial(context.Background(), h)
	if he := hostErrorKind(t, err); he.Kind != KindRefused {
		t.Fatalf("got %v", err)
	}
}

// The time limit of a command kills the remote command and what it
// started, not just the SSH channel.
func TestRealSSHDTimeoutKillsRemoteCommand(t *testing.T) {
	f := sshdfarm.StartT(t, sshdfarm.Options{N: 1, Subnet: "127.0.29."})
	c := mustDial(t, dialer(t, cluster.HostKeyStrict, f.KnownHosts), farmHost(f, 0))
	marker := fmt.Sprintf("%d", 4000+time.Now().UnixNano()%1000)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Run(ctx, Command{Line: shell.Join("sh", "-c", "sleep "+marker+" & sleep "+marker+"; echo never")})
	var te *TimeoutError
	if !errors.As(err, &te) {
		t.Fatalf("want *TimeoutError, got %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("Run returned %s after the deadline", time.Since(start))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, _ := exec.Command("pgrep", "-f", "sleep "+marker).Output()
		if len(strings.TrimSpace(string(out))) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("remote processes still running after the timeout: pids %s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The connection is still usable afterwards.
	if res, err := c.Run(context.Background(), Command{Line: "echo alive"}); err != nil || string(res.Stdout) != "alive\n" {
		t.Fatalf("after timeout: %q %v", res.Stdout, err)
	}
}

// A command that ends by itself leaves what it started in the background
// alone: the watchdog only kills commands that are still running.
func TestRealSSHDBackgroundProcessSurvivesNormalExit(t *testing.T) {
	f := sshdfarm.StartT(t, sshdfarm.Options{N: 1, Subnet: "127.0.30."})
	c := mustDial(t, dialer(t, cluster.HostKeyStrict, f.KnownHosts), farmHost(f, 0))
	marker := fmt.Sprintf("%d", 5000+time.Now().UnixNano()%1000)
	_, err := c.Run(context.Background(), Command{Line: shell.Join("sh", "-c", "nohup sleep "+marker+" >/dev/null 2>&1 &")})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	time.Sleep(500 * time.Millisecond)
	out, _ := exec.Command("pgrep", "-f", "sleep "+marker).Output()
	pids := strings.Fields(string(out))
	if len(pids) == 0 {
		t.Fatal("a background process started by a finished command was killed")
	}
	for _, p := range pids {
		exec.Command("kill", p).Run()
	}
}

func TestRealSSHDProxyJump(t *testing.T) {
	bastion := sshdfarm.StartT(t, sshdfarm.Options{N: 1, Subnet: "127.0.31.", Extra: []string{"AllowTcpForwarding yes"}})
	target := sshdfarm.StartT(t, sshdfarm.Options{N: 2, Subnet: "127.0.32."})
	kh := filepath.Join(t.TempDir(), "known_hosts")
	a, _ := os.ReadFile(bastion.KnownHosts)
	b, _ := os.ReadFile(target.KnownHosts)
	os.WriteFile(kh, append(a, b...), 0o600)
	// Both farms accept their own client key; offer both.
	d := dialer(t, cluster.HostKeyStrict, kh)
	for i := range target.Hosts {
		h := farmHost(target, i)
		h.IdentityFiles = []string{target.ClientKey, bastion.ClientKey}
		h.ProxyJump = fmt.Sprintf("%s@%s", bastion.User, bastion.Hosts[0].HostPort())
		h.Jumps = []cluster.Jump{{Addr: bastion.Hosts[0].Addr, Port: bastion.Hosts[0].Port, User: bastion.User, IdentityFiles: []string{bastion.ClientKey}}}
		c := mustDial(t, d, h)
		res, err := c.Run(context.Background(), Command{Line: "echo $SSH_CONNECTION"})
		if err != nil {
			t.Fatal(err)
		}
		// The target sees the connection coming from the bastion's side
		// of loopback, not directly from the test.
		if !strings.Contains(string(res.Stdout), target.Hosts[i].Addr) {
			t.Errorf("SSH_CONNECTION = %q", res.Stdout)
		}
	}
	if got := d.Handshakes(); got != 3 {
		t.Errorf("handshakes = %d, want 3 (one bastion shared by two hosts)", got)
	}
	if n, _ := bastion.Accepted(); n != 1 {
		t.Errorf("bastion accepted %d connections, want 1", n)
	}
}

func TestRealSSHDUploadOverSFTP(t *testing.T) {
	f := sshdfarm.StartT(t, sshdfarm.Options{N: 1, Subnet: "127.0.33."})
	c := mustDial(t, dialer(t, cluster.HostKeyStrict, f.KnownHosts), farmHost(f, 0))
	dst := filepath.Join(t.TempDir(), "secret")
	if err := c.Upload(context.Background(), dst, strings.NewReader("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dst)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("stat %v mode %v", err, st.Mode())
	}
	if b, _ := os.ReadFile(dst); string(b) != "s3cret\n" {
		t.Errorf("content %q", b)
	}
}

// Issue 9 item 12: several hundred MiB of output without a newline (a
// progress bar redrawn with \r) streams through in bounded memory: the
// Result keeps the last MaxCapture bytes of each stream and says how much
// it cut; the line writer cuts lines at report.MaxLine.
func TestRealSSHDHugeOutputWithoutNewlines(t *testing.T) {
	f := sshdfarm.StartT(t, sshdfarm.Options{N: 1, Subnet: "127.0.34."})
	c := mustDial(t, dialer(t, cluster.HostKeyStrict, f.KnownHosts), farmHost(f, 0))
	const size = 256 << 20
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	var mu sync.Mutex
	lines := &report.Prefix{W: io.Discard, Host: "h", Locker: &mu}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := c.Run(ctx, Command{Line: shell.Join("sh", "-c", fmt.Sprintf("head -c %d /dev/zero | tr '\\0' x; printf '\\ndone\\n'", size)), Stdout: lines})
	lines.Flush()
	close(stop)
	<-sampled
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Stdout) > MaxCapture+200 || res.StdoutCut < size-MaxCapture || !strings.HasSuffix(string(res.Stdout), "x\ndone\n") {
		t.Errorf("kept %d bytes, cut %d, ends %q", len(res.Stdout), res.StdoutCut, report.LastLine(string(res.Stdout)))
	}
	if !strings.HasPrefix(string(res.Stdout), "[cvs: ") {
		t.Errorf("a cut output does not say so: %q", res.Stdout[:40])
	}
	if p := peak.Load(); p > 128<<20 {
		t.Errorf("heap in use peaked at %d MiB for %d MiB of output", p>>20, size>>20)
	}
}

// Issue 9 item 10: a bastion whose connection died is dialled again (a
// per_run teardown after a network blip must still reach its hosts), and
// a chain a,b goes through a, then b.
func TestRealSSHDProxyJumpRedialAndChain(t *testing.T) {
	b1 := sshdfarm.StartT(t, sshdfarm.Options{N: 1, Subnet: "127.0.35.", Extra: []string{"AllowTcpForwarding yes"}})
	b2 := sshdfarm.StartT(t, sshdfarm.Options{N: 1, Subnet: "127.0.36.", Extra: []string{"AllowTcpForwarding yes"}})
	target := sshdfarm.StartT(t, sshdfarm.Options{N: 1, Subnet: "127.0.37."})
	kh := filepath.Join(t.TempDir(), "known_hosts")
	var all []byte
	for _, f := range []*sshdfarm.Farm{b1, b2, target} {
		b, _ := os.ReadFile(f.KnownHosts)
		all = append(all, b...)
	}
	os.WriteFile(kh, all, 0o600)
	jump := func(f *sshdfarm.Farm) cluster.Jump {
		return cluster.Jump{Addr: f.Hosts[0].Addr, Port: f.Hosts[0].Port, User: f.User, IdentityFiles: []string{f.ClientKey}}
	}
	d := dialer(t, cluster.HostKeyStrict, kh)
	h := farmHost(target, 0)
	h.ProxyJump = "b1"
	h.Jumps = []cluster.Jump{jump(b1)}
	c := mustDial(t, d, h)
	// The bastion connection drops: the target's connection with it.
	d.mu.Lock()
	for _, j := range d.jumps {
		j.client.Close()
	}
	d.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for c.Alive() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	c2, err := d.Dial(context.Background(), h)
	if err != nil {
		t.Fatalf("dial after the bastion dropped: %v", err)
	}
	c2.Close()
	if n, _ := b1.Accepted(); n != 2 {
		t.Errorf("bastion accepted %d connections, want 2 (redialled once)", n)
	}

	// A chain: b1, then b2 through b1, then the target through b2.
	h.ProxyJump = "b1,b2"
	h.Jumps = []cluster.Jump{jump(b1), jump(b2)}
	c3, err := d.Dial(context.Background(), h)
	if err != nil {
		t.Fatalf("dial through b1,b2: %v", err)
	}
	defer c3.Close()
	if _, err := c3.Run(context.Background(), Command{Line: "true"}); err != nil {
		t.Fatal(err)
	}
	if n, _ := b2.Accepted(); n != 1 {
		t.Errorf("b2 accepted %d connections, want 1 (the chain goes through it)", n)
	}
	if n, _ := b1.Accepted(); n != 2 {
		t.Errorf("b1 accepted %d connections, want 2 (the chain's first hop shares the live b1 connection)", n)
	}
}

// ScanHostKeys gets every key type a real sshd has, without logging in;
// the lines it makes are accepted by strict checking.
func TestRealSSHDScanHostKeys(t *testing.T) {
	f := sshdfarm.StartT(t, sshdfarm.Options{N: 1, Subnet: "127.0.38.", HostKeyTypes: []string{"ed25519", "rsa"}})
	h := farmHost(f, 0)
	keys, err := ScanHostKeys(context.Background(), h.Addr, h.Port, 5*time.Second)
	if err != nil || len(keys) != 2 || keys[0].Type() != "ssh-ed25519" || keys[1].Type() != "ssh-rsa" {
		t.Fatalf("keys %v, %v", keys, err)
	}
	kh := filepath.Join(t.TempDir(), "known_hosts")
	var lines []string
	for _, k := range keys {
		lines = append(lines, KnownHostsLine(h.Addr, h.Port, k))
	}
	if err := AppendKnownHosts(kh, lines); err != nil {
		t.Fatal(err)
	}
	mustDial(t, dialer(t, cluster.HostKeyStrict, kh), h)
}

// A temporary folder for the same files has the same name on every host
// (TempDirName); when that name exists (here: a second folder for the same
// files on the same host, or anything an attacker planted there, a
// symlink included) mktemp picks a fresh one. Every folder is private.
func TestRealSSHDTempDirSharedNameThenFresh(t *testing.T) {
	f := sshdfarm.StartT(t, sshdfarm.Options{N: 1, Subnet: "127.0.34."})
	c := mustDial(t, dialer(t, cluster.HostKeyStrict, f.KnownHosts), farmHost(f, 0))
	ctx := context.Background()
	data := []byte("step script")
	first, err := MakeTempDir(ctx, c, "cvs-copy", data)
	if err != nil {
		t.Fatal(err)
	}
	defer RemoveTempDir(ctx, c, first)
	if want := filepath.Join("/tmp", TempDirName("cvs-copy", data)); first != want {
		t.Errorf("first folder %s, want %s", first, want)
	}
	second, err := MakeTempDir(ctx, c, "cvs-copy", data)
	if err != nil {
		t.Fatal(err)
	}
	defer RemoveTempDir(ctx, c, second)
	if second == first || !strings.HasPrefix(second, "/tmp/cvs-copy.") {
		t.Errorf("second folder for the same files %s, want a fresh one beside %s", second, first)
	}
	// A planted symlink under the name is never written through.
	other := TempDirName("cvs-copy", []byte("other"))
	target := t.TempDir()
	if err := os.Symlink(target, filepath.Join("/tmp", other)); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(filepath.Join("/tmp", other))
	third, err := MakeTempDir(ctx, c, "cvs-copy", []byte("other"))
	if err != nil {
		t.Fatal(err)
	}
	defer RemoveTempDir(ctx, c, third)
	if third == filepath.Join("/tmp", other) {
		t.Errorf("the planted symlink %s was taken as the folder", third)
	}
	for _, d := range []string{first, second, third} {
		st, err := os.Lstat(d)
		if err != nil || !st.IsDir() || st.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v, want a private folder", d, err, st)
		}
	}
	if TempDirName("cvs-copy", data) == TempDirName("cvs-copy", []byte("step scrip"), []byte("t")) {
		t.Error("different files gave the same name")
	}
}

// Issue 20 item 12: the sweep a run's probe carries removes, on a real
// host, exactly the cvs temporary folders its SSH user owns in which
// nothing changed for the age given: not a fresh one (another run's), not
// an old folder with a file being written, not another user's, not a
// symlink, not another program's folder.
func TestRealSSHDSweepTempRemovesOnlyStaleOwnFolders(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("another user's folder needs chown (root)")
	}
	f := sshdfarm.StartT(t, sshdfarm.Options{N: 1, Subnet: "127.0.39."})
	c := mustDial(t, dialer(t, cluster.HostKeyStrict, f.KnownHosts), farmHost(f, 0))
	tmp := t.TempDir()
	old := time.Now().Add(-2 * time.Hour)
	mk := func(name string, age time.Time, file string) string {
		d := filepath.Join(tmp, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if file != "" {
			os.WriteFile(filepath.Join(d, file), []byte("API_KEY=k3y\n"), 0o600)
			os.Chtimes(filepath.Join(d, file), age, age)
		}
		os.Chtimes(d, age, age)
		return d
	}
	stale := mk("cvs-env.0123456789abcdef", old, "env")
	mk("cvs-stdin.XyZ0123456", time.Now(), "stdin")
	writing := mk("cvs-push.0123456789abcdef", old, "image.tar")
	os.Chtimes(filepath.Join(writing, "image.tar"), time.Now(), time.Now())
	os.Chtimes(writing, old, old)
	foreign := mk("cvs-copy.0123456789abcdef", old, "")
	if err := os.Chown(foreign, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	target := mk("elsewhere", old, "keep")
	if err := os.Symlink(target, filepath.Join(tmp, "cvs-setup.AbCdEfGh")); err != nil {
		t.Fatal(err)
	}
	mk("cvs-envy.0123456789abcdef", old, "")
	mk("other.0123456789abcdef", old, "")

	res, err := c.Run(context.Background(), Command{Line: shell.Join("sh", "-c", sweepTempScript(time.Hour, shell.Quote(tmp+"/")))})
	if err != nil {
		t.Fatalf("sweep: %v (%s)", err, res.Stderr)
	}
	if got := strings.TrimSpace(string(res.Stdout)); got != stale {
		t.Errorf("sweep printed %q, want only %s", got, stale)
	}
	left, _ := os.ReadDir(tmp)
	var names []string
	for _, e := range left {
		names = append(names, e.Name())
	}
	want := "cvs-copy.0123456789abcdef cvs-envy.0123456789abcdef cvs-push.0123456789abcdef cvs-setup.AbCdEfGh cvs-stdin.XyZ0123456 elsewhere other.0123456789abcdef"
	if strings.Join(names, " ") != want {
		t.Errorf("left %v, want %s", names, want)
	}
	if _, err := os.Stat(filepath.Join(target, "keep")); err != nil {
		t.Errorf("the symlink's target lost its file: %v", err)
	}
	// The script as the probe carries it parses and runs.
	if _, err := c.Run(context.Background(), Command{Line: shell.Join("sh", "-n", "-c", SweepTempScript())}); err != nil {
		t.Errorf("SweepTempScript: %v", err)
	}
}
