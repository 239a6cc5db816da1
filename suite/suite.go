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
	// RunID names this run's script folder in the containers.
	RunID string
	// ImageUsers is the image's USER on each host where the probe saw the
	// container (docker inspect .Config.User; "" is root): whom a step
	// without a user runs as. For the other hosts (containers launched by
	// this run) the runner asks the container.
	ImageUsers map[string]string
	// OnStep is called before each step starts.
	OnStep func(step cluster.Step, hosts []cluster.Host)
	// AfterStep is called with a step's results on every host it ran on.
	AfterStep func(step cluster.Step, results []Result)
	// Guard, when set, says why a host must not run another step (its
	// cluster lock was lost); the step then fails there without running.
	Guard func(host string) error
	// Log, when set, gives the writers that store a step's whole output on
	// one host (the run's logs), and a function that ends them.
	Log func(step, host string) (stdout, stderr io.Writer, done func())
}

// stageTimeout bounds putting a suite's scripts into one container, and
// removing them again.
const stageTimeout = 2 * time.Minute

// scriptDir is the folder of this run's step scripts in the container:
// made fresh by root (mode 0711: nobody else can create or list files in
// it), removed by root after the run. The run ID makes its name
// unpredictable.
func (r *Runner) scriptDir() string { return "/tmp/cvs-" + r.RunID }

// scriptPath is where step i's script lives in the container during a run.
func (r *Runner) scriptPath(i int) string {
	return fmt.Sprintf("%s/step%d.sh", r.scriptDir(), i)
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

// imageUser is the USER of the container's image on one host ("0" for
// root): from the probe, or asked of the container.
func (r *Runner) imageUser(ctx context.Context, c transport.Conn, host string) (string, error) {
	u, known := r.ImageUsers[host]
	if !known {
		name := r.Config.Container.Name
		res, err := c.Run(ctx, transport.Command{Line: shell.Join(r.docker().InspectNamed(name, "{{.Config.User}}")...)})
		if err != nil {
			return "", fmt.Errorf("reading the image's USER: %w", err)
		}
		var named bool
		if u, named = docker.ParseNamed(string(res.Stdout), name); !named {
			return "", fmt.Errorf("reading the image's USER: no container named %s", name)
		}
	}
	if u == "" {
		return "0", nil
	}
	return u, nil
}

// stage puts every step's script (environment included, so it may hold
// secrets) into each container: over SFTP (0600) into a private (0700)
// folder on the host, docker cp into a fresh folder only root can write,
// then, as root, owned by the user the step runs as and mode 0600, so no
// other user of the container can read it. Scripts and [env] values so
// never appear in a command line or a process list.
func (r *Runner) stage(ctx context.Context, s cluster.Suite) error {
	env := r.stepEnv()
	scripts := make([][]byte, len(s.Steps))
	for i, st := range s.Steps {
		scripts[i] = []byte(Script(env, st))
	}
	d := r.docker()
	name := r.Config.Container.Name
	errs := r.Fleet.Each(ctx, r.Config.Hosts, func(ctx context.Context, _ int, h cluster.Host, c transport.Conn) (err error) {
		ctx, cancel := context.WithTimeout(ctx, stageTimeout)
		defer cancel()
		if _, err := c.Run(ctx, transport.Command{Line: shell.Join(d.Exec(name, docker.Root, "mkdir", "-m", "711", r.scriptDir())...)}); err != nil {
			return fmt.Errorf("making %s in the container: %w", r.scriptDir(), err)
		}
		dir, err := transport.MakeTempDir(ctx, c, "cvs-steps")
		if err != nil {
			return err
		}
		defer func() {
			if cerr := transport.RemoveTempDir(ctx, c, dir); cerr != nil && err == nil {
				err = fmt.Errorf("removing %s: %w", dir, cerr)
			}
		}()
		byOwner := map[string][]string{}
		var owners []string
		imageUser := ""
		for _, st := range s.Steps {
			if st.User == "" {
				if imageUser, err = r.imageUser(ctx, c, h.Name); err != nil {
					return err
				}
				break
			}
		}
		for i, sc := range scripts {
			file := fmt.Sprintf("%s/step%d.sh", dir, i)
			if err := c.Upload(ctx, file, bytes.NewReader(sc), 0o600); err != nil {
				return err
			}
			if _, err := c.Run(ctx, transport.Command{Line: shell.Join(d.CopyInto(file, name, r.scriptPath(i))...)}); err != nil {
				return fmt.Errorf("docker cp into the container: %w", err)
			}
			o := s.Steps[i].User
			if o == "" {
				o = imageUser
			}
			if _, ok := byOwner[o]; !ok {
				owners = append(owners, o)
			}
			byOwner[o] = append(byOwner[o], r.scriptPath(i))
		}
		for _, o := range owners {
			argv := append([]string{"sh", "-c", `chown "$0" "$@" && chmod 600 "$@"`, o}, byOwner[o]...)
			if _, err := c.Run(ctx, transport.Command{Line: shell.Join(d.Exec(name, docker.Root, argv...)...)}); err != nil {
				return fmt.Errorf("giving the step scripts to user %s in the container: %w", o, err)
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

// unstage removes the step scripts from the containers, as root (they
// belong to the step users; the folder is root's), also after a failure
// or an interrupt.
func (r *Runner) unstage(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	r.Fleet.Each(ctx, r.Config.Hosts, func(ctx context.Context, _ int, h cluster.Host, c transport.Conn) error {
		ctx, cancel := context.WithTimeout(ctx, stageTimeout)
		defer cancel()
		_, err := c.Run(ctx, transport.Command{Line: shell.Join(r.docker().Exec(r.Config.Container.Name, docker.Root, "rm", "-rf", "--", r.scriptDir())...)})
		return err
	})
}

// Run runs s's steps in order and returns every host's result of every
// step that ran. It stops after the first step that fails on any host. A
// *StageError means no step could run.
func (r *Runner) Run(ctx context.Context, s cluster.Suite) ([]Result, error) {
	if err := r.stage(ctx, s); err != nil {
		r.unstage(ctx)
		return nil, err
	}
	defer r.unstage(ctx)
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
		line := r.docker().ExecWatched(r.Config.Container.Name, docker.ExecOptions{User: st.User}, shell.Join("bash", "-eo", "pipefail", r.scriptPath(stepIndex)))
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
			var outs, errs []io.Writer
			if r.Stdout != nil {
				po = &report.Prefix{W: r.Stdout, Host: h.Name, Width: width, Locker: &outMu}
				outs = append(outs, po)
			}
			if r.Stderr != nil {
				pe = &report.Prefix{W: r.Stderr, Host: h.Name, Width: width, Locker: &outMu}
				errs = append(errs, pe)
			}
			if r.Log != nil {
				lo, le, done := r.Log(st.Name, h.Name)
				if done != nil {
					defer done()
					outs, errs = append(outs, lo), append(errs, le)
				}
			}
			if len(outs) > 0 {
				cmd.Stdout = io.MultiWriter(outs...)
			}
			if len(errs) > 0 {
				cmd.Stderr = io.MultiWriter(errs...)
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
