// Package suite runs the steps of a suite inside the containers: in order,
// each on all hosts or on the head, stopping at the first step that fails
// anywhere.
package suite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/docker"
	"github.com/cvs-tool/cvs/fleet"
	"github.com/cvs-tool/cvs/redact"
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
	// Stdout and Stderr are the ends of the step's output (TailLines,
	// TailBytes); StdoutCut and StderrCut count the bytes before them,
	// which only the run's logs (Log) keep.
	Stdout    string `json:"stdout"`
	Stderr    string `json:"stderr"`
	StdoutCut int64  `json:"stdout_cut,omitempty"`
	StderrCut int64  `json:"stderr_cut,omitempty"`
	// Log is the file of the run's logs that holds this step's whole
	// output on this host ("" when it is not stored).
	Log   string `json:"log,omitempty"`
	Error string `json:"error,omitempty"`
	// Infra is true when the failure was not the step's own exit status
	// (lost connection, docker exec failing), which the run reports as an
	// infrastructure failure.
	Infra bool `json:"infrastructure_failure,omitempty"`
}

// What a Result keeps of each output stream: enough for the summary, an
// error and a glance (the run's logs hold everything). A command's result
// holds up to 1 MiB a stream; kept for every step on every host until the
// run ends, that was 10 GiB for 500 hosts × 10 verbose steps.
const (
	TailLines = 20
	TailBytes = 4 << 10
)

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
	// one host (the run's logs), the file they write, and a function that
	// ends them.
	Log func(step, host string) (stdout, stderr io.Writer, file string, done func())
	// Watch, when set, gives writers that also receive a step's output on
	// one host, unprefixed.
	Watch func(step, host string) (stdout, stderr io.Writer)
	// Engine, when set, is how the runner acts on a host's Docker daemon
	// (the Engine API, say); nil is the docker CLI over c.
	Engine func(host string, c transport.Conn) docker.Engine

	mu sync.Mutex
	// imageUsers is the image's USER on each host, as staging found it.
	imageUsers map[string]string
	// cleaned are the hosts whose last step removed the scripts itself.
	cleaned map[string]bool
}

// lastStepCleanup is the last step's command where it runs as root: the
// step, then the removal of the run's scripts, so that no further docker
// exec is needed; the step's exit status is kept.
const lastStepCleanup = `bash -eo pipefail "$1"; rc=$?; rm -rf -- "$2"; exit $rc`

// asRoot reports whether step st runs as root on host (its user, or the
// image's USER as staging found it).
func (r *Runner) asRoot(st cluster.Step, host string) bool {
	u := st.User
	if u == "" {
		r.mu.Lock()
		u = r.imageUsers[host]
		r.mu.Unlock()
	}
	return u == "0" || u == "root"
}

// engine is how the runner acts on host's Docker daemon.
func (r *Runner) engine(host string, c transport.Conn) docker.Engine {
	if r.Engine != nil {
		return r.Engine(host, c)
	}
	return docker.CLIEngine{CLI: docker.CLI{Sudo: r.Config.Sudo}, Host: c}
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
	return transport.ListHostErrors(fmt.Sprintf("putting the step scripts into the containers failed on %d host(s):", len(e.Failures)), e.Failures)
}

// imageUser is the USER of the container's image on one host ("0" for
// root): from the probe, or asked of the container.
func (r *Runner) imageUser(ctx context.Context, e docker.Engine, host string) (string, error) {
	u, known := r.ImageUsers[host]
	if !known {
		name := r.Config.Container.Name
		c, ok, err := e.Inspect(ctx, name)
		if err != nil {
			return "", fmt.Errorf("reading the image's USER: %w", err)
		}
		if !ok {
			return "", fmt.Errorf("reading the image's USER: no container named %s", name)
		}
		u = c.User
	}
	if u == "" {
		return "0", nil
	}
	return u, nil
}

// stage puts every step's script (environment included, so it may hold
// secrets) into each container: into a fresh folder only root can write
// (it must not exist yet; its name holds the run's random ID), owned by
// root and mode 0600,
// then, as root, given to the user the step runs as, so no other user of
// the container can read it. The engine carries the content (SFTP and
// docker cp, or the API's archive upload), so scripts and [env] values
// never appear in a command line or a process list.
func (r *Runner) stage(ctx context.Context, s cluster.Suite) error {
	env := r.stepEnv()
	files := make([]docker.File, len(s.Steps))
	for i, st := range s.Steps {
		files[i] = docker.File{Name: path.Base(r.scriptPath(i)), Data: []byte(Script(env, st)), Mode: 0o600}
	}
	name := r.Config.Container.Name
	errs := r.Fleet.Each(ctx, r.Config.Hosts, func(ctx context.Context, _ int, h cluster.Host, c transport.Conn) (err error) {
		ctx, cancel := context.WithTimeout(ctx, stageTimeout)
		defer cancel()
		e := r.engine(h.Name, c)
		if err := e.MakeDir(ctx, name, r.scriptDir(), 0o711, files); err != nil {
			return err
		}
		byOwner := map[string][]string{}
		var owners []string
		imageUser := ""
		for _, st := range s.Steps {
			if st.User == "" {
				if imageUser, err = r.imageUser(ctx, e, h.Name); err != nil {
					return err
				}
				break
			}
		}
		r.mu.Lock()
		if r.imageUsers == nil {
			r.imageUsers = map[string]string{}
		}
		r.imageUsers[h.Name] = imageUser
		r.mu.Unlock()
		for i := range files {
			o := s.Steps[i].User
			if o == "" {
				o = imageUser
			}
			if o == "0" || o == "root" {
				continue // root's already, mode 0600
			}
			if _, ok := byOwner[o]; !ok {
				owners = append(owners, o)
			}
			byOwner[o] = append(byOwner[o], r.scriptPath(i))
		}
		for _, o := range owners {
			argv := append([]string{"sh", "-c", `chown "$0" "$@" && chmod 600 "$@"`, o}, byOwner[o]...)
			if _, err := e.Exec(ctx, name, docker.Root, argv, docker.ExecIO{}); err != nil {
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
	var hosts []cluster.Host
	r.mu.Lock()
	for _, h := range r.Config.Hosts {
		if !r.cleaned[h.Name] {
			hosts = append(hosts, h)
		}
	}
	r.mu.Unlock()
	r.Fleet.Each(ctx, hosts, func(ctx context.Context, _ int, h cluster.Host, c transport.Conn) error {
		ctx, cancel := context.WithTimeout(ctx, stageTimeout)
		defer cancel()
		_, err := r.engine(h.Name, c).Exec(ctx, r.Config.Container.Name, docker.Root, []string{"rm", "-rf", "--", r.scriptDir()}, docker.ExecIO{})
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
	// Every path a step's output takes starts here, masked: the
	// terminal, the live view, the logs, and the results the record and
	// the reports are made of.
	mask := redact.New(r.Config.Secrets)
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
		last := stepIndex == len(s.Steps)-1
		results := make([]Result, len(hosts))
		errs := r.Fleet.Each(ctx, hosts, func(ctx context.Context, i int, h cluster.Host, c transport.Conn) error {
			if r.Guard != nil {
				if err := r.Guard(h.Name); err != nil {
					return err
				}
			}
			ctx, cancel := context.WithTimeout(ctx, st.Timeout)
			defer cancel()
			e := r.engine(h.Name, c)
			eio := docker.ExecIO{Watched: true, Name: "step " + st.Name}
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
			if r.Watch != nil {
				wo, we := r.Watch(st.Name, h.Name)
				outs, errs = append(outs, wo), append(errs, we)
			}
			logFile := ""
			if r.Log != nil {
				lo, le, file, done := r.Log(st.Name, h.Name)
				if done != nil {
					defer done()
					outs, errs, logFile = append(outs, lo), append(errs, le), file
				}
			}
			var mo, me *redact.Writer
			if len(outs) > 0 {
				mo = mask.Writer(io.MultiWriter(outs...))
				eio.Stdout = mo
			}
			if len(errs) > 0 {
				me = mask.Writer(io.MultiWriter(errs...))
				eio.Stderr = me
			}
			argv := []string{"bash", "-eo", "pipefail", r.scriptPath(stepIndex)}
			cleans := last && r.asRoot(st, h.Name)
			if cleans {
				argv = []string{"sh", "-c", lastStepCleanup, "cvs-step", r.scriptPath(stepIndex), r.scriptDir()}
			}
			res, err := e.Exec(ctx, r.Config.Container.Name, docker.ExecOptions{User: st.User}, argv, eio)
			var xe *transport.ExitError
			if cleans && (err == nil || errors.As(err, &xe)) {
				r.mu.Lock()
				if r.cleaned == nil {
					r.cleaned = map[string]bool{}
				}
				r.cleaned[h.Name] = true
				r.mu.Unlock()
			}
			if mo != nil {
				mo.Flush()
			}
			if me != nil {
				me.Flush()
			}
			if po != nil {
				po.Flush()
			}
			if pe != nil {
				pe.Flush()
			}
			// Only the tails outlive this call; res goes with it. A tail
			// may begin part-way into a secret: maskTail masks its end.
			stdout, outCut := report.KeepTail(res.Stdout, TailLines, TailBytes)
			stderr, errCut := report.KeepTail(res.Stderr, TailLines, TailBytes)
			results[i] = Result{ExitCode: res.ExitCode, Duration: res.Duration, Log: logFile,
				Stdout: maskTail(mask, stdout, outCut+res.StdoutCut > 0), Stderr: maskTail(mask, stderr, errCut+res.StderrCut > 0), StdoutCut: outCut + res.StdoutCut, StderrCut: errCut + res.StderrCut}
			var ee *transport.ExitError
			if errors.As(err, &ee) {
				// A non-zero exit is the step's own only if its container
				// still runs: docker exec also fails when the container
				// or the daemon went away.
				if why := r.containerGone(ctx, e); why != "" {
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
			res.Error = mask.String(res.Error)
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

// maskTail masks a step's kept output: when its start was cut away
// (cut), the kept part may begin with the end of a secret, which is masked
// too.
func maskTail(m *redact.Masker, s string, cut bool) string {
	if cut {
		return m.Truncated(s)
	}
	return m.String(s)
}

// containerGone checks, after a step failed, that its container still
// runs; it returns why not, or "".
func (r *Runner) containerGone(ctx context.Context, e docker.Engine) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	name := r.Config.Container.Name
	c, ok, err := e.Inspect(ctx, name)
	switch {
	case err != nil:
		return "docker exec failed and the container cannot be inspected: " + report.LastLine(err.Error())
	case !ok:
		return fmt.Sprintf("the container %s is gone: it was removed during the step", name)
	case c.Status != string(docker.StateRunning):
		return fmt.Sprintf("the container is %s: it stopped during the step", c.Status)
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

// SummaryTable writes every result, one row per step and host: step,
// host, exit, duration (cvs run --verbose).
func SummaryTable(w io.Writer, results []Result) {
	rows := make([][]string, 0, len(results))
	for _, r := range results {
		rows = append(rows, []string{r.Step, r.Host, exitText(r), r.Duration.Round(time.Millisecond).String()})
	}
	report.Table(w, []string{"STEP", "HOST", "EXIT", "DURATION"}, rows)
}

func exitText(r Result) string {
	exit := fmt.Sprint(r.ExitCode)
	if r.Error != "" {
		exit += " (" + r.Error + ")"
	}
	return exit
}

// Summary writes one line per step, however many hosts ran it: how many
// hosts passed, which failed (folded: node[004,011]), the slowest host;
// under it a line for each failing host (at most report.MaxRows, then
// how many more): exit, duration, the last line of its output.
//
//	test  ok 498 · failed 2: node[004,011] · slowest 12.1s node117
//	  node004  exit 1  3.2s  E: ECC errors on GPU 3
func Summary(w io.Writer, results []Result) {
	var steps []string
	byStep := map[string][]Result{}
	width := 0
	for _, r := range results {
		if _, ok := byStep[r.Step]; !ok {
			steps = append(steps, r.Step)
			width = max(width, len(r.Step))
		}
		byStep[r.Step] = append(byStep[r.Step], r)
	}
	for _, step := range steps {
		rs := byStep[step]
		var failed []Result
		var failedHosts []string
		slowest := rs[0]
		for _, r := range rs {
			if r.Failed() {
				failed = append(failed, r)
				failedHosts = append(failedHosts, r.Host)
			}
			if r.Duration > slowest.Duration {
				slowest = r
			}
		}
		parts := []string{fmt.Sprintf("ok %d", len(rs)-len(failed))}
		if len(failed) > 0 {
			parts = append(parts, fmt.Sprintf("failed %d: %s", len(failed), report.HostList(failedHosts)))
		}
		parts = append(parts, fmt.Sprintf("slowest %s %s", slowest.Duration.Round(100*time.Millisecond), slowest.Host))
		fmt.Fprintf(w, "%-*s  %s\n", width, step, strings.Join(parts, " · "))
		rows := make([][]string, 0, len(failed))
		for _, r := range failed {
			last := report.LastLine(r.Stderr)
			if last == "" {
				last = report.LastLine(r.Stdout)
			}
			rows = append(rows, []string{"  " + r.Host, "exit " + exitText(r), r.Duration.Round(100 * time.Millisecond).String(), last})
		}
		if len(rows) > 0 {
			report.LongTable(w, nil, rows, report.MaxRows)
		}
	}
}
