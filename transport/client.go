package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/cvs-tool/cvs/report"

	"golang.org/x/crypto/ssh"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/shell"
)

// Runner runs shell command lines on one host. *Client implements it over
// SSH; tests of the packages above use fakes.
type Runner interface {
	Run(ctx context.Context, cmd Command) (Result, error)
}

// Command is one remote command.
type Command struct {
	// Line is a shell command line, built with shell.Join from argv.
	Line string
	// Stdout and Stderr, when set, also receive the output as it arrives.
	Stdout, Stderr io.Writer
	// ForwardStdin gives the command the session's standard input instead
	// of /dev/null. It carries no data, only the end-of-file cvs sends to
	// stop a command, so that a `docker exec -i ... sh -c Watchdog` inside
	// can stop the command in the container too.
	ForwardStdin bool
	// Name, when set, is how errors name the command (the operator's
	// command rather than the wrapper that runs it in a container).
	Name string
	// Rerun says the command may be run again from its start when it was
	// stopped part-way through no fault of its host: a read-only command
	// (the probe, an inspect), or one whose effect ends with its process
	// (the cluster lock). Through Slurm, a batch's step is aborted when
	// the launch fails on one of its nodes; such a command is then run
	// again on the others, where any other command is reported killed
	// part-way. Its Stdout and Stderr writers see both runs; its Result
	// holds the last one. Over SSH nothing is rerun.
	Rerun bool
	// Heartbeat, when set, makes the command's standard input a heartbeat:
	// a newline every Heartbeat while the command runs, then end-of-file
	// when its context ends. The command reads the beats itself (it runs
	// without the watchdog, which would take them) and must end at
	// end-of-file. It is for the cluster lock's holder, which releases the
	// lock once the beats stop: a controller that died behind a cut link
	// is otherwise noticed by sshd only when TCP gives up, hours later.
	Heartbeat time.Duration
}

func (c Command) name() string {
	if c.Name != "" {
		return c.Name
	}
	return c.Line
}

// MaxCapture bounds what a Result keeps of each output stream: the last
// MaxCapture bytes, after a line saying how much was cut before them. The
// Command's Stdout and Stderr writers still get everything.
const MaxCapture = 1 << 20

// Result is what a remote command produced.
type Result struct {
	Stdout   []byte
	Stderr   []byte
	ExitCode int
	Duration time.Duration
	// StdoutCut and StderrCut count the bytes cut from the front of
	// Stdout and Stderr (see MaxCapture).
	StdoutCut, StderrCut int64
}

// Client is an open SSH connection to one host, reused for every command
// of an invocation.
type Client struct {
	Host cluster.Host
	ssh  *ssh.Client

	closeOnce sync.Once
	done      chan struct{}
}

// stderrTailLines is how much of stderr an ExitError carries.
const stderrTailLines = 20

// killGrace is how long Run waits, after killing a timed-out command, for
// the remote side to report that it ended.
const killGrace = 5 * time.Second

// watchdog wraps every remote command. sshd does not stop a command when
// the client goes away, so the wrapper watches its standard input: when cvs
// closes it (the time limit passed, or the operator pressed Ctrl-C) while
// the command still runs, it kills the command's whole process group. A
// command that ends by itself is untouched, daemons it started included.
//
// Run as `sh -c Watchdog cvs LINE`; it works in any POSIX sh with cat and
// kill, so it also wraps commands inside containers.
const Watchdog = `exec 3<&0 </dev/null; sh -c "$1" 3<&- & c=$!; ` +
	`{ cat <&3 >/dev/null; kill -0 $c 2>/dev/null && kill -KILL 0; } >/dev/null 2>&1 & ` +
	`wait $c`

// watchdogStdin is Watchdog with the command's stdin left on the session.
const watchdogStdin = `exec 3<&0 </dev/null; sh -c "$1" <&3 3<&- & c=$!; ` +
	`{ cat <&3 >/dev/null; kill -0 $c 2>/dev/null && kill -KILL 0; } >/dev/null 2>&1 & ` +
	`wait $c`

// watchdog is the wrapper a command runs under: Watchdog, or
// watchdogStdin for a command that forwards stdin.
func watchdog(forwardStdin bool) string {
	if forwardStdin {
		return watchdogStdin
	}
	return Watchdog
}

// runsAs is the command line that runs cmd on a host: under its watchdog,
// or, for a command that reads heartbeats, plainly (the watchdog would
// read them too).
func runsAs(cmd Command) string {
	if cmd.Heartbeat > 0 {
		return shell.Join("sh", "-c", cmd.Line)
	}
	return shell.Join("sh", "-c", watchdog(cmd.ForwardStdin), "cvs", cmd.Line)
}

// beatingStdin is a command's stdin that carries heartbeats: Close may come
// from another goroutine than the beats (the x/crypto/ssh channel does not
// allow a Write and a Close at once), and no beat is written after it.
type beatingStdin struct {
	mu     sync.Mutex
	w      io.WriteCloser
	closed bool
}

func (b *beatingStdin) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	return b.w.Close()
}

// beat writes a newline every interval until stop is closed, stdin is
// closed, or a write fails (the session or srun is gone).
func (b *beatingStdin) beat(interval time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			b.mu.Lock()
			var err error
			if !b.closed {
				_, err = b.w.Write([]byte{'\n'})
			}
			done := b.closed || err != nil
			b.mu.Unlock()
			if done {
				return
			}
		}
	}
}

// captured is a command's two output streams as a Result keeps them (the
// last MaxCapture bytes of each).
type captured struct{ stdout, stderr *report.TailBuffer }

func newCaptured() captured {
	return captured{report.NewTailBuffer(MaxCapture), report.NewTailBuffer(MaxCapture)}
}

// result is the Result of a command that started at start and exited
// with code.
func (c captured) result(code int, start time.Time) Result {
	return Result{Stdout: []byte(c.stdout.String()), Stderr: []byte(c.stderr.String()), ExitCode: code, Duration: time.Since(start),
		StdoutCut: c.stdout.Dropped(), StderrCut: c.stderr.Dropped()}
}

// Run runs cmd.Line on the host and waits for it, at most until ctx ends;
// then the remote command is killed and a *TimeoutError (deadline) or the
// context's error (cancellation) is returned. A non-zero exit is an
// *ExitError, returned with the Result.
func (c *Client) Run(ctx context.Context, cmd Command) (Result, error) {
	start := time.Now()
	sess, err := c.ssh.NewSession()
	if err != nil {
		return Result{}, &HostError{Host: c.Host.Name, Kind: KindSSH, Err: err, Detail: fmt.Sprintf("opening a session: %v (connection lost?)", err)}
	}
	defer sess.Close()
	pipe, err := sess.StdinPipe()
	if err != nil {
		return Result{}, &HostError{Host: c.Host.Name, Kind: KindSSH, Err: err}
	}
	stdin := &beatingStdin{w: pipe}
	out := newCaptured()
	sess.Stdout = tee(out.stdout, cmd.Stdout)
	sess.Stderr = tee(out.stderr, cmd.Stderr)
	result := func(code int) Result { return out.result(code, start) }
	if err := sess.Start(runsAs(cmd)); err != nil {
		return Result{}, &HostError{Host: c.Host.Name, Kind: KindSSH, Err: err, Detail: fmt.Sprintf("starting the command: %v", err)}
	}
	waitc := make(chan error, 1)
	go func() { waitc <- sess.Wait() }()
	if cmd.Heartbeat > 0 {
		stop := make(chan struct{})
		defer close(stop)
		go stdin.beat(cmd.Heartbeat, stop)
	}

	var werr error
	select {
	case werr = <-waitc:
	case <-ctx.Done():
		stdin.Close() // the watchdog kills the process group
		select {
		case <-waitc:
		case <-time.After(killGrace):
			// Something escaped the process group and holds the output
			// open: close the channel, so that the output copies end
			// before the buffers are read.
			sess.Close()
			<-waitc
		}
		return result(-1), stopped(ctx, c.Host.Name, cmd, start)
	}
	res := result(0)
	var ee *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case werr == nil:
		return res, nil
	case errors.As(werr, &ee):
		res.ExitCode = ee.ExitStatus()
		xe := &ExitError{Host: c.Host.Name, Cmd: cmd.name(), Code: res.ExitCode, StderrTail: report.Tail(string(res.Stderr), stderrTailLines)}
		if ee.Signal() != "" {
			res.ExitCode, xe.Code, xe.Signal = -1, -1, ee.Signal()
		}
		return res, xe
	case errors.As(werr, &missing):
		res.ExitCode = -1
		return res, &HostError{Host: c.Host.Name, Kind: KindSSH, Err: werr, Detail: "the command ended without an exit status (connection lost?)"}
	default:
		res.ExitCode = -1
		return res, &HostError{Host: c.Host.Name, Kind: KindSSH, Err: werr, Detail: fmt.Sprintf("running the command: %v", werr)}
	}
}

func tee(buf io.Writer, w io.Writer) io.Writer {
	if w == nil {
		return buf
	}
	return io.MultiWriter(buf, w)
}

// Alive reports whether the connection is still open.
func (c *Client) Alive() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// SSH returns the underlying connection (for SFTP).
func (c *Client) SSH() *ssh.Client { return c.ssh }

// Close closes the connection. It is safe to call more than once.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.done)
		err = c.ssh.Close()
	})
	return err
}

// keepAlive probes the connection; after three unanswered probes it closes
// it, so that commands on a dead host fail instead of hanging.
func (c *Client) keepAlive(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	missed := 0
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		replied := make(chan error, 1)
		go func() {
			_, _, err := c.ssh.SendRequest("keepalive@openssh.com", true, nil)
			replied <- err
		}()
		select {
		case <-c.done:
			return
		case err := <-replied:
			if err != nil {
				c.Close()
				return
			}
			missed = 0
		case <-time.After(every):
			missed++
			if missed >= 3 {
				c.Close()
				return
			}
		}
	}
}

// Conn is an open connection to one host as the layers above use it:
// commands, uploads, and whether it still lives. *Client implements it;
// unit tests of those layers use fakes.
type Conn interface {
	Runner
	Upload(ctx context.Context, remotePath string, r io.Reader, mode os.FileMode) error
	Alive() bool
	Close() error
}

var _ Conn = (*Client)(nil)

// HostName is the name of the host c reaches.
func (c *Client) HostName() string { return c.Host.Name }

// UnixDialer is a connection that can open a stream to a Unix socket on
// its host. *Client does, through OpenSSH's direct-streamlocal channel
// (sshd opens the socket as the SSH user); fakes of unit tests do not.
type UnixDialer interface {
	DialUnix(ctx context.Context, path string) (net.Conn, error)
}

// DialUnix opens a stream to the Unix socket path on the host.
func (c *Client) DialUnix(ctx context.Context, path string) (net.Conn, error) {
	conn, err := c.ssh.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, &HostError{Host: c.Host.Name, Kind: KindSSH, Err: err, Detail: fmt.Sprintf("opening %s through the SSH connection: %v", path, err)}
	}
	return conn, nil
}
