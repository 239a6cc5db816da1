package session

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/lifetime"
	"github.com/cvs-tool/cvs/report"
	"github.com/cvs-tool/cvs/transport"
)

// StageError is a stage that failed on some hosts. Cleanup, for a setup
// stage, says what was rolled back and whether all of it went; a failed
// cleanup means exit 6.
type StageError struct {
	Stage    string
	Failures []HostFailure
	Cleanup  *CleanupReport
}

// ThisMachine stands for the controller where a failure or an action is
// its own, not a host's: one spelling in every error and plan.
const ThisMachine = "(this machine)"

// HostFailure is one host's failure in a stage.
type HostFailure struct {
	Host   string
	Err    error
	Output string // the tail of the host's output, when there is one
}

func (f HostFailure) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %v", f.Host, f.Err)
	if f.Output != "" {
		for _, l := range strings.Split(strings.TrimRight(f.Output, "\n"), "\n") {
			fmt.Fprintf(&b, "\n  | %s", l)
		}
	}
	return b.String()
}

func (e *StageError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s failed on %d host(s):", e.Stage, len(e.Failures))
	for _, f := range e.Failures {
		b.WriteString("\n  " + strings.ReplaceAll(f.String(), "\n", "\n  "))
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
		fmt.Fprintf(&b, "removed the containers this run launched on: %s", report.HostList(r.Removed))
	}
	for _, f := range r.Failed {
		if b.Len() > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "LEFT BEHIND on %s: %v (remove it with docker rm -f on that host)", f.Host, f.Err)
	}
	return b.String()
}

// teardownStage ends a run: after a failed setup stage it rolls back (the
// containers this run launched are removed, whatever the lifetime);
// otherwise per_run removes what this run launched and the other
// lifetimes keep their containers.
type teardownStage struct{}

func (teardownStage) final() {}

func (teardownStage) Name() string { return "teardown" }

func (teardownStage) Actions(s *Session) []HostAction {
	var out []HostAction
	for _, hp := range s.Plan.Hosts {
		switch {
		case hp.Action != lifetime.Launch && hp.Action != lifetime.Replace:
		case s.Plan.Teardown:
			out = append(out, HostAction{Host: hp.Host, Action: "remove the container this run launched"})
		default:
			out = append(out, HostAction{Host: hp.Host, Action: "remove it only if setup fails"})
		}
	}
	return out
}

func (teardownStage) Run(ctx context.Context, s *Session) error {
	why := "removing the per_run container"
	switch {
	case s.rollback:
		why = "rolling back"
	case !s.Plan.Teardown:
		return nil
	}
	s.cleanup = s.removeLaunched(context.WithoutCancel(ctx), why)
	if !s.cleanup.OK() {
		return fmt.Errorf("teardown incomplete:\n%s", s.cleanup)
	}
	return nil
}

// removeLaunched removes the containers this run launched.
func (s *Session) removeLaunched(ctx context.Context, why string) *CleanupReport {
	hosts := s.launchedHosts()
	if len(hosts) == 0 {
		return nil
	}
	index := map[string]int{}
	for i, h := range s.Config.Hosts {
		index[h.Name] = i
	}
	r := &CleanupReport{}
	errs := s.each(ctx, "", hosts, func(ctx context.Context, _ int, h cluster.Host, c transport.Conn) error {
		s.log.Info(why, "host", h.Name, "container", s.Config.Container.Name)
		if err := s.removeRunContainers(ctx, h.Name, c); err != nil {
			return err
		}
		s.markLaunched(index[h.Name], false)
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
func (s *Session) removeRunContainers(ctx context.Context, host string, c transport.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, removeTimeout)
	defer cancel()
	e := s.dockerOn(host, c)
	ids, err := e.PsByLabel(ctx, lifetime.LabelRunID, s.RunID)
	if err != nil {
		return fmt.Errorf("listing this run's containers: %w", err)
	}
	if len(ids) == 0 {
		return nil
	}
	if _, err := e.Remove(ctx, ids...); err != nil {
		return fmt.Errorf("docker rm -f %s: %w", strings.Join(ids, " "), err)
	}
	return nil
}
