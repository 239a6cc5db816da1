package dockerapi

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/cvs-tool/cvs/docker"
	"github.com/cvs-tool/cvs/transport"
	units "github.com/docker/go-units"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Run creates and starts the container spec describes, as `docker run -d
// --init` does: the image is pulled first when the host lacks it (within
// ctx: the pull timeout ends the pull in the daemon too), the environment
// travels in the request body. The create is not cut short by ctx (see
// docker.CreateTimeout); a run whose ctx ended during it is not started.
// The pull carries the host's registry login (see pull).
func (e *Engine) Run(ctx context.Context, spec docker.RunSpec) (transport.Result, error) {
	cfg, hc, err := createConfig(spec)
	if err != nil {
		return transport.Result{ExitCode: 125, Stderr: []byte(err.Error())}, &transport.ExitError{Host: e.host, Cmd: "docker run " + spec.Name, Code: 125, StderrTail: err.Error()}
	}
	plat, err := ociPlatform(spec.Platform)
	if err != nil {
		return transport.Result{ExitCode: 125, Stderr: []byte(err.Error())}, &transport.ExitError{Host: e.host, Cmd: "docker run " + spec.Name, Code: 125, StderrTail: err.Error()}
	}
	if held, err := e.holds(ctx, spec.Image, plat); err != nil {
		return transport.Result{ExitCode: -1}, e.apiError(ctx, "inspecting image "+spec.Image, err)
	} else if !held {
		if res, err := e.pull(ctx, spec.Image, plat); err != nil {
			return res, err
		}
	}
	// dockerd finishes a create whose client has gone: the create is not
	// cut short when ctx ends (only bounded), so that once Run returns,
	// what it created exists and the caller's cleanup finds it.
	var created client.ContainerCreateResult
	err = e.within(context.WithoutCancel(ctx), docker.CreateTimeout, "ContainerCreate "+spec.Name, func(cctx context.Context) (err error) {
		created, err = e.c.ContainerCreate(cctx, client.ContainerCreateOptions{Name: spec.Name, Config: cfg, HostConfig: hc, Platform: plat})
		return err
	})
	if err != nil {
		return e.refused(ctx, "docker run (create) "+spec.Name, err)
	}
	if ctx.Err() != nil {
		return transport.Result{ExitCode: -1}, e.apiError(ctx, "docker run (create) "+spec.Name, ctx.Err())
	}
	if err := e.within(ctx, slowFactor*e.limit, "ContainerStart "+spec.Name, func(ctx context.Context) error {
		_, err := e.c.ContainerStart(ctx, created.ID, client.ContainerStartOptions{})
		return err
	}); err != nil {
		return e.refused(ctx, "docker run (start) "+spec.Name, err)
	}
	return transport.Result{Stdout: []byte(created.ID + "\n")}, nil
}

// ociPlatform is platform ("os/arch[/variant]") as the API takes it; nil
// for "" (the daemon's own).
func ociPlatform(platform string) (*ocispec.Platform, error) {
	if platform == "" {
		return nil, nil
	}
	p, err := v1.ParsePlatform(platform)
	if err != nil {
		return nil, fmt.Errorf("platform %q: %w", platform, err)
	}
	return &ocispec.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}, nil
}

// holds says whether the host holds ref, for platform p when given: a
// reference it holds for another platform is pulled again, as docker run
// --platform does.
func (e *Engine) holds(ctx context.Context, ref string, p *ocispec.Platform) (bool, error) {
	if p == nil {
		id, err := e.ImageID(ctx, ref)
		return id != "", err
	}
	var res client.ImageInspectResult
	err := e.within(ctx, e.limit, "ImageInspect "+ref, func(ctx context.Context) (err error) {
		res, err = e.c.ImageInspect(ctx, ref)
		return err
	})
	if cerrdefs.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, e.hostError("inspecting image "+ref, err)
	}
	have := v1.Platform{OS: res.Os, Architecture: res.Architecture, Variant: res.Variant}
	return have.Satisfies(v1.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}), nil
}

// pull pulls ref (for platform p, nil the daemon's own) through the API
// with the host's login, read from the SSH user's Docker configuration
// there (registryAuth), as the docker CLI sends it. A login kept by a
// credential helper, which only the host can run, is pulled with the
// host's docker CLI.
func (e *Engine) pull(ctx context.Context, ref string, p *ocispec.Platform) (transport.Result, error) {
	opts := client.ImagePullOptions{}
	platform := ""
	if p != nil {
		opts.Platforms = []ocispec.Platform{*p}
		platform = (&v1.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}).String()
	}
	auth, login, err := e.registryAuth(ctx, ref)
	if err != nil {
		return transport.Result{ExitCode: -1}, fmt.Errorf("reading the SSH user's Docker configuration (for its registry login): %w", err)
	}
	if login == LoginHelper && e.cli != nil {
		res, cerr := e.cli.Host.Run(ctx, transport.Command{Line: docker.Line(e.cli.Pull(ref, platform))})
		if cerr != nil {
			return res, cerr
		}
		return transport.Result{}, nil
	}
	opts.RegistryAuth = auth
	resp, err := e.c.ImagePull(ctx, ref, opts)
	if err == nil {
		err = resp.Wait(ctx)
		resp.Close()
	}
	switch {
	case err == nil:
		return transport.Result{}, nil
	case ctx.Err() != nil:
		return transport.Result{ExitCode: -1}, e.apiError(ctx, "pulling "+ref, err)
	case isAuth(err):
		xe := e.authError(ref, login, err)
		return transport.Result{ExitCode: 125, Stderr: []byte(xe.StderrTail + "\n")}, xe
	}
	msg := "Unable to pull " + ref + ": " + err.Error()
	return transport.Result{ExitCode: 125, Stderr: []byte(msg + "\n")}, &transport.ExitError{Host: e.host, Cmd: "docker pull " + ref, Code: 125, StderrTail: msg}
}

// isAuth reports whether a pull failed for want of credentials.
func isAuth(err error) bool {
	if cerrdefs.IsUnauthorized(err) || cerrdefs.IsPermissionDenied(err) {
		return true
	}
	l := strings.ToLower(err.Error())
	for _, s := range []string{"unauthorized", "authentication required", "denied", "no basic auth credentials", "docker login"} {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// refused is a create or start the daemon refused, as docker run reports
// it (exit 125 with the daemon's message); a lost daemon or the context's
// end is the host's failure.
func (e *Engine) refused(ctx context.Context, what string, err error) (transport.Result, error) {
	if ctx.Err() != nil || isDaemonGone(err) {
		return transport.Result{ExitCode: -1}, e.apiError(ctx, what, err)
	}
	msg := "docker: Error response from daemon: " + err.Error()
	return transport.Result{ExitCode: 125, Stderr: []byte(msg + "\n")}, &transport.ExitError{Host: e.host, Cmd: what, Code: 125, StderrTail: msg}
}

// createConfig is the API's form of what docker.CLI.Run puts on the
// command line.
func createConfig(s docker.RunSpec) (*container.Config, *container.HostConfig, error) {
	env := make([]string, 0, len(s.Env))
	for k, v := range s.Env {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	init := true
	cfg := &container.Config{Image: s.Image, Labels: s.Labels, Env: env, Cmd: docker.KeepAlive}
	hc := &container.HostConfig{
		Init: &init, NetworkMode: container.NetworkMode(s.Network), IpcMode: container.IpcMode(s.IPC), PidMode: container.PidMode(s.PID),
		Privileged: s.Privileged, Binds: s.Volumes, CapAdd: s.CapAdd, SecurityOpt: s.SecurityOpt, GroupAdd: s.GroupAdd,
	}
	for _, d := range s.Devices {
		m, err := device(d)
		if err != nil {
			return nil, nil, err
		}
		hc.Devices = append(hc.Devices, m)
	}
	if s.ShmSize != "" {
		n, err := units.RAMInBytes(s.ShmSize)
		if err != nil {
			return nil, nil, fmt.Errorf("shm_size %q: %w", s.ShmSize, err)
		}
		hc.ShmSize = n
	}
	for _, u := range s.Ulimits {
		l, err := units.ParseUlimit(u)
		if err != nil {
			return nil, nil, fmt.Errorf("ulimit %q: %w", u, err)
		}
		hc.Ulimits = append(hc.Ulimits, l)
	}
	return cfg, hc, nil
}

// device reads a --device value: HOST[:CONTAINER][:PERMISSIONS].
func device(v string) (container.DeviceMapping, error) {
	parts := strings.Split(v, ":")
	m := container.DeviceMapping{PathOnHost: parts[0], PathInContainer: parts[0], CgroupPermissions: "rwm"}
	switch len(parts) {
	case 1:
	case 2:
		if isPerms(parts[1]) {
			m.CgroupPermissions = parts[1]
		} else {
			m.PathInContainer = parts[1]
		}
	case 3:
		m.PathInContainer, m.CgroupPermissions = parts[1], parts[2]
		if !isPerms(parts[2]) {
			return m, errors.New("device " + v + ": permissions must be a combination of r, w and m")
		}
	default:
		return m, errors.New("device " + v + ": too many colons")
	}
	return m, nil
}

func isPerms(s string) bool {
	return s != "" && strings.Trim(s, "rwm") == ""
}
