package sshd

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cvs-tool/cvs/docker"
	"github.com/cvs-tool/cvs/internal/golden"

	"github.com/cvs-tool/cvs/transport"
)

// tcpTable returns /proc/net/tcp content, with a LISTEN socket on each of
// ports.
func tcpTable(ports ...int) string {
	s := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
		"   0: 0100007F:0016 0100007F:A1B2 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 20 4 30 10 -1\n"
	for i, p := range ports {
		s += fmt.Sprintf("  %2d: 00000000:%04X 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 %d 1 0000000000000000 100 0 0 10 0\n", i+1, p, 100+i)
	}
	return s
}

// fakeHost answers the commands Ensure runs and records them.
type fakeHost struct {
	mu      sync.Mutex
	lines   []string
	uploads []upload

	// listenAfter: the number of /proc/net/tcp reads before the port
	// shows as listening; -1 never.
	listenAfter int
	port        int
	tcpReads    int
	tcp6Missing bool
	// foreign: the socket on the port is not cvs's sshd (another
	// container on the host network).
	foreign  bool
	checkErr error // the precheck's docker exec fails

	mktempOut  string
	installRes transport.Result
	installErr error
	uploadErr  error
	log        string
	rmErr      error
	// onInstall runs when the install command arrives.
	onInstall func()
	// onCommand sees every command line first.
	onCommand func(line string)
	// installed is what the check reads of the installed key and
	// configuration files.
	installed string
}

type upload struct {
	path string
	data []byte
	mode os.FileMode
}

func newFakeHost(port, listenAfter int) *fakeHost {
	return &fakeHost{port: port, listenAfter: listenAfter, mktempOut: "/tmp/cvs-stdin.Ab12Cd34Ef\n"}
}

func (f *fakeHost) Run(ctx context.Context, cmd transport.Command) (transport.Result, error) {
	f.mu.Lock()
	f.lines = append(f.lines, cmd.Line)
	f.mu.Unlock()
	if f.onCommand != nil {
		f.onCommand(cmd.Line)
	}
	exit := func(code int, stderr string) (transport.Result, error) {
		return transport.Result{Stderr: []byte(stderr), ExitCode: code},
			&transport.ExitError{Host: "h1", Cmd: cmd.Line, Code: code, StderrTail: strings.TrimSpace(stderr)}
	}
	switch l := cmd.Line; {
	case strings.Contains(l, "cat /proc/net/tcp /proc/net/tcp6"):
		if f.checkErr != nil {
			return transport.Result{ExitCode: 1}, f.checkErr
		}
		f.tcpReads++
		var ports []int
		if f.listenAfter >= 0 && f.tcpReads > f.listenAfter {
			ports = append(ports, f.port)
		}
		// tcp6Missing: the check's cat drops the error; the IPv4 table
		// alone must do.
		out := tcpTable(ports...)
		if len(ports) > 0 && !f.foreign {
			out += ownMarker + "\n"
		}
		out += keysMarker + "\n" + f.installed
		return transport.Result{Stdout: []byte(out)}, nil
	case strings.Contains(l, " "+transport.TempScriptName+" "):
		return transport.Result{Stdout: []byte(f.mktempOut)}, nil
	case strings.Contains(l, " sh -s < "):
		if f.onInstall != nil {
			f.onInstall()
		}
		return f.installRes, f.installErr
	case strings.Contains(l, "cat /run/cvs-sshd.log"):
		return transport.Result{Stdout: []byte(f.log)}, nil
	case strings.HasPrefix(l, "rm -rf -- "):
		if err := ctx.Err(); err != nil {
			return transport.Result{}, err
		}
		return transport.Result{}, f.rmErr
	}
	return exit(127, "fake host: unexpected command "+cmd.Line)
}

func (f *fakeHost) Upload(_ context.Context, path string, r io.Reader, mode os.FileMode) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.uploads = append(f.uploads, upload{path, bytes.Clone(data), mode})
	return f.uploadErr
}

var (
	testKeysOnce sync.Once
	testKeys     Keys
)

func keysForTest(t *testing.T) Keys {
	t.Helper()
	testKeysOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cvs-sshd-keys-")
		if err != nil {
			t.Fatal(err)
		}
		testKeys, err = LoadOrCreate(dir)
		if err != nil {
			t.Fatal(err)
		}
	})
	return testKeys
}

// secretFragments returns pieces of the private keys that must never show
// up in a command line: each base64 line of the PEM bodies.
func secretFragments(t *testing.T, k Keys) []string {
	t.Helper()
	var out []string
	for _, p := range [][]byte{k.clientPEM, k.hostPEM} {
		block, _ := pem.Decode(p)
		if block == nil {
			t.Fatal("test keys are not PEM")
		}
		for _, l := range strings.Split(string(p), "\n") {
			if l != "" && !strings.HasPrefix(l, "-----") {
				out = append(out, l)
			}
		}
		out = append(out, base64.StdEncoding.EncodeToString(block.Bytes)[:40])
	}
	return out
}

func shortVerify(t *testing.T) {
	t.Helper()
	oldT, oldE := verifyTimeout, verifyEvery
	verifyTimeout, verifyEvery = 300*time.Millisecond, 10*time.Millisecond
	t.Cleanup(func() { verifyTimeout, verifyEvery = oldT, oldE })
}

func TestEnsureSkipsWhenListening(t *testing.T) {
	for _, tcp6Missing := range []bool{false, true} {
		f := newFakeHost(2224, 0)
		f.tcp6Missing = tcp6Missing
		f.installed = installed(2224, keysForTest(t))
		out, err := Ensure(context.Background(), docker.CLIEngine{CLI: docker.CLI{Sudo: false}, Host: f}, "h1", "cvs-lab", 2224, keysForTest(t))
		if err != nil {
			t.Fatalf("tcp6 missing %v: %v", tcp6Missing, err)
		}
		if !out.AlreadyListening || out.String() != "already listening" {
			t.Errorf("outcome %+v; want AlreadyListening", out)
		}
		if len(f.lines) != 1 || len(f.uploads) != 0 {
			t.Errorf("ran %q and uploaded %d file(s); the skip path must run only the precheck", f.lines, len(f.uploads))
		}
	}
}

// A socket on another port, or sshd listening elsewhere, does not count.
func TestEnsureOtherPortDoesNotCount(t *testing.T) {
	shortVerify(t)
	f := newFakeHost(22, 0) // 22 listens, 2224 never does
	_, err := Ensure(context.Background(), docker.CLIEngine{CLI: docker.CLI{Sudo: false}, Host: f}, "h1", "cvs-lab", 2224, keysForTest(t))
	if err == nil {
		t.Fatal("no error though port 2224 never listened")
	}
}

func TestEnsureStarts(t *testing.T) {
	shortVerify(t)
	keys := keysForTest(t)
	for _, sudo := range []bool{false, true} {
		t.Run(fmt.Sprintf("sudo=%v", sudo), func(t *testing.T) {
			f := newFakeHost(2224, 2) // listens from the third read on
			out, err := Ensure(context.Background(), docker.CLIEngine{CLI: docker.CLI{Sudo: sudo}, Host: f}, "h1", "cvs-lab", 2224, keys)
			if err != nil {
				t.Fatal(err)
			}
			if out.AlreadyListening || out.String() != "started" {
				t.Errorf("outcome %+v; want started", out)
			}
			if len(f.uploads) != 1 {
				t.Fatalf("%d uploads; want 1", len(f.uploads))
			}
			up := f.uploads[0]
			if up.path != "/tmp/cvs-stdin.Ab12Cd34Ef/stdin" || up.mode != 0o600 {
				t.Errorf("upload to %s mode %04o; want the mktemp folder, 0600", up.path, up.mode)
			}
			if !bytes.Contains(up.data, keys.clientPEM) || !bytes.Contains(up.data, keys.hostPEM) {
				t.Error("the upload lacks the private keys")
			}
			// precheck, mktemp, install, rm, then polls until listening.
			if len(f.lines) != 6 || f.lines[3] != "rm -rf -- /tmp/cvs-stdin.Ab12Cd34Ef" {
				t.Errorf("commands %q; want the temporary folder removed right after the install", f.lines)
			}
			for _, l := range f.lines {
				if strings.Contains(l, "docker") && sudo != strings.HasPrefix(l, "sudo -n docker ") {
					t.Errorf("sudo=%v but ran %q", sudo, l)
				}
				if !strings.Contains(l, "docker") && strings.HasPrefix(l, "sudo") {
					t.Errorf("ran %q through sudo; only docker needs it", l)
				}
			}
		})
	}
}

func TestNoPrivateKeyInAnyCommandLine(t *testing.T) {
	shortVerify(t)
	keys := keysForTest(t)
	secrets := secretFragments(t, keys)
	cases := map[string]func(*fakeHost){
		"started":        func(*fakeHost) {},
		"sshd missing":   func(f *fakeHost) { f.installErr = &transport.ExitError{Host: "h1", Code: 3} },
		"never listens":  func(f *fakeHost) { f.listenAfter = -1 },
		"upload fails":   func(f *fakeHost) { f.uploadErr = errors.New("sftp: disk full") },
		"cleanup failed": func(f *fakeHost) { f.rmErr = errors.New("rm: busy") },
	}
	for name, setup := range cases {
		f := newFakeHost(2224, 2)
		setup(f)
		_, err := Ensure(context.Background(), docker.CLIEngine{CLI: docker.CLI{Sudo: false}, Host: f}, "h1", "cvs-lab", 2224, keys)
		for _, l := range f.lines {
			for _, s := range secrets {
				if strings.Contains(l, s) {
					t.Errorf("%s: a command line holds private key material: %.100s…", name, l)
				}
			}
		}
		if err != nil {
			for _, s := range secrets {
				if strings.Contains(err.Error(), s) {
					t.Errorf("%s: the error holds private key material", name)
				}
			}
		}
	}
}

func TestEnsureFailures(t *testing.T) {
	shortVerify(t)
	keys := keysForTest(t)
	for _, tc := range []struct {
		name       string
		setup      func(*fakeHost)
		want       []string
		wantRemove bool // the temporary folder was created, so must be removed
	}{
		{
			name: "container gone",
			setup: func(f *fakeHost) {
				f.checkErr = &transport.ExitError{Host: "h1", Code: 1, StderrTail: "Error response from daemon: No such container: cvs-lab"}
			},
			want: []string{"sshd in container cvs-lab: checking port 2224: exit status 1", "No such container"},
		},
		{
			name: "connection lost",
			setup: func(f *fakeHost) {
				f.checkErr = &transport.HostError{Host: "h1", Kind: transport.KindSSH, Detail: "connection lost"}
			},
			want: []string{"sshd in container cvs-lab: checking port 2224: ssh-error: connection lost"},
		},
		{
			name:  "mktemp answers nonsense",
			setup: func(f *fakeHost) { f.mktempOut = "/\n" },
			want:  []string{"creating a temporary folder on the host", "not a fresh cvs-stdin.* folder"},
		},
		{
			name:       "upload fails",
			setup:      func(f *fakeHost) { f.uploadErr = errors.New("sftp: disk full") },
			want:       []string{"uploading the command's input", "disk full"},
			wantRemove: true,
		},
		{
			name: "sshd missing",
			setup: func(f *fakeHost) {
				f.installRes = transport.Result{Stderr: []byte("cvs: sshd is not installed in the container\n"), ExitCode: 3}
				f.installErr = &transport.ExitError{Host: "h1", Code: 3}
			},
			want:       []string{"sshd in container cvs-lab: starting sshd: sshd is not installed in the image; the setup script should install openssh-server"},
			wantRemove: true,
		},
		{
			name: "config refused",
			setup: func(f *fakeHost) {
				f.installRes = transport.Result{Stderr: []byte("/etc/cvs/ssh/sshd_config line 9: Bad configuration option: MaxStartups\n"), ExitCode: 4}
				f.installErr = &transport.ExitError{Host: "h1", Code: 4}
			},
			want:       []string{"sshd refused the configuration", "  | /etc/cvs/ssh/sshd_config line 9: Bad configuration option"},
			wantRemove: true,
		},
		{
			name: "sshd fails to start",
			setup: func(f *fakeHost) {
				f.installRes = transport.Result{Stderr: []byte("Bind to port 2224 on 0.0.0.0 failed: Address already in use.\n"), ExitCode: 5}
				f.installErr = &transport.ExitError{Host: "h1", Code: 5}
			},
			want:       []string{"sshd failed to start on port 2224", "  | Bind to port 2224 on 0.0.0.0 failed"},
			wantRemove: true,
		},
		{
			name: "container has no sh",
			setup: func(f *fakeHost) {
				f.installRes = transport.Result{Stderr: []byte("OCI runtime exec failed: exec: \"sh\": executable file not found in $PATH\n"), ExitCode: 127}
				f.installErr = &transport.ExitError{Host: "h1", Code: 127}
			},
			want:       []string{"installing the key material and starting sshd: exit status 127", `"sh": executable file not found`},
			wantRemove: true,
		},
		{
			name: "started but never listens",
			setup: func(f *fakeHost) {
				f.listenAfter = -1
				f.log = "error: Bind to port 2224 on :: failed: Address already in use.\nfatal: Cannot bind any address.\n"
			},
			want:       []string{"nothing listens on port 2224", "/run/cvs-sshd.log", "  | fatal: Cannot bind any address."},
			wantRemove: true,
		},
		{
			name:       "temporary folder not removed",
			setup:      func(f *fakeHost) { f.rmErr = errors.New("rm: Device or resource busy") },
			want:       []string{"removing /tmp/cvs-stdin.Ab12Cd34Ef on the host", "remove it by hand"},
			wantRemove: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeHost(2224, 2)
			tc.setup(f)
			_, err := Ensure(context.Background(), docker.CLIEngine{CLI: docker.CLI{Sudo: false}, Host: f}, "h1", "cvs-lab", 2224, keys)
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("err = %v; want *Error", err)
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message lacks %q:\n%s", w, msg)
				}
			}
			// The host is a field; whoever reports per-host results names it.
			if n := strings.Count(msg, "h1"); n != 0 || se.Host != "h1" {
				t.Errorf("the host is named %d times in the text (want 0) and is %q as a field:\n%s", n, se.Host, msg)
			}
			removed := false
			for _, l := range f.lines {
				removed = removed || l == "rm -rf -- /tmp/cvs-stdin.Ab12Cd34Ef"
			}
			if removed != tc.wantRemove {
				t.Errorf("temporary folder removed: %v; want %v (commands: %q)", removed, tc.wantRemove, f.lines)
			}
		})
	}
}

// The temporary folder holds private keys: it is removed even when the
// run is cancelled while the keys are being installed.
func TestEnsureCleansUpAfterCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	f := newFakeHost(2224, -1)
	f.onInstall = cancel
	f.installErr = context.Canceled
	_, err := Ensure(ctx, docker.CLIEngine{Host: f}, "h1", "cvs-lab", 2224, keysForTest(t))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v; want context.Canceled in the chain", err)
	}
	if last := f.lines[len(f.lines)-1]; last != "rm -rf -- /tmp/cvs-stdin.Ab12Cd34Ef" {
		t.Errorf("last command %q; want the temporary folder removed", last)
	}
}

func TestEnsureRefusesBadInput(t *testing.T) {
	keys := keysForTest(t)
	for _, tc := range []struct {
		name      string
		container string
		port      int
		keys      Keys
	}{
		{"no keys", "c", 2224, Keys{}},
		{"port 0", "c", 0, keys},
		{"port too big", "c", 70000, keys},
		{"empty container", "", 2224, keys},
		{"flag-like container", "--rm", 2224, keys},
	} {
		f := newFakeHost(2224, 0)
		if _, err := Ensure(context.Background(), docker.CLIEngine{CLI: docker.CLI{Sudo: false}, Host: f}, "h1", tc.container, tc.port, tc.keys); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
		if len(f.lines) != 0 {
			t.Errorf("%s: ran %q before refusing", tc.name, f.lines)
		}
	}
}

var tempName = regexp.MustCompile(`(cvs-[a-z]+)\.[0-9a-f]{16}\b`)

// The commands Ensure runs and the configuration files it writes are
// pinned in testdata/ensure.golden.
func TestEnsureGolden(t *testing.T) {
	shortVerify(t)
	var b bytes.Buffer
	for _, sudo := range []bool{false, true} {
		f := newFakeHost(2224, 2)
		if _, err := Ensure(context.Background(), docker.CLIEngine{CLI: docker.CLI{Sudo: sudo}, Host: f}, "h1", "cvs-lab", 2224, keysForTest(t)); err != nil {
			t.Fatal(err)
		}
		// The temporary folder's first name is unguessable: one per run.
		lines := tempName.ReplaceAllString(strings.Join(f.lines, "\n"), "$1.NAME")
		fmt.Fprintf(&b, "# commands, sudo=%v\n%s\n\n", sudo, lines)
	}
	fmt.Fprintf(&b, "# sshd_config, port 2224\n%s\n# ssh_config, port 2224\n%s", sshdConfig(2224), clientConfig(2224))
	golden.Check(t, "ensure.golden", b.Bytes())
}

func TestInstallScript(t *testing.T) {
	keys := keysForTest(t)
	s, err := installScript(2224, keys)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"port=2224\n", "dir=/etc/cvs/ssh\n", string(keys.clientPEM), string(keys.hostPEM),
		keys.AuthorizedKey() + "\n", keys.KnownHostsLine(2224) + "\n", sshdConfig(2224), clientConfig(2224), installBody,
	} {
		if !bytes.Contains(s, []byte(want)) {
			t.Errorf("install script lacks %q", want)
		}
	}
	if n := bytes.Count(s, []byte("<<'"+heredocEnd+"'\n")); n != 7 {
		t.Errorf("%d here-documents; want 7", n)
	}
}

// A socket on the port that is not cvs's sshd (with --network host, another
// container's) is never taken for it: Ensure refuses and says why.
func TestEnsureRefusesForeignListener(t *testing.T) {
	f := newFakeHost(2224, 0)
	f.foreign = true
	_, err := Ensure(context.Background(), docker.CLIEngine{CLI: docker.CLI{Sudo: false}, Host: f}, "h1", "c1", 2224, keysForTest(t))
	if err == nil || !strings.Contains(err.Error(), "already in use") || !strings.Contains(err.Error(), "sshd_port") {
		t.Fatalf("got %v", err)
	}
	for _, l := range f.lines {
		if strings.Contains(l, " sh -s < ") {
			t.Errorf("Ensure installed over a foreign listener: %s", l)
		}
	}
}

// Issue 9 item 11: an sshd cvs started earlier that runs with other keys
// (the cluster's key folder changed) or another configuration is
// restarted with the cluster's current ones, not taken as ready.
func TestEnsureRestartsWithOtherKeys(t *testing.T) {
	shortVerify(t)
	other, err := LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for name, inst := range map[string]string{
		"other keys":   installed(2224, other),
		"other config": strings.Replace(installed(2224, keysForTest(t)), "AllowTcpForwarding no", "", 1),
		"nothing":      "",
	} {
		f := newFakeHost(2224, 0)
		f.installed = inst
		f.onInstall = func() { f.installed = installed(2224, keysForTest(t)) }
		out, err := Ensure(context.Background(), docker.CLIEngine{Host: f}, "h1", "cvs-lab", 2224, keysForTest(t))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if out.AlreadyListening || !out.Restarted || out.String() != "restarted with the cluster's keys" {
			t.Errorf("%s: outcome %+v", name, out)
		}
		installs := 0
		for _, l := range f.lines {
			if strings.Contains(l, " sh -s < ") {
				installs++
			}
		}
		if installs != 1 {
			t.Errorf("%s: %d installs", name, installs)
		}
	}
}
