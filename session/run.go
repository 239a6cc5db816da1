package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/exitcode"
	"github.com/cvs-tool/cvs/history"
	"github.com/cvs-tool/cvs/lifetime"
	"github.com/cvs-tool/cvs/redact"
	"github.com/cvs-tool/cvs/report"
	"github.com/cvs-tool/cvs/suite"
)

// RunReport is the document `cvs run --json` prints (and `cvs up`'s
// result). Fields are only ever added.
type RunReport struct {
	Suite  string `json:"suite"`
	DryRun bool   `json:"dry_run"`
	// Image is the configured image, EffectiveImage the image after the
	// site's rewrite rules, LaunchedImage what the hosts launch
	// (repo@digest when pinned), Digest the resolved manifest digest.
	Image          string `json:"image"`
	Site           string `json:"site,omitempty"`
	EffectiveImage string `json:"effective_image"`
	LaunchedImage  string `json:"launched_image"`
	Digest         string `json:"digest,omitempty"`
	Plan           Plan   `json:"plan"`
	// Stages are the stages of the run in order, with the per-host actions
	// each takes and how it went.
	Stages   []StageReport  `json:"stages"`
	Setup    string         `json:"setup_error,omitempty"`
	Steps    []suite.Result `json:"steps"`
	Teardown string         `json:"teardown,omitempty"`
	// Pushes is what distribute = "push" sent to each host.
	Pushes []Push `json:"pushes,omitempty"`
	// Record is the folder of the run's record (cvs history show).
	Record   string `json:"record,omitempty"`
	ExitCode int    `json:"exit_code"`
}

// stepsStage runs a suite's steps inside the containers.
type stepsStage struct{ suite cluster.Suite }

func (st stepsStage) Name() string { return fmt.Sprintf("suite %q", st.suite.Name) }

func (st stepsStage) Actions(s *Session) []HostAction {
	var out []HostAction
	for _, step := range st.suite.Steps {
		hosts := s.Config.Hosts
		if step.On == cluster.OnHead {
			hosts = []cluster.Host{s.Config.Head()}
		}
		for _, h := range hosts {
			out = append(out, HostAction{Host: h.Name, Action: "step " + step.Name})
		}
	}
	return out
}

func (st stepsStage) Run(ctx context.Context, s *Session) error {
	users := map[string]string{}
	for i, f := range s.Facts {
		if s.Plan.Hosts[i].Action == lifetime.Attach {
			users[f.Host] = f.Container.User
		}
	}
	r := &suite.Runner{Fleet: s.fleet, Config: s.Config, RunID: s.RunID, Guard: s.guard, ImageUsers: users, Engine: s.dockerOn,
		Stdout: s.opts.Stdout, Stderr: s.opts.Stderr, AfterStep: s.opts.AfterStep,
		Watch: s.opts.StepOutput,
		OnStep: func(step cluster.Step, hosts []cluster.Host) {
			s.log.Info(fmt.Sprintf("step %q on %d host(s)", step.Name, len(hosts)))
			if s.opts.OnStep != nil {
				names := make([]string, len(hosts))
				for i, h := range hosts {
					names[i] = h.Name
				}
				s.opts.OnStep(step, names)
			}
		}}
	if logs, err := history.NewLogs(s.RunID); err == nil {
		r.Log = func(step, host string) (io.Writer, io.Writer, string, func()) {
			o, e, done, err := logs.Open(step, host)
			if err != nil {
				s.log.Warn("this step's output is not stored", "host", host, "err", err)
				return nil, nil, "", nil
			}
			return o, e, logs.File(step, host), done
		}
	}
	results, err := r.Run(ctx, st.suite)
	s.results = results
	return err
}

// Run is `cvs run`: open the cluster (taking the lock unless dryRun),
// decide, and unless the plan refuses or dryRun is set, carry out the
// stages of a run of st. The error carries the exit code (package
// exitcode); the report is complete either way, except when the cluster
// could not be opened at all (nil report).
func Run(ctx context.Context, cfg *cluster.Config, st cluster.Suite, dryRun bool, opts Options) (*RunReport, error) {
	return carryOut(ctx, cfg, &st, openOptions{lock: !dryRun, resolve: true, command: "run", suite: st.Name}, dryRun, opts)
}

// UpOptions are cvs up's flags.
type UpOptions struct {
	// Restart: start the containers when they are stopped on every host.
	Restart bool
	// Reprovision: run the setup script again in running containers that
	// were never provisioned, or with another script.
	Reprovision bool
	// Repair: bring a persistent set that is not whole back (start the
	// stopped containers, launch where really absent); running ones are
	// never touched.
	Repair bool
	DryRun bool
}

// Up is `cvs up`: the set-up half of a run (attach or cold-start, sshd)
// for a persistent or no_launch cluster, with the repairs UpOptions ask.
func Up(ctx context.Context, cfg *cluster.Config, o UpOptions, opts Options) (*RunReport, error) {
	if cfg.Container.Lifetime == cluster.LifetimePerRun {
		return nil, exitcode.With(exitcode.Usage, errors.New(`up is for lifetime "persistent" or "no_launch": a per_run container lives for one cvs run`))
	}
	return carryOut(ctx, cfg, nil, openOptions{lock: !o.DryRun, restart: o.Restart, resolve: true,
		reprovision: o.Reprovision, repair: o.Repair, command: "up"}, o.DryRun, opts)
}

func carryOut(ctx context.Context, cfg *cluster.Config, st *cluster.Suite, oo openOptions, dryRun bool, opts Options) (_ *RunReport, err error) {
	s, err := open(ctx, cfg, oo, opts)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	defer func() { err = maskError(s.mask, err) }()
	stages := Stages(st)
	rep := &RunReport{DryRun: dryRun, Image: cfg.Container.ConfiguredImage, Site: cfg.Site, EffectiveImage: cfg.Container.Image,
		LaunchedImage: s.Image, Digest: s.Digest,
		Plan: s.Plan, Stages: s.describe(stages), Steps: []suite.Result{}}
	if st != nil {
		rep.Suite = st.Name
	}
	if opts.OnPlan != nil {
		opts.OnPlan(rep)
	}
	for _, w := range s.Plan.Warnings {
		s.log.Warn(w)
	}
	if err := s.verdictError(); err == nil && !dryRun && oo.repair && opts.Confirm != nil && changesAnything(s.Plan) && !opts.Confirm(rep) {
		return rep, exitcode.With(exitcode.Refused, errors.New("the repair was not confirmed; nothing was changed"))
	}
	if err := s.verdictError(); err != nil || dryRun {
		if err != nil && !dryRun {
			s.record(ExitCode(ctx, err), err)
			rep.Record = s.RecordDir
		}
		return rep, err
	}
	s.recordStart()
	err = s.apply(ctx, stages, rep.Stages)
	var se *StageError
	var sue *suite.StageError
	if errors.As(err, &se) || errors.As(err, &sue) {
		rep.Setup = s.mask.String(err.Error())
	}
	if s.results != nil {
		rep.Steps = s.results
	}
	if s.cleanup != nil {
		rep.Teardown = s.cleanup.String()
		if s.cleanup.OK() {
			s.log.Info(s.cleanup.String())
		}
	}
	rep.Record = s.RecordDir
	rep.Pushes = s.pushes
	rep.LaunchedImage = s.Image
	return rep, s.outcome(ctx, err)
}

// changesAnything reports whether a plan does more than attach.
func changesAnything(p Plan) bool {
	for _, h := range p.Hosts {
		if h.Action != lifetime.Attach && h.Action != lifetime.Skip {
			return true
		}
	}
	return false
}

// outcome is the exit code of a run whose plan proceeded, given the first
// stage error: 6 when something was left on the hosts.
func (s *Session) outcome(ctx context.Context, err error) error {
	return s.withLeftovers(s.stagesOutcome(ctx, err))
}

// stagesOutcome is outcome, from the stages' results alone.
func (s *Session) stagesOutcome(ctx context.Context, err error) error {
	var se *StageError
	var sue *suite.StageError
	switch {
	case errors.As(err, &se) && s.rollback:
		// A setup stage failed; its error carries the rollback's report.
		if !se.Cleanup.OK() {
			return exitcode.With(exitcode.Cleanup, err)
		}
		if ctx.Err() != nil {
			return exitcode.With(exitcode.Interrupted, err)
		}
		return exitcode.With(exitcode.Partial, err)
	case errors.As(err, &sue):
		err := fmt.Errorf("%w\n%s", err, s.cleanup.String())
		if !s.cleanup.OK() {
			return exitcode.With(exitcode.Cleanup, err)
		}
		return exitcode.With(exitcode.Partial, err)
	}
	if !s.cleanup.OK() {
		return exitcode.With(exitcode.Cleanup, errors.New("teardown incomplete:\n"+s.cleanup.String()))
	}
	if ctx.Err() != nil {
		return exitcode.With(exitcode.Interrupted, errors.New("interrupted"))
	}
	// One "STEP on HOSTS (exit N)" for the hosts a step failed on alike.
	type failure struct {
		step string
		exit int
	}
	var failures []failure
	hosts := map[failure][]string{}
	infra := false
	for _, r := range s.results {
		if r.Failed() {
			f := failure{r.Step, r.ExitCode}
			if _, ok := hosts[f]; !ok {
				failures = append(failures, f)
			}
			hosts[f] = append(hosts[f], r.Host)
			infra = infra || r.Infra
		}
	}
	var failed []string
	for _, f := range failures {
		failed = append(failed, fmt.Sprintf("%s on %s (exit %d)", f.step, report.HostList(hosts[f]), f.exit))
	}
	if len(failed) > 0 {
		code := exitcode.Failed
		if infra {
			code = exitcode.Partial
		}
		return exitcode.With(code, fmt.Errorf("step failed: %s", strings.Join(failed, ", ")))
	}
	return err
}

// StepOutput is a step's output on one host, as --group shows it: the
// result's tails when nothing was cut from them, else the whole output
// read back from the run's logs (stdout and stderr interleaved).
func StepOutput(r StepResult) string {
	if r.StdoutCut+r.StderrCut > 0 && r.Log != "" {
		if text, err := history.LogText(r.Log); err == nil {
			return text
		}
	}
	return r.Stdout + r.Stderr
}

// Summary writes the step results: one line per step with the failing
// hosts under it (suite.Summary), or with verbose every step and host
// (suite.SummaryTable).
func Summary(w io.Writer, results []StepResult, verbose bool) {
	if verbose {
		suite.SummaryTable(w, results)
		return
	}
	suite.Summary(w, results)
}

// maskedError is an error whose message shows no secret; the error it
// stands for is still there for errors.As (its exit code, its type).
type maskedError struct {
	err error
	msg string
}

func (e *maskedError) Error() string { return e.msg }
func (e *maskedError) Unwrap() error { return e.err }

// maskError returns err with the secrets of m masked in its message.
func maskError(m *redact.Masker, err error) error {
	if err == nil {
		return nil
	}
	if msg := m.String(err.Error()); msg != err.Error() {
		return &maskedError{err: err, msg: msg}
	}
	return err
}
