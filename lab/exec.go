package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/cvs-tool/cvs/shell"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// ExitError reports a command that ran and exited non-zero: on a lab host
// (Host set) or on the machine on the lab's behalf (Host empty).
type ExitError struct {
	Host     string
	Argv     []string
	ExitCode int
	// Stderr is the end of the command's standard error.
	Stderr string
}

func (e *ExitError) Error() string {
	var b strings.Builder
	if e.Host != "" {
		b.WriteString(e.Host + ": ")
	}
	fmt.Fprintf(&b, "%s: exit status %d", shortArgv(e.Argv), e.ExitCode)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		b.WriteString(": " + s)
	}
	return b.String()
}

// ExecResult is the outcome of a command run on a lab host.
type ExecResult struct {
	Stdout   string
	Stderr   string
	ExitCode int
}

// command runs argv on the machine. Its stdout is returned; a non-zero exit
// becomes an *ExitError carrying the tail of stderr. If logPath is set, the
// output goes there instead of memory (for long, chatty builds) and the error
// carries the log's tail and path.
type command struct {
	argv     []string
	stdin    io.Reader
	env      []string // added to the environment
	cleanEnv bool     // env replaces the environment instead
	dir      string
	logPath  string
}

func (c command) run(ctx context.Context) (string, error) {
	cmd := exec.CommandContext(ctx, c.argv[0], c.argv[1:]...)
	cmd.Stdin = c.stdin
	cmd.Dir = c.dir
	switch {
	case c.cleanEnv:
		cmd.Env = c.env
	case len(c.env) > 0:
		cmd.Env = append(os.Environ(), c.env...)
	}
	// A killed command's children may hold the pipes open; do not wait for
	// them forever.
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if c.logPath != "" {
		f, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return "", err
		}
		defer f.Close()
		fmt.Fprintf(f, "\n$ %s\n", strings.Join(c.argv, " "))
		cmd.Stdout, cmd.Stderr = f, f
	}
	err := cmd.Run()
	if err == nil {
		return stdout.String(), nil
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return stdout.String(), fmt.Errorf("%s: %w", shortArgv(c.argv), err)
	}
	msg := stderr.String()
	if c.logPath != "" {
		msg = tailFile(c.logPath, 1500) + "\n(full log: " + c.logPath + ")"
	}
	if ctx.Err() != nil {
		return stdout.String(), fmt.Errorf("%s: %w", shortArgv(c.argv), ctx.Err())
	}
	return stdout.String(), &ExitError{Argv: c.argv, ExitCode: ee.ExitCode(), Stderr: tail(msg, 1500)}
}

func run(ctx context.Context, argv ...string) (string, error) {
	return command{argv: argv}.run(ctx)
}

// docker drives the lab's outer daemon through the docker CLI on its socket.
// The CLI is what an operator would use to look at the lab, so the lab does
// the same things they would see.
type docker struct {
	bin  string
	host string
}

func newDocker(sock string) docker {
	// Prefer the client that ships with the Debian dockerd the lab runs; a
	// newer client elsewhere on PATH also works (it negotiates the API).
	bin := "/usr/bin/docker"
	if _, err := os.Stat(bin); err != nil {
		bin = "docker"
	}
	return docker{bin: bin, host: "unix://" + sock}
}

func (d docker) argv(args ...string) []string {
	return append([]string{d.bin, "--host", d.host}, args...)
}

// out runs a docker command and returns its trimmed stdout.
func (d docker) out(ctx context.Context, args ...string) (string, error) {
	s, err := command{argv: d.argv(args...)}.run(ctx)
	return strings.TrimSpace(s), err
}

// exec runs argv in a host container and returns its result; a non-zero
// exit is also returned as an *ExitError naming the host.
func (d docker) exec(ctx context.Context, h Host, stdin io.Reader, argv ...string) (ExecResult, error) {
	args := []string{"exec"}
	if stdin != nil {
		args = append(args, "-i")
	}
	args = append(args, h.Container)
	cmd := exec.CommandContext(ctx, d.bin, append([]string{"--host", d.host}, append(args, argv...)...)...)
	cmd.Stdin = stdin
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := ExecResult{Stdout: stdout.String(), Stderr: stderr.String()}
	if err == nil {
		return res, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ctx.Err() == nil {
		res.ExitCode = ee.ExitCode()
		return res, &ExitError{Host: h.Name, Argv: argv, ExitCode: res.ExitCode, Stderr: tail(res.Stderr, 1500)}
	}
	res.ExitCode = -1
	return res, fmt.Errorf("%s: %s: %w", h.Name, shortArgv(argv), err)
}

// HostExec runs argv on host's operating system as root, through the lab's
// own daemon (docker exec), not through SSH: it works while the host's sshd
// is stopped and checks the host's real state independently of cvs. The
// result is always filled in; a non-zero exit is also returned as an
// *ExitError, any other error means the command could not run.
//
// In a Slurm lab, host may also name the controller container (slurmctl),
// which has no sshd.
func (l *Lab) HostExec(ctx context.Context, host string, argv ...string) (ExecResult, error) {
	h, err := l.Host(host)
	if ctl, ok := l.SlurmController(); err != nil && ok && (host == ctl.Name || host == ctl.Addr.String() || host == ctl.Container) {
		h, err = ctl, nil
	}
	if err != nil {
		return ExecResult{ExitCode: -1}, err
	}
	if len(argv) == 0 {
		return ExecResult{ExitCode: -1}, errors.New("HostExec: empty command")
	}
	return l.dk.exec(ctx, h, nil, argv...)
}

// HostDocker runs the docker CLI against host's inner daemon, as root on the
// host would: HostDocker(ctx, "host2", "image", "ls") is HostExec of
// "docker image ls".
func (l *Lab) HostDocker(ctx context.Context, host string, args ...string) (ExecResult, error) {
	return l.HostExec(ctx, host, append([]string{"docker"}, args...)...)
}

// SSHArgs returns the ssh command line (without the remote command) that
// logs in to host as root with the lab key and strict checking against the
// lab's known_hosts file.
func (l *Lab) SSHArgs(host string) ([]string, error) {
	h, err := l.Host(host)
	if err != nil {
		return nil, err
	}
	return []string{
		"ssh",
		"-i", l.paths.identity,
		"-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile=" + l.paths.knownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes",
		"-o", "ConnectTimeout=5",
		"-o", "LogLevel=ERROR",
		"-p", "22",
		"root@" + h.Addr.String(),
	}, nil
}

// SSH runs argv on host over a real SSH connection (the OpenSSH client, the
// lab key, strict host key checking), the way cvs reaches the host. Each
// argument is quoted for the remote shell, so argv arrives intact. Exit code
// 255 with an *ExitError means ssh itself failed (refused, host key
// mismatch, ...); Stderr says which.
func (l *Lab) SSH(ctx context.Context, host string, argv ...string) (ExecResult, error) {
	if len(argv) == 0 {
		return ExecResult{ExitCode: -1}, errors.New("SSH: empty command")
	}
	return l.SSHScript(ctx, host, shell.Join(argv...))
}

// SSHScript runs a shell command line on host over SSH, like `ssh host
// 'script'`: the remote login shell interprets it.
func (l *Lab) SSHScript(ctx context.Context, host, script string) (ExecResult, error) {
	args, err := l.SSHArgs(host)
	if err != nil {
		return ExecResult{ExitCode: -1}, err
	}
	h, _ := l.Host(host)
	cmd := exec.CommandContext(ctx, args[0], append(args[1:], "--", script)...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// An agent could offer other keys; the lab key alone must work.
	cmd.Env = withoutEnv(os.Environ(), "SSH_AUTH_SOCK")
	err = cmd.Run()
	res := ExecResult{Stdout: stdout.String(), Stderr: stderr.String()}
	if err == nil {
		return res, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ctx.Err() == nil {
		res.ExitCode = ee.ExitCode()
		return res, &ExitError{Host: h.Name, Argv: []string{"ssh", script}, ExitCode: res.ExitCode, Stderr: tail(res.Stderr, 1500)}
	}
	res.ExitCode = -1
	return res, fmt.Errorf("%s: ssh: %w", h.Name, err)
}

func withoutEnv(env []string, name string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

func shortArgv(argv []string) string {
	s := strings.Join(argv, " ")
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return tail(string(b), n)
}
