package provision

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cvs-tool/cvs/docker"
	"github.com/cvs-tool/cvs/transport"
)

// These tests run the lines Command builds with the local sh, with a fake
// docker first in PATH that drops "exec [flags] CONTAINER" and runs the
// rest here: the quoting, the decoding and the failure paths are exercised
// for real, without a Docker daemon.

// fakeDocker is the docker stand-in. $CVS_TEST_WRAP, when set, is a
// command the argv is run under (to hide files in a mount namespace).
const fakeDocker = `#!/bin/sh
[ "$1" = exec ] || { echo "fake docker: only exec is supported" >&2; exit 2; }
shift
while :; do case $1 in -u | --user | -e | -w) shift 2 ;; -*) shift ;; *) break ;; esac; done
shift
exec $CVS_TEST_WRAP "$@"
`

// fakeSudo checks that sudo is asked never to prompt, then runs the rest.
const fakeSudo = `#!/bin/sh
[ "$1" = -n ] || { echo "fake sudo: called without -n" >&2; exit 2; }
shift
exec "$@"
`

// localRunner runs command lines with the local /bin/sh, as transport.Client
// runs them on a host.
type localRunner struct{ env []string }

func (l localRunner) Run(ctx context.Context, cmd transport.Command) (transport.Result, error) {
	start := time.Now()
	c := exec.CommandContext(ctx, "/bin/sh", "-c", cmd.Line)
	c.Env = l.env
	// Its own process group, as a command under sshd has: the watchdog's
	// kill 0 must never reach the test.
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if cmd.ForwardStdin {
		// As the transport does: stdin stays open while the command runs,
		// and its end is what would stop a command that outlives cvs.
		r, w, err := os.Pipe()
		if err != nil {
			return transport.Result{}, err
		}
		defer w.Close()
		defer r.Close()
		c.Stdin = r
	}
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = tee(&stdout, cmd.Stdout), tee(&stderr, cmd.Stderr)
	err := c.Run()
	res := transport.Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), Duration: time.Since(start)}
	var xe *exec.ExitError
	switch {
	case err == nil:
		return res, nil
	case errors.As(err, &xe):
		res.ExitCode = xe.ExitCode()
		return res, &transport.ExitError{Host: "local", Cmd: cmd.Line, Code: res.ExitCode, StderrTail: stderr.String()}
	default:
		res.ExitCode = -1
		return res, err
	}
}

func tee(buf *bytes.Buffer, w io.Writer) io.Writer {
	if w == nil {
		return buf
	}
	return io.MultiWriter(buf, w)
}

// fakeBin makes a folder holding the fake docker and sudo plus links to
// the named system tools, and returns it.
func fakeBin(t *testing.T, tools ...string) string {
	t.Helper()
	dir := t.TempDir()
	writeExec(t, filepath.Join(dir, "docker"), fakeDocker)
	writeExec(t, filepath.Join(dir, "sudo"), fakeSudo)
	for _, tool := range tools {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Skipf("%s is not installed: %v", tool, err)
		}
		if err := os.Symlink(p, filepath.Join(dir, tool)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func writeExec(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

// run builds the line for script and runs it with PATH set to path.
func run(t *testing.T, path string, sudo bool, script string, extraEnv ...string) (transport.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	env := append([]string{"PATH=" + path, "HOME=" + t.TempDir(), "LC_ALL=C"}, extraEnv...)
	old := RecordPath
	RecordPath = filepath.Join(t.TempDir(), "etc-cvs", "provisioned")
	t.Cleanup(func() { RecordPath = old })
	return Run(ctx, docker.CLIEngine{CLI: docker.CLI{Sudo: sudo}, Host: localRunner{env: env}}, "h1", "cvs-test", []byte(script), "test")
}

func systemPath(dirs ...string) string {
	return strings.Join(append(dirs, "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"), ":")
}

func TestRunScripts(t *testing.T) {
	bin := fakeBin(t)
	for _, tc := range []struct {
		name     string
		sudo     bool
		script   string
		wantCode int // 0: success
		want     []string
		notWant  []string
	}{
		{name: "success", script: "echo provisioned\n", want: []string{"provisioned"}},
		{name: "through sudo -n", sudo: true, script: "echo via sudo\n", want: []string{"via sudo"}},
		{name: "arguments survive quoting", script: "printf '%s|' \"$0\" 'it'\\''s' \"a  b\" '$HOME'\n", want: []string{"cvs-setup|it's|a  b|$HOME|"}},
		{name: "exit 1", script: "echo before\nexit 1\n", wantCode: 1, want: []string{"before"}},
		{name: "failing command stops the script", script: "echo one\nfalse\necho after\n", wantCode: 1, want: []string{"one"}, notWant: []string{"after"}},
		{name: "pipeline failing in the middle", script: "echo one\nfalse | cat\necho after\n", wantCode: 1, want: []string{"one"}, notWant: []string{"after"}},
		{name: "stderr kept in the output", script: "echo to-stdout\necho to-stderr >&2\nexit 7\n", wantCode: 7, want: []string{"to-stdout", "to-stderr"}},
		{name: "bash features", script: "a=(x y z)\n[[ ${#a[@]} -eq 3 ]] && echo bash-arrays\n", want: []string{"bash-arrays"}},
		{name: "empty script", script: ""},
		{name: "a command reading stdin cannot swallow the script", script: "cat >/dev/null\nread -r x || echo stdin-closed\necho after-cat\n", want: []string{"stdin-closed", "after-cat"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := run(t, systemPath(bin), tc.sudo, tc.script)
			out := string(res.Stdout) + string(res.Stderr)
			if tc.wantCode == 0 {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
			} else {
				var pe *Error
				if !errors.As(err, &pe) {
					t.Fatalf("err = %v; want *Error with exit status %d", err, tc.wantCode)
				}
				if pe.Code != tc.wantCode || pe.Host != "h1" || pe.Container != "cvs-test" {
					t.Errorf("Error = %+v; want code %d, host h1, container cvs-test", pe, tc.wantCode)
				}
				out = pe.Output
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(out, w) {
					t.Errorf("output has %q:\n%s", w, out)
				}
			}
		})
	}
}

// A container image without base64 or bash must fail with a sentence, never
// run an empty script and report success.
func TestRunMissingTools(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tools []string
		want  string
	}{
		{"no base64", []string{"sh", "bash", "cat"}, "base64 is not installed in the container"},
		{"no bash", []string{"sh", "base64", "cat"}, "bash is not installed in the container"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := fakeBin(t, tc.tools...)
			marker := filepath.Join(t.TempDir(), "ran")
			_, err := run(t, bin, false, "echo ran > "+marker+"\n")
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v; want *Error", err)
			}
			if pe.Code != 127 || !strings.Contains(pe.Error(), tc.want) {
				t.Errorf("code %d, message:\n%s\nwant 127 and %q", pe.Code, pe.Error(), tc.want)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("the script ran")
			}
		})
	}
}

// A base64 that fails (corrupt input, a broken binary) must fail the run.
func TestRunFailingBase64(t *testing.T) {
	bin := fakeBin(t, "sh", "bash", "cat", "mktemp", "mkdir", "dirname", "date", "rm")
	writeExec(t, filepath.Join(bin, "base64"), "#!/bin/sh\necho 'base64: invalid input' >&2\nexit 1\n")
	_, err := run(t, bin, false, "echo ran\n")
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != 1 || !strings.Contains(pe.Output, "invalid input") || strings.Contains(pe.Output, "ran") {
		t.Errorf("err = %v; want exit status 1 with base64's complaint and no script output", err)
	}
}

func TestDefaultScriptReturnsAtOnceWhenSSHDIsInstalled(t *testing.T) {
	bin := fakeBin(t)
	calls := filepath.Join(t.TempDir(), "calls")
	writeExec(t, filepath.Join(bin, "sshd"), "#!/bin/sh\nexit 0\n")
	writeExec(t, filepath.Join(bin, "ssh"), "#!/bin/sh\nexit 0\n")
	for _, pm := range []string{"apt-get", "dnf", "yum", "zypper", "apk"} {
		writeExec(t, filepath.Join(bin, pm), "#!/bin/sh\necho \"$0 $*\" >> "+calls+"\nexit 1\n")
	}
	script, err := Script("")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := run(t, systemPath(bin), false, string(script))
	if err != nil {
		t.Fatalf("err = %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("took %s", took)
	}
	if !strings.Contains(string(res.Stdout), "nothing to do") {
		t.Errorf("stdout = %q; want the already-installed message", res.Stdout)
	}
	if b, err := os.ReadFile(calls); err == nil {
		t.Errorf("a package manager ran: %s", b)
	}
}

// The install branches run in a mount namespace where /usr/sbin is an
// empty folder, so that this machine's own sshd is out of sight and
// policy-rc.d lands in a scratch folder.
func TestDefaultScriptInstallBranches(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a mount namespace")
	}
	if err := exec.Command("unshare", "-m", "true").Run(); err != nil {
		t.Skipf("cannot create a mount namespace: %v", err)
	}
	mountPath, err := exec.LookPath("mount")
	if err != nil {
		t.Skip("mount is not installed")
	}
	unsharePath, _ := exec.LookPath("unshare")
	script, err := Script("")
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name     string
		pm       string // fake package manager to provide, "" for none
		wantCode int
		want     []string
	}{
		{name: "no package manager", wantCode: 1, want: []string{"no supported package manager", "setup_script"}},
		{name: "apt-get", pm: "apt-get", want: []string{"installing openssh-server with apt-get", "sshd installed"}},
		{name: "dnf", pm: "dnf", want: []string{"installing openssh-server with dnf", "sshd installed"}},
		{name: "apk", pm: "apk", want: []string{"installing openssh-server with apk", "sshd installed"}},
		{name: "package manager fails", pm: "apt-get-fails", wantCode: 100, want: []string{"E: no network"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := fakeBin(t, "sh", "bash", "base64", "chmod", "rm", "cat", "mktemp", "mkdir", "dirname", "date")
			sbin := t.TempDir()
			calls := filepath.Join(t.TempDir(), "calls")
			switch tc.pm {
			case "":
			case "apt-get-fails":
				writeExec(t, filepath.Join(bin, "apt-get"), "#!/bin/sh\necho 'E: no network' >&2\nexit 100\n")
			default:
				// Installing makes sshd appear, and records whether
				// policy-rc.d was in place at that moment.
				writeExec(t, filepath.Join(bin, tc.pm), `#!/bin/sh
echo "$0 $*" >> `+calls+`
case "$*" in *install*|*add*)
	[ -x /usr/sbin/policy-rc.d ] && echo policy-rc.d-present >> `+calls+`
	printf '#!/bin/sh\n' > `+bin+`/sshd; chmod 755 `+bin+`/sshd ;;
esac
`)
			}
			wrap := filepath.Join(t.TempDir(), "wrap")
			writeExec(t, wrap, "#!/bin/sh\nexec "+unsharePath+" -m "+bin+"/sh -c '"+mountPath+" --bind "+sbin+" /usr/sbin && exec \"$0\" \"$@\"' \"$@\"\n")
			res, err := run(t, bin, false, string(script), "CVS_TEST_WRAP="+wrap)
			out := string(res.Stdout) + string(res.Stderr)
			if tc.wantCode == 0 {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
			} else {
				var pe *Error
				if !errors.As(err, &pe) || pe.Code != tc.wantCode {
					t.Fatalf("err = %v; want exit status %d", err, tc.wantCode)
				}
				out = pe.Error()
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if _, err := os.Stat(filepath.Join(sbin, "policy-rc.d")); err == nil {
				t.Error("policy-rc.d was left behind")
			}
			if tc.wantCode != 0 {
				return
			}
			b, _ := os.ReadFile(calls)
			if !strings.Contains(string(b), "openssh-server") {
				t.Errorf("%s was not asked for openssh-server: %s", tc.pm, b)
			}
			if got := strings.Contains(string(b), "policy-rc.d-present"); got != (tc.pm == "apt-get") {
				t.Errorf("policy-rc.d in place during the install: %v; want it only for apt-get (calls: %s)", got, b)
			}
		})
	}
}

// A script that succeeds leaves a record (its hash, the version, the
// time); one that fails leaves none.
func TestProvisioningRecord(t *testing.T) {
	bin := fakeBin(t)
	if _, err := run(t, systemPath(bin), false, "echo ok\n"); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(RecordPath)
	if err != nil {
		t.Fatalf("no record after success: %v", err)
	}
	r := docker.ParseProvisioning(string(data))
	if !r.Recorded || r.Hash != Hash([]byte("echo ok\n")) || r.Version != "test" || r.Time == "" {
		t.Errorf("record %q -> %+v", data, r)
	}
	if _, err := run(t, systemPath(bin), false, "exit 3\n"); err == nil {
		t.Fatal("exit 3 succeeded")
	}
	if _, err := os.Stat(RecordPath); err == nil {
		t.Error("a failed script left a record")
	}
}
