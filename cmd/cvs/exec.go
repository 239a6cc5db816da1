package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/docker"
	"github.com/cvs-tool/cvs/exitcode"
	"github.com/cvs-tool/cvs/report"
	"github.com/cvs-tool/cvs/shell"
	"github.com/cvs-tool/cvs/transport"
)

// ExecJSON is the document `cvs exec --json` prints.
type ExecJSON struct {
	Command    []string         `json:"command"`
	Hosts      []ExecHostResult `json:"hosts"`
	Handshakes int              `json:"handshakes"`
}

// ExecHostResult is one host's outcome of `cvs exec`.
type ExecHostResult struct {
	Host string `json:"host"`
	// ExitCode is the command's exit status; -1 when it did not finish
	// (connection failure, timeout, signal).
	ExitCode   int    `json:"exit_code"`
	Stdout     string `json:"stdout"`
	Stderr     string `json:"stderr"`
	DurationMS int64  `json:"duration_ms"`
	Error      string `json:"error,omitempty"`
	ErrorKind  string `json:"error_kind,omitempty"`
}

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
			hosts, err := selectHosts(cfg, hostsFlag, head)
			if err != nil {
				return err
			}
			if timeout == 0 {
				timeout = cfg.CommandTimeout
			}
			return a.exec(cmd.Context(), cfg, hosts, args, group, inContainer, timeout)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&hostsFlag, "hosts", "", "run only on these hosts: comma-separated names or ranges, as in the cluster file")
	fl.BoolVar(&head, "head", false, "run only on the head host")
	fl.BoolVarP(&group, "group", "g", false, "fold identical outputs into one block listing their hosts")
	fl.BoolVar(&inContainer, "in-container", false, "run inside the configured container (docker exec); the time limit stops it there too")
	fl.DurationVar(&timeout, "timeout", 0, "time limit per host; the remote command is killed when it passes (default: command_timeout)")
	return cmd
}

func (a *app) exec(ctx context.Context, cfg *cluster.Config, hosts []cluster.Host, argv []string, group, inContainer bool, timeout time.Duration) error {
	f, d, err := a.connect(cfg)
	if err != nil {
		return err
	}
	defer d.Close()
	defer f.Close()
	line := shell.Join(argv...)
	if inContainer {
		line = docker.ExecWatched(cfg.Sudo, cfg.Container.Name, line)
	}
	width := 0
	for _, h := range hosts {
		width = max(width, len(h.Name))
	}
	stream := !a.json && !group
	var outMu sync.Mutex
	results := make([]ExecHostResult, len(hosts))
	// Streamed output lines are the progress; a progress line would only
	// tangle with them.
	var p *report.Progress
	if !stream {
		p = a.progress(f, "running", len(hosts))
	}
	errs := f.Each(ctx, hosts, func(ctx context.Context, i int, h cluster.Host, c transport.Conn) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		cmd := transport.Command{Line: line, ForwardStdin: inContainer, Name: shell.Join(argv...)}
		var po, pe *report.Prefix
		if stream {
			po = &report.Prefix{W: a.stdout, Host: h.Name, Width: width, Locker: &outMu}
			pe = &report.Prefix{W: a.stderr, Host: h.Name, Width: width, Locker: &outMu}
			cmd.Stdout, cmd.Stderr = po, pe
		}
		res, err := c.Run(ctx, cmd)
		if stream {
			po.Flush()
			pe.Flush()
		}
		results[i] = ExecHostResult{Host: h.Name, ExitCode: res.ExitCode, Stdout: string(res.Stdout),
			Stderr: string(res.Stderr), DurationMS: res.Duration.Milliseconds()}
		return err
	})
	p.Stop()

	code := exitcode.OK
	for i, err := range errs {
		r := &results[i]
		r.Host = hosts[i].Name
		if err == nil {
			continue
		}
		r.Error, r.ErrorKind = err.Error(), transport.ErrorKind(err)
		var ee *transport.ExitError
		switch {
		case transport.IsConnectError(err) && r.DurationMS == 0:
			r.ExitCode = -1
			code = exitcode.Preflight
		case errors.As(err, &ee):
			r.Error = "" // the exit code says it; stderr is in the output
			code = max(code, exitcode.Failed)
		default:
			r.ExitCode = -1
			code = max(code, exitcode.Failed)
		}
	}
	if a.json {
		if err := a.printJSON(ExecJSON{Command: argv, Hosts: results, Handshakes: d.Handshakes()}); err != nil {
			return err
		}
		return reported(code)
	}
	if group {
		outs := make([]report.Output, 0, len(results))
		for _, r := range results {
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
	a.summarizeExec(results)
	return reported(code)
}

func (a *app) summarizeExec(results []ExecHostResult) {
	ok, failed := 0, 0
	for _, r := range results {
		switch {
		case r.Error != "":
			fmt.Fprintf(a.stderr, "cvs: %s\n", r.Error)
			failed++
		case r.ExitCode != 0:
			fmt.Fprintf(a.stderr, "cvs: %s: exit status %d\n", r.Host, r.ExitCode)
			failed++
		default:
			ok++
		}
	}
	if failed > 0 {
		a.log.Warn(fmt.Sprintf("command failed on %d of %d hosts", failed, len(results)))
	} else {
		a.log.Debug(fmt.Sprintf("command succeeded on all %d hosts", ok))
	}
}

// selectHosts picks the hosts named by --hosts (names, addresses or
// ranges, comma-separated) or --head; neither means every host.
func selectHosts(cfg *cluster.Config, list string, head bool) ([]cluster.Host, error) {
	if head {
		if list != "" {
			return nil, &flagError{errors.New("--head and --hosts cannot be used together")}
		}
		return []cluster.Host{cfg.Head()}, nil
	}
	if list == "" {
		return cfg.Hosts, nil
	}
	names, err := cluster.ExpandHostList(list)
	if err != nil {
		return nil, &flagError{fmt.Errorf("--hosts: %v", err)}
	}
	var out []cluster.Host
	var unknown []string
	for _, n := range names {
		h, ok := cfg.FindHost(n)
		if !ok {
			unknown = append(unknown, n)
			continue
		}
		out = append(out, h)
	}
	if len(unknown) > 0 {
		return nil, &flagError{fmt.Errorf("--hosts: %s not in %s (hosts there: %s)", strings.Join(unknown, ", "), cfg.File, hostSample(cfg))}
	}
	return out, nil
}

func hostSample(cfg *cluster.Config) string {
	var names []string
	for i, h := range cfg.Hosts {
		if i == 5 {
			names = append(names, fmt.Sprintf("… %d more", len(cfg.Hosts)-5))
			break
		}
		names = append(names, h.Name)
	}
	return strings.Join(names, ", ")
}
