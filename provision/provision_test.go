package provision

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cvs-tool/cvs/docker"
	"github.com/cvs-tool/cvs/internal/golden"

	"github.com/cvs-tool/cvs/assets"
	"github.com/cvs-tool/cvs/shell"
	"github.com/cvs-tool/cvs/transport"
)

// goldenCases pin the exact command lines Command produces: a change to the
// wrapper shows up as a diff in testdata/command.golden.
var goldenCases = []struct {
	name      string
	sudo      bool
	container string
	script    string
}{
	{"plain", false, "cvs-lab", "echo hello\n"},
	{"sudo", true, "cvs-lab", "echo hello\n"},
	{"quotes and dollars", false, "cvs_test.1", "echo \"$HOME\" 'it'\\''s' `id`\nexit 3\n"},
	{"empty script", false, "c", ""},
}

func TestCommandGolden(t *testing.T) {
	var b bytes.Buffer
	for _, tc := range goldenCases {
		line, err := Command(docker.CLI{Sudo: tc.sudo}, tc.container, []byte(tc.script), "test")
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		fmt.Fprintf(&b, "# %s (sudo=%v container=%q script=%q)\n%s\n\n", tc.name, tc.sudo, tc.container, tc.script, line)
	}
	golden.Check(t, "command.golden", b.Bytes())
}

// lastWord returns the last shell word of a line built by shell.Join whose
// last word has no embedded single quote (true of base64).
// scriptWord is the base64 script among the words of a Command line: its
// last word is the watched command line, whose fourth word from the end
// is the script (then the hash, the version, the record path).
func scriptWord(t *testing.T, line string) string {
	t.Helper()
	outer, ok := shell.Split(line)
	if !ok || len(outer) == 0 {
		t.Fatalf("cannot read the line back: %.120s", line)
	}
	argv, ok := shell.Split(outer[len(outer)-1])
	if !ok || len(argv) < 4 {
		t.Fatalf("cannot read the watched line back: %.120s", outer[len(outer)-1])
	}
	return argv[len(argv)-4]
}

func TestCommandCarriesTheDefaultScript(t *testing.T) {
	script, err := Script("")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(script, assets.SetupOpenSSH) {
		t.Fatal("Script(\"\") is not the embedded default")
	}
	line, err := Command(docker.CLI{Sudo: false}, "cvs-lab", script, "test")
	if err != nil {
		t.Fatal(err)
	}
	got, err := base64.StdEncoding.DecodeString(scriptWord(t, line))
	if err != nil {
		t.Fatalf("the last word of the line is not base64: %v", err)
	}
	if !bytes.Equal(got, assets.SetupOpenSSH) {
		t.Errorf("the line's base64 decodes to something other than assets/setup_openssh.sh")
	}
	if !strings.HasPrefix(line, shell.Join("docker", "exec", "-i", "-u", "0", "cvs-lab", "sh", "-c")+" ") {
		t.Errorf("line does not start with docker exec -i -u 0 cvs-lab sh -c: %.80s", line)
	}
}

func TestScriptReturnsACopyOfTheDefault(t *testing.T) {
	a, _ := Script("")
	a[0] ^= 0xff
	if b, _ := Script(""); !bytes.Equal(b, assets.SetupOpenSSH) || assets.SetupOpenSSH[0] == a[0] {
		t.Error("changing the returned default changed the embedded one")
	}
}

func TestDefaultScriptFitsTheInlineChannel(t *testing.T) {
	if n := len(assets.SetupOpenSSH); n > MaxScriptBytes {
		t.Errorf("assets/setup_openssh.sh is %d bytes, over MaxScriptBytes (%d)", n, MaxScriptBytes)
	}
}

func TestScriptFromFile(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small.sh")
	atLimit := filepath.Join(dir, "limit.sh")
	big := filepath.Join(dir, "big.sh")
	os.WriteFile(small, []byte("echo hi\n"), 0o644)
	os.WriteFile(atLimit, bytes.Repeat([]byte("#"), MaxScriptBytes), 0o644)
	os.WriteFile(big, bytes.Repeat([]byte("#"), MaxScriptBytes+1), 0o644)

	if got, err := Script(small); err != nil || string(got) != "echo hi\n" {
		t.Errorf("Script(small) = %q, %v", got, err)
	}
	if got, err := Script(atLimit); err != nil || len(got) != MaxScriptBytes {
		t.Errorf("Script(at the limit) = %d bytes, %v; the limit itself is allowed", len(got), err)
	}
	_, err := Script(big)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprint(MaxScriptBytes+1)) || !strings.Contains(err.Error(), big) {
		t.Errorf("Script(over the limit) error = %v; want one naming the file and its size %d", err, MaxScriptBytes+1)
	}
	if _, err := Script(filepath.Join(dir, "missing.sh")); err == nil {
		t.Error("Script(missing file) succeeded")
	}
}

func TestCommandRefuses(t *testing.T) {
	if _, err := Command(docker.CLI{Sudo: false}, "c", bytes.Repeat([]byte("x"), MaxScriptBytes+1), "test"); err == nil || !strings.Contains(err.Error(), fmt.Sprint(MaxScriptBytes+1)) {
		t.Errorf("oversized script: err = %v; want one naming the size", err)
	}
	for _, name := range []string{"", "-it", "--privileged"} {
		if _, err := Command(docker.CLI{Sudo: false}, name, []byte("true"), "test"); err == nil {
			t.Errorf("container %q: no error; a name docker would read as a flag must be refused", name)
		}
	}
}

// fakeRunner answers with a canned result, for error formatting.
type fakeRunner struct {
	res  transport.Result
	err  error
	line string
}

func (f *fakeRunner) Run(_ context.Context, cmd transport.Command) (transport.Result, error) {
	f.line = cmd.Line
	if cmd.Stdout != nil {
		cmd.Stdout.Write(f.res.Stdout)
	}
	if cmd.Stderr != nil {
		cmd.Stderr.Write(f.res.Stderr)
	}
	return f.res, f.err
}

func TestErrorMessages(t *testing.T) {
	for _, tc := range []struct {
		name string
		res  transport.Result
		err  error
		want []string
	}{
		{
			name: "exit",
			res:  transport.Result{Stdout: []byte("step 1\n"), Stderr: []byte("E: Unable to locate package openssh-server\n"), ExitCode: 100},
			err:  &transport.ExitError{Host: "h1", Cmd: "docker exec …", Code: 100},
			want: []string{"setup script in container c: failed with exit status 100", "  | step 1", "  | E: Unable to locate package openssh-server"},
		},
		{
			name: "timeout",
			res:  transport.Result{Stdout: []byte("Get:1 http://deb.debian.org\n"), ExitCode: -1},
			err:  &transport.TimeoutError{Host: "h1", Cmd: "docker exec …", After: 90 * time.Second},
			want: []string{"setup script in container c: timed out after 1m30s", "  | Get:1 http://deb.debian.org"},
		},
		{
			name: "connection",
			res:  transport.Result{ExitCode: -1},
			err:  &transport.HostError{Host: "h1", Kind: transport.KindSSH, Detail: "connection lost"},
			want: []string{"setup script in container c: ssh-error: connection lost"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &fakeRunner{res: tc.res, err: tc.err}
			_, err := Run(context.Background(), docker.CLIEngine{Host: r}, "h1", "c", []byte("true"), "test")
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v; want *Error", err)
			}
			if !errors.Is(err, tc.err) {
				t.Error("the *Error does not unwrap to the transport's error")
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message lacks %q:\n%s", w, msg)
				}
			}
			// The host is a field; whoever reports per-host results names it.
			if n := strings.Count(msg, "h1"); n != 0 || pe.Host != "h1" {
				t.Errorf("the host is named %d times in the text (want 0) and is %q as a field:\n%s", n, pe.Host, msg)
			}
		})
	}
}

func TestRunKeepsOnlyTheTail(t *testing.T) {
	var out strings.Builder
	for i := range 100 {
		fmt.Fprintf(&out, "line %d\n", i)
	}
	r := &fakeRunner{res: transport.Result{Stdout: []byte(out.String()), ExitCode: 1}, err: &transport.ExitError{Host: "h", Code: 1}}
	_, err := Run(context.Background(), docker.CLIEngine{Host: r}, "h", "c", []byte("true"), "test")
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatal(err)
	}
	if lines := strings.Split(pe.Output, "\n"); len(lines) != tailLines || lines[len(lines)-1] != "line 99" {
		t.Errorf("Output has %d lines ending %q; want the last %d", len(lines), lines[len(lines)-1], tailLines)
	}
}

// Whatever bytes a script holds, the line carries them exactly.
func FuzzCommandCarriesTheScript(f *testing.F) {
	f.Add([]byte("echo hi\n"))
	f.Add([]byte("'\"$`\\\x00\xff"))
	f.Add(assets.SetupOpenSSH)
	f.Fuzz(func(t *testing.T, script []byte) {
		line, err := Command(docker.CLI{Sudo: false}, "c", script, "test")
		if len(script) > MaxScriptBytes {
			if err == nil {
				t.Fatal("oversized script accepted")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		got, err := base64.StdEncoding.DecodeString(scriptWord(t, line))
		if err != nil || !bytes.Equal(got, script) {
			t.Fatalf("decoded %q, %v; want %q", got, err, script)
		}
	})
}
