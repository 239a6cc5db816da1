package session

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/docker"
	"github.com/cvs-tool/cvs/lifetime"
	"github.com/cvs-tool/cvs/provision"
	"github.com/cvs-tool/cvs/report"
	"github.com/cvs-tool/cvs/sshd"
	"github.com/cvs-tool/cvs/transport"
)

// Time limits of the setup stages on one host.
const (
	// removeTimeout bounds one docker rm -f.
	removeTimeout = 2 * time.Minute
	// provisionTimeout bounds the setup script: installing packages on a
	// cold node can take a while, but never forever.
	provisionTimeout = 30 * time.Minute
	// sshdTimeout bounds making sure sshd runs in one container.
	sshdTimeout = 2 * time.Minute
	// inspectTimeout bounds one docker inspect.
	inspectTimeout = time.Minute
)

// RunConfig is the run configuration of the cluster file's container, as
// a container records it at launch (label cvs.config) and an attach
// compares it: the image reference, the docker run options, the names
// (never the values) of its environment.
func RunConfig(ct cluster.Container) map[string]string {
	list := func(v []string) string { return strings.Join(v, ",") }
	env := make([]string, 0, len(ct.Env))
	for k := range ct.Env {
		env = append(env, k)
	}
	sort.Strings(env)
	m := map[string]string{
		"image": ct.Image, "network": ct.Network, "ipc": ct.IPC, "pid": ct.PID,
		"privileged": strconv.FormatBool(ct.Privileged), "devices": list(ct.Devices), "volumes": list(ct.Volumes),
		"cap_add": list(ct.CapAdd), "security_opt": list(ct.SecurityOpt), "group_add": list(ct.GroupAdd),
		"shm_size": ct.ShmSize, "ulimits": list(ct.Ulimits), "env": list(env),
	}
	if ct.Platform != "" {
		// Only when set: containers launched before the key existed, or
		// without it, record the same settings.
		m["platform"] = ct.Platform
	}
	return m
}

func runConfigLabel(ct cluster.Container) string {
	b, _ := json.Marshal(RunConfig(ct))
	return string(b)
}

// containerNow is a container as the image check read it after setup.
type containerNow struct{ ID, ImageID, StartedAt string }

type setupMark struct{}

func (setupMark) setup() {}

// launchStage replaces, launches or starts the containers, per the plan.
type launchStage struct{ setupMark }

func (launchStage) Name() string { return "launch" }

func (launchStage) Actions(s *Session) []HostAction {
	var out []HostAction
	for _, hp := range s.Plan.Hosts {
		switch hp.Action {
		case lifetime.Replace, lifetime.Launch, lifetime.Start:
			out = append(out, HostAction{Host: hp.Host, Action: string(hp.Action)})
		}
	}
	return out
}

func (launchStage) Run(ctx context.Context, s *Session) error {
	ct := s.Config.Container
	if err := s.checkPulls(ctx); err != nil {
		return err
	}
	return s.perHost(ctx, "launch", s.Config.Hosts, func(ctx context.Context, i int, h cluster.Host, c transport.Conn) (transport.Result, error) {
		hp := s.Plan.Hosts[i]
		switch hp.Action {
		case lifetime.Replace:
			s.log.Info("removing the container an earlier per_run left", "host", h.Name, "id", docker.ShortID(hp.ContainerID))
			if res, err := withTimeout(ctx, removeTimeout, func(ctx context.Context) (transport.Result, error) {
				return s.dockerOn(h.Name, c).Remove(ctx, target(hp, s.Config.Container.Name))
			}); err != nil {
				return res, fmt.Errorf("removing the earlier per_run container: %w", err)
			}
			fallthrough
		case lifetime.Launch:
			img := s.Image
			if hp.Image != "" {
				img = hp.Image
			} else if as := s.pushedAs(h.Name); as != "" {
				img = as
			}
			s.log.Info("launching", "host", h.Name, "image", img)
			res, err := s.launch(ctx, c, i, h)
			if err != nil {
				return res, err
			}
			s.markLaunched(i, true)
		case lifetime.Start:
			s.log.Info("starting the stopped container", "host", h.Name)
			if res, err := withTimeout(ctx, ct.PullTimeout, func(ctx context.Context) (transport.Result, error) {
				return s.dockerOn(h.Name, c).Start(ctx, target(hp, s.Config.Container.Name))
			}); err != nil {
				return res, fmt.Errorf("docker start: %w", err)
			}
		}
		return transport.Result{}, nil
	})
}

// target is the container a plan's action is about: its ID, which docker
// cannot read as another container's name or ID prefix.
func target(hp lifetime.HostPlan, name string) string {
	if hp.ContainerID != "" {
		return hp.ContainerID
	}
	return name
}

// launch runs docker run -d on one host, with the pull inside the
// pull_timeout. The container environment travels in an env file uploaded
// over SFTP, so its values never appear in a command line.
//
// When docker run fails, what it may have created is removed at once; if
// that removal fails too, the host counts as launched, so that rollback
// tries again and reports what is left (exit 6).
func (s *Session) launch(ctx context.Context, c transport.Conn, i int, h cluster.Host) (transport.Result, error) {
	ct := s.Config.Container
	image := s.Image
	if hp := s.Plan.Hosts[i]; hp.Image != "" {
		image = hp.Image
	} else if as := s.pushedAs(h.Name); as != "" {
		image = as // its platform's image, when several were pushed
	}
	platform := ""
	if ct.Distribute != cluster.DistributePush {
		// The platform key: the host pulls (and runs) that platform, also
		// when the image is not pinned. A pushed image is the platform's
		// already, checked by its image ID.
		platform = ct.Platform
	}
	spec := docker.RunSpec{
		Name: ct.Name, Image: image, Platform: platform, Network: ct.Network, IPC: ct.IPC, PID: ct.PID, Privileged: ct.Privileged,
		Devices: ct.Devices, Volumes: ct.Volumes, CapAdd: ct.CapAdd, SecurityOpt: ct.SecurityOpt, GroupAdd: ct.GroupAdd,
		ShmSize: ct.ShmSize, Ulimits: ct.Ulimits,
		Labels: map[string]string{
			lifetime.LabelManaged: "true", lifetime.LabelCluster: s.Config.File, lifetime.LabelLifetime: string(s.Plan.Lifetime),
			lifetime.LabelVersion: s.opts.Version, lifetime.LabelLaunchedAt: s.launchTime(), lifetime.LabelRunID: s.RunID,
			docker.LabelSetupHash: s.setupHash, lifetime.LabelConfig: runConfigLabel(ct),
		},
	}
	if s.Digest != "" {
		// A pushed image launches by tag or ID: the label keeps the digest.
		spec.Labels[lifetime.LabelDigest] = s.Digest
	}
	e := s.dockerOn(h.Name, c)
	if len(ct.Env) > 0 && e.Access() == "api" {
		spec.Env = ct.Env // in the request body
	} else if len(ct.Env) > 0 {
		var b bytes.Buffer
		keys := make([]string, 0, len(ct.Env))
		for k := range ct.Env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "%s=%s\n", k, ct.Env[k])
		}
		dir, err := transport.MakeTempDir(ctx, c, "cvs-env", b.Bytes())
		if err != nil {
			return transport.Result{}, fmt.Errorf("making a temporary folder for the container's environment: %w", err)
		}
		defer func() {
			if cerr := transport.RemoveTempDir(ctx, c, dir); cerr != nil {
				s.log.Error("could not remove the container's environment file; it holds [container.env] values: remove it by hand", "host", h.Name, "dir", dir, "err", cerr)
			}
		}()
		spec.EnvFile = dir + "/env"
		if err := c.Upload(ctx, spec.EnvFile, &b, 0o600); err != nil {
			return transport.Result{}, err
		}
	}
	start := time.Now()
	res, err := withTimeout(ctx, ct.PullTimeout, func(ctx context.Context) (transport.Result, error) { return e.Run(ctx, spec) })
	var te *transport.TimeoutError
	if errors.As(err, &te) {
		// The docker client was killed, which cancels the pull in dockerd;
		// a container created just before the deadline is removed here.
		s.removeAfterFailedRun(ctx, c, i, h)
		return res, fmt.Errorf("docker run (pulling %s) did not finish within pull_timeout (%s); stopped it after %s. Raise container.pull_timeout for large images on cold nodes, or check the registry",
			s.Image, ct.PullTimeout, time.Since(start).Round(time.Second))
	}
	if err != nil {
		s.removeAfterFailedRun(ctx, c, i, h)
		if image != s.Image && strings.Contains(string(res.Stderr), image) {
			return res, fmt.Errorf("docker run %s (the image the other hosts run): %w; the host does not hold it: pull the tag there if it still names that image, or send it with cvs image push", docker.ShortID(image), err)
		}
		return res, fmt.Errorf("docker run: %w", err)
	}
	return res, nil
}

// launchTime is when the launch stage began, the same on every host.
func (s *Session) launchTime() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.launchedAt == "" {
		s.launchedAt = time.Now().UTC().Format(time.RFC3339)
	}
	return s.launchedAt
}

func (s *Session) removeAfterFailedRun(ctx context.Context, c transport.Conn, i int, h cluster.Host) {
	if err := s.removeRunContainers(context.WithoutCancel(ctx), h.Name, c); err != nil {
		s.log.Warn("docker run failed and what it created could not be removed; rollback tries again", "host", h.Name, "err", err)
		s.markLaunched(i, true)
	}
}

// provisionStage runs the setup script in the containers this run
// launched.
type provisionStage struct{ setupMark }

func (provisionStage) Name() string { return "provisioning (setup_script)" }

func (provisionStage) Actions(s *Session) []HostAction {
	if s.Config.Container.SetupScript == cluster.SetupNone {
		return nil
	}
	var out []HostAction
	for _, hp := range s.Plan.Hosts {
		switch {
		case s.Plan.Provision && (hp.Action == lifetime.Launch || hp.Action == lifetime.Replace):
			out = append(out, HostAction{Host: hp.Host, Action: "run the setup script"})
		case hp.Action == lifetime.Reprovision:
			out = append(out, HostAction{Host: hp.Host, Action: "run the setup script again (overlay kept)"})
		}
	}
	return out
}

// provisionHosts are the hosts the setup script runs on: those where this
// run launched a container (when the plan provisions) and those the plan
// reprovisions.
func (s *Session) provisionHosts() []cluster.Host {
	var out []cluster.Host
	launched := map[string]bool{}
	if s.Plan.Provision {
		for _, h := range s.launchedHosts() {
			launched[h.Name] = true
		}
	}
	for i, hp := range s.Plan.Hosts {
		if launched[hp.Host] || hp.Action == lifetime.Reprovision {
			out = append(out, s.Config.Hosts[i])
		}
	}
	return out
}

func (st provisionStage) Run(ctx context.Context, s *Session) error {
	script, err := provision.Script(s.Config.Container.SetupScript)
	if err != nil {
		return &StageError{Stage: st.Name(), Failures: []HostFailure{{Host: ThisMachine, Err: err}}}
	}
	hosts := s.provisionHosts()
	return s.perHost(ctx, st.Name(), hosts, func(ctx context.Context, _ int, h cluster.Host, c transport.Conn) (transport.Result, error) {
		s.log.Info("provisioning", "host", h.Name)
		ctx, cancel := context.WithTimeout(ctx, provisionTimeout)
		defer cancel()
		// provision's errors carry the output's tail themselves.
		_, err := provision.Run(ctx, s.dockerOn(h.Name, c), h.Name, s.Config.Container.Name, script, s.opts.Version)
		return transport.Result{}, err
	})
}

// sshdStage makes sure sshd listens in every container, with the
// cluster's key pair.
type sshdStage struct{ setupMark }

func (sshdStage) Name() string { return "sshd" }

func (sshdStage) Actions(s *Session) []HostAction {
	out := make([]HostAction, 0, len(s.Plan.Hosts))
	for _, hp := range s.Plan.Hosts {
		out = append(out, HostAction{Host: hp.Host, Action: fmt.Sprintf("ensure sshd on port %d", s.Config.Container.SSHDPort)})
	}
	return out
}

func (sshdStage) Run(ctx context.Context, s *Session) error {
	keys, err := s.sshdKeys()
	if err != nil {
		return &StageError{Stage: "sshd", Failures: []HostFailure{{Host: ThisMachine, Err: err}}}
	}
	ct := s.Config.Container
	var skipped int
	err = s.perHost(ctx, "sshd", s.Config.Hosts, func(ctx context.Context, i int, h cluster.Host, c transport.Conn) (transport.Result, error) {
		ctx, cancel := context.WithTimeout(ctx, sshdTimeout)
		defer cancel()
		var out sshd.Outcome
		var err error
		if f := s.Facts[i].Container; s.Plan.Hosts[i].Action == lifetime.Attach &&
			sshd.UpToDate(ct.SSHDPort, keys, f.SSHD == docker.SSHDListening, f.SSHDOwn, f.SSHDFiles) {
			// The probe saw this run's container with cvs's sshd, given
			// the cluster's keys and settings: nothing to check again.
			out.AlreadyListening = true
		} else {
			out, err = sshd.Ensure(ctx, s.dockerOn(h.Name, c), h.Name, ct.Name, ct.SSHDPort, keys)
		}
		switch {
		case err != nil:
		case out.AlreadyListening:
			s.mu.Lock()
			skipped++
			s.mu.Unlock()
			s.log.Info(fmt.Sprintf("sshd already listens on port %d; setup skipped", ct.SSHDPort), "host", h.Name)
		case out.Restarted:
			s.log.Info(fmt.Sprintf("sshd on port %d ran with other keys or settings than this cluster's; restarted with the cluster's", ct.SSHDPort), "host", h.Name)
		default:
			s.log.Info(fmt.Sprintf("sshd started on port %d", ct.SSHDPort), "host", h.Name)
		}
		return transport.Result{}, err
	})
	if err == nil {
		s.log.Info("containers ready", "hosts", len(s.Config.Hosts), "sshd_skipped", skipped)
	}
	return err
}

// imageCheckStage reads the image ID every container runs after setup and
// fails when they differ (a registry that served different content to
// different hosts, say). Hosts of several architectures each run their
// platform's image of the index: the hosts of one platform must agree.
type imageCheckStage struct{ setupMark }

func (imageCheckStage) Name() string {
	return "image check after launch (every host must run the same image ID)"
}

func (imageCheckStage) Actions(s *Session) []HostAction {
	out := make([]HostAction, 0, len(s.Plan.Hosts))
	for _, hp := range s.Plan.Hosts {
		out = append(out, HostAction{Host: hp.Host, Action: "read the image ID"})
	}
	return out
}

func (st imageCheckStage) Run(ctx context.Context, s *Session) error {
	hosts := s.Config.Hosts
	name := s.Config.Container.Name
	ids := make([]string, len(hosts))
	errs := s.each(ctx, "", hosts, func(ctx context.Context, i int, h cluster.Host, c transport.Conn) error {
		ctx, cancel := context.WithTimeout(ctx, inspectTimeout)
		defer cancel()
		c2, ok, err := s.dockerOn(h.Name, c).Inspect(ctx, name)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("no container named %s", name)
		}
		if c2.ImageID == "" || c2.ID == "" {
			return fmt.Errorf("docker inspect answered no image or container ID")
		}
		ids[i] = c2.ImageID
		s.after[i] = containerNow{ID: c2.ID, ImageID: c2.ImageID, StartedAt: c2.StartedAt}
		return nil
	})
	var failures []HostFailure
	byID := map[string]map[string][]string{} // platform, image ID: hosts
	for i, err := range errs {
		if err != nil || ids[i] == "" {
			failures = append(failures, HostFailure{Host: hosts[i].Name, Err: fmt.Errorf("reading the image ID the container runs: %v", err)})
			continue
		}
		p := s.hostPlatform[hosts[i].Name]
		if byID[p] == nil {
			byID[p] = map[string][]string{}
		}
		byID[p][ids[i]] = append(byID[p][ids[i]], hosts[i].Name)
	}
	for p, ids := range byID {
		if len(ids) < 2 {
			continue
		}
		for id, hs := range ids {
			err := fmt.Errorf("runs image %s", id)
			if p != "" {
				err = fmt.Errorf("runs image %s (of the %s hosts)", id, p)
			}
			failures = append(failures, HostFailure{Host: report.HostList(hs), Err: err})
		}
	}
	if len(failures) == 0 {
		return nil
	}
	sort.Slice(failures, func(a, b int) bool { return failures[a].Host < failures[b].Host })
	return &StageError{Stage: st.Name(), Failures: failures}
}
