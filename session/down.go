package session

import (
	"context"
	"errors"
	"fmt"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/docker"
	"github.com/cvs-tool/cvs/exitcode"
	"github.com/cvs-tool/cvs/lifetime"
	"github.com/cvs-tool/cvs/transport"
)

// DownReport is the document `cvs down --json` prints.
type DownReport struct {
	Container string   `json:"container"`
	Removed   []string `json:"removed"`
	// LeftAlone says, per host, why a container was not removed.
	LeftAlone []string          `json:"left_alone"`
	Unknown   []string          `json:"unknown"`
	Failed    map[string]string `json:"failed"`
}

// Down is `cvs down`: remove the configured container on every host where
// cvs launched it for this cluster file (its labels say so). Containers of
// that name that cvs did not launch are named and left alone; a container
// whose own label says persistent is removed only with force, whatever
// lifetime the cluster file names now: it may hold an hour of
// provisioning. The error carries the exit code: 6 when a removal failed,
// 3 when a host's state is unknown, 5 when a container was left alone.
func Down(ctx context.Context, cfg *cluster.Config, force bool, opts Options) (*DownReport, error) {
	switch {
	case cfg.Container.Lifetime == cluster.LifetimeNoLaunch:
		return nil, exitcode.With(exitcode.Refused, errors.New(`lifetime "no_launch": cvs never removes these containers; remove them yourself`))
	case cfg.Container.Lifetime == cluster.LifetimePersistent && !force:
		return nil, exitcode.With(exitcode.Refused, errors.New("refused: the persistent containers hold what was installed into them; run `cvs down --force` to remove them"))
	}
	s, err := open(ctx, cfg, openOptions{lock: true, command: "down"}, opts)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	rep := &DownReport{Container: cfg.Container.Name, Removed: []string{}, LeftAlone: []string{}, Unknown: []string{}, Failed: map[string]string{}}
	var targets []cluster.Host
	ids := map[string]string{}
	for i, f := range s.Facts {
		switch {
		case f.Container.State == docker.StateUnknown:
			rep.Unknown = append(rep.Unknown, f.Host)
		case f.Container.State == docker.StateAbsent:
		case f.Container.Labels[lifetime.LabelManaged] != "true" || f.Container.Labels[lifetime.LabelCluster] != cfg.File:
			rep.LeftAlone = append(rep.LeftAlone, f.Host+": not launched by cvs for this cluster file")
		case f.Container.Labels[lifetime.LabelLifetime] == string(cluster.LifetimePersistent) && !force:
			rep.LeftAlone = append(rep.LeftAlone, f.Host+": a persistent container (cvs down --force removes it)")
		default:
			targets = append(targets, cfg.Hosts[i])
			ids[cfg.Hosts[i].Name] = f.Container.ID
		}
	}
	errs := s.each(ctx, "removing", targets, func(ctx context.Context, _ int, h cluster.Host, c transport.Conn) error {
		if err := s.guard(h.Name); err != nil {
			return err // another cvs may hold the host now
		}
		_, err := withTimeout(ctx, removeTimeout, func(ctx context.Context) (transport.Result, error) {
			return s.dockerOn(h.Name, c).Remove(ctx, ids[h.Name])
		})
		return err
	})
	for i, err := range errs {
		if err != nil {
			rep.Failed[targets[i].Name] = err.Error()
		} else {
			rep.Removed = append(rep.Removed, targets[i].Name)
		}
	}
	for i, h := range cfg.Hosts {
		s.Plan.Hosts[i].Action = "none"
		for _, r := range rep.Removed {
			if r == h.Name {
				s.Plan.Hosts[i].Action = "remove"
			}
		}
	}
	var result error
	switch {
	case len(rep.Failed) > 0:
		result = exitcode.With(exitcode.Cleanup, fmt.Errorf("removing %s failed on %d host(s)", cfg.Container.Name, len(rep.Failed)))
	case len(rep.Unknown) > 0:
		result = exitcode.With(exitcode.Preflight, fmt.Errorf("%d host(s) could not be probed; their containers were not touched", len(rep.Unknown)))
	case len(rep.LeftAlone) > 0:
		result = exitcode.With(exitcode.Refused, fmt.Errorf("%d container(s) left alone", len(rep.LeftAlone)))
	}
	s.record(ExitCode(ctx, result), result)
	return rep, result
}
