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
//
// Every request ends with its context and has a deadline of its own (see
// callTimeout): a daemon that stops answering fails its host, it does not
// hang the run.
package dockerapi

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"strings"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/cvs-tool/cvs/docker"
	"github.com/cvs-tool/cvs/report"
	"github.com/cvs-tool/cvs/shell"
	"github.com/cvs-tool/cvs/transport"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"
)

// openTimeout bounds opening the socket and the first API call.
const openTimeout = 10 * time.Second

// callTimeout bounds one short request to the daemon (an inspect, a list,
// creating an exec, its exit status once its output is over): a daemon
// that has not answered by then has stopped answering. Starting and
// removing a container get slowFactor times as long. Long requests keep
// their own limits: a pull or a load the caller's, a step's output the
// step's time limit, a create docker.CreateTimeout.
const callTimeout = 30 * time.Second

// slowFactor is how many short requests' time starting and force-removing
// a container may take (mounts, networks, killing its processes).
const slowFactor = 4

// Engine is one host's Docker daemon through its API.
type Engine struct {
	host   string
	socket string
	c      *client.Client
	// cli is the host's docker CLI, for what the daemon cannot do alone
	// (pulling with the host's docker login).
	cli *docker.CLIEngine
	// limit bounds each short request (callTimeout).
	limit time.Duration
	// stuck is the request the daemon was found not answering; the
	// host's later requests fail at once with it.
	stuck atomic.Pointer[stuckCall]
}

// WithCLI gives the engine the host's docker CLI for pulls that need the
// host's registry credentials.
func (e *Engine) WithCLI(c docker.CLIEngine) *Engine {
	e.cli = &c
	return e
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
	var opened atomic.Bool
	c, err := client.New(
		client.WithHost("unix://"+socket),
		client.WithDialContext(func(ctx context.Context, _, _ string) (net.Conn, error) {
			conn, err := d.DialUnix(ctx, socket)
			opened.Store(opened.Load() || err == nil)
			return conn, err
		}),
	)
	if err != nil {
		return nil, "", err
	}
	e := &Engine{host: host, socket: socket, c: c, limit: callTimeout}
	v, err := c.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		c.Close()
		err = e.hostError(fmt.Sprintf("the Docker API at %s", socket), err)
		if opened.Load() {
			return nil, "", &DaemonError{Err: err}
		}
		return nil, "", err
	}
	return e, v.Version, nil
}

// DaemonError is a daemon whose socket opened but which did not answer
// (hung, or not Docker): the docker CLI would not fare better.
type DaemonError struct{ Err error }

func (e *DaemonError) Error() string { return e.Err.Error() }
func (e *DaemonError) Unwrap() error { return e.Err }

// Close closes the engine's connections to the daemon.
func (e *Engine) Close() error { return e.c.Close() }

// Socket is the daemon socket the engine talks to.
func (e *Engine) Socket() string { return e.socket }

// stuckCall is a request the daemon did not answer within its limit.
type stuckCall struct {
	what  string
	limit time.Duration
}

// within runs call, the request named what, within ctx and at most limit.
// When the limit, not ctx, ended it, the error is the host's failure
// (docker-unavailable) saying what did not answer; from then on the
// host's requests fail at once with that reason, so that a run whose
// daemon hung ends (and releases its lock) instead of waiting out each
// request's limit in turn.
func (e *Engine) within(ctx context.Context, limit time.Duration, what string, call func(ctx context.Context) error) error {
	if s := e.stuck.Load(); s != nil {
		return &transport.HostError{Host: e.host, Kind: docker.KindDockerUnavailable, Err: context.DeadlineExceeded,
			Detail: fmt.Sprintf("%s not sent: the Docker daemon stopped answering (%s) within %s", what, s.what, s.limit)}
	}
	cctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	err := call(cctx)
	if err == nil || ctx.Err() != nil || !errors.Is(cctx.Err(), context.DeadlineExceeded) {
		return err
	}
	e.stuck.CompareAndSwap(nil, &stuckCall{what: what, limit: limit})
	return &transport.HostError{Host: e.host, Kind: docker.KindDockerUnavailable, Err: err,
		Detail: fmt.Sprintf("the Docker daemon stopped answering (%s) within %s", what, limit)}
}

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
	var res client.ContainerInspectResult
	err := e.within(ctx, e.limit, "ContainerInspect "+name, func(ctx context.Context) (err error) {
		res, err = e.c.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
		return err
	})
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
	var res client.ImageInspectResult
	err := e.within(ctx, e.limit, "ImageInspect "+ref, func(ctx context.Context) (err error) {
		res, err = e.c.ImageInspect(ctx, ref)
		return err
	})
	if cerrdefs.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", e.hostError("inspecting image "+ref, err)
	}
	return res.ID, nil
}

// Exec runs argv in container and waits for it, streaming its output to
// eio.Stdout and eio.Stderr (as transport.Conn.Run does) and keeping a
// bounded copy in the Result. Watched, argv runs under transport.Watchdog
// with the exec's stdin attached: when ctx ends (time limit, Ctrl-C), cvs
// closes its end, and the watchdog kills the process group inside the
// container, as over the docker CLI. Stdin goes to the command over the
// same stream.
func (e *Engine) Exec(ctx context.Context, container string, o docker.ExecOptions, argv []string, eio docker.ExecIO) (transport.Result, error) {
	start := time.Now()
	name := eio.Name
	if name == "" {
		name = shell.Join(argv...)
	}
	if eio.Watched && eio.Stdin != nil {
		return transport.Result{ExitCode: -1}, fmt.Errorf("docker exec: a watched command cannot also read a standard input")
	}
	if eio.Watched {
		argv = []string{"sh", "-c", transport.Watchdog, "cvs", shell.Join(argv...)}
	}
	attachStdin := eio.Watched || eio.Stdin != nil
	var cr client.ExecCreateResult
	err := e.within(ctx, e.limit, "ExecCreate for "+name, func(ctx context.Context) (err error) {
		cr, err = e.c.ExecCreate(ctx, container, client.ExecCreateOptions{
			User: o.User, AttachStdin: attachStdin, AttachStdout: true, AttachStderr: true, Cmd: argv,
		})
		return err
	})
	if err != nil {
		return transport.Result{ExitCode: -1}, e.execError(ctx, name, start, err)
	}
	// Only the attach's answer is bounded: the stream it opens lasts as
	// long as the command, within ctx.
	var att client.ExecAttachResult
	err = e.within(ctx, e.limit, "ExecStart for "+name, func(ctx context.Context) (err error) {
		att, err = e.c.ExecAttach(ctx, cr.ID, client.ExecAttachOptions{})
		return err
	})
	if err != nil {
		return transport.Result{ExitCode: -1}, e.execError(ctx, name, start, err)
	}
	defer att.Close()
	if eio.Stdin != nil {
		go func() {
			att.Conn.Write(eio.Stdin)
			att.CloseWrite()
		}()
	}
	stdout, stderr := report.NewTailBuffer(transport.MaxCapture), report.NewTailBuffer(transport.MaxCapture)
	outW, errW := io.Writer(stdout), io.Writer(stderr)
	if eio.Stdout != nil {
		outW = io.MultiWriter(stdout, eio.Stdout)
	}
	if eio.Stderr != nil {
		errW = io.MultiWriter(stderr, eio.Stderr)
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
		case <-time.After(killGrace):
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
	// The output is over; a daemon that does not give the exit status
	// now has stopped answering.
	var ins client.ExecInspectResult
	err = e.within(ctx, e.limit, "ExecInspect after the output of "+name, func(ctx context.Context) (err error) {
		ins, err = e.c.ExecInspect(ctx, cr.ID, client.ExecInspectOptions{})
		return err
	})
	if err != nil {
		if ctx.Err() != nil {
			return result(-1), e.execError(ctx, name, start, err)
		}
		return result(-1), e.hostError("reading the exit status of "+name, err)
	}
	res := result(ins.ExitCode)
	if ins.ExitCode != 0 {
		return res, &transport.ExitError{Host: e.host, Cmd: name, Code: ins.ExitCode, StderrTail: report.Tail(string(res.Stderr), 5)}
	}
	return res, nil
}

// killGrace is how long a stopped command's output may take to end.
const killGrace = 5 * time.Second

// Access is "api".
func (e *Engine) Access() string { return "api" }

// Inspect reads the container named name.
func (e *Engine) Inspect(ctx context.Context, name string) (docker.Inspected, bool, error) {
	raw, err := e.InspectContainer(ctx, name)
	if err != nil || raw == nil {
		return docker.Inspected{}, false, err
	}
	return docker.ParseInspect(raw, name)
}

// MakeDir creates dir and its files with one archive upload (PUT
// /containers/{id}/archive into dir's parent), after checking that dir
// does not exist yet (a HEAD of the same endpoint): no process starts in
// the container.
func (e *Engine) MakeDir(ctx context.Context, container, dir string, mode os.FileMode, files []docker.File) error {
	err := e.within(ctx, e.limit, "ContainerStatPath "+dir, func(ctx context.Context) error {
		_, err := e.c.ContainerStatPath(ctx, container, client.ContainerStatPathOptions{Path: dir})
		return err
	})
	if err == nil {
		return fmt.Errorf("making %s in the container: it exists already", dir)
	} else if !cerrdefs.IsNotFound(err) {
		return e.apiError(ctx, "making "+dir+" in the container", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	base := path.Base(dir)
	if err := tw.WriteHeader(&tar.Header{Name: base + "/", Mode: int64(mode.Perm()), ModTime: now, Typeflag: tar.TypeDir}); err != nil {
		return err
	}
	for _, f := range files {
		if strings.Contains(f.Name, "/") {
			return fmt.Errorf("copy into the container: %q is not a plain file name", f.Name)
		}
		if err := tw.WriteHeader(&tar.Header{Name: base + "/" + f.Name, Mode: int64(f.Mode.Perm()), Size: int64(len(f.Data)), ModTime: now, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	// Without CopyUIDGID the files are root's (with it, Docker gives them
	// to the container's USER: a non-root image's user could then read
	// every step's script, and replace them).
	if err := e.within(ctx, e.limit, "CopyToContainer "+dir, func(ctx context.Context) error {
		_, err := e.c.CopyToContainer(ctx, container, client.CopyToContainerOptions{DestinationPath: path.Dir(dir), Content: &buf})
		return err
	}); err != nil {
		return e.apiError(ctx, "copying into the container", err)
	}
	return nil
}

// PsByLabel lists the containers labelled key=value.
func (e *Engine) PsByLabel(ctx context.Context, key, value string) ([]string, error) {
	var res client.ContainerListResult
	err := e.within(ctx, e.limit, "ContainerList", func(ctx context.Context) (err error) {
		res, err = e.c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", key+"="+value)})
		return err
	})
	if err != nil {
		return nil, e.apiError(ctx, "listing containers", err)
	}
	ids := make([]string, 0, len(res.Items))
	for _, c := range res.Items {
		ids = append(ids, c.ID)
	}
	return ids, nil
}

// Remove force-removes containers; one that is already gone is removed.
func (e *Engine) Remove(ctx context.Context, ids ...string) (transport.Result, error) {
	var failed []string
	for _, id := range ids {
		err := e.within(ctx, slowFactor*e.limit, "ContainerRemove "+docker.ShortID(id), func(ctx context.Context) error {
			_, err := e.c.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true})
			return err
		})
		if err != nil && !cerrdefs.IsNotFound(err) {
			if ctx.Err() != nil || isDaemonGone(err) {
				return transport.Result{ExitCode: -1}, e.apiError(ctx, "removing "+docker.ShortID(id), err)
			}
			failed = append(failed, err.Error())
		}
	}
	if len(failed) > 0 {
		msg := strings.Join(failed, "\n")
		return transport.Result{ExitCode: 1, Stderr: []byte(msg)}, &transport.ExitError{Host: e.host, Cmd: "docker rm -f " + strings.Join(ids, " "), Code: 1, StderrTail: msg}
	}
	return transport.Result{}, nil
}

// Start starts a stopped container.
func (e *Engine) Start(ctx context.Context, id string) (transport.Result, error) {
	if err := e.within(ctx, slowFactor*e.limit, "ContainerStart "+docker.ShortID(id), func(ctx context.Context) error {
		_, err := e.c.ContainerStart(ctx, id, client.ContainerStartOptions{})
		return err
	}); err != nil {
		if ctx.Err() == nil && !isDaemonGone(err) {
			return transport.Result{ExitCode: 1, Stderr: []byte(err.Error())}, &transport.ExitError{Host: e.host, Cmd: "docker start " + docker.ShortID(id), Code: 1, StderrTail: err.Error()}
		}
		return transport.Result{ExitCode: -1}, e.apiError(ctx, "starting "+docker.ShortID(id), err)
	}
	return transport.Result{}, nil
}

// apiError is a failed API call: the context's end first (a time limit is
// a *transport.TimeoutError), else the daemon's failure.
func (e *Engine) apiError(ctx context.Context, what string, err error) error {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return &transport.TimeoutError{Host: e.host, Cmd: what}
	case ctx.Err() != nil:
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
	return e.hostError(what, err)
}

// isDaemonGone reports whether err is the connection to the daemon
// failing, or the daemon not answering, rather than the daemon refusing.
func isDaemonGone(err error) bool {
	var he *transport.HostError
	return client.IsErrConnectionFailed(err) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.As(err, &he)
}

var _ docker.Engine = (*Engine)(nil)

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
