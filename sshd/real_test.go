package sshd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cvs-tool/cvs/docker"
	"github.com/cvs-tool/cvs/transport"
)

// These tests run Ensure's real commands against a real OpenSSH: a mount
// namespace with its own /root, /run and a copy of /etc stands in for the
// container (it shares this machine's network, like a container started
// with --network host), and a fake docker enters it with nsenter. Only
// what a container would keep private is private, so they need root and
// an installed sshd, and are skipped otherwise.

const nsDocker = `#!/bin/sh
[ "$1" = exec ] || { echo "fake docker: only exec is supported" >&2; exit 2; }
shift
while :; do case $1 in -u | --user | -e | -w) shift 2 ;; -*) shift ;; *) break ;; esac; done
shift
exec nsenter -t "$CVS_TEST_NS_PID" -m -- "$@"
`

// fakeContainer is a mount namespace kept alive by a sleeping process.
type fakeContainer struct {
	holder *exec.Cmd
	env    []string
}

func needRealSSHD(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for a mount namespace")
	}
	for _, tool := range []string{"unshare", "nsenter", "ssh"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		t.Skip("no /usr/sbin/sshd")
	}
	if err := exec.Command("unshare", "-m", "true").Run(); err != nil {
		t.Skipf("cannot create a mount namespace: %v", err)
	}
}

// startContainer starts a fake container; hideSSHD hides /usr/sbin in it.
func startContainer(t *testing.T, hideSSHD bool) *fakeContainer {
	t.Helper()
	etc := t.TempDir()
	setup := `set -e
mount -t tmpfs tmpfs /root
mount -t tmpfs tmpfs /run
cp -a /etc/. "$0"/
mount --bind "$0" /etc
if [ -n "$1" ]; then mount --bind "$1" /usr/sbin; fi
echo ready
exec sleep 100000
`
	hide := ""
	if hideSSHD {
		hide = t.TempDir()
	}
	holder := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c", setup, etc, hide)
	holder.Stderr = os.Stderr
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	c := &fakeContainer{holder: holder}
	t.Cleanup(c.stop)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("fake container did not start: %q %v", line, err)
	}
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "docker"), []byte(nsDocker), 0o755); err != nil {
		t.Fatal(err)
	}
	path := bin + ":/usr/local/bin:/usr/bin:/bin"
	if !hideSSHD {
		path += ":/usr/sbin:/sbin"
	}
	c.env = []string{"PATH=" + path, "HOME=/root", "LC_ALL=C", "CVS_TEST_NS_PID=" + strconv.Itoa(holder.Process.Pid)}
	return c
}

// stop kills the sshd the test started, from its pid file, and the holder.
func (c *fakeContainer) stop() {
	if pid, err := c.exec(context.Background(), "cat", pidFile); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(pid)); err == nil && n > 1 {
			if p, err := os.FindProcess(n); err == nil {
				p.Kill()
			}
		}
	}
	c.holder.Process.Kill()
	c.holder.Wait()
}

// exec runs argv in the container and returns its output.
func (c *fakeContainer) exec(ctx context.Context, argv ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", append([]string{"exec", "c"}, argv...)...)
	cmd.Env = c.env
	cmd.Path = strings.TrimPrefix(strings.Split(c.env[0], ":")[0], "PATH=") + "/docker"
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *fakeContainer) listening(t *testing.T, port int) bool {
	t.Helper()
	out, _ := c.exec(context.Background(), "cat", "/proc/net/tcp", "/proc/net/tcp6")
	return docker.Listening(out, port)
}

// localHost runs command lines with the local sh, as a cluster host would.
type localHost struct {
	env   []string
	lines *[]string
}

func (l localHost) Run(ctx context.Context, cmd transport.Command) (transport.Result, error) {
	if l.lines != nil {
		*l.lines = append(*l.lines, cmd.Line)
	}
	c := exec.CommandContext(ctx, "/bin/sh", "-c", cmd.Line)
	c.Env = l.env
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	err := c.Run()
	res := transport.Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	var xe *exec.ExitError
	if errors.As(err, &xe) {
		res.ExitCode = xe.ExitCode()
		return res, &transport.ExitError{Host: "local", Cmd: cmd.Line, Code: res.ExitCode, StderrTail: stderr.String()}
	}
	return res, err
}

func (l localHost) Upload(_ context.Context, path string, r io.Reader, mode os.FileMode) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestRealSSHD(t *testing.T) {
	needRealSSHD(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := startContainer(t, false)
	h := localHost{env: c.env, lines: new([]string)}
	keys, err := LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// The image's own client configuration must survive, after cvs's.
	if out, err := c.exec(ctx, "sh", "-c", `mkdir -p /root/.ssh && printf 'Host image-entry\n  Port 1\n' > /root/.ssh/config`); err != nil {
		t.Fatal(out, err)
	}

	port := freePort(t)
	out, err := Ensure(ctx, docker.CLIEngine{Host: h}, "h1", "c", port, keys)
	if err != nil {
		t.Fatal(err)
	}
	if out.AlreadyListening {
		t.Fatal("first Ensure reports sshd already listening")
	}
	for _, l := range *h.lines {
		if dir, ok := strings.CutPrefix(l, "rm -rf -- "); ok {
			if _, err := os.Stat(dir); err == nil {
				t.Errorf("temporary folder %s with the key material is left on the host", dir)
			}
		}
	}
	if n := len(*h.lines); n < 5 {
		t.Errorf("ran %d commands on the host; want at least precheck, mktemp, install, rm, verify", n)
	}

	out, err = Ensure(ctx, docker.CLIEngine{Host: h}, "h1", "c", port, keys)
	if err != nil || !out.AlreadyListening {
		t.Fatalf("second Ensure: %+v, %v; want AlreadyListening", out, err)
	}

	// ssh from inside the container to a peer (itself, by two names) on the
	// sshd port, with strict host key checking against the cluster key.
	for _, peer := range []string{"127.0.0.1", "localhost"} {
		got, err := c.exec(ctx, "ssh", peer, "echo", "hello-from-"+peer)
		if err != nil || strings.TrimSpace(got) != "hello-from-"+peer {
			t.Errorf("ssh %s inside the container: %q, %v", peer, got, err)
		}
	}
	cfg, _ := c.exec(ctx, "cat", "/root/.ssh/config")
	if !strings.HasPrefix(cfg, "Include "+containerDir+"/ssh_config\n") || !strings.Contains(cfg, "Host image-entry") {
		t.Errorf("root's ssh config:\n%s\nwant cvs's Include first and the image's entries kept", cfg)
	}
	modes, _ := c.exec(ctx, "sh", "-c", "stat -c '%a %n' "+containerDir+" "+containerDir+"/*")
	for _, l := range strings.Split(strings.TrimSpace(modes), "\n") {
		if !strings.HasPrefix(l, "600 ") && !strings.HasPrefix(l, "700 ") {
			t.Errorf("in the container: %s; want 0600 files in a 0700 folder", l)
		}
	}

	// From outside: the sshd presents the cluster host key and accepts the
	// cluster key only.
	dial := func(auth ssh.AuthMethod) error {
		cl, err := ssh.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), &ssh.ClientConfig{
			User: "root", Auth: []ssh.AuthMethod{auth},
			HostKeyCallback: ssh.FixedHostKey(keys.HostKey()), Timeout: 10 * time.Second,
		})
		if err == nil {
			cl.Close()
		}
		return err
	}
	if err := dial(ssh.PublicKeys(keys.client)); err != nil {
		t.Errorf("login with the cluster key: %v", err)
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	otherSigner, _ := ssh.NewSignerFromKey(other)
	if err := dial(ssh.PublicKeys(otherSigner)); err == nil {
		t.Error("sshd accepted a key other than the cluster's")
	}
	if err := dial(ssh.Password("root")); err == nil {
		t.Error("sshd accepted a password")
	}

	// A new sshd_port: the sshd cvs started before is stopped, the new one
	// listens, and ssh follows the new port.
	port2 := freePort(t)
	if out, err := Ensure(ctx, docker.CLIEngine{Host: h}, "h1", "c", port2, keys); err != nil || out.AlreadyListening {
		t.Fatalf("Ensure on a new port: %+v, %v", out, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.listening(t, port) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if c.listening(t, port) {
		t.Errorf("the sshd on the old port %d still listens", port)
	}
	if got, err := c.exec(ctx, "ssh", "127.0.0.1", "echo", "ok"); err != nil || strings.TrimSpace(got) != "ok" {
		t.Errorf("ssh after the port change: %q, %v", got, err)
	}
}

func TestRealSSHDNotInstalled(t *testing.T) {
	needRealSSHD(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := startContainer(t, true)
	keys, err := LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	_, err = Ensure(ctx, docker.CLIEngine{Host: localHost{env: c.env}}, "h1", "c", freePort(t), keys)
	if err == nil || !strings.Contains(err.Error(), "sshd is not installed in the image; the setup script should install openssh-server") {
		t.Errorf("err = %v; want the not-installed message", err)
	}
}
