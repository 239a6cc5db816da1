// Package suite runs the steps of a suite inside the containers: in order,
// each on all hosts or on the head, stopping at the first step that fails
// anywhere.
package suite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/docker"
	"github.com/cvs-tool/cvs/fleet"
	"github.com/cvs-tool/cvs/report"
	"github.com/cvs-tool/cvs/shell"
	"github.com/cvs-tool/cvs/transport"
)

// Result is one step on one host.
type Result struct {
	Step     string        `json:"step"`
	Host     string        `json:"host"`
	ExitCode int           `json:"exit_code"` // -1: did not finish (timeout, connection, interrupt)
	Duration time.Duration `json:"-"`
	Millis   int64         `json:"duration_ms"`
	Stdout   string        `json:"stdout"`
	Stderr   string        `json:"stderr"`
	Error    string        `json:"error,omitempty"`
	// Infra is true when the failure was not the step's own exit status
	// (lost connection, docker exec failing), which the run reports as an
	// infrastructure failure.
	Infra bool `json:"infrastructure_failure,omitempty"`
}

// Failed reports whether the step failed on the host.
func (r Result) Failed() bool { return r.ExitCode != 0 || r.Error != "" }

// Runner runs the steps of suites.
type Runner struct {
	Fleet  *fleet.Fleet
	Config *cluster.Config
	// Stdout and Stderr receive the steps' output as it arrives, each line
	// prefixed by its host; nil discards it (the results keep it).
	Stdout, Stderr io.Writer
	// RunID names this run's script files in the containers.
	RunID string
	// OnStep is called before each step starts.
	OnStep func(step cluster.Step, hosts []cluster.Host)
	// AfterStep is called with a step's results on every host it ran on.
	AfterStep func(step cluster.Step, results []Result)
	// Guard, when set, says why a host must not run another step (its
	// cluster lock was lost); the step then fails there without running.
	Guard func(host string) error
}

// stageTimeout bounds putting a suite's scripts into one container, and
// removing them again.
const stageTimeout = 2 * time.Minute

// scriptPath is where step i's script lives in the container during a run.
func (r *Runner) scriptPath(i int) string {
	return fmt.Sprintf("/tmp/cvs-%s-step%d.sh", r.RunID, i)
}

// StageError is a suite whose scripts could not be put into the containers
// (an infrastructure failure: no step ran).
type StageError struct {
	Failures map[string]error
}

func (e *StageError) Error() string {
	hosts := make([]string, 0, len(e.Failures))
	for h := range e.Failures {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	var b strings.Builder
	fmt.Fprintf(&b, "putting the step scripts into the containers failed on %d host(s):", len(hosts))
	for _, h := range hosts {
		fmt.Fprintf(&b, "\n  %s: %v", h, e.Failures[h])
	}
	return b.String()
}

// stage puts every step's script (environment included) into each
// container: over SFTP into a private (0700) folder on the host, then
// docker cp. Scripts and [env] values so never appear in a command line or
// a process list. The files are 0644 so that an image whose USER is not
// root can run them (docker cp makes them root's).
func (r *Runner) stage(ctx context.Context, s cluster.Suite) error {
	env := r.stepEnv()
	scripts := make([][]byte, len(s.Steps))
	for i, st := range s.Steps {
		scripts[i] = []byte(Script(env, st))
	}
	d := r.docker()
	errs := r.Fleet.Each(ctx, r.Config.Hosts, func(ctx context.Context, _ int, h cluster.Host, c transport.Conn) (err error) {
		ctx, cancel := context.WithTimeout(ctx, stageTimeout)
		defer cancel()
		dir, err := transport.MakeTempDir(ctx, c, "cvs-steps")
		if err != nil {
			return err
		}
		defer func() {
			if cerr := transport.RemoveTempDir(ctx, c, dir); cerr != nil && err == nil {
				err = fmt.Errorf("removing %s: %w", dir, cerr)
			}
		}()
		for i, sc := range scripts {
			file := fmt.Sprintf("%s/step%d.sh", dir, i)
			if err := c.Upload(ctx, file, bytes.NewReader(sc), 0o644); err != nil {
				return err
			}
			if _, err := c.Run(ctx, transport.Command{Line: shell.Join(d.CopyInto(file, r.Config.Container.Name, r.scriptPath(i))...)}); err != nil {
				return fmt.Errorf("docker cp into the container: %w", err)
			}
		}
		return nil
	})
	failures := map[string]error{}
	for i, err := range errs {
		if err != nil {
			failures[r.Config.Hosts[i].Name] = err
		}
	}
	if len(failures) > 0 {
		return &StageError{Failures: failures}
	}
	return nil
}

// unstage removes the step scripts from the containers.
func (r *Runner) unstage(ctx context.Context, n int) {
	ctx = context.WithoutCancel(ctx)
	r.Fleet.Each(ctx, r.Config.Hosts, func(ctx context.Context, _ int, h cluster.Host, c transport.Conn) error {
		ctx, cancel := context.WithTimeout(ctx, stageTimeout)
		defer cancel()
		// As root: docker cp made the files root's, and the image's USER
		// cannot remove them from a sticky /tmp.
		argv := r.docker().Exec(r.Config.Container.Name, docker.Root, "rm", "-f")
		for i := 0; i < n; i++ {
			argv = append(argv, r.scriptPath(i))
		}
		_, err := c.Run(ctx, transport.Command{Line: shell.Join(argv...)})
		return err
	})
}

// Run runs s's steps in order and returns every host's result of every
// step that ran. It stops after the first step that fails on any host. A
// *StageError means no step could run.
func (r *Runner) Run(ctx context.Context, s cluster.Suite) ([]Result, error) {
	if err := r.stage(ctx, s); err != nil {
		r.unstage(ctx, len(s.Steps))
		return nil, err
	}
	defer r.unstage(ctx, len(s.Steps))
	var all []Result
	var outMu sync.Mutex
	width := 0
	for _, h := range r.Config.Hosts {
		width = max(width, len(h.Name))
	}
	for stepIndex, st := range s.Steps {
		hosts := r.Config.Hosts
		if st.On == cluster.OnHead {
			hosts = []cluster.Host{r.Config.Head()}
		}
		if r.OnStep != nil {
			r.OnStep(st, hosts)
		}
		line := r.docker().ExecWatched(r.Config.Container.Name, docker.ExecOptions{}, shell.Join("bash", "-eo", "pipefail", r.scriptPath(stepIndex)))
		results := make([]Result, len(hosts))
		errs := r.Fleet.Each(ctx, hosts, func(ctx context.Context, i int, h cluster.Host, c transport.Conn) error {
			if r.Guard != nil {
				if err := r.Guard(h.Name); err != nil {
					return err
				}
			}
			ctx, cancel := context.WithTimeout(ctx, st.Timeout)
			defer cancel()
			cmd := transport.Command{Line: line, ForwardStdin: true, Name: "step " + st.Name}
			var po, pe *report.Prefix
			if r.Stdout != nil {
				po = &report.Prefix{W: r.Stdout, Host: h.Name, Width: width, Locker: &outMu}
				cmd.Stdout = po
			}
			if r.Stderr != nil {
				pe = &report.Prefix{W: r.Stderr, Host: h.Name, Width: width, Locker: &outMu}
				cmd.Stderr = pe
			}
			res, err := c.Run(ctx, cmd)
			if po != nil {
				po.Flush()
			}
			if pe != nil {
				pe.Flush()
			}
			results[i] = Result{ExitCode: res.ExitCode, Duration: res.Duration, Stdout: string(res.Stdout), Stderr: string(res.Stderr)}
			var ee *transport.ExitError
			if errors.As(err, &ee) {
				// A non-zero exit is the step's own only if its container
				// still runs: docker exec also fails when the container
				// or the daemon went away.
				if why := r.containerGone(ctx, c); why != "" {
					results[i].Infra, results[i].Error = true, why
				}
			}
			return err
		})
		failed := false
		for i, err := range errs {
			res := &results[i]
			res.Step, res.Host, res.Millis = st.Name, hosts[i].Name, res.Duration.Milliseconds()
			var ee *transport.ExitError
			var te *transport.TimeoutError
			switch {
			case err == nil:
			case errors.As(err, &ee):
				// the step's exit status; containerGone marked infra ones
			case errors.As(err, &te):
				res.ExitCode, res.Error = -1, fmt.Sprintf("timed out after %s (step timeout); the step was killed", st.Timeout)
			default:
				res.ExitCode, res.Error, res.Infra = -1, err.Error(), !errors.Is(err, context.Canceled)
			}
			failed = failed || res.Failed()
		}
		all = append(all, results...)
		if r.AfterStep != nil {
			r.AfterStep(st, results)
		}
		if failed || ctx.Err() != nil {
			break
		}
	}
	return all, nil
}

func (r *Runner) docker() docker.CLI { return docker.CLI{Sudo: r.Config.Sudo} }

// containerGone checks, after a step failed, that its container still
// runs; it returns why not, or "".
func (r *Runner) containerGone(ctx context.Context, c transport.Conn) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	name := r.Config.Container.Name
	res, err := c.Run(ctx, transport.Command{Line: shell.Join(r.docker().InspectNamed(name, "{{.State.Status}}")...)})
	state, named := docker.ParseNamed(string(res.Stdout), name)
	switch {
	case err != nil:
		return "docker exec failed and the container cannot be inspected: " + report.LastLine(string(res.Stderr)+err.Error())
	case !named:
		return fmt.Sprintf("the container %s is gone: it was removed during the step", name)
	case state != string(docker.StateRunning):
		return fmt.Sprintf("the container is %s: it stopped during the step", state)
	}
	return ""
}

// stepEnv is the environment every step gets: the cluster file's [env]
// and, for multi-node steps, where the peers are. The cvs variables win
// over [env] entries of the same name.
func (r *Runner) stepEnv() map[string]string {
	env := map[string]string{}
	for k, v := range r.Config.Env {
		env[k] = v
	}
	addrs := make([]string, len(r.Config.Hosts))
	for i, h := range r.Config.Hosts {
		addrs[i] = h.Addr
	}
	env["CVS_HOSTS"] = strings.Join(addrs, " ")
	env["CVS_HEAD"] = r.Config.Head().Addr
	env["CVS_SSHD_PORT"] = strconv.Itoa(r.Config.Container.SSHDPort)
	return env
}

// Script returns the bash script of a step: the cluster's and the step's
// environment exported first (step values win), then the step's run text.
func Script(clusterEnv map[string]string, st cluster.Step) string {
	env := map[string]string{}
	for k, v := range clusterEnv {
		env[k] = v
	}
	for k, v := range st.Env {
		env[k] = v
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "export %s=%s\n", k, shell.Quote(env[k]))
	}
	b.WriteString(st.Run)
	return b.String()
}

// Summary writes the table of results: host, step, exit, duration.
func Summary(w io.Writer, results []Result) {
	rows := make([][]string, 0, len(results))
	for _, r := range results {
		exit := fmt.Sprint(r.ExitCode)
		if r.Error != "" {
			exit += " (" + r.Error + ")"
		}
		rows = append(rows, []string{r.Step, r.Host, exit, r.Duration.Round(time.Millisecond).String()})
	}
	report.Table(w, []string{"STEP", "HOST", "EXIT", "DURATION"}, rows)
}
