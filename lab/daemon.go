package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// daemonArgs is the lab's outer dockerd command line. Everything that could
// touch the machine is turned off: no default bridge (docker0), no iptables
// or forwarding changes, so the lab network stays a bridge that reaches only
// the machine itself and the other hosts.
func (l *Lab) daemonArgs() []string {
	p := l.paths
	return []string{
		"dockerd",
		"--host", "unix://" + p.dockerSock,
		"--data-root", p.dataRoot,
		"--exec-root", p.execRoot,
		// dockerd's own pid file; run/dockerd.pid is the one the lab
		// writes when it starts the daemon (see startDetached).
		"--pidfile", filepath.Join(p.run, "dockerd-self.pid"),
		"--bridge", "none",
		"--iptables=false",
		"--ip-forward=false",
		"--ip-masq=false",
		"--userland-proxy=false",
		"--cgroup-parent", l.cgroupParent(),
		"--insecure-registry", l.Registry(),
		"--log-level", "warn",
	}
}

func (l *Lab) daemonRunning() bool {
	pid, _ := readPID(l.paths.dockerPID)
	return procAlive(pid, l.paths.dockerSock)
}

// ensureDaemon starts the outer dockerd unless it already runs with this
// configuration. A daemon left by a crashed Up is reused if it answers; one
// started for another subnet (its --insecure-registry is wrong) is restarted.
func (l *Lab) ensureDaemon(ctx context.Context) error {
	if l.daemonRunning() {
		pid, _ := readPID(l.paths.dockerPID)
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if containsArg(cmdline, l.Registry()) {
			if err := l.waitDaemon(ctx, 10*time.Second); err == nil {
				return nil
			}
		}
		l.logf("restarting the lab dockerd (pid %d): it does not answer or has another subnet", pid)
		if err := l.stopDaemon(ctx); err != nil {
			return err
		}
	}
	for _, d := range []string{l.paths.run, l.paths.execRoot, l.paths.dataRoot, l.paths.logs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	// Stale files of a daemon that died: dockerd refuses to start over its
	// own pid file, and a stale socket would make the wait below lie.
	for _, f := range []string{l.paths.dockerPID, filepath.Join(l.paths.run, "dockerd-self.pid"), l.paths.dockerSock} {
		os.Remove(f)
	}
	// A containerd that outlived its dockerd (or its unreaped zombie, which
	// dockerd would take for a live one and wait on forever): stop it and
	// drop its pid file, so dockerd starts a fresh one. The containers'
	// shims survive that and are found again.
	cpidFile := filepath.Join(l.paths.execRoot, "containerd", "containerd.pid")
	if cpid, _ := readPID(cpidFile); cpid > 0 {
		if err := stopPID(ctx, cpid, l.paths.execRoot, 15*time.Second); err != nil {
			return fmt.Errorf("stop the containerd of a previous lab dockerd: %w", err)
		}
		os.Remove(cpidFile)
	}
	logPath := filepath.Join(l.paths.logs, "dockerd.log")
	if err := startDetached(ctx, l.paths.dockerPID, logPath, l.daemonArgs()...); err != nil {
		return err
	}
	if err := l.waitDaemon(ctx, 60*time.Second); err != nil {
		return fmt.Errorf("lab dockerd did not come up: %w\n%s", err, tailFile(logPath, 1500))
	}
	return nil
}

// waitDaemon polls the outer daemon until it answers.
func (l *Lab) waitDaemon(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var err error
	pid, _ := readPID(l.paths.dockerPID)
	for {
		// Not daemonRunning: its command line is briefly unreadable while
		// the starting shell execs dockerd.
		if processGone(pid) {
			return fmt.Errorf("dockerd exited (see %s)", filepath.Join(l.paths.logs, "dockerd.log"))
		}
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = l.dk.out(pctx, "version", "--format", "{{.Server.Version}}")
		pcancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// stopDaemon stops the outer dockerd (it stops its containerd) and then any
// containerd it left behind after a crash.
func (l *Lab) stopDaemon(ctx context.Context) error {
	pid, _ := readPID(l.paths.dockerPID)
	if err := stopPID(ctx, pid, l.paths.dockerSock, 30*time.Second); err != nil {
		return fmt.Errorf("stop lab dockerd: %w", err)
	}
	cpid, _ := readPID(filepath.Join(l.paths.execRoot, "containerd", "containerd.pid"))
	if err := stopPID(ctx, cpid, l.paths.execRoot, 15*time.Second); err != nil {
		return fmt.Errorf("stop lab containerd: %w", err)
	}
	os.Remove(l.paths.dockerPID)
	return nil
}

// containsArg reports whether the NUL-separated cmdline has arg as one word.
func containsArg(cmdline []byte, arg string) bool {
	start := 0
	for i, b := range cmdline {
		if b == 0 {
			if string(cmdline[start:i]) == arg {
				return true
			}
			start = i + 1
		}
	}
	return string(cmdline[start:]) == arg
}
