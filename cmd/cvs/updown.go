package main

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/exitcode"
	"github.com/cvs-tool/cvs/report"
	"github.com/cvs-tool/cvs/session"
)

func (a *app) upCommand() *cobra.Command {
	var restart, dryRun, reprovision, repair, yes bool
	cmd := &cobra.Command{
		Use:   "up [--restart] [--reprovision] [--repair [--yes]] [--dry-run]",
		Short: "Set up the persistent containers without running a suite",
		Long: `up does the set-up half of a run for a persistent (or no_launch) cluster:
attach, or cold-start (launch, setup script, sshd), and leaves the containers
running. With --restart, a cluster whose containers are all stopped has them
started again, keeping what was installed in them.

--reprovision runs the setup script again in running containers that were
never provisioned (a cold start that did not finish) or were provisioned with
another setup script; their overlays are kept.

--repair brings a persistent set that is not whole back: stopped containers
are started (never removed), containers that are really absent are launched
with the image the others run and provisioned; running containers are never
touched; paused ones are left to you. It shows the plan and, on a terminal,
asks before changing anything (--yes skips the question; without a terminal
--yes is required).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadCluster()
			if err != nil {
				return err
			}
			opts := a.sessionOptions(dryRun)
			if a.json {
				// With --json the plan is the document; errors go to stderr.
				opts.OnPlan = func(rep *session.RunReport) { a.printJSON(rep.Plan) }
			}
			if repair && !dryRun && !yes {
				if !isTerminal(a.stdin) {
					return &flagError{errors.New("up --repair changes containers: confirm with --yes (no terminal to ask on), or look first with --dry-run")}
				}
				opts.Confirm = func(*session.RunReport) bool {
					fmt.Fprint(a.stderr, "Carry out this repair? [y/N] ")
					var answer string
					fmt.Fscanln(a.stdin, &answer)
					return answer == "y" || answer == "yes"
				}
			}
			_, err = session.Up(cmd.Context(), cfg, session.UpOptions{Restart: restart, Reprovision: reprovision, Repair: repair, DryRun: dryRun}, opts)
			if exitcode.Of(err) == exitcode.Usage {
				return &flagError{err}
			}
			if err != nil && a.json {
				fmt.Fprintf(a.stderr, "cvs: %v\n", err)
				return reported(exitFor(cmd.Context(), err))
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&restart, "restart", false, "start the existing containers when they are stopped on every host")
	cmd.Flags().BoolVar(&reprovision, "reprovision", false, "run the setup script again where it never finished or was another")
	cmd.Flags().BoolVar(&repair, "repair", false, "start stopped containers, launch missing ones with the others' image; never touch running ones")
	cmd.Flags().BoolVar(&yes, "yes", false, "with --repair: do not ask for confirmation")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan and the stages, change nothing")
	return cmd
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
			rep, err := session.Down(cmd.Context(), cfg, force, a.sessionOptions(false))
			if rep == nil {
				return err
			}
			if a.json {
				a.printJSON(rep)
				return reported(exitcode.Of(err))
			}
			if len(rep.Removed) > 0 {
				fmt.Fprintf(a.stdout, "%s: removed %s\n", a.hostList(rep.Removed), cfg.Container.Name)
			}
			if len(rep.LeftAlone) > 0 {
				fmt.Fprintf(a.stdout, "left alone on %s\n", a.hostList(rep.LeftAlone))
			}
			if len(rep.Unknown) > 0 {
				fmt.Fprintf(a.stdout, "%s: unknown state, not touched\n", cluster.FoldHostList(rep.Unknown))
			}
			// Each reason once, with the hosts it failed on (all of them:
			// the operator removes those by hand).
			var reasons []string
			byReason := map[string][]string{}
			for h, why := range rep.Failed {
				if _, ok := byReason[why]; !ok {
					reasons = append(reasons, why)
				}
				byReason[why] = append(byReason[why], h)
			}
			sort.Strings(reasons)
			for _, why := range reasons {
				fmt.Fprintf(a.stdout, "%s: FAILED to remove: %s\n", cluster.FoldHostList(byReason[why]), why)
			}
			return reported(exitcode.Of(err))
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
				return a.printJSON(cfg.Effective().Redacted().Suites)
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
