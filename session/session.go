// Package session is one cvs invocation against a cluster, as a library:
// open it (connect, lock, probe, decide), carry out the plan as an ordered
// list of stages (launch, provisioning, sshd, image check, the suite's
// steps, teardown), and return typed reports that cmd/cvs renders.
//
// A stage is one type in the list that Session.Stages returns: a later
// stage (obtain or push an image before launch, record the run after
// teardown) is one more type there, and `--dry-run` prints exactly the
// stages and per-host actions of that list.
package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/charmbracelet/log"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/docker"
	"github.com/cvs-tool/cvs/dockerapi"
	"github.com/cvs-tool/cvs/exitcode"
	"github.com/cvs-tool/cvs/fleet"
	"github.com/cvs-tool/cvs/images"
	"github.com/cvs-tool/cvs/lifetime"
	"github.com/cvs-tool/cvs/lock"
	"github.com/cvs-tool/cvs/provision"
	"github.com/cvs-tool/cvs/redact"
	"github.com/cvs-tool/cvs/report"
	"github.com/cvs-tool/cvs/sshd"
	"github.com/cvs-tool/cvs/suite"
	"github.com/cvs-tool/cvs/transport"
)

// The types of the documents cvs prints, re-exported so that the CLI needs
// no other package to render them.
type (
	// Plan is lifetime.Decide's answer: what a run would do on each host.
	Plan = lifetime.Plan
	// Facts are what the probe learned about one host.
	Facts = docker.Facts
	// StepResult is one step on one host.
	StepResult = suite.Result
	// Step is one step of a suite.
	Step = cluster.Step
)

// Verdicts of a Plan.
const (
	Proceed   = lifetime.Proceed
	Refuse    = lifetime.Refuse
	Preflight = lifetime.Preflight
)

// Options are how the caller (the CLI, a test) takes part in a session.
// Every field is optional.
type Options struct {
	// Log receives progress and warnings (host= fields); nil discards.
	Log *log.Logger
	// Version is cvs's version, recorded on the containers it launches.
	Version string
	// Progress starts a progress line for a wait over total hosts; the
	// session sets it as hosts finish and stops it. Nil: no progress.
	Progress func(label string, total int) *report.Progress
	// OnPlan is called with the report as soon as the image, the plan and
	// the stages are known, before any change (the CLI prints them there).
	OnPlan func(rep *RunReport)
	// Confirm, when set, is asked before a repair changes anything; false
	// stops it (nothing changed). Nil: no confirmation.
	Confirm func(rep *RunReport) bool
	// OnOpen is called with the session as soon as it is open, so that an
	// interrupt handler can ask it what is left behind (LeftBehind).
	OnOpen func(s *Session)
	// Stdout and Stderr, when set, receive the output of steps and of exec
	// as it arrives, each line prefixed by its host.
	Stdout, Stderr io.Writer
	// AfterStep is called with a step's results on every host it ran on.
	AfterStep func(step Step, results []StepResult)
	// OnStep is called as a step starts on hosts (their names).
	OnStep func(step Step, hosts []string)
	// StepOutput, when set, gives writers that also receive a step's
	// output on one host as it arrives, unprefixed (a live view).
	StepOutput func(step, host string) (stdout, stderr io.Writer)
	// Dial replaces SSH, for tests over fake hosts.
	Dial fleet.DialFunc
	// Resolver resolves the image's tag to a digest; nil: the registry
	// through images.Resolver with the cluster file's pin settings.
	Resolver *images.Resolver
	// ImageCache is where distribute = "push" keeps images; nil:
	// images.DefaultImageCacheDir.
	ImageCache *images.Cache
}

func (o Options) logger() *log.Logger {
	if o.Log == nil {
		return log.New(io.Discard)
	}
	return o.Log
}

// Session is an open cluster: connections, the lock when it may change
// containers, the facts of every host and the plan decided from them.
type Session struct {
	Config *cluster.Config
	Facts  []Facts
	Plan   Plan
	// RunID labels the containers this invocation launches (cvs.run-id), so
	// that rollback and teardown remove exactly those.
	RunID string

	opts Options
	log  *log.Logger
	// mask hides the cluster file's secrets in what the session reports
	// (errors, the record); the suite runner masks step output itself.
	mask   *redact.Masker
	docker docker.CLI
	fleet  *fleet.Fleet
	dialer *transport.Dialer
	lock   *lock.Held

	mu       sync.Mutex
	launched []bool // hosts where this run launched a container
	// launchedAt is the launch stage's time, the same label on every
	// host (so that docker run is the same line everywhere: one srun).
	launchedAt string
	// engines are the hosts' Docker Engine APIs, nil where cvs uses the
	// docker CLI (see probeHost).
	engines map[string]*dockerapi.Engine

	// What carrying out the stages produced.
	rollback bool           // a setup stage failed: teardown rolls back
	firstErr error          // the first stage failure
	cleanup  *CleanupReport // what teardown removed
	results  []StepResult   // the steps' results
	after    []containerNow // each container as the image check read it
	started  time.Time      // when the session opened
	command  string         // run, up, down: for the record
	suite    string

	// leftovers says what else this run left on the hosts (leftBehind):
	// the run ends with exit 6.
	leftovers []string
	// RecordDir is the folder of this run's record, once written.
	RecordDir string
	// Image is what the hosts launch: the configured reference, or
	// repo@digest when it was resolved (Digest).
	Image, Digest string
	// imageBytes is the compressed size of the image's layers, when the
	// registry told it while pinning (0: unknown).
	imageBytes int64
	// index lists the platforms when the image is multi-platform;
	// platform is the one the hosts launch ("": each its own, or a single
	// image).
	index    []images.PlatformManifest
	platform string
	// single is the platform a single image's configuration names ("":
	// an index, or unknown); hostPlatform is each host's platform when
	// hosts of several architectures each take their own from the index
	// (pulled, or pushed to each).
	single       string
	hostPlatform map[string]string

	// distribute = "push": the images obtained (one per platform), their
	// cache locks, and what was sent to each host.
	saved         map[string]*images.Saved // by platform ("": the only one)
	releaseImages []func()
	// entry is the cached image cvs image push named by ID: pushed as it
	// is, never obtained again.
	entry  *images.Entry
	pushes []Push

	// setupHash identifies the configured setup script ("none").
	setupHash string

	keysOnce sync.Once
	keys     sshd.Keys
	keysErr  error
}

// openOptions say what kind of session to open.
type openOptions struct {
	// lock: the session may change containers; take the cluster lock
	// before probing.
	lock bool
	// restart: cvs up --restart (lifetime.Options.Restart).
	restart bool
	// resolve: pin the image to its digest before probing (run, up).
	resolve bool
	// reprovision: cvs up --reprovision.
	reprovision bool
	// repair: cvs up --repair.
	repair bool
	// command and suite name the invocation in its run record ("run",
	// "up", "down", "image push"); "" for sessions that change nothing and
	// leave no record (status, exec).
	command, suite string
}

// open connects, takes the cluster lock when asked, probes every host and
// decides.
func open(ctx context.Context, cfg *cluster.Config, oo openOptions, opts Options) (*Session, error) {
	s := &Session{Config: cfg, RunID: newRunID(), opts: opts, log: opts.logger(),
		docker: docker.CLI{Sudo: cfg.Sudo}, launched: make([]bool, len(cfg.Hosts)),
		after: make([]containerNow, len(cfg.Hosts)), started: time.Now(), Image: cfg.Container.Image,
		mask: redact.New(cfg.Secrets)}
	f, d, err := newFleet(cfg, opts)
	if err != nil {
		return nil, err
	}
	s.fleet, s.dialer = f, d
	if opts.OnOpen != nil {
		opts.OnOpen(s)
	}
	s.command, s.suite = oo.command, oo.suite
	if err := s.prepare(ctx, oo); err != nil {
		err = s.stopped(ctx, err)
		if s.command != "" && oo.lock { // a dry run (no lock) leaves no record
			s.record(ExitCode(ctx, err), err)
		}
		s.Close()
		return nil, err
	}
	s.Plan = lifetime.Decide(cfg.Container.Lifetime, s.Facts, lifetime.Options{ClusterFile: cfg.File, Restart: oo.restart,
		Image: s.Image, Pinned: s.Digest != "" || cfg.Container.Distribute == cluster.DistributePush, Digest: s.Digest,
		SetupHash: s.setupHash, Reprovision: oo.reprovision, Repair: oo.repair,
		Config: RunConfig(cfg.Container), StrictAttach: cfg.Container.StrictAttach,
		MaxClockSkew: cfg.MaxClockSkew, HostNetwork: cfg.Container.Network == "host", SSHDPort: cfg.Container.SSHDPort,
		ImageBytes: s.imageBytes})
	if s.lock != nil && len(s.lock.Unreached) > 0 && s.Plan.Verdict == lifetime.Proceed {
		// Unreachable while the lock was taken, reachable for the probe: it
		// is not locked, so it is not changed.
		var hosts []string
		for i, h := range cfg.Hosts {
			if err, ok := s.lock.Unreached[h.Name]; ok {
				hosts = append(hosts, h.Name)
				s.Plan.Hosts[i].Note = "not locked: " + err.Error()
			}
		}
		s.Plan.Verdict = lifetime.Preflight
		s.Plan.Reason = fmt.Sprintf("the cluster lock could not be taken on %s (unreachable then); nothing was changed. Run again", report.HostList(hosts))
	}
	return s, nil
}

// prepare takes the lock when asked, pins the image, probes every host and
// hashes the setup script: everything open does before deciding.
func (s *Session) prepare(ctx context.Context, oo openOptions) error {
	if oo.lock {
		held, err := lock.Acquire(ctx, s.fleet, s.Config.Hosts, s.Config.Container.Name, lockOwner(), lock.InDir(s.Config.LockDir))
		if err != nil {
			var be *lock.BusyError
			if errors.As(err, &be) {
				return exitcode.With(exitcode.Refused, err)
			}
			return exitcode.With(exitcode.Preflight, err)
		}
		s.lock = held
	}
	if oo.resolve {
		if err := s.pin(ctx); err != nil {
			return err
		}
	}
	s.log.Debug("stage", "name", "probe", "hosts", len(s.Config.Hosts))
	if err := s.probe(ctx); err != nil {
		return err
	}
	if ctx.Err() != nil {
		// The probe turned the hosts it could not finish into "unknown";
		// that is the interrupt, not the hosts.
		return ctx.Err()
	}
	if oo.resolve {
		if err := s.choosePlatform(); err != nil {
			return err
		}
	}
	s.setupHash = "none"
	if s.Config.Container.SetupScript != cluster.SetupNone {
		script, err := provision.Script(s.Config.Container.SetupScript)
		if err != nil {
			return exitcode.With(exitcode.Usage, err)
		}
		s.setupHash = provision.Hash(script)
	}
	return nil
}

// stopped is err, or the interrupt when ctx was cancelled while the
// session was being opened: a lock or probe that failed because of Ctrl-C
// is not a host that could not be used (3).
func (s *Session) stopped(ctx context.Context, err error) error {
	if ctx.Err() == nil {
		return err
	}
	return exitcode.With(exitcode.Stopped(ctx), fmt.Errorf("%v before anything was changed", context.Cause(ctx)))
}

// newFleet reaches the hosts per the cluster's engine: SSH connections
// (with the dialer that makes them), srun tasks, or opts.Dial in tests.
func newFleet(cfg *cluster.Config, opts Options) (*fleet.Fleet, *transport.Dialer, error) {
	switch {
	case opts.Dial != nil:
		return fleet.NewWithDial(opts.Dial, cfg.MaxParallel), nil, nil
	case cfg.Engine.Kind == cluster.EngineSlurm && os.Getenv("SLURM_JOB_ID") == "":
		return nil, nil, exitcode.With(exitcode.Usage, fmt.Errorf(`%s: [engine] kind = "slurm" runs cvs's commands as steps of a Slurm allocation, and cvs is not in one (no SLURM_JOB_ID): run it inside one, e.g. salloc -N %d cvs ...`, cfg.File, len(cfg.Hosts)))
	case cfg.Engine.Kind == cluster.EngineSlurm:
		// One srun for the same command on many nodes: Slurm's tree does
		// the fan-out, so every host is worked on at once; max_parallel
		// bounds the sruns that reach one node each (uploads).
		g := &transport.SrunGroup{Bin: cfg.Engine.Srun, Parallel: cfg.MaxParallel}
		return fleet.NewWithDial(func(_ context.Context, h cluster.Host) (transport.Conn, error) {
			return g.Node(h.Name), nil
		}, len(cfg.Hosts)), nil, nil
	}
	d, err := transport.NewDialer(transport.OptionsFor(cfg))
	if err != nil {
		return nil, nil, exitcode.With(exitcode.Preflight, err)
	}
	return fleet.New(d, cfg.MaxParallel), d, nil
}

// Close releases the lock and closes every connection.
func (s *Session) Close() {
	for _, release := range s.releaseImages {
		release()
	}
	s.lock.Release()
	s.closeEngines()
	s.fleet.Close()
	if s.dialer != nil {
		s.dialer.Close()
	}
}

// Handshakes counts the SSH handshakes made so far (0 over fake hosts).
func (s *Session) Handshakes() int {
	if s.dialer == nil {
		return 0
	}
	return s.dialer.Handshakes()
}

// guard says why host must not be changed any further (its cluster lock
// was lost), or nil.
func (s *Session) guard(host string) error { return s.lock.Lost(host) }

// each runs fn on hosts, with a progress line labelled label.
func (s *Session) each(ctx context.Context, label string, hosts []cluster.Host, fn fleet.Func) []error {
	if s.opts.Progress != nil && label != "" {
		p := s.opts.Progress(label, len(hosts))
		s.fleet.Progress = p.Set
		defer func() {
			p.Stop()
			s.fleet.Progress = nil
		}()
	}
	return s.fleet.Each(ctx, hosts, fn)
}

// probe gathers every host's facts, one round trip each. A host that
// cannot be probed is unknown, never absent.
func (s *Session) probe(ctx context.Context) error {
	cfg := s.Config
	spec := docker.ProbeSpec{Container: cfg.Container.Name, Image: s.Image, SSHDPort: cfg.Container.SSHDPort, Sudo: cfg.Sudo,
		SSHDPidFile: sshd.PidFile, SSHDDir: sshd.ContainerDir, SweepTemp: s.lock != nil}
	facts := make([]Facts, len(cfg.Hosts))
	errs := s.each(ctx, "probing", cfg.Hosts, func(ctx context.Context, i int, h cluster.Host, c transport.Conn) error {
		ctx, cancel := context.WithTimeout(ctx, docker.ProbeTimeout)
		defer cancel()
		facts[i] = s.probeHost(ctx, h, c, spec)
		return nil
	})
	for i, err := range errs {
		if err != nil {
			facts[i] = docker.Unknown(cfg.Hosts[i].Name, spec, err)
		}
	}
	s.Facts = facts
	for _, fc := range facts {
		if len(fc.HostFacts.TempRemoved) > 0 {
			s.log.Warn(fmt.Sprintf("removed temporary folders an earlier cvs left (killed, or stopped by a second Ctrl-C; untouched for %s)", transport.StaleTempAge),
				"host", fc.Host, "dirs", strings.Join(fc.HostFacts.TempRemoved, " "))
		}
	}
	// One warning per kind of problem, not one per host: at 200 hosts
	// without Docker the log would drown the table.
	var kinds []transport.Kind
	byKind := map[transport.Kind][]Facts{}
	for _, fc := range facts {
		if fc.Error != "" {
			if _, ok := byKind[fc.ErrorKind]; !ok {
				kinds = append(kinds, fc.ErrorKind)
			}
			byKind[fc.ErrorKind] = append(byKind[fc.ErrorKind], fc)
		}
	}
	for _, k := range kinds {
		fs := byKind[k]
		if len(fs) == 1 {
			s.log.Warn(fs[0].Error, "host", fs[0].Host)
			continue
		}
		others := make([]string, 0, len(fs)-1)
		for _, fc := range fs[1:] {
			others = append(others, fc.Host)
		}
		s.log.Warn(fs[0].Error, "host", fs[0].Host, "same_kind_on", fmt.Sprintf("%d more hosts: %s", len(others), report.HostList(others)))
	}
	return ctx.Err()
}

// verdictError is the error of a plan that does not proceed.
func (s *Session) verdictError() error {
	switch s.Plan.Verdict {
	case lifetime.Preflight:
		return exitcode.With(exitcode.Preflight, errors.New(s.Plan.Reason))
	case lifetime.Refuse:
		return exitcode.With(exitcode.Refused, errors.New("refused: "+s.Plan.Reason))
	}
	return nil
}

// markLaunched records that this run launched (or removed again) the
// container on host i.
func (s *Session) markLaunched(i int, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.launched[i] = on
}

func (s *Session) launchedHosts() []cluster.Host {
	s.mu.Lock()
	defer s.mu.Unlock()
	var hosts []cluster.Host
	for i, on := range s.launched {
		if on {
			hosts = append(hosts, s.Config.Hosts[i])
		}
	}
	return hosts
}

// LeftBehind says what an immediate exit would leave on the hosts: the
// containers this run launched and has not removed, and the temporary
// folders it made there and has not removed (one may hold the
// [container.env] values). Safe to call from a signal handler's goroutine.
func (s *Session) LeftBehind() string {
	var notes []string
	var names []string
	for _, h := range s.launchedHosts() {
		names = append(names, h.Name)
	}
	if len(names) > 0 {
		notes = append(notes, fmt.Sprintf("container %q launched by this run is LEFT on %s (remove with `cvs down` or docker rm -f there)",
			s.Config.Container.Name, cluster.FoldHostList(names)))
	}
	if dirs := s.tempDirsLeft(); len(dirs) > 0 {
		notes = append(notes, fmt.Sprintf("temporary folders are LEFT (they may hold [container.env] values or a step's input): %s; the next cvs run, up, down or image push on a host removes them once untouched for %s; remove them sooner with rm -rf there",
			strings.Join(dirs, "; "), transport.StaleTempAge))
	}
	if len(notes) == 0 {
		return "no container had been launched yet; commands started on the hosts may still be running"
	}
	return strings.Join(notes, "; ")
}

// tempDirsLeft names the temporary folders this process made on the
// session's hosts and has not removed, "DIR on HOSTS" each, the hosts in
// the cluster file's order.
func (s *Session) tempDirsLeft() []string {
	index := map[string]int{}
	for i, h := range s.Config.Hosts {
		index[h.Name] = i
	}
	var out []string
	for _, t := range transport.TempDirsLeft() {
		var hosts []string
		for _, h := range t.Hosts {
			if _, ok := index[h]; ok {
				hosts = append(hosts, h)
			}
		}
		if len(hosts) == 0 {
			continue
		}
		sort.Slice(hosts, func(i, j int) bool { return index[hosts[i]] < index[hosts[j]] })
		out = append(out, t.Dir+" on "+cluster.FoldHostList(hosts))
	}
	return out
}

// leftBehind records something this run could not remove from the
// hosts, as the operator should read it.
func (s *Session) leftBehind(what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leftovers = append(s.leftovers, what)
}

// withLeftovers is err with what this run left on the hosts, whose exit
// code is then 6; err itself when nothing was left.
func (s *Session) withLeftovers(err error) error {
	s.mu.Lock()
	left := strings.Join(s.leftovers, "\n")
	s.mu.Unlock()
	switch {
	case left == "":
		return err
	case err == nil:
		return exitcode.With(exitcode.Cleanup, errors.New(left))
	}
	return exitcode.With(exitcode.Cleanup, fmt.Errorf("%w\n%s", err, left))
}

// sshdKeys returns the cluster's in-container sshd key pair, created on
// first use and kept on this machine.
func (s *Session) sshdKeys() (sshd.Keys, error) {
	s.keysOnce.Do(func() {
		dir, err := sshd.Dir(s.Config.File)
		if err != nil {
			s.keysErr = err
			return
		}
		s.keys, s.keysErr = sshd.LoadOrCreate(dir)
	})
	return s.keys, s.keysErr
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

// withTimeout runs fn within timeout.
func withTimeout(ctx context.Context, timeout time.Duration, fn func(ctx context.Context) (transport.Result, error)) (transport.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return fn(ctx)
}

// ExitCode is the exit code of err (see package exitcode). An interrupt
// turns a failure into 130, but never hides what a more specific code
// says: something left behind (6), a refusal (5), a host that could not be
// used (3), a usage error (2).
func ExitCode(ctx context.Context, err error) int {
	code := exitcode.Of(err)
	if ctx.Err() != nil && (code == exitcode.Failed || code == exitcode.Partial || code == exitcode.Interrupted) {
		code = exitcode.Stopped(ctx)
	}
	return code
}

// ErrorKind names how err failed for --json's error_kind (see
// transport.Kind), or "".
func ErrorKind(err error) string { return string(transport.ErrorKind(err)) }
