package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/cvs-tool/cvs/report"
	"github.com/cvs-tool/cvs/shell"
)

// Srun is a host reached through Slurm instead of SSH: every command runs
// as one task of `srun` on that node (slurmd starts it; no SSH connection,
// no sshd on the node needed), with the same watchdog, quoting, time limits
// and typed errors as over SSH. Uploads are a task that writes its standard
// input to the file. The tasks are steps of the allocation cvs runs in
// (salloc, sbatch), sharing its nodes (--overlap).
type Srun struct {
	// Host is the node's name as Slurm knows it.
	Host string
	// Bin is the srun executable ("srun" in $PATH when empty).
	Bin string
	// Env is added to srun's environment (SLURM_CONF, say).
	Env []string

	// group, when set, gathers this node's commands with the same
	// commands on its other nodes into one srun (SrunGroup.Node).
	group *SrunGroup
}

var _ Conn = (*Srun)(nil)

// HostName is the node's name.
func (s *Srun) HostName() string { return s.Host }

func (s *Srun) bin() string {
	if s.Bin != "" {
		return s.Bin
	}
	return "srun"
}

// argv is srun's command line for one task on the node running sh -c
// line: under the watchdog, unless the task reads data or heartbeats on
// its standard input (the watchdog would read them too).
func (s *Srun) argv(line string, forwardStdin, data bool) []string {
	// --overlap: the lock's task holds its node for the whole run, and
	// every other command of the run is a step beside it.
	argv := []string{s.bin(), "--nodelist=" + s.Host, "--nodes=1", "--ntasks=1", "--overlap", "--quiet", "--kill-on-bad-exit=1", "--export=NONE", "/bin/sh", "-c"}
	if data {
		return append(argv, nodeEnv+line)
	}
	return append(argv, nodeEnv+watchdog(forwardStdin), "cvs", line)
}

// nodeEnv begins every task's script. srun gives a task the whole
// environment of cvs by default (--export=ALL): an operator's DOCKER_HOST
// or DOCKER_CONFIG would redirect every node's docker, and CI secrets
// would reach every node. cvs passes none of it (--export=NONE, or only a
// batch's token), and the task takes the node's own, as sshd gives it: a
// PATH, and the user's name and home folder from the node's user
// database.
const nodeEnv = `PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin; USER=$(id -un); LOGNAME=$USER; ` +
	`HOME=$(getent passwd "$USER" | cut -d: -f6); export PATH USER LOGNAME HOME; `

// Run runs cmd.Line on the node and waits, at most until ctx ends: then
// srun's standard input is closed (the watchdog on the node kills the
// command's process group) and srun is stopped.
func (s *Srun) Run(ctx context.Context, cmd Command) (Result, error) {
	if s.group != nil {
		return s.group.run(ctx, s, cmd)
	}
	return s.run(ctx, cmd, nil)
}

func (s *Srun) run(ctx context.Context, cmd Command, input io.Reader) (Result, error) {
	start := time.Now()
	// A command that reads heartbeats runs without the watchdog too: it
	// would take some of them.
	argv := s.argv(cmd.Line, forwardsStdin(cmd), input != nil || cmd.Heartbeat > 0)
	c := exec.Command(argv[0], argv[1:]...)
	c.Env = append(os.Environ(), s.Env...)
	out := newCaptured()
	c.Stdout, c.Stderr = tee(out.stdout, cmd.Stdout), tee(out.stderr, cmd.Stderr)
	stdin, err := c.StdinPipe()
	if err != nil {
		return Result{ExitCode: -1}, err
	}
	// srun in its own process group: a Ctrl-C at the terminal reaches cvs,
	// which stops the task itself.
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	result := func(code int) Result { return out.result(code, start) }
	if err := c.Start(); err != nil {
		return Result{ExitCode: -1}, &HostError{Host: s.Host, Kind: KindSSH, Err: err, Detail: fmt.Sprintf("starting srun: %v (is Slurm's client installed?)", err)}
	}
	fed := make(chan error, 1)
	go func() {
		var err error
		if input != nil {
			_, err = io.Copy(stdin, input)
			stdin.Close()
		}
		fed <- err
	}()
	if cmd.Heartbeat > 0 && input == nil {
		stop := make(chan struct{})
		defer close(stop)
		go writeBeats(stdin, cmd.Heartbeat, stop)
	}
	waitc := make(chan error, 1)
	go func() { waitc <- c.Wait() }()
	var werr error
	select {
	case werr = <-waitc:
	case <-ctx.Done():
		stdin.Close() // the watchdog kills the process group on the node
		select {
		case <-waitc:
		case <-time.After(killGrace):
			// srun asks slurmd to signal the task; a second SIGINT within
			// a second ends the step.
			c.Process.Signal(os.Interrupt)
			c.Process.Signal(os.Interrupt)
			<-waitc
		}
		return result(-1), stopped(ctx, s.Host, cmd, start)
	}
	var ee *exec.ExitError
	switch {
	case werr == nil:
		if input != nil {
			if err := <-fed; err != nil {
				return result(-1), fmt.Errorf("feeding %s: %w", abbreviate(cmd.name(), 80), err)
			}
		}
		return result(0), nil
	case errors.As(werr, &ee):
		res := result(ee.ExitCode())
		if srunFailed(res.Stderr) {
			// srun itself could not place the task: the node is down,
			// unknown, or not in the allocation.
			return res, &HostError{Host: s.Host, Kind: KindUnreachable, Err: werr, Detail: srunMessage(res.Stderr)}
		}
		return res, &ExitError{Host: s.Host, Cmd: cmd.name(), Code: res.ExitCode, StderrTail: report.Tail(string(res.Stderr), stderrTailLines)}
	default:
		return result(-1), &HostError{Host: s.Host, Kind: KindSSH, Err: werr, Detail: fmt.Sprintf("running srun: %v", werr)}
	}
}

// forwardsStdin reports whether the command reads the standard input cvs
// holds open (ForwardStdin, or the Heartbeat written to it).
func forwardsStdin(c Command) bool { return c.ForwardStdin || c.Heartbeat > 0 }

// writeBeats writes a newline to w every d (Command.Heartbeat) until stop
// is closed or a write fails (w was closed: the command's end).
func writeBeats(w io.Writer, d time.Duration, stop <-chan struct{}) {
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			if _, err := w.Write([]byte{'\n'}); err != nil {
				return
			}
		}
	}
}

// srunMessage is srun's last line of stderr, named as srun's.
func srunMessage(stderr []byte) string {
	l := report.LastLine(string(stderr))
	if !strings.HasPrefix(l, "srun:") {
		l = "srun: " + l
	}
	return l
}

// srunFailed reports whether srun's own error (not the task's) is in
// stderr.
func srunFailed(stderr []byte) bool {
	for _, l := range strings.Split(string(stderr), "\n") {
		if strings.HasPrefix(l, "srun: error:") && !strings.Contains(l, "task 0: Exited with exit code") {
			return true
		}
	}
	return false
}

// Upload writes r to remotePath on the node with mode, through a task that
// copies its standard input there (created with the mode, never readable
// by others on the way).
func (s *Srun) Upload(ctx context.Context, remotePath string, r io.Reader, mode os.FileMode) error {
	line := fmt.Sprintf("umask 077 && cat > %s && chmod %o %s", shell.Quote(remotePath), mode.Perm(), shell.Quote(remotePath))
	// Writing the whole file again is safe.
	cmd := Command{Line: line, Name: "upload " + remotePath, Rerun: true}
	if s.group == nil {
		_, err := s.run(ctx, cmd, r)
		return err
	}
	if err := s.group.goneErr(s.Host); err != nil {
		return err
	}
	head, err := io.ReadAll(io.LimitReader(r, maxBatchUpload+1))
	if err != nil {
		return fmt.Errorf("reading %s: %w", cmd.Name, err)
	}
	if len(head) <= maxBatchUpload {
		_, err := s.group.runData(ctx, s, cmd, head)
		return err
	}
	release, err := s.group.slot(ctx, s.Host, cmd)
	if err != nil {
		return err
	}
	defer release()
	_, err = s.run(ctx, cmd, io.MultiReader(bytes.NewReader(head), r))
	s.group.noteGone(s.Host, err)
	return err
}

// Alive is true: every command is its own srun.
func (s *Srun) Alive() bool { return true }

// Close does nothing: no connection is held.
func (s *Srun) Close() error { return nil }
