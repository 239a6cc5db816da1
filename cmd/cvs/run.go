package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/exitcode"
	"github.com/cvs-tool/cvs/report"
	"github.com/cvs-tool/cvs/session"
)

func (a *app) runCommand() *cobra.Command {
	var dryRun, group, plain bool
	var junit string
	cmd := &cobra.Command{
		Use:   "run SUITE",
		Short: "Set up the containers per lifetime, run a suite's steps inside them, tear down",
		Long: `run probes every host, decides from the container's lifetime what to do
(attach, launch, refuse), sets the containers up (launch, setup script, sshd),
runs the suite's steps in order inside them (stopping at the first step that
fails on any host), and tears down per lifetime (per_run removes what it
launched; persistent and no_launch keep the containers).

With --dry-run it prints the plan and the stages with their per-host actions,
and changes nothing.

The persistent workflow: cvs run install (cold start, provisioning, install),
then cvs run test any number of times (attach to the same containers).`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return &flagError{errors.New("run needs one suite name: cvs run SUITE (cvs list shows them)")}
			}
			return nil
		},
		ValidArgsFunction: a.completeSuites,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := a.loadCluster()
			if err != nil {
				return err
			}
			st, ok := cfg.Suite(args[0])
			if !ok {
				names := cfg.SuiteNames()
				if len(names) == 0 {
					names = []string{"(none: add [suites.NAME] tables)"}
				}
				return &flagError{fmt.Errorf("no suite %q in %s; suites: %s", args[0], cfg.File, strings.Join(names, ", "))}
			}
			opts := a.sessionOptions(dryRun)
			switch {
			case a.json:
			case group:
				opts.AfterStep = func(step session.Step, results []session.StepResult) {
					outs := make([]report.Output, 0, len(results))
					for _, r := range results {
						status := ""
						if r.Failed() {
							status = fmt.Sprintf("exit %d", r.ExitCode)
						}
						outs = append(outs, report.Output{Host: r.Host, Text: session.StepOutput(r), Status: status})
					}
					fmt.Fprintf(a.stdout, "step %q:\n", step.Name)
					report.Group(a.stdout, outs)
				}
			case !plain && !a.quiet && !dryRun && len(cfg.Hosts) > liveMinHosts && isTerminal(a.stdout):
				stop := a.liveView(&opts, cfg.HostNames())
				defer stop()
			default:
				opts.Stdout, opts.Stderr = a.stdout, a.stderr
			}
			rep, err := session.Run(cmd.Context(), cfg, st, dryRun, opts)
			a.stopLive()
			if rep == nil {
				return err
			}
			if junit != "" && rep.Record != "" {
				if jerr := a.writeJUnit(junit, filepath.Base(rep.Record)); jerr != nil {
					a.log.Error("the JUnit XML could not be written", "file", junit, "err", jerr)
				}
			}
			if a.json {
				rep.ExitCode = exitFor(cmd.Context(), err)
				a.printJSON(rep)
				if err != nil {
					return reported(exitcode.Of(err))
				}
				return nil
			}
			if len(rep.Steps) > 0 {
				fmt.Fprintln(a.stdout)
				session.Summary(a.stdout, rep.Steps, a.verbose)
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan and the stages, change nothing")
	cmd.Flags().StringVar(&junit, "junit", "", "also write the run's results as JUnit XML to FILE")
	cmd.Flags().BoolVarP(&group, "group", "g", false, "after each step, fold identical outputs into one block listing their hosts")
	cmd.Flags().BoolVar(&plain, "plain", false, "print the steps' output as host-prefixed lines, not the live table (the default when stdout is not a terminal)")
	return cmd
}

// liveMinHosts: with more hosts than this on a terminal, steps show as a
// live table instead of interleaved lines.
const liveMinHosts = 2

// liveView makes opts drive a live table of hosts on stdout, started when
// the first step starts: each host's step, state, elapsed time and last
// line. Log lines print above it meanwhile. The function returned (and
// stopLive) leaves the table as it last was.
func (a *app) liveView(opts *session.Options, hosts []string) func() {
	var live *report.Live
	opts.OnStep = func(step session.Step, on []string) {
		if live == nil {
			live = report.StartLive(a.stdout, hosts, report.NoColor())
			a.log.SetOutput(report.LineWriter(live.Println))
			a.stopLive = func() {
				live.Stop()
				a.log.SetOutput(logWriter{a})
				a.stopLive = func() {}
			}
		}
		live.StepStarted(step.Name, on)
	}
	opts.StepOutput = func(_, host string) (io.Writer, io.Writer) {
		w := live.Output(host)
		return w, w
	}
	opts.AfterStep = func(_ session.Step, results []session.StepResult) {
		for _, r := range results {
			live.StepDone(r.Host, r.ExitCode)
		}
	}
	return func() { a.stopLive() }
}

// sessionOptions are the session's hooks into this invocation: logs,
// progress line, the plan printed before any change, and the note a
// second Ctrl-C prints.
func (a *app) sessionOptions(dryRun bool) session.Options {
	return session.Options{
		Log: a.log, Version: readBuildInfo().Version, Progress: a.progress,
		OnOpen: func(s *session.Session) { a.setLeftBehind(s.LeftBehind) },
		OnPlan: func(rep *session.RunReport) {
			if a.json {
				return
			}
			img := rep.Image
			if rep.EffectiveImage != rep.Image {
				img = fmt.Sprintf("%s → %s (site %s)", rep.Image, rep.EffectiveImage, rep.Site)
			}
			switch {
			case rep.Digest != "":
				fmt.Fprintf(a.stdout, "image %s pinned to %s\n", img, rep.Digest)
			case rep.Image != "":
				fmt.Fprintf(a.stdout, "image %s (not pinned to a digest)\n", img)
			}
			a.printPlan(rep.Plan)
			if dryRun {
				a.printStages(rep.Stages)
			}
		},
	}
}

func (a *app) printPlan(p session.Plan) {
	fmt.Fprintf(a.stdout, "plan (lifetime %s): %s\n  %s\n\n", p.Lifetime, p.Verdict, p.Reason)
	rows := make([][]string, 0, len(p.Hosts))
	noted := make([]bool, 0, len(p.Hosts))
	for _, h := range p.Hosts {
		rows = append(rows, []string{h.Host, string(h.State), shortID(h.ContainerID), shortID(h.ImageID), string(h.Action), h.Note})
		noted = append(noted, h.Note != "")
	}
	a.longTable([]string{"HOST", "STATE", "CONTAINER", "IMAGE", "ACTION", "NOTE"}, rows, noted)
	for _, w := range p.Warnings {
		fmt.Fprintf(a.stdout, "warning: %s\n", w)
	}
	fmt.Fprintln(a.stdout)
}

// longTable writes a table of hosts bounded to a.rowLimit() rows; when
// rows are left out, the rows marked first[i] (a host's problem) come
// first, so they are the ones shown.
func (a *app) longTable(header []string, rows [][]string, first []bool) {
	if limit := a.rowLimit(); limit > 0 && len(rows) > limit {
		sorted := make([][]string, 0, len(rows))
		for pass := range 2 {
			for i, r := range rows {
				if first[i] == (pass == 0) {
					sorted = append(sorted, r)
				}
			}
		}
		rows = sorted
	}
	report.LongTable(a.stdout, header, rows, a.rowLimit())
}

// hostList names hosts folded: report.HostList, or every one with
// --verbose.
func (a *app) hostList(hosts []string) string {
	if a.verbose {
		return cluster.FoldHostList(hosts)
	}
	return report.HostList(hosts)
}

// printStages lists the stages a run would carry out, each with its
// per-host actions folded when they are the same on every host.
func (a *app) printStages(stages []session.StageReport) {
	fmt.Fprintln(a.stdout, "stages:")
	for i, st := range stages {
		if len(st.Hosts) == 0 {
			fmt.Fprintf(a.stdout, "  %d. %s: nothing to do\n", i+1, st.Name)
			continue
		}
		fmt.Fprintf(a.stdout, "  %d. %s\n", i+1, st.Name)
		var order []string
		byAction := map[string][]string{}
		for _, h := range st.Hosts {
			if _, ok := byAction[h.Action]; !ok {
				order = append(order, h.Action)
			}
			byAction[h.Action] = append(byAction[h.Action], h.Host)
		}
		for _, act := range order {
			fmt.Fprintf(a.stdout, "       %s: %s\n", act, a.hostList(byAction[act]))
		}
	}
	fmt.Fprintln(a.stdout)
}

// completeSuites completes a suite name from the cluster file (shell
// completion: cvs completion bash|zsh|fish|powershell).
func (a *app) completeSuites(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	cfg, err := a.loadCluster()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, name := range cfg.SuiteNames() {
		st, _ := cfg.Suite(name)
		out = append(out, name+"\t"+st.Description)
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeHosts completes --hosts from the cluster file's hosts.
func (a *app) completeHosts(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
	cfg, err := a.loadCluster()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	out := make([]string, 0, len(cfg.Hosts))
	for _, h := range cfg.Hosts {
		out = append(out, h.Name)
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
