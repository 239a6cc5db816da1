// Package dockerapi talks to a host's Docker daemon through its Engine API,
// over the SSH connection cvs already holds: OpenSSH forwards a stream to
// the daemon's Unix socket (direct-streamlocal), and the official client
// (github.com/moby/moby/client) speaks HTTP over it. No docker CLI process
// starts on the host; a probe is a few milliseconds instead of three
// process starts.
//
// The errors keep the shapes the rest of cvs reads: a command that exits
// non-zero is a *transport.ExitError, a time limit a *transport.TimeoutError,
// an unusable daemon a *transport.HostError of kind docker-unavailable.
package dockerapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/cvs-tool/cvs/docker"
	"github.com/cvs-tool/cvs/report"
	"github.com/cvs-tool/cvs/shell"
	"github.com/cvs-tool/cvs/transport"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"
)

// DefaultSocket is where Docker listens unless DOCKER_HOST says otherwise.
const DefaultSocket = "/var/run/docker.sock"

// openTimeout bounds opening the socket and the first API call.
const openTimeout = 10 * time.Second

// Engine is one host's Docker daemon through its API.
type Engine struct {
	host   string
	socket string
	c      *client.Client
}

// Open connects to the daemon listening on socket on the host d reaches,
// and asks its version (which also settles the API version both sides
// speak). The error says why the API cannot be used there: the socket
// cannot be opened (the SSH user is not root or in the docker group;
// sshd forbids forwarding: AllowStreamLocalForwarding no), or the daemon
// does not answer.
func Open(ctx context.Context, d transport.UnixDialer, host, socket string) (*Engine, string, error) {
	ctx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	c, err := client.New(
		client.WithHost("unix://"+socket),
		client.WithDialContext(func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialUnix(ctx, socket)
		}),
	)
	if err != nil {
		return nil, "", err
	}
	e := &Engine{host: host, socket: socket, c: c}
	v, err := c.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		c.Close()
		return nil, "", e.hostError(fmt.Sprintf("the Docker API at %s", socket), err)
	}
	return e, v.Version, nil
}

// Close closes the engine's connections to the daemon.
func (e *Engine) Close() error { return e.c.Close() }

// Socket is the daemon socket the engine talks to.
func (e *Engine) Socket() string { return e.socket }

// hostError is an API failure as cvs reports a host's: the daemon or the
// socket could not be used.
func (e *Engine) hostError(what string, err error) error {
	var he *transport.HostError
	if errors.As(err, &he) {
		return err
	}
	return &transport.HostError{Host: e.host, Kind: docker.KindDockerUnavailable, Err: err, Detail: fmt.Sprintf("%s: %v", what, err)}
}

// InspectContainer returns docker's JSON for the container named name
// (nil when there is none), as `docker container inspect` prints it.
func (e *Engine) InspectContainer(ctx context.Context, name string) (json.RawMessage, error) {
	res, err := e.c.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, e.hostError("inspecting container "+name, err)
	}
	return res.Raw, nil
}

// ImageID returns the local ID of image ref, "" when the host lacks it.
func (e *Engine) ImageID(ctx context.Context, ref string) (string, error) {
	res, err := e.c.ImageInspect(ctx, ref)
	if cerrdefs.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", e.hostError("inspecting image "+ref, err)
	}
	return res.ID, nil
}

// Exec runs argv in container and waits for it, streaming its output to
// cmd.Stdout and cmd.Stderr (as transport.Conn.Run does) and keeping a
// bounded copy in the Result. With watched, argv runs under
// transport.Watchdog with the exec's stdin attached: when ctx ends (time
// limit, Ctrl-C), cvs closes its end, and the watchdog kills the process
// group inside the container, as over the docker CLI.
func (e *Engine) Exec(ctx context.Context, container string, o docker.ExecOptions, argv []string, watched bool, cmd transport.Command) (transport.Result, error) {
	start := time.Now()
	if watched {
		argv = []string{"sh", "-c", transport.Watchdog, "cvs", shell.Join(argv...)}
	}
	name := cmd.Name
	if name == "" {
		name = strings.Join(argv, " ")
	}
	cr, err := e.c.ExecCreate(ctx, container, client.ExecCreateOptions{
		User: o.User, AttachStdin: watched, AttachStdout: true, AttachStderr: true, Cmd: argv,
	})
	if err != nil {
		return transport.Result{ExitCode: -1}, e.execError(ctx, name, start, err)
	}
	att, err := e.c.ExecAttach(ctx, cr.ID, client.ExecAttachOptions{})
	if err != nil {
		return transport.Result{ExitCode: -1}, e.execError(ctx, name, start, err)
	}
	defer att.Close()
	stdout, stderr := report.NewTailBuffer(transport.MaxCapture), report.NewTailBuffer(transport.MaxCapture)
	outW, errW := io.Writer(stdout), io.Writer(stderr)
	if cmd.Stdout != nil {
		outW = io.MultiWriter(stdout, cmd.Stdout)
	}
	if cmd.Stderr != nil {
		errW = io.MultiWriter(stderr, cmd.Stderr)
	}
	copied := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(outW, errW, att.Reader)
		copied <- err
	}()
	result := func(code int) transport.Result {
		return transport.Result{Stdout: []byte(stdout.String()), Stderr: []byte(stderr.String()), ExitCode: code,
			Duration: time.Since(start), StdoutCut: stdout.Dropped(), StderrCut: stderr.Dropped()}
	}
	select {
	case err = <-copied:
	case <-ctx.Done():
		// End of file on the exec's stdin: the watchdog kills the
		// command's process group in the container. Then wait a little
		// for its output to end.
		att.CloseWrite()
		select {
		case <-copied:
		case <-time.After(5 * time.Second):
			att.Close()
			<-copied
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return result(-1), &transport.TimeoutError{Host: e.host, Cmd: name, After: time.Since(start)}
		}
		return result(-1), fmt.Errorf("command %s: %w", name, ctx.Err())
	}
	if err != nil {
		return result(-1), &transport.HostError{Host: e.host, Kind: transport.KindSSH, Err: err, Detail: fmt.Sprintf("reading the output of %s: %v (connection lost?)", name, err)}
	}
	ins, err := e.c.ExecInspect(context.WithoutCancel(ctx), cr.ID, client.ExecInspectOptions{})
	if err != nil {
		return result(-1), e.hostError("reading the exit status of "+name, err)
	}
	res := result(ins.ExitCode)
	if ins.ExitCode != 0 {
		return res, &transport.ExitError{Host: e.host, Cmd: name, Code: ins.ExitCode, StderrTail: report.Tail(string(res.Stderr), 5)}
	}
	return res, nil
}

// execError maps a failure to create or attach an exec: the context's end
// first, then what docker said as a docker exec would (exit 126 with the
// daemon's message: no such container, container not running).
func (e *Engine) execError(ctx context.Context, name string, start time.Time, err error) error {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return &transport.TimeoutError{Host: e.host, Cmd: name, After: time.Since(start)}
	case ctx.Err() != nil:
		return fmt.Errorf("command %s: %w", name, ctx.Err())
	case cerrdefs.IsNotFound(err) || cerrdefs.IsConflict(err):
		return &transport.ExitError{Host: e.host, Cmd: name, Code: 126, StderrTail: err.Error()}
	}
	return e.hostError("docker exec "+name, err)
}

// Answers asks the daemon the probe's Docker questions (version, the
// container, the configured image) for docker.ProbeAnswered.
func (e *Engine) Answers(ctx context.Context, version string, s docker.ProbeSpec) docker.Answers {
	a := docker.Answers{Version: version}
	a.Container, a.ContainerErr = e.InspectContainer(ctx, s.Container)
	if s.Image != "" {
		a.ImageID, a.ImageErr = e.ImageID(ctx, s.Image)
	}
	return a
}
