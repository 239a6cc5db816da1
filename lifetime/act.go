package lifetime

import (
	"context"
	"errors"
	"fmt"
	"github.com/cvs-tool/cvs/report"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/charmbracelet/log"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/docker"
	"github.com/cvs-tool/cvs/fleet"
	"github.com/cvs-tool/cvs/transport"
)

// Env is what acting on a plan needs.
type Env struct {
	Fleet   *fleet.Fleet
	Config  *cluster.Config
	Log     *log.Logger
	Version string
	// RunID identifies this invocation's containers (label cvs.run-id), so
	// that cleanup after a failed launch removes only what this run made.
	RunID string
	// Provision runs the setup script in a freshly launched container.
	Provision func(ctx context.Context, c transport.Conn, h cluster.Host) (transport.Result, error)
	// OnLaunch, when set, is told of every container this run launched, as
	// soon as docker run returns (for "left behind" reports on a hard exit).
	OnLaunch func(h cluster.Host)
	// OnStage, when set, is called as each stage starts (launch, provisioning,
	// sshd) with the number of hosts; the function it returns is called
	// when the stage ends. The CLI draws its progress line with it.
	OnStage func(stage string, hosts int) (done func())
	// OnRemove, when set, is told of every container of this run removed
	// again (rollback, per_run teardown).
	OnRemove func(h cluster.Host)
	// StartSSHD makes sure sshd listens in the container; it reports
	// whether it was already listening (and nothing was done).
	StartSSHD func(ctx context.Context, c transport.Conn, h cluster.Host) (already bool, err error)
}

// LabelRunID marks the containers of one invocation.
const LabelRunID = "cvs.run-id"

// removeTimeout bounds one docker rm -f.
const removeTimeout = 2 * time.Minute

// Setup is the containers as set up for a run: which hosts got a container
// from this run (the ones per_run removes afterwards).
type Setup struct {
	Launched []bool
	// SSHDSkipped counts the hosts where sshd already listened.
	SSHDSkipped int
}

// StageError is a setup stage that failed on some hosts after changes
// began (exit 4). Cleanup says what was rolled back and whether all of it
// went; a failed cleanup means exit 6.
type StageError struct {
	Stage    string
	Failures []HostFailure
	Cleanup  *CleanupReport
}

// HostFailure is one host's failure in a stage.
type HostFailure struct {
	Host   string
	Err    error
	Output string // the tail of the host's output, when there is one
}

func (e *StageError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s failed on %d host(s):", e.Stage, len(e.Failures))
	for _, f := range e.Failures {
		// Errors from transport, provision and sshd name their host already.
		if msg := f.Err.Error(); strings.HasPrefix(msg, f.Host+":") || strings.HasPrefix(msg, f.Host+" ") {
			fmt.Fprintf(&b, "\n  %s", msg)
		} else {
			fmt.Fprintf(&b, "\n  %s: %s", f.Host, msg)
		}
		if f.Output != "" {
			for _, l := range strings.Split(strings.TrimRight(f.Output, "\n"), "\n") {
				fmt.Fprintf(&b, "\n    | %s", l)
			}
		}
	}
	if e.Cleanup != nil {
		b.WriteString("\n" + e.Cleanup.String())
	}
	return b.String()
}

// CleanupReport says what removing this run's containers did.
type CleanupReport struct {
	Removed []string
	Failed  []HostFailure
}

// OK reports whether everything was removed.
func (r *CleanupReport) OK() bool { return r == nil || len(r.Failed) == 0 }

func (r *CleanupReport) String() string {
	if r == nil {
		return ""
	}
	var b strings.Builder
	if len(r.Removed) > 0 {
		fmt.Fprintf(&b, "removed the containers this run launched on: %s", strings.Join(r.Removed, ", "))
	}
	for _, f := range r.Failed {
		if b.Len() > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "LEFT BEHIND on %s: %v (remove it with docker rm -f on that host)", f.Host, f.Err)
	}
	return b.String()
}

// Apply carries out a Proceed plan: replace, launch or start containers,
// provision the fresh ones, start sshd everywhere, and check that every host
// runs the same image. When a stage fails on any host, the containers this
// run launched are removed again (so a persistent cold start goes back to
// absent everywhere, never to a half-provisioned cluster) and a *StageError
// is returned.
func Apply(ctx context.Context, env Env, plan Plan) (*Setup, error) {
	hosts := env.Config.Hosts
	s := &Setup{Launched: make([]bool, len(hosts))}
	var mu sync.Mutex
	var failures []HostFailure
	fail := func(h cluster.Host, err error, res transport.Result) {
		mu.Lock()
		defer mu.Unlock()
		failures = append(failures, HostFailure{Host: h.Name, Err: err, Output: report.Tail(string(res.Stdout)+string(res.Stderr), 15)})
	}
	stage := func(name string, fn func(ctx context.Context, i int, h cluster.Host, c transport.Conn)) error {
		failures = nil
		if env.OnStage != nil {
			done := env.OnStage(name, len(hosts))
			defer done()
		}
		errs := env.Fleet.Each(ctx, hosts, func(ctx context.Context, i int, h cluster.Host, c transport.Conn) error {
			fn(ctx, i, h, c)
			return nil
		})
		for i, err := range errs {
			if err != nil {
				fail(hosts[i], err, transport.Result{})
			}
		}
		if len(failures) == 0 {
			return nil
		}
		sort.Slice(failures, func(a, b int) bool { return failures[a].Host < failures[b].Host })
		se := &StageError{Stage: name, Failures: failures}
		se.Cleanup = Rollback(context.WithoutCancel(ctx), env, s)
		return se
	}

	ct := env.Config.Container
	err := stage("launch", func(ctx context.Context, i int, h cluster.Host, c transport.Conn) {
		hp := plan.Hosts[i]
		switch hp.Action {
		case Replace:
			id := env.factsID(plan, i)
			env.Log.Info("removing the container an earlier per_run left", "host", h.Name, "id", docker.ShortID(id))
			if res, err := run(ctx, c, removeTimeout, append(docker.Docker(env.Config.Sudo), "rm", "-f", id)...); err != nil {
				fail(h, fmt.Errorf("removing the earlier per_run container: %w", err), res)
				return
			}
			fallthrough
		case Launch:
			env.Log.Info("launching", "host", h.Name, "image", ct.Image)
			res, err := env.launch(ctx, c, h, plan.Lifetime)
			if err != nil {
				fail(h, err, res)
				return
			}
			mu.Lock()
			s.Launched[i] = true
			mu.Unlock()
			if env.OnLaunch != nil {
				env.OnLaunch(h)
			}
		case Start:
			env.Log.Info("starting the stopped container", "host", h.Name)
			if res, err := run(ctx, c, ct.PullTimeout, append(docker.Docker(env.Config.Sudo), "start", ct.Name)...); err != nil {
				fail(h, fmt.Errorf("docker start: %w", err), res)
			}
		}
	})
	if err != nil {
		return s, err
	}
	if plan.Provision {
		err = stage("provisioning (setup_script)", func(ctx context.Context, i int, h cluster.Host, c transport.Conn) {
			if !s.Launched[i] {
				return
			}
			env.Log.Info("provisioning", "host", h.Name)
			// provision's errors carry the output's tail themselves.
			if _, err := env.Provision(ctx, c, h); err != nil {
				fail(h, err, transport.Result{})
			}
		})
		if err != nil {
			return s, err
		}
	}
	err = stage("sshd", func(ctx context.Context, i int, h cluster.Host, c transport.Conn) {
		already, err := env.StartSSHD(ctx, c, h)
		if err != nil {
			fail(h, err, transport.Result{})
			return
		}
		if already {
			mu.Lock()
			s.SSHDSkipped++
			mu.Unlock()
			env.Log.Info(fmt.Sprintf("sshd already listens on port %d; setup skipped", ct.SSHDPort), "host", h.Name)
		} else {
			env.Log.Info(fmt.Sprintf("sshd started on port %d", ct.SSHDPort), "host", h.Name)
		}
	})
	if err != nil {
		return s, err
	}
	return s, env.checkImages(ctx, s)
}

// checkImages reads the image ID every container runs after setup and
// fails when they differ (a registry that served different content to
// different hosts, say).
func (env Env) checkImages(ctx context.Context, s *Setup) error {
	hosts := env.Config.Hosts
	ids := make([]string, len(hosts))
	errs := env.Fleet.Each(ctx, hosts, func(ctx context.Context, i int, h cluster.Host, c transport.Conn) error {
		res, err := run(ctx, c, time.Minute, append(docker.Docker(env.Config.Sudo), "container", "inspect", "--format", "{{.Image}}", env.Config.Container.Name)...)
		ids[i] = strings.TrimSpace(string(res.Stdout))
		return err
	})
	var failures []HostFailure
	byID := map[string][]string{}
	for i, err := range errs {
		if err != nil || ids[i] == "" {
			failures = append(failures, HostFailure{Host: hosts[i].Name, Err: fmt.Errorf("reading the image ID the container runs: %v", err)})
			continue
		}
		byID[ids[i]] = append(byID[ids[i]], hosts[i].Name)
	}
	if len(byID) > 1 {
		for id, hs := range byID {
			failures = append(failures, HostFailure{Host: strings.Join(hs, ", "), Err: fmt.Errorf("runs image %s", id)})
		}
	}
	if len(failures) == 0 {
		return nil
	}
	sort.Slice(failures, func(a, b int) bool { return failures[a].Host < failures[b].Host })
	return &StageError{Stage: "image check after launch (every host must run the same image ID)", Failures: failures,
		Cleanup: Rollback(context.WithoutCancel(ctx), env, s)}
}

func (env Env) factsID(plan Plan, i int) string {
	if id := plan.Hosts[i].ContainerID; id != "" {
		return id
	}
	return env.Config.Container.Name
}

// launch runs docker run -d on one host, with the pull inside the
// pull_timeout. The container environment travels in an env file uploaded
// over SFTP, so its values never appear in a command line.
func (env Env) launch(ctx context.Context, c transport.Conn, h cluster.Host, lt cluster.Lifetime) (transport.Result, error) {
	ct := env.Config.Container
	spec := docker.RunSpec{
		Name: ct.Name, Image: ct.Image, Network: ct.Network, IPC: ct.IPC, PID: ct.PID, Privileged: ct.Privileged,
		Devices: ct.Devices, Volumes: ct.Volumes, CapAdd: ct.CapAdd, SecurityOpt: ct.SecurityOpt, GroupAdd: ct.GroupAdd,
		ShmSize: ct.ShmSize, Ulimits: ct.Ulimits, Sudo: env.Config.Sudo,
		Labels: map[string]string{
			LabelManaged: "true", LabelCluster: env.Config.File, LabelLifetime: string(lt),
			LabelVersion: env.Version, LabelLaunchedAt: time.Now().UTC().Format(time.RFC3339), LabelRunID: env.RunID,
		},
	}
	if len(ct.Env) > 0 {
		dir, err := transport.MakeTempDir(ctx, c, "cvs-env")
		if err != nil {
			return transport.Result{}, fmt.Errorf("making a temporary folder for the container's environment: %w", err)
		}
		defer func() {
			if cerr := transport.RemoveTempDir(ctx, c, dir); cerr != nil {
				env.Log.Error("could not remove the container's environment file; it holds [container.env] values: remove it by hand", "host", h.Name, "dir", dir, "err", cerr)
			}
		}()
		var b strings.Builder
		keys := make([]string, 0, len(ct.Env))
		for k := range ct.Env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "%s=%s\n", k, ct.Env[k])
		}
		spec.EnvFile = dir + "/env"
		if err := c.Upload(ctx, spec.EnvFile, []byte(b.String()), 0o600); err != nil {
			return transport.Result{}, err
		}
	}
	start := time.Now()
	res, err := run(ctx, c, ct.PullTimeout, docker.RunArgv(spec)...)
	var te *transport.TimeoutError
	if errors.As(err, &te) {
		// The docker client was killed, which cancels the pull in dockerd;
		// a container created just before the deadline is removed here.
		env.removeRunContainers(context.WithoutCancel(ctx), c)
		return res, fmt.Errorf("docker run (pulling %s) did not finish within pull_timeout (%s); stopped it after %s. Raise container.pull_timeout for large images on cold nodes, or check the registry",
			ct.Image, ct.PullTimeout, time.Since(start).Round(time.Second))
	}
	if err != nil {
		env.removeRunContainers(context.WithoutCancel(ctx), c)
		return res, fmt.Errorf("docker run: %w", err)
	}
	return res, nil
}
