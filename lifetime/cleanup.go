package lifetime

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/docker"
	"github.com/cvs-tool/cvs/shell"
	"github.com/cvs-tool/cvs/transport"
)

// Rollback removes the containers this run launched (after a failed
// stage). The caller passes a context that outlives an interrupt.
func Rollback(ctx context.Context, env Env, s *Setup) *CleanupReport {
	return env.remove(ctx, s.Launched, "rolling back")
}

// Teardown ends a run per lifetime: per_run removes the containers this run
// launched, the others keep them. It returns nil when there was nothing to
// do.
func Teardown(ctx context.Context, env Env, plan Plan, s *Setup) *CleanupReport {
	if !plan.Teardown || s == nil {
		return nil
	}
	return env.remove(ctx, s.Launched, "removing the per_run container")
}

func (env Env) remove(ctx context.Context, which []bool, why string) *CleanupReport {
	var hosts []cluster.Host
	for i, h := range env.Config.Hosts {
		if i < len(which) && which[i] {
			hosts = append(hosts, h)
		}
	}
	if len(hosts) == 0 {
		return nil
	}
	r := &CleanupReport{}
	errs := env.Fleet.Each(ctx, hosts, func(ctx context.Context, i int, h cluster.Host, c transport.Conn) error {
		env.Log.Info(why, "host", h.Name, "container", env.Config.Container.Name)
		if err := env.removeRunContainers(ctx, c); err != nil {
			return err
		}
		if env.OnRemove != nil {
			env.OnRemove(h)
		}
		return nil
	})
	for i, err := range errs {
		if err != nil {
			r.Failed = append(r.Failed, HostFailure{Host: hosts[i].Name, Err: err})
		} else {
			r.Removed = append(r.Removed, hosts[i].Name)
		}
	}
	sort.Strings(r.Removed)
	return r
}

// removeRunContainers force-removes the containers carrying this run's
// run-id label on one host: never anything cvs did not launch in this run.
func (env Env) removeRunContainers(ctx context.Context, c transport.Conn) error {
	d := docker.Docker(env.Config.Sudo)
	res, err := run(ctx, c, removeTimeout, append(d, "ps", "-aq", "--filter", "label="+LabelRunID+"="+env.RunID)...)
	if err != nil {
		return fmt.Errorf("listing this run's containers: %w", err)
	}
	ids := strings.Fields(string(res.Stdout))
	if len(ids) == 0 {
		return nil
	}
	if _, err := run(ctx, c, removeTimeout, append(append(d, "rm", "-f"), ids...)...); err != nil {
		return fmt.Errorf("docker rm -f %s: %w", strings.Join(ids, " "), err)
	}
	return nil
}

// RemoveLabelled removes the container named name on every host where cvs
// launched it (label cvs.managed=true), for `cvs down`. Containers of that
// name that cvs did not launch are reported, never removed.
//
// A container whose own label says persistent is removed only with force,
// whatever lifetime the cluster file names now: it may hold an hour of
// provisioning.
func RemoveLabelled(ctx context.Context, env Env, facts []docker.Facts, force bool) (removed, refused []string, failed []HostFailure) {
	var targets []cluster.Host
	ids := map[string]string{}
	for i, f := range facts {
		switch {
		case f.Container.State == docker.StateAbsent || f.Container.State == docker.StateUnknown:
		case f.Container.Labels[LabelManaged] != "true" || f.Container.Labels[LabelCluster] != env.Config.File:
			refused = append(refused, f.Host+": not launched by cvs for this cluster file")
		case f.Container.Labels[LabelLifetime] == string(cluster.LifetimePersistent) && !force:
			refused = append(refused, f.Host+": a persistent container (cvs down --force removes it)")
		default:
			targets = append(targets, env.Config.Hosts[i])
			ids[env.Config.Hosts[i].Name] = f.Container.ID
		}
	}
	errs := env.Fleet.Each(ctx, targets, func(ctx context.Context, i int, h cluster.Host, c transport.Conn) error {
		_, err := run(ctx, c, removeTimeout, append(docker.Docker(env.Config.Sudo), "rm", "-f", ids[h.Name])...)
		return err
	})
	for i, err := range errs {
		if err != nil {
			failed = append(failed, HostFailure{Host: targets[i].Name, Err: err})
		} else {
			removed = append(removed, targets[i].Name)
		}
	}
	return removed, refused, failed
}

// run runs argv on one host within timeout.
func run(ctx context.Context, c transport.Conn, timeout time.Duration, argv ...string) (transport.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return c.Run(ctx, transport.Command{Line: shell.Join(argv...)})
}
