package sshdfarm

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// Agent is a running OpenSSH ssh-agent started by StartAgent.
type Agent struct {
	// Socket is the agent's socket path, the value for SSH_AUTH_SOCK.
	Socket string
	// PID is the ssh-agent process ID.
	PID int

	dir      string
	proc     *proc
	stopOnce sync.Once
	stopErr  error
}

// StartAgent starts `ssh-agent -D -a SOCKET` in a new temporary directory
// (short, since a socket path is limited to about 100 bytes) and adds the
// unencrypted private keys in keyFiles to it. ctx bounds start-up only;
// the agent runs until Stop.
func StartAgent(ctx context.Context, keyFiles ...string) (*Agent, error) {
	bin, err := exec.LookPath("ssh-agent")
	if err != nil {
		return nil, fmt.Errorf("%w: ssh-agent not found in $PATH; install OpenSSH's client (apt-get install openssh-client)", ErrNotInstalled)
	}
	var keys []any
	for _, kf := range keyFiles {
		b, err := os.ReadFile(kf)
		if err != nil {
			return nil, fmt.Errorf("read key for ssh-agent: %w", err)
		}
		k, err := ssh.ParseRawPrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("parse %s for ssh-agent: %w", kf, err)
		}
		keys = append(keys, k)
	}
	dir, err := os.MkdirTemp("", "sshagent-")
	if err != nil {
		return nil, fmt.Errorf("create ssh-agent directory: %w", err)
	}
	a := &Agent{Socket: filepath.Join(dir, "agent.sock"), dir: dir}
	cmd := exec.Command(bin, "-D", "-a", a.Socket)
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start ssh-agent: %w", err)
	}
	a.PID = cmd.Process.Pid
	a.proc = &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		a.proc.err = cmd.Wait()
		close(a.proc.done)
	}()
	fail := func(err error) (*Agent, error) {
		a.Stop()
		return nil, err
	}

	conn, err := a.dial(ctx)
	if err != nil {
		return fail(err)
	}
	defer conn.Close()
	client := agent.NewClient(conn)
	for i, k := range keys {
		if err := client.Add(agent.AddedKey{PrivateKey: k, Comment: keyFiles[i]}); err != nil {
			return fail(fmt.Errorf("add %s to ssh-agent: %w", keyFiles[i], err))
		}
	}
	return a, nil
}

// dial waits for the agent's socket to accept connections.
func (a *Agent) dial(ctx context.Context) (net.Conn, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultStartTimeout)
		defer cancel()
	}
	var d net.Dialer
	for {
		conn, err := d.DialContext(ctx, "unix", a.Socket)
		if err == nil {
			return conn, nil
		}
		select {
		case <-a.proc.done:
			return nil, fmt.Errorf("ssh-agent exited during start-up: %v", a.proc.err)
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for ssh-agent socket %s: %w (last error: %v)", a.Socket, ctx.Err(), err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Stop terminates the agent, waits for it and removes its socket
// directory. It may be called more than once.
func (a *Agent) Stop() error {
	a.stopOnce.Do(func() {
		_ = a.proc.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.proc.done:
		case <-time.After(stopGrace):
			_ = a.proc.cmd.Process.Kill()
			<-a.proc.done
		}
		a.stopErr = os.RemoveAll(a.dir)
	})
	return a.stopErr
}
