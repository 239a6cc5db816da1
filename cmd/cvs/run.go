package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/user"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/docker"
	"github.com/cvs-tool/cvs/exitcode"
	"github.com/cvs-tool/cvs/fleet"
	"github.com/cvs-tool/cvs/lifetime"
	"github.com/cvs-tool/cvs/lock"
	"github.com/cvs-tool/cvs/report"
	"github.com/cvs-tool/cvs/suite"
	"github.com/cvs-tool/cvs/transport"
)

// RunJSON is the document `cvs run --json` prints.
type RunJSON struct {
	Suite    string         `json:"suite"`
	DryRun   bool           `json:"dry_run"`
	Plan     lifetime.Plan  `json:"plan"`
	Setup    string         `json:"setup_error,omitempty"`
	Steps    []suite.Result `json:"steps"`
	Teardown string         `json:"teardown,omitempty"`
	ExitCode int            `json:"exit_code"`
}

func (a *app) runCommand() *cobra.Command {
	var dryRun, group bool
	cmd := &cobra.Command{
		Use:   "run SUITE",
		Short: "Set up the containers per lifetime, run a suite's steps inside them, tear down",
		Long: `run probes every host, decides from the container's lifetime what to do
(attach, launch, refuse), sets the containers up (launch, setup script, sshd),
runs the suite's steps in order inside them (stopping at the first step that
fails on any host), and tears down per lifetime (per_run removes what it
launched; persistent and no_launch keep the containers).

With --dry-run it prints the plan and changes nothing.

The persistent workflow: cvs run install (cold start, provisioning, install),
then cvs run test any number of times (attach to the same containers).`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return &flagError{errors.New("run needs one suite name: cvs run SUITE (cvs list shows them)")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := a.loadCluster()
			if err != nil {
				return err
			}
			s, ok := cfg.Suite(args[0])
			if !ok {
				names := cfg.SuiteNames()
				if len(names) == 0 {
					names = []string{"(none: add [suites.NAME] tables)"}
				}
				return &flagError{fmt.Errorf("no suite %q in %s; suites: %s", args[0], cfg.File, strings.Join(names, ", "))}
			}
			return a.run(cmd.Context(), cfg, s, dryRun, group)
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan and change nothing")
	cmd.Flags().BoolVarP(&group, "group", "g", false, "after each step, fold identical outputs into one block listing their hosts")
	return cmd
}

// session is one invocation that may change containers.
type session struct {
	a     *app
	cfg   *cluster.Config
	f     *fleet.Fleet
	d     *transport.Dialer
	env   lifetime.Env
	lock  *lock.Held
	facts []docker.Facts
	plan  lifetime.Plan
}

// prepare connects, takes the cluster lock when the session will change
// containers, probes every host and decides.
func (a *app) prepare(ctx context.Context, cfg *cluster.Config, restart, changes bool) (*session, error) {
	f, d, err := a.connect(cfg)
	if err != nil {
		return nil, err
	}
	s := &session{a: a, cfg: cfg, f: f, d: d}
	if changes {
		s.lock, err = lock.Acquire(ctx, f, cfg.Hosts, cfg.Container.Name, lockOwner(), a.log)
		if err != nil {
			s.close()
			var be *lock.BusyError
			if errors.As(err, &be) {
				return nil, exitcode.With(exitcode.Refused, err)
			}
			return nil, exitcode.With(exitcode.Preflight, err)
		}
	}
	facts, err := a.probeAll(ctx, cfg, f)
	if err != nil {
		s.close()
		return nil, err
	}
	s.facts = facts
	s.plan = lifetime.Decide(cfg.Container.Lifetime, facts, lifetime.Options{ClusterFile: cfg.File, Restart: restart, Image: cfg.Container.Image})
	s.env, err = a.lifetimeEnv(cfg, f)
	if err != nil {
		s.close()
		return nil, err
	}
	// A launch may pull a multi-GB image for minutes: show progress.
	s.env.OnStage = func(stage string, hosts int) func() {
		return a.progress(f, stage, hosts).Stop
	}
	return s, nil
}

func (s *session) close() {
	s.lock.Release()
	s.f.Close()
	s.d.Close()
}

// lockOwner describes this invocation for whoever finds the lock taken.
func lockOwner() string {
	who := os.Getenv("USER")
	if u, err := user.Current(); err == nil {
		who = u.Username
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("%s@%s (pid %d, since %s): %s", who, host, os.Getpid(),
		time.Now().UTC().Format(time.RFC3339), strings.Join(append([]string{"cvs"}, os.Args[1:]...), " "))
}

func newRunID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// verdictError turns a plan that does not proceed into its exit code,
// after printing the plan.
func (s *session) verdictError() error {
	switch s.plan.Verdict {
	case lifetime.Preflight:
		return exitcode.With(exitcode.Preflight, errors.New(s.plan.Reason))
	case lifetime.Refuse:
		return exitcode.With(exitcode.Refused, errors.New("refused: "+s.plan.Reason))
	}
	return nil
}

func (a *app) printPlan(p lifetime.Plan) {
	fmt.Fprintf(a.stdout, "plan (lifetime %s): %s\n  %s\n\n", p.Lifetime, p.Verdict, p.Reason)
	rows := make([][]string, 0, len(p.Hosts))
	for _, h := range p.Hosts {
		rows = append(rows, []string{h.Host, string(h.State), shortID(h.ContainerID), shortID(h.ImageID), string(h.Action), h.Note})
	}
	report.Table(a.stdout, []string{"HOST", "STATE", "CONTAINER", "IMAGE", "ACTION", "NOTE"}, rows)
	for _, w := range p.Warnings {
		fmt.Fprintf(a.stdout, "warning: %s\n", w)
	}
	fmt.Fprintln(a.stdout)
}

func (a *app) run(ctx context.Context, cfg *cluster.Config, st cluster.Suite, dryRun, group bool) error {
	s, err := a.prepare(ctx, cfg, false, !dryRun)
	if err != nil {
		return err
	}
	defer s.close()
	out := RunJSON{Suite: st.Name, DryRun: dryRun, Plan: s.plan, Steps: []suite.Result{}}
	finish := func(err error) error {
		if a.json {
			out.ExitCode = exitFor(ctx, err)
			a.printJSON(out)
			if err != nil {
				return exitcode.With(exitcode.Of(err), &reportedError{code: exitcode.Of(err)})
			}
		}
		return err
	}
	if !a.json {
		a.printPlan(s.plan)
	}
	for _, w := range s.plan.Warnings {
		a.log.Warn(w)
	}
	if err := s.verdictError(); err != nil || dryRun {
		return finish(err)
	}

	a.trackLaunches(&s.env, cfg)
	setup, err := lifetime.Apply(ctx, s.env, s.plan)
	if err != nil {
		out.Setup = err.Error()
		return finish(setupError(ctx, err))
	}
	a.log.Info("containers ready", "hosts", len(cfg.Hosts), "sshd_skipped", setup.SSHDSkipped)

	runner := &suite.Runner{Fleet: s.f, Config: cfg, RunID: s.env.RunID, OnStep: func(step cluster.Step, hosts []cluster.Host) {
		a.log.Info(fmt.Sprintf("step %q on %d host(s)", step.Name, len(hosts)))
	}}
	switch {
	case a.json:
	case group:
		runner.AfterStep = func(step cluster.Step, results []suite.Result) {
			outs := make([]report.Output, 0, len(results))
			for _, r := range results {
				status := ""
				if r.Failed() {
					status = fmt.Sprintf("exit %d", r.ExitCode)
				}
				outs = append(outs, report.Output{Host: r.Host, Text: r.Stdout + r.Stderr, Status: status})
			}
			fmt.Fprintf(a.stdout, "step %q:\n", step.Name)
			report.Group(a.stdout, outs)
		}
	default:
		runner.Stdout, runner.Stderr = a.stdout, a.stderr
	}
	results, stageErr := runner.Run(ctx, st)
	out.Steps = results
	if stageErr != nil {
		out.Setup = stageErr.Error()
	}

	cleanup := lifetime.Teardown(context.WithoutCancel(ctx), s.env, s.plan, setup)
	if cleanup != nil {
		out.Teardown = cleanup.String()
		if cleanup.OK() {
			a.log.Info(cleanup.String())
		}
	}
	if !a.json {
		fmt.Fprintln(a.stdout)
		suite.Summary(a.stdout, results)
	}
	if stageErr != nil {
		err := fmt.Errorf("%w\n%s", stageErr, cleanup.String())
		if !cleanup.OK() {
			return finish(exitcode.With(exitcode.Cleanup, err))
		}
		return finish(exitcode.With(exitcode.Partial, err))
	}
	return finish(runOutcome(ctx, results, cleanup))
}

// trackLaunches records the containers this run launches, so that a second
// Ctrl-C can name what it leaves behind.
func (a *app) trackLaunches(env *lifetime.Env, cfg *cluster.Config) {
	var mu sync.Mutex
	left := map[string]bool{}
	env.OnLaunch = func(h cluster.Host) {
		mu.Lock()
		defer mu.Unlock()
		left[h.Name] = true
	}
	env.OnRemove = func(h cluster.Host) {
		mu.Lock()
		defer mu.Unlock()
		delete(left, h.Name)
	}
	a.setLeftBehind(func() string {
		mu.Lock()
		defer mu.Unlock()
		var hosts []string
		for h := range left {
			hosts = append(hosts, h)
		}
		sort.Strings(hosts)
		if len(hosts) == 0 {
			return "no container had been launched yet; commands started on the hosts may still be running"
		}
		return fmt.Sprintf("container %q launched by this run is LEFT on %s (remove with `cvs down` or docker rm -f there)",
			cfg.Container.Name, strings.Join(hosts, ", "))
	})
}

func setupError(ctx context.Context, err error) error {
	var se *lifetime.StageError
	if errors.As(err, &se) && !se.Cleanup.OK() {
		return exitcode.With(exitcode.Cleanup, err)
	}
	if ctx.Err() != nil {
		return exitcode.With(exitcode.Interrupted, err)
	}
	return exitcode.With(exitcode.Partial, err)
}

// runOutcome is the exit code of a run whose setup succeeded.
func runOutcome(ctx context.Context, results []suite.Result, cleanup *lifetime.CleanupReport) error {
	if !cleanup.OK() {
		return exitcode.With(exitcode.Cleanup, errors.New("teardown incomplete:\n"+cleanup.String()))
	}
	if ctx.Err() != nil {
		return exitcode.With(exitcode.Interrupted, errors.New("interrupted"))
	}
	var failed []string
	infra := false
	for _, r := range results {
		if r.Failed() {
			failed = append(failed, fmt.Sprintf("%s on %s (exit %d)", r.Step, r.Host, r.ExitCode))
			infra = infra || r.Infra
		}
	}
	if len(failed) == 0 {
		return nil
	}
	code := exitcode.Failed
	if infra {
		code = exitcode.Partial
	}
	return exitcode.With(code, fmt.Errorf("step failed: %s", strings.Join(failed, ", ")))
}
