package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/docker"
	"github.com/cvs-tool/cvs/exitcode"
	"github.com/cvs-tool/cvs/lifetime"
	"github.com/cvs-tool/cvs/report"
)

func (a *app) upCommand() *cobra.Command {
	var restart, dryRun bool
	cmd := &cobra.Command{
		Use:   "up [--restart]",
		Short: "Set up the persistent containers without running a suite",
		Long: `up does the set-up half of a run for a persistent (or no_launch) cluster:
attach, or cold-start (launch, setup script, sshd), and leaves the containers
running. With --restart, a cluster whose containers are all stopped has them
started again, keeping what was installed in them.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadCluster()
			if err != nil {
				return err
			}
			if cfg.Container.Lifetime == cluster.LifetimePerRun {
				return &flagError{errors.New(`up is for lifetime "persistent" or "no_launch": a per_run container lives for one cvs run`)}
			}
			s, err := a.prepare(cmd.Context(), cfg, restart, !dryRun)
			if err != nil {
				return err
			}
			defer s.close()
			if a.json {
				a.printJSON(s.plan)
			} else {
				a.printPlan(s.plan)
			}
			// With --json the plan is the document; errors go to stderr.
			quiet := func(err error) error {
				if err != nil && a.json {
					fmt.Fprintf(a.stderr, "cvs: %v\n", err)
					return reported(exitcode.Of(err))
				}
				return err
			}
			if err := s.verdictError(); err != nil || dryRun {
				return quiet(err)
			}
			a.trackLaunches(&s.env, cfg)
			setup, err := lifetime.Apply(cmd.Context(), s.env, s.plan)
			if err != nil {
				return quiet(setupError(cmd.Context(), err))
			}
			a.log.Info("containers ready", "hosts", len(cfg.Hosts), "sshd_skipped", setup.SSHDSkipped)
			return nil
		},
	}
	cmd.Flags().BoolVar(&restart, "restart", false, "start the existing containers when they are stopped on every host")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan and change nothing")
	return cmd
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// DownJSON is the document `cvs down --json` prints.
type DownJSON struct {
	Container string   `json:"container"`
	Removed   []string `json:"removed"`
	// LeftAlone says, per host, why a container was not removed.
	LeftAlone []string          `json:"left_alone"`
	Unknown   []string          `json:"unknown"`
	Failed    map[string]string `json:"failed"`
}

func (a *app) downCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "down [--force]",
		Short: "Remove the containers cvs launched for this cluster file",
		Long: `down removes the configured container on every host where cvs launched it
for this cluster file (recognised by its labels). Containers of that name that
cvs did not launch are named and left alone. Persistent containers are only
removed with --force: they hold what was installed into them.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadCluster()
			if err != nil {
				return err
			}
			switch {
			case cfg.Container.Lifetime == cluster.LifetimeNoLaunch:
				return exitcode.With(exitcode.Refused, errors.New(`lifetime "no_launch": cvs never removes these containers; remove them yourself`))
			case cfg.Container.Lifetime == cluster.LifetimePersistent && !force:
				return exitcode.With(exitcode.Refused, errors.New("refused: the persistent containers hold what was installed into them; run `cvs down --force` to remove them"))
			}
			s, err := a.prepare(cmd.Context(), cfg, false, true)
			if err != nil {
				return err
			}
			defer s.close()
			var unknown []string
			for _, f := range s.facts {
				if f.Container.State == docker.StateUnknown {
					unknown = append(unknown, f.Host)
				}
			}
			removed, refused, failed := lifetime.RemoveLabelled(cmd.Context(), s.env, s.facts, force)
			if a.json {
				doc := DownJSON{Container: cfg.Container.Name, Removed: orEmpty(removed), LeftAlone: orEmpty(refused),
					Unknown: orEmpty(unknown), Failed: map[string]string{}}
				for _, f := range failed {
					doc.Failed[f.Host] = f.Err.Error()
				}
				if err := a.printJSON(doc); err != nil {
					return err
				}
			} else {
				for _, h := range removed {
					fmt.Fprintf(a.stdout, "%s: removed %s\n", h, cfg.Container.Name)
				}
				for _, h := range refused {
					fmt.Fprintf(a.stdout, "left alone on %s\n", h)
				}
				for _, h := range unknown {
					fmt.Fprintf(a.stdout, "%s: unknown state, not touched\n", h)
				}
				for _, f := range failed {
					fmt.Fprintf(a.stdout, "%s: FAILED to remove: %v\n", f.Host, f.Err)
				}
			}
			switch {
			case len(failed) > 0:
				return reported(exitcode.Cleanup)
			case len(unknown) > 0:
				return reported(exitcode.Preflight)
			case len(refused) > 0:
				return reported(exitcode.Refused)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "also remove persistent containers")
	return cmd
}

func (a *app) listCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the suites of the cluster file",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, err := a.loadCluster()
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(cfg.Effective().Suites)
			}
			rows := [][]string{}
			for _, name := range cfg.SuiteNames() {
				s, _ := cfg.Suite(name)
				var steps []string
				for _, st := range s.Steps {
					steps = append(steps, fmt.Sprintf("%s(%s)", st.Name, st.On))
				}
				rows = append(rows, []string{name, strings.Join(steps, " → "), s.Description})
			}
			report.Table(a.stdout, []string{"SUITE", "STEPS", "DESCRIPTION"}, rows)
			return nil
		},
	}
}
