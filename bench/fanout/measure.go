package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// sample is one timed run of one tool.
type sample struct {
	Wall       time.Duration
	CPU        time.Duration // user+sys of the tool and the children it reaped
	MaxRSSKB   int64         // largest RSS of the tool or one reaped child
	ExitCode   int           // -1: did not run to an exit (start failure, timeout)
	Handshakes int           // server-side accepted logins during the run
	Err        string
}

// runOnce runs one tool strictly alone: it waits for the farm to be idle,
// counts accepted logins before and after, and times the process from
// start to exit. stdout and stderr go to logPath.
func runOnce(ctx context.Context, s *setup, bin string, t tool, logPath string, timeout time.Duration) (sample, error) {
	if err := waitIdle(ctx, s); err != nil {
		return sample{}, err
	}
	before, err := s.Farm.Accepted()
	if err != nil {
		return sample{}, err
	}
	args, env := t.Cmd(s)
	out, err := os.Create(logPath)
	if err != nil {
		return sample{}, err
	}
	defer out.Close()
	fmt.Fprintf(out, "$ %s\n", commandLine(bin, args, env))

	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(rctx, bin, args...)
	cmd.Env = append(benchEnv(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Dir = s.Dir

	start := time.Now()
	runErr := cmd.Run()
	wall := time.Since(start)

	smp := sample{Wall: wall, ExitCode: -1}
	if st := cmd.ProcessState; st != nil {
		smp.ExitCode = st.ExitCode()
		smp.CPU = st.UserTime() + st.SystemTime()
		if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
			smp.MaxRSSKB = ru.Maxrss // kilobytes on Linux
		}
	}
	var exitErr *exec.ExitError
	if runErr != nil && !errors.As(runErr, &exitErr) {
		smp.Err = runErr.Error()
	}
	if rctx.Err() != nil && ctx.Err() == nil {
		smp.Err = fmt.Sprintf("timed out after %v", timeout)
	}
	after, err := s.Farm.Accepted()
	if err != nil {
		return sample{}, err
	}
	smp.Handshakes = after - before
	return smp, ctx.Err()
}

// waitIdle waits until the sshds have torn down the previous run's
// connections, so that one tool's server-side cleanup is not billed to
// the next.
func waitIdle(ctx context.Context, s *setup) error {
	deadline := time.Now().Add(30 * time.Second)
	for s.Farm.Connections() > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d sshd connections still open 30s after the previous run", s.Farm.Connections())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// benchEnv is the environment every tool runs with: the caller's, minus
// SSH_AUTH_SOCK so that every tool authenticates with the same key file.
func benchEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if len(kv) >= 14 && kv[:14] == "SSH_AUTH_SOCK=" {
			continue
		}
		env = append(env, kv)
	}
	return env
}
