package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/exitcode"
	"github.com/cvs-tool/cvs/report"
	"github.com/cvs-tool/cvs/session"
)

func (a *app) execCommand() *cobra.Command {
	var hostsFlag string
	var head, group, inContainer bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "exec [--hosts a,b] [--head] [--group] [--in-container] -- CMD [ARGS...]",
		Short: "Run a command on the hosts' OS (or in their containers)",
		Long: `exec runs CMD with exactly the arguments ARGS on every selected host (with
--in-container, inside the configured container there), one SSH connection per
host, and prints each output line prefixed by its host. With --group,
identical outputs are folded into one block listing their hosts. The arguments
are quoted for the remote shell: to use a pipe or a variable, run a shell:
cvs exec -- sh -c 'ls | wc -l'.

Exit code 0 when the command succeeded everywhere, 1 when it failed on some
host, 3 when some host could not be connected to (the others still ran it).`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return &flagError{errors.New("exec needs a command: cvs exec -- CMD [ARGS...]")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := a.loadCluster()
			if err != nil {
				return err
			}
			hosts, err := cfg.SelectHosts(hostsFlag, head)
			if err != nil {
				return &flagError{err}
			}
			if timeout == 0 {
				timeout = cfg.CommandTimeout
			}
			return a.exec(cmd.Context(), cfg, hosts, args, group, inContainer, timeout)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&hostsFlag, "hosts", "", "run only on these hosts: comma-separated names or ranges, as in the cluster file")
	cmd.RegisterFlagCompletionFunc("hosts", a.completeHosts)
	fl.BoolVar(&head, "head", false, "run only on the head host")
	fl.BoolVarP(&group, "group", "g", false, "fold identical outputs into one block listing their hosts")
	fl.BoolVar(&inContainer, "in-container", false, "run inside the configured container (docker exec); the time limit stops it there too")
	fl.DurationVar(&timeout, "timeout", 0, "time limit per host; the remote command is killed when it passes (default: command_timeout)")
	return cmd
}

func (a *app) exec(ctx context.Context, cfg *cluster.Config, hosts []cluster.Host, argv []string, group, inContainer bool, timeout time.Duration) error {
	opts := a.sessionOptions(false)
	if !a.json && !group {
		opts.Stdout, opts.Stderr = a.stdout, a.stderr
	}
	rep, err := session.Exec(ctx, cfg, session.ExecRequest{Hosts: hosts, Argv: argv, InContainer: inContainer, Timeout: timeout}, opts)
	if rep == nil {
		return err
	}
	code := exitcode.Of(err)
	if a.json {
		if err := a.printJSON(rep); err != nil {
			return err
		}
		return reported(code)
	}
	if group {
		outs := make([]report.Output, 0, len(rep.Hosts))
		for _, r := range rep.Hosts {
			if r.Error != "" && r.ExitCode == -1 && r.Stdout == "" && r.Stderr == "" {
				continue // reported below
			}
			status := ""
			if r.ExitCode != 0 {
				status = fmt.Sprintf("exit %d", r.ExitCode)
			}
			outs = append(outs, report.Output{Host: r.Host, Text: r.Stdout + r.Stderr, Status: status})
		}
		report.Group(a.stdout, outs)
	}
	a.summarizeExec(rep.Hosts)
	return reported(code)
}

// summarizeExec names on stderr the hosts where the command failed, once
// per distinct failure (cvs: node[004,011]: exit status 1).
func (a *app) summarizeExec(results []session.ExecHostResult) {
	ok, failed := 0, 0
	var msgs []string
	byMsg := map[string][]string{}
	for _, r := range results {
		var msg string
		switch {
		case r.Error != "":
			msg = r.Error
		case r.ExitCode != 0:
			msg = fmt.Sprintf("exit status %d", r.ExitCode)
		default:
			ok++
			continue
		}
		failed++
		if _, seen := byMsg[msg]; !seen {
			msgs = append(msgs, msg)
		}
		byMsg[msg] = append(byMsg[msg], r.Host)
	}
	for i, msg := range msgs {
		if limit := a.rowLimit(); limit > 0 && i == limit {
			fmt.Fprintf(a.stderr, "cvs: +%d more failures (all in --json)\n", len(msgs)-limit)
			break
		}
		fmt.Fprintf(a.stderr, "cvs: %s: %s\n", a.hostList(byMsg[msg]), msg)
	}
	if failed > 0 {
		a.log.Warn(fmt.Sprintf("command failed on %d of %d hosts", failed, len(results)))
	} else {
		a.log.Debug(fmt.Sprintf("command succeeded on all %d hosts", ok))
	}
}
