package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/cvs-tool/cvs/report"
	"github.com/cvs-tool/cvs/session"
)

func (a *app) historyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "history",
		Short: "List the recorded runs (run, up, down), newest first",
		Long: `history lists the runs recorded on this machine, newest first: their ID,
when they started, the command, the suite, the image and the exit code.
Records live in $XDG_STATE_HOME/cvs/runs/ID/ (~/.local/state/cvs/runs/ID/).`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			all, err := session.History()
			if err != nil {
				return err
			}
			if a.json {
				if all == nil {
					all = []session.RunRecord{}
				}
				return a.printJSON(all)
			}
			rows := make([][]string, 0, len(all))
			for _, r := range all {
				rows = append(rows, []string{r.ID, r.Start.Local().Format("2006-01-02 15:04:05"), r.Command, dash(r.Suite),
					r.End.Sub(r.Start).Round(time.Second).String(), r.EffectiveImage, fmt.Sprint(r.ExitCode)})
			}
			report.Table(a.stdout, []string{"ID", "START", "COMMAND", "SUITE", "TOOK", "IMAGE", "EXIT"}, rows)
			return nil
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "show [ID]",
		Short: "Print one run's record (ID or a unique prefix; default: the newest)",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 1 {
				return &flagError{fmt.Errorf("history show takes at most one run ID")}
			}
			return nil
		},
		RunE: func(_ *cobra.Command, args []string) error {
			id := ""
			if len(args) == 1 {
				id = args[0]
			}
			r, err := session.FindRun(id)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(r)
			}
			fmt.Fprintf(a.stdout, "run %s · cvs %s · %s\n", r.ID, r.Version, r.CommandLine)
			fmt.Fprintf(a.stdout, "cluster %s · lifetime %s · %s → exit %d\n", r.Cluster, r.Lifetime, r.Verdict, r.ExitCode)
			fmt.Fprintf(a.stdout, "image %s", r.Image)
			if r.EffectiveImage != r.Image {
				fmt.Fprintf(a.stdout, " → %s (site %s)", r.EffectiveImage, r.Site)
			}
			if r.LaunchedImage != "" && r.LaunchedImage != r.EffectiveImage {
				fmt.Fprintf(a.stdout, " → launched %s", r.LaunchedImage)
			}
			if r.Digest != "" {
				fmt.Fprintf(a.stdout, " (%s)", r.Digest)
			}
			fmt.Fprintf(a.stdout, " · %s\n", r.Distribution)
			fmt.Fprintf(a.stdout, "%s → %s (%s)\n\n", r.Start.Local().Format(time.RFC3339), r.End.Local().Format(time.RFC3339), r.End.Sub(r.Start).Round(time.Millisecond))
			rows := make([][]string, 0, len(r.Hosts))
			for _, h := range r.Hosts {
				rows = append(rows, []string{h.Host, h.Action, shortID(h.ContainerID), shortID(h.ImageID), dash(h.StartedAt)})
			}
			a.longTable([]string{"HOST", "ACTION", "CONTAINER", "IMAGE", "STARTED"}, rows, make([]bool, len(rows)))
			if len(r.Steps) > 0 {
				fmt.Fprintln(a.stdout)
				steps := make([]session.StepResult, 0, len(r.Steps))
				for _, s := range r.Steps {
					d := time.Duration(s.DurationMS) * time.Millisecond
					steps = append(steps, session.StepResult{Step: s.Step, Host: s.Host, ExitCode: s.ExitCode, Error: s.Error, Duration: d, Millis: s.DurationMS})
				}
				session.Summary(a.stdout, steps, a.verbose)
			}
			if r.Error != "" {
				fmt.Fprintf(a.stdout, "\n%s\n", r.Error)
			}
			return nil
		},
	})
	var limits pruneLimits
	prune := &cobra.Command{
		Use:   "prune [--older-than 30d] [--keep N]",
		Short: "Remove the records and logs of old runs",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			age, keep, err := limits.parse("history prune")
			if err != nil {
				return err
			}
			removed, err := session.PruneHistory(age, keep)
			if err != nil {
				return err
			}
			if a.json {
				if removed == nil {
					removed = []session.RunRecord{}
				}
				return a.printJSON(removed)
			}
			for _, r := range removed {
				fmt.Fprintf(a.stdout, "removed run %s (%s, %s)\n", r.ID, r.Start.Local().Format("2006-01-02 15:04"), r.Command)
			}
			fmt.Fprintf(a.stdout, "%d run(s) removed\n", len(removed))
			return nil
		},
	}
	limits.add(prune, "runs that ended", "newest runs")
	cmd.AddCommand(prune)
	return cmd
}
