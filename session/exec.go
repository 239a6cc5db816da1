package session

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/docker"
	"github.com/cvs-tool/cvs/exitcode"
	"github.com/cvs-tool/cvs/redact"
	"github.com/cvs-tool/cvs/report"
	"github.com/cvs-tool/cvs/shell"
	"github.com/cvs-tool/cvs/transport"
)

// ExecRequest is what `cvs exec` runs where.
type ExecRequest struct {
	// Hosts to run on (cluster.Config.SelectHosts).
	Hosts []cluster.Host
	// Argv is the command and its arguments, exactly as the remote command
	// receives them.
	Argv []string
	// InContainer runs it inside the configured container (docker exec),
	// where the time limit stops it too.
	InContainer bool
	// Timeout is the time limit per host.
	Timeout time.Duration
}

// ExecReport is the document `cvs exec --json` prints.
type ExecReport struct {
	Command    []string         `json:"command"`
	Hosts      []ExecHostResult `json:"hosts"`
	Handshakes int              `json:"handshakes"`
}

// ExecHostResult is one host's outcome of `cvs exec`.
type ExecHostResult struct {
	Host string `json:"host"`
	// ExitCode is the command's exit status; -1 when it did not finish
	// (connection failure, timeout, signal).
	ExitCode   int            `json:"exit_code"`
	Stdout     string         `json:"stdout"`
	Stderr     string         `json:"stderr"`
	DurationMS int64          `json:"duration_ms"`
	Error      string         `json:"error,omitempty"`
	ErrorKind  transport.Kind `json:"error_kind,omitempty"`
}

// Exec is `cvs exec`: run the command on every host of the request, one
// connection per host, nothing probed or locked. With opts.Stdout set, the
// output is streamed there (and to opts.Stderr) line by line, prefixed by
// host. The error carries the exit code: 1 when the command failed on some
// host, 3 when some host could not be connected to (the others ran it).
func Exec(ctx context.Context, cfg *cluster.Config, req ExecRequest, opts Options) (*ExecReport, error) {
	s := &Session{Config: cfg, opts: opts, log: opts.logger(), mask: redact.New(cfg.Secrets)}
	f, d, err := newFleet(cfg, opts)
	if err != nil {
		return nil, err
	}
	s.fleet, s.dialer = f, d
	s.docker.Sudo = cfg.Sudo
	defer s.Close()

	name := shell.Join(req.Argv...)
	width := 0
	for _, h := range req.Hosts {
		width = max(width, len(h.Name))
	}
	stream := opts.Stdout != nil
	var outMu sync.Mutex
	results := make([]ExecHostResult, len(req.Hosts))
	label := "running"
	if stream {
		// Streamed output lines are the progress; a progress line would
		// only tangle with them.
		label = ""
	}
	errs := s.each(ctx, label, req.Hosts, func(ctx context.Context, i int, h cluster.Host, c transport.Conn) error {
		ctx, cancel := context.WithTimeout(ctx, req.Timeout)
		defer cancel()
		cmd := transport.Command{Line: name, Name: name}
		var po, pe *report.Prefix
		var mo, me *redact.Writer
		if stream {
			po = &report.Prefix{W: opts.Stdout, Host: h.Name, Width: width, Locker: &outMu}
			pe = &report.Prefix{W: opts.Stderr, Host: h.Name, Width: width, Locker: &outMu}
			// The container's environment holds [container.env]: `cvs
			// exec env` shows its secrets masked, as a step's output.
			mo, me = s.mask.Writer(po), s.mask.Writer(pe)
			cmd.Stdout, cmd.Stderr = mo, me
		}
		var res transport.Result
		var err error
		if req.InContainer {
			// In the container: through the Engine API where it opens,
			// else docker exec; watched either way.
			if cfg.DockerAccess != cluster.DockerAccessCLI {
				if _, _, note, _ := s.openAPI(ctx, h, c); note != "" && cfg.DockerAccess == cluster.DockerAccessAPI {
					return fmt.Errorf("docker_access = \"api\", but the Docker API cannot be used: %s", note)
				}
			}
			res, err = s.dockerOn(h.Name, c).Exec(ctx, cfg.Container.Name, docker.ExecOptions{}, req.Argv,
				docker.ExecIO{Watched: true, Stdout: cmd.Stdout, Stderr: cmd.Stderr, Name: name})
		} else {
			res, err = c.Run(ctx, cmd)
		}
		if stream {
			mo.Flush()
			me.Flush()
			po.Flush()
			pe.Flush()
		}
		// A result cut at its start may begin part-way into a secret.
		masked := func(b []byte, cut int64) string {
			if cut > 0 {
				return s.mask.Truncated(string(b))
			}
			return s.mask.String(string(b))
		}
		results[i] = ExecHostResult{Host: h.Name, ExitCode: res.ExitCode, Stdout: masked(res.Stdout, res.StdoutCut),
			Stderr: masked(res.Stderr, res.StderrCut), DurationMS: res.Duration.Milliseconds()}
		return err
	})
	code := exitcode.OK
	for i, err := range errs {
		r := &results[i]
		r.Host = req.Hosts[i].Name
		if err == nil {
			continue
		}
		r.Error, r.ErrorKind = s.mask.String(err.Error()), transport.ErrorKind(err)
		var ee *transport.ExitError
		switch {
		case transport.IsConnectError(err) && r.DurationMS == 0:
			r.ExitCode = -1
			code = exitcode.Preflight
		case errors.As(err, &ee):
			r.Error = "" // the exit code says it; stderr is in the output
			code = max(code, exitcode.Failed)
		default:
			r.ExitCode = -1
			code = max(code, exitcode.Failed)
		}
	}
	rep := &ExecReport{Command: req.Argv, Hosts: results, Handshakes: s.Handshakes()}
	if code != exitcode.OK {
		return rep, exitcode.With(code, errors.New("the command failed on some host"))
	}
	return rep, nil
}
